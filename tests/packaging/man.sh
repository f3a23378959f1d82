#!/usr/bin/env bash
# The man pages cannot drift from the programs: every long option that
# `shoald --help` and `shoalctl --help` print is in shoald(8) and
# shoalctl(8); every key shoald takes in [shoald] and in [volume NAME]
# (options.c's volume_setting) is in shoald.conf(5); and `man -l` renders
# each page without a warning.
#
# Environment: MANDIR, the build directory of docs/man (meson sets it).
# shellcheck source-path=SCRIPTDIR source=../integration/lib.sh
source "$(dirname "$0")/../integration/lib.sh"
need man
: "${MANDIR:?MANDIR must name the directory of the built man pages}"

# render PAGE: the page as text, wide enough that no option is hyphenated
# at a line end. Fails on any groff or man warning.
render() {
    local out err
    out=$(MANWIDTH=400 LC_ALL=C.UTF-8 man --warnings -l "$MANDIR/$1" 2>"$T/warn") ||
        fail "man -l $1 failed: $(cat "$T/warn")"
    err=$(cat "$T/warn")
    [ -z "$err" ] || fail "man -l $1 warns: $err"
    [ "$(wc -l <<<"$out")" -gt 30 ] || fail "man -l $1 rendered only $(wc -l <<<"$out") lines"
    printf '%s\n' "$out"
}

# long_options PROGRAM: the --options its --help prints.
long_options() {
    "$1" --help | grep -oE -- '(^|[ ,])--[a-z][a-z-]*' | sed 's/^[ ,]*//' | sort -u
}

for page in shoald.8 shoalctl.8 shoald.conf.5; do
    [ -s "$MANDIR/$page" ] || fail "$MANDIR/$page was not built"
done

check_options() {
    local prog=$1 page=$2 text opt n=0
    text=$(render "$page")
    grep -qE "^${prog}\\($(cut -d. -f2 <<<"$page")\\)" <<<"$text" || fail "$page has no ${prog} header"
    for opt in $(long_options "$3"); do
        n=$((n + 1))
        grep -qE -- "(^|[^a-z-])${opt}([^a-z-]|\$)" <<<"$text" ||
            fail "$opt (from $prog --help) is not in $page"
    done
    [ "$n" -ge 5 ] || fail "only $n long options found in $prog --help"
    log "$page: all $n long options of $prog --help"
}
check_options shoald shoald.8 "$SHOALD"
check_options shoalctl shoalctl.8 "$SHOALCTL"

# shoalctl's commands too (from its help's "Commands:" block).
ctl_text=$(render shoalctl.8)
for cmd in $("$SHOALCTL" --help | sed -n '/^Commands:/,/^Options:/p' | grep -E '^  [a-z]' |
    awk '{ print $1 }' | sort -u); do
    grep -qE "(^|[^a-z])${cmd}([^a-z]|\$)" <<<"$ctl_text" || fail "command $cmd is not in shoalctl.8"
done

# shoald.conf(5): every [shoald] key (the long options a file may set:
# not config, help, version, foreground, verbose) and every volume key.
conf_text=$(render shoald.conf.5)
n=0
for opt in $(long_options "$SHOALD"); do
    key=${opt#--}
    case $key in config | help | version | foreground | verbose) continue ;; esac
    n=$((n + 1))
    grep -qE "^ +${key} = " <<<"$conf_text" || fail "[shoald] key '$key' is not in shoald.conf.5"
done
vkeys=$(sed -n '/^static int volume_setting/,/^}/p' "$SRCDIR/src/daemon/options.c" |
    grep -oE '!strcmp\(name, "[a-z-]+"\)' | sed -E 's/.*"([a-z-]+)".*/\1/')
[ "$(wc -w <<<"$vkeys")" -ge 7 ] || fail "found only $(wc -w <<<"$vkeys") volume keys in options.c"
for key in $vkeys; do
    n=$((n + 1))
    grep -qE "(^|[^a-z-])${key}([^a-z-]|\$)" <<<"$conf_text" ||
        fail "[volume] key '$key' (options.c) is not in shoald.conf.5"
done
log "shoald.conf.5: all $n keys"
log PASS
