#!/usr/bin/env bash
# Command-line errors: shoald exits non-zero within 2 s with exactly one
# line on stderr that names the bad value; --help and --version work; an API
# token file others could read or change is refused; --backing-dir refuses
# back ends outside its directories (outside, "..", a symlink out), from the
# command line and from the config file.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

truncate -s 1M "$T/a.img"
port=$(free_port)
# The token file the bad command lines use exists, so that the line saying
# it was created does not come before their error.
(umask 077 && echo "cmdline-test-token" >"$T/token")
# Leak checking stays on (under ASan): a refused start frees what it took,
# and a leak report would break the one-line rule below.

# bad_cmdline NAME NEEDLE ARGS...: shoald ARGS must fail fast with one
# stderr line containing NEEDLE. Failures are collected, so one run
# reports every bad case.
problems=()
bad_cmdline() {
    local name=$1 needle=$2 rc=0 lines why=""
    shift 2
    rm -f "$T/s.sock"
    timeout -k 1 2 "$SHOALD" -f -l "unix:$T/s.sock" --http "127.0.0.1:$port" \
        --http-token-file "$T/token" "$@" \
        >"$T/out" 2>"$T/err" </dev/null || rc=$?
    lines=$(wc -l <"$T/err")
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        why="still running after 2 s"
    elif [ "$rc" -eq 0 ]; then
        why="exit status 0"
    elif [ "$lines" -ne 1 ]; then
        why="$lines lines on stderr, want 1"
    elif ! grep -qF -- "$needle" "$T/err"; then
        why="stderr does not name '$needle'"
    elif [ -e "$T/s.sock" ]; then
        why="left its unix socket behind"
    fi
    if [ -n "$why" ]; then
        problems+=("$name (shoald $*): $why: $(head -c 600 "$T/err")")
        printf '[%s] BAD %s: %s\n%s\n' "$TEST_NAME" "$name" "$why" "$(cat "$T/err")" >&2
    else
        log "$name: ok ($(cat "$T/err"))"
    fi
}

bad_cmdline "bad --cache-size" 12X -m 12X "a=$T/a.img"
bad_cmdline "bad --cache-size (long)" lots --cache-size lots "a=$T/a.img"
bad_cmdline "negative --cache-size" -5M -m -5M "a=$T/a.img"
# More cache than the machine has RAM (reserved lazily, so it would start
# and be OOM-killed once full): refused with the figures.
ram_k=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
bad_cmdline "--cache-size over RAM" "more than this machine's RAM" -m "$((ram_k * 2))K" "a=$T/a.img"
bad_cmdline "bad --listen" nowhere -l nowhere "a=$T/a.img"
bad_cmdline "bad --listen port" 127.0.0.1:99999 -l 127.0.0.1:99999 "a=$T/a.img"
bad_cmdline "bad --http" 'localhost:' --http localhost: "a=$T/a.img"
bad_cmdline "missing backing file" "$T/missing.img" "a=$T/missing.img"
bad_cmdline "missing relative backing file" missing.img "a=missing.img"
bad_cmdline "NAME=BACKING without =" "$T/a.img" "$T/a.img"
bad_cmdline "empty volume name" "=$T/a.img" "=$T/a.img"
bad_cmdline "bad volume name" 'a/b' "a/b=$T/a.img"
bad_cmdline "duplicate volume name" a "a=$T/a.img" "a=$T/a.img"
bad_cmdline "unknown option" --bogus --bogus "a=$T/a.img"
bad_cmdline "bad --threads" 0x --threads 0x "a=$T/a.img"
bad_cmdline "--busy-poll over 1 ms" 2000 --busy-poll 2000 "a=$T/a.img"
bad_cmdline "bad --busy-poll" never --busy-poll never "a=$T/a.img"
bad_cmdline "bad --policy" mru --policy mru "a=$T/a.img"
bad_cmdline "bad -D" 'nbd=loud' -D nbd=loud "a=$T/a.img"
bad_cmdline "missing config file" "$T/nope.ini" -c "$T/nope.ini"
printf '[shoald]\ncache-size = 12Q\n[volume a]\nbacking = %s\n' "$T/a.img" >"$T/bad.ini"
bad_cmdline "bad value in config" 12Q -c "$T/bad.ini"
printf '[shoald]\nfrobnicate = 1\n' >"$T/bad2.ini"
bad_cmdline "unknown config key" frobnicate -c "$T/bad2.ini"
# Every config error is "shoald: FILE:LINE: ..." (issue 14, item 4).
bad_cmdline "config error names FILE:LINE" "shoald: $T/bad2.ini:2: unknown setting 'frobnicate'" \
    -c "$T/bad2.ini"
printf '[volume a]\nbacking = %s\n\n[volume a]\nbacking = %s\n' "$T/a.img" "$T/a.img" >"$T/dup.ini"
bad_cmdline "duplicate [volume] section" "$T/dup.ini:4: [volume a] appears twice (first on line 1)" \
    -c "$T/dup.ini"
printf '[shoald]\ncache-size = 16M\n# a comment\ncache_size = 32M\n' >"$T/dupkey.ini"
bad_cmdline "duplicate key (alias)" "$T/dupkey.ini:4: 'cache_size' is set twice (first on line 2)" \
    -c "$T/dupkey.ini"
printf '[nbd]\nmax-connections = 5\n[shoald]\nmax-connections = 6\n' >"$T/dupfe.ini"
bad_cmdline "duplicate key across sections" "$T/dupfe.ini:4: 'max-connections' is set twice" \
    -c "$T/dupfe.ini"
printf '[volume a]\nbacking = %s\n[volume b]\nreadonly = yes\n' "$T/a.img" >"$T/noback.ini"
bad_cmdline "[volume] without backing" "$T/noback.ini:3: [volume b] has no backing" -c "$T/noback.ini"
printf '[shoald]\ncache-size 16M\n' >"$T/syntax.ini"
bad_cmdline "config syntax error" "$T/syntax.ini:2: want 'key = value' or '[section]'" -c "$T/syntax.ini"
printf '[shoald]\nthreads = 4\n[volume a\n' >"$T/syntax2.ini"
bad_cmdline "unclosed section header" "$T/syntax2.ini:3: section header without ']'" -c "$T/syntax2.ini"
printf '[shoald]\n[volume a]\nbacking = %s\nreadahead = 3K\n' "$T/a.img" >"$T/badval.ini"
bad_cmdline "bad volume value" "$T/badval.ini:4: invalid readahead '3K'" -c "$T/badval.ini"
printf '[volume a]\nbacking = %s\n' "$T/a.img" >"$T/one.ini"
bad_cmdline "config and command line volume" "volume a is defined twice (first at $T/one.ini:1)" \
    -c "$T/one.ini" "a=$T/a.img"
bad_cmdline "empty --state-dir" "--state-dir" --state-dir= "a=$T/a.img"
# The front ends' keys too: a bad value in a config file is FILE:LINE, in
# [nbd], [iscsi] or [shoald] (the command line's -l unix: is a unix listener).
printf '[nbd]\nmax-connections = 5\nsocket-mode = rw\n' >"$T/fe-mode.ini"
bad_cmdline "config: bad socket-mode" "shoald: $T/fe-mode.ini:3: invalid --socket-mode 'rw'" \
    -c "$T/fe-mode.ini" "a=$T/a.img"
printf '[shoald]\nsocket-owner = no-such-user-shoal\n' >"$T/fe-owner.ini"
bad_cmdline "config: bad socket-owner" \
    "shoald: $T/fe-owner.ini:2: invalid --socket-owner 'no-such-user-shoal': no such user" \
    -c "$T/fe-owner.ini" "a=$T/a.img"
printf '[nbd]\n\nsocket-group = no-such-group-shoal\n' >"$T/fe-group.ini"
bad_cmdline "config: bad socket-group" \
    "shoald: $T/fe-group.ini:3: invalid --socket-group 'no-such-group-shoal': no such group" \
    -c "$T/fe-group.ini" "a=$T/a.img"
printf '[nbd]\nallow = 127.0.0.1\nallow = 127.0.0.0/33\nallow = unix\n' >"$T/fe-allow.ini"
bad_cmdline "config: bad allow entry" "shoald: $T/fe-allow.ini:3: invalid --allow '127.0.0.0/33'" \
    -c "$T/fe-allow.ini" "a=$T/a.img"
printf '[iscsi]\nallow = example.com\n' >"$T/fe-iallow.ini"
bad_cmdline "config: bad iscsi allow entry" \
    "shoald: $T/fe-iallow.ini:2: invalid --iscsi-allow 'example.com'" -c "$T/fe-iallow.ini" "a=$T/a.img"
printf '[iscsi]\nlisten = unix:/tmp/no.sock\n' >"$T/fe-iscsi.ini"
bad_cmdline "config: iscsi on a unix socket" \
    "shoald: $T/fe-iscsi.ini:2: invalid --iscsi 'unix:/tmp/no.sock'" -c "$T/fe-iscsi.ini" "a=$T/a.img"
printf '[nbd]\ntls = on\n' >"$T/fe-tls.ini"
bad_cmdline "config: tls without credentials" \
    "shoald: $T/fe-tls.ini:2: --tls=on needs --tls-certificates DIR or --tls-psk FILE" \
    -c "$T/fe-tls.ini" "a=$T/a.img"
# A memcached server list is checked as it is read, as the start's ring
# would: one line, FILE:LINE (a reload refuses it too, not only the next
# restart).
printf '[cluster]\nmemcached = 127.0.0.1:11211,127.0.0.1:11211\n' >"$T/mc-dup.ini"
bad_cmdline "config: memcached server twice" \
    "shoald: $T/mc-dup.ini:2: invalid --memcached '127.0.0.1:11211,127.0.0.1:11211': server 127.0.0.1:11211 listed twice" \
    -c "$T/mc-dup.ini" "a=$T/a.img"
bad_cmdline "memcached trailing comma" "trailing comma" --memcached 127.0.0.1:11211, "a=$T/a.img"
bad_cmdline "memcached port 0" "bad port" --memcached 127.0.0.1:0 "a=$T/a.img"

# The API token file: refused when others could read or change it, or when
# its content is no token. Nothing listens afterwards.
for mode in 644 604 620 602; do
    printf 'a-long-enough-token\n' >"$T/loose-token"
    chmod "$mode" "$T/loose-token"
    bad_cmdline "token file mode $mode" "$T/loose-token" --http-token-file "$T/loose-token" "a=$T/a.img"
done
printf 'tok\n' >"$T/short-token"
chmod 600 "$T/short-token"
bad_cmdline "token too short" "too short" --http-token-file "$T/short-token" "a=$T/a.img"
bad_cmdline "token file under a file" "$T/a.img" --http-token-file "$T/a.img/token" "a=$T/a.img"
bad_cmdline "empty --http-token-file" --http-token-file --http-token-file= "a=$T/a.img"

# --backing-dir: the directory must exist; every file back end must lie
# beneath one (checked by the kernel while opening: no "..", no symlink out).
mkdir -p "$T/d/sub" "$T/d2"
truncate -s 1M "$T/d/in.img" "$T/d2/in2.img"
ln -s "$T/a.img" "$T/d/link-out"
ln -s ../a.img "$T/d/rel-out"
bad_cmdline "missing --backing-dir" "$T/nodir" --backing-dir "$T/nodir" "a=$T/d/in.img"
bad_cmdline "--backing-dir is a file" "not a directory" --backing-dir "$T/a.img" "a=$T/d/in.img"
bad_cmdline "backing outside --backing-dir" "is not beneath" --backing-dir "$T/d" "a=$T/a.img"
bad_cmdline "backing via .. out of --backing-dir" "leaves its directory" --backing-dir "$T/d" \
    "a=$T/d/../a.img"
bad_cmdline "backing via an absolute symlink out" "leaves its directory" --backing-dir "$T/d" \
    "a=$T/d/link-out"
bad_cmdline "backing via a relative symlink out" "leaves its directory" --backing-dir "$T/d" \
    "a=$T/d/rel-out"
bad_cmdline "/etc/shadow outside --backing-dir" "/etc/shadow" --backing-dir "$T/d" "a=/etc/shadow"
bad_cmdline "nbd+unix socket outside --backing-dir" "--backing-dir" --backing-dir "$T/d" \
    "a=nbd+unix:///?socket=$T/a.img"
printf '[shoald]\nbacking-dir = %s\nbacking-dir = %s\n[volume a]\nbacking = %s\n' \
    "$T/d" "$T/d2" "$T/a.img" >"$T/bd.ini"
bad_cmdline "config: backing outside backing-dir" "is not beneath" -c "$T/bd.ini"
# The command line's --backing-dir replaces the config file's.
printf '[shoald]\nbacking-dir = %s\n[volume a]\nbacking = %s\n' "$T/d" "$T/d/in.img" >"$T/bd2.ini"
bad_cmdline "command line --backing-dir replaces the file's" "is not beneath" -c "$T/bd2.ini" \
    --backing-dir "$T/d2"

# A volume name of 256 bytes is refused, not cut to 255 and served.
bad_cmdline "a 256-byte volume name" "at most 255 bytes" "$(printf 'v%.0s' {1..256})=$T/a.img"

# --help and --version: exit 0 on stdout.
"$SHOALD" --help >"$T/help" 2>&1 || fail "shoald --help exited $?"
grep -q -- '--cache-size' "$T/help" || fail "--help does not list --cache-size"
grep -q -- '--listen' "$T/help" || fail "--help does not list --listen"
"$SHOALD" --version >"$T/version" 2>&1 || fail "shoald --version exited $?"
[ -s "$T/version" ] || fail "shoald --version printed nothing"

[ "${#problems[@]}" -eq 0 ] || fail "${#problems[@]} bad command line(s) not refused cleanly:
$(printf '  %s\n' "${problems[@]}")"

# The good command line from the same pieces does start (so the errors
# above came from the bad values, not from the harness).
start_shoald -m 16M "a=$T/a.img"
stop_shoald
# ps and /proc/PID/cmdline show the command line as given: splitting
# NAME=BACKING[,format=raw] must not write into argv.
truncate -s 1M "$T/b.img"
start_shoald -m 16M "a=$T/a.img,format=raw" "b=$T/b.img"
cmdline=$(tr '\0' '\n' <"/proc/$SHOALD_PID/cmdline")
assert_contains "$cmdline" "a=$T/a.img,format=raw" "/proc/$SHOALD_PID/cmdline"
assert_contains "$cmdline" "b=$T/b.img" "/proc/$SHOALD_PID/cmdline"
assert_contains "$(ps -o args= -p "$SHOALD_PID")" "a=$T/a.img,format=raw b=$T/b.img" "ps"
assert_eq "$(api_get /api/v1/volumes | jq -r 'map(.name) | sort | join(",")')" a,b "volumes a and b"
stop_shoald
# --backing-dir from both sources, with paths beneath them (relative ones
# too, "." and ".." that stay inside).
printf '[shoald]\nbacking-dir = %s\nbacking-dir = %s\n[volume b]\nbacking = %s\n' \
    "$T/d" "$T/d2" "$T/d2/in2.img" >"$T/bd3.ini"
cd "$T/d"
start_shoald -m 16M -c "$T/bd3.ini" "a=./sub/../in.img"
cd - >/dev/null
assert_eq "$(api_get /api/v1/volumes | jq -r 'map(.name) | sort | join(",")')" a,b "volumes beneath --backing-dir"
stop_shoald
log PASS
