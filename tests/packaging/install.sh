#!/usr/bin/env bash
# `meson install --destdir` puts exactly these files where a packager
# expects them, for the build directory's own prefix and directories:
# the binaries, shoald.service (systemd's unit directory), the shoal user
# (sysusers.d), shoalctl's bash completion, the sample configuration (as
# SYSCONFDIR/shoal/shoald.conf and as a doc example) and the man pages
# (when scdoc built them). The unit's ExecStart names the installed shoald
# and configuration.
# shellcheck source-path=SCRIPTDIR source=../integration/lib.sh
source "$(dirname "$0")/../integration/lib.sh"
need meson jq
: "${BUILDDIR:?BUILDDIR must name the build directory}"

opts=$(meson introspect --buildoptions "$BUILDDIR")
opt() { jq -r --arg n "$1" '.[] | select(.name == $n) | .value' <<<"$opts"; }
prefix=$(opt prefix)
# A directory option: absolute as given, else under the prefix.
dir() {
    local v
    v=$(opt "$1")
    [[ $v == /* ]] && printf '%s' "$v" || printf '%s/%s' "$prefix" "$v"
}
bindir=$(dir bindir)
sysconfdir=$(dir sysconfdir)
datadir=$(dir datadir)
mandir=$(dir mandir)

DEST="$T/root"
meson install -C "$BUILDDIR" --no-rebuild --quiet --destdir "$DEST" >"$T/install.log" 2>&1 ||
    fail "meson install failed: $(tail -5 "$T/install.log")"
(cd "$DEST" && find . -type f -o -type l | sed 's|^\.||' | sort) >"$T/got"

want=(
    "$bindir/shoald" "$bindir/shoalctl"
    "$sysconfdir/shoal/shoald.conf"
    "$datadir/doc/shoal/examples/shoald.conf"
    "$datadir/doc/shoal/examples/libvirt-qemu-hook"
)
if [ -s "$BUILDDIR/docs/man/shoald.8" ]; then
    want+=("$mandir/man8/shoald.8" "$mandir/man8/shoalctl.8" "$mandir/man5/shoald.conf.5")
else
    log "man pages not built (no scdoc): not expected"
fi
for f in "${want[@]}"; do
    grep -qxF "$f" "$T/got" || fail "$f not installed (installed: $(tr '\n' ' ' <"$T/got"))"
done
# Directories that come from systemd.pc / bash-completion.pc or options.
unit=$(grep -E '/systemd/system/shoald\.service$' "$T/got") || fail "no shoald.service installed"
sysusers=$(grep -E '/sysusers\.d/shoal\.conf$' "$T/got") || fail "no sysusers.d/shoal.conf installed"
compl=$(grep -E '/bash-completion/completions/shoalctl$' "$T/got") || fail "no bash completion installed"

# Nothing else, but the benchmark's replay tool (bench/meson.build).
extra=$(printf '%s\n' "${want[@]}" "$unit" "$sysusers" "$compl" "$bindir/shoal-replay" |
    sort | comm -13 - "$T/got")
[ -z "$extra" ] || fail "unexpected files installed: $(tr '\n' ' ' <<<"$extra")"

[ -x "$DEST$bindir/shoald" ] || fail "$bindir/shoald is not executable"
"$DEST$bindir/shoald" --version | grep -qE '^shoald [0-9]' || fail "installed shoald --version"
grep -qxF "ExecStart=$bindir/shoald -f -c $sysconfdir/shoal/shoald.conf" "$DEST$unit" ||
    fail "the installed unit's ExecStart: $(grep ExecStart= "$DEST$unit")"
cmp -s "$DEST$sysconfdir/shoal/shoald.conf" "$SRCDIR/dist/shoald.conf" || fail "installed sample differs"
cmp -s "$DEST$datadir/doc/shoal/examples/libvirt-qemu-hook" "$SRCDIR/contrib/libvirt/qemu" ||
    fail "installed libvirt hook differs"
cmp -s "$DEST$compl" "$SRCDIR/dist/completion/shoalctl" || fail "installed completion differs"
grep -qE '^u shoal ' "$DEST$sysusers" || fail "sysusers.d file does not create the shoal user"
log "installed $(wc -l <"$T/got") files under prefix $prefix (unit in $(dirname "$unit"))"
log PASS
