#!/usr/bin/env bash
# The Debian package: scripts/deb builds it out of tree; lintian finds no
# error in it; `dpkg -i` installs it on this machine: /usr/bin/shoald and
# shoalctl run, the unit is installed, passes `systemd-analyze verify`
# (man pages included) and is enabled, the man pages are found by man,
# the shoal system user exists, the config is a conffile; `dpkg --purge`
# removes all of it. The machine is left as it was: the package is purged
# on any exit, and the shoal user is removed if this test created it.
#
# Needs root (dpkg -i). Skipped when a shoal package is already installed
# (this test does not replace someone's install).
#
# The unit's own setup is run too, without systemd (none runs here): the
# installed shoald as the unit's User=, Group= and SupplementaryGroups=,
# with no capability, gives its unix socket to group kvm, and a client in
# kvm (as libvirt's QEMU is) connects while one outside it is refused.
# shellcheck source-path=SCRIPTDIR source=../integration/lib.sh
source "$(dirname "$0")/../integration/lib.sh"
need dpkg-buildpackage dh lintian dpkg systemd-analyze man setpriv nbdinfo
[ "$(id -u)" -eq 0 ] || skip "dpkg -i needs root"
status=$(dpkg-query -W -f='${Status}' shoal 2>/dev/null || true)
case $status in
"" | *not-installed | *config-files) ;;
*) skip "a shoal package is already installed ($status); not replacing it" ;;
esac

user_existed=0
getent passwd shoal >/dev/null && user_existed=1
group_existed=0
getent group shoal >/dev/null && group_existed=1
kvm_existed=0
getent group kvm >/dev/null && kvm_existed=1
installed=0

_pkg_cleanup() {
    local rc=$?
    # A shoald still running as shoal would keep userdel from working.
    local p
    for p in "${_SHOAL_PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    if [ "$installed" = 1 ]; then
        dpkg --purge shoal >>"$T/purge.log" 2>&1 || echo "deb: dpkg --purge shoal failed" >&2
    fi
    if [ "$user_existed" = 0 ] && getent passwd shoal >/dev/null; then
        userdel shoal 2>/dev/null || true
    fi
    if [ "$group_existed" = 0 ] && getent group shoal >/dev/null; then
        groupdel shoal 2>/dev/null || true
    fi
    if [ "$kvm_existed" = 0 ] && getent group kvm >/dev/null; then
        groupdel kvm 2>/dev/null || true
    fi
    return "$rc"
}
trap '_pkg_cleanup; _cleanup' EXIT

# --- build ---------------------------------------------------------------
t0=$SECONDS
nice -n 19 "$SRCDIR/scripts/deb" "$T/out" >"$T/build.log" 2>&1 || fail "scripts/deb failed: $(tail -15 "$T/build.log")"
deb=$(tail -1 "$T/build.log")
[ -f "$deb" ] || fail "scripts/deb did not print a .deb path: $deb"
log "built $(basename "$deb") in $((SECONDS - t0)) s"
# Out of tree: the source tree gained nothing (debian/.debhelper,
# obj-*, debian/shoal/, debian/files...).
for f in "$SRCDIR"/obj-* "$SRCDIR/debian/shoal" "$SRCDIR/debian/.debhelper" "$SRCDIR/debian/files"; do
    [ ! -e "$f" ] || fail "the package build left $f in the source tree"
done
# The binaries were built without the test-only fault back end.
dpkg-deb -x "$deb" "$T/x"
grep -q "the fault: back end is a test-only layer" "$T/x/usr/bin/shoald" ||
    fail "the packaged shoald does not refuse fault: (built with the fault back end?)"

# --- lintian -------------------------------------------------------------
lintian --fail-on error --no-tag-display-limit "$T/out/"*.changes >"$T/lintian.log" 2>&1 ||
    fail "lintian: $(grep -E '^E:' "$T/lintian.log" | head -10)"
grep -E '^(E|W):' "$T/lintian.log" | sed 's/^/lintian: /' || true
log "lintian: $(grep -cE '^E:' "$T/lintian.log") errors, $(grep -cE '^W:' "$T/lintian.log") warnings"

# --- install -------------------------------------------------------------
installed=1
dpkg -i "$deb" >"$T/install.log" 2>&1 || fail "dpkg -i failed: $(tail -10 "$T/install.log")"
version=$(dpkg-deb -f "$deb" Version)
assert_eq "$(/usr/bin/shoald --version)" "shoald ${version%%-*}" "/usr/bin/shoald --version"
/usr/bin/shoalctl --version | grep -qF "${version%%-*}" || fail "/usr/bin/shoalctl --version"
for f in /lib/systemd/system/shoald.service /usr/lib/sysusers.d/shoal.conf \
    /usr/share/bash-completion/completions/shoalctl /etc/shoal/shoald.conf \
    /usr/share/doc/shoal/examples/shoald.conf /usr/share/doc/shoal/copyright; do
    [ -f "$f" ] || fail "$f is not installed"
done
[ ! -e /usr/bin/shoal-replay ] || fail "the benchmark's shoal-replay is in the package"
dpkg-query --control-show shoal conffiles 2>/dev/null | grep -q '^/etc/shoal/shoald.conf' ||
    fail "/etc/shoal/shoald.conf is not a conffile"
for page in 'shoald 8' 'shoalctl 8' 'shoald.conf 5'; do
    read -r name sec <<<"$page"
    p=$(man -w "$sec" "$name" 2>/dev/null) || fail "man does not find $name($sec)"
    [[ $p == "/usr/share/man/man$sec/$name.$sec.gz" ]] || fail "$name($sec) found at $p"
    MANWIDTH=100 man "$sec" "$name" 2>/dev/null | grep -q "^NAME" || fail "man $sec $name does not render"
done
getent passwd shoal >/dev/null || fail "the shoal user was not created"
getent group shoal >/dev/null || fail "the shoal group was not created"
assert_eq "$(getent passwd shoal | cut -d: -f7)" /usr/sbin/nologin "the shoal user's shell"
# dh_installsystemd enabled it (deb-systemd-helper makes the link even
# when systemd is not running, as in a container).
[ -L /etc/systemd/system/multi-user.target.wants/shoald.service ] ||
    fail "shoald.service is not enabled"
out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify /lib/systemd/system/shoald.service 2>&1) ||
    fail "systemd-analyze verify of the installed unit: $out"
ours=$(grep -i shoald <<<"$out" || true)
[ -z "$ours" ] || fail "systemd-analyze verify: $ours"
if [ -d /run/systemd/system ]; then
    # systemd runs here: the postinst started the service.
    systemctl is-active --quiet shoald || fail "shoald.service is not active after install"
fi
# The installed binary runs with the installed libraries and config.
SHOALD=/usr/bin/shoald start_shoald -c /etc/shoal/shoald.conf -m 16M
stop_shoald

# --- the unit's user and groups ------------------------------------------
unit=/lib/systemd/system/shoald.service
u=$(sed -nE 's/^User=//p' "$unit")
g=$(sed -nE 's/^Group=//p' "$unit")
sg=$(sed -nE 's/^SupplementaryGroups=//p' "$unit")
assert_eq "$u:$g:$sg" shoal:shoal:kvm "the unit's User:Group:SupplementaryGroups"
getent group kvm >/dev/null || fail "the kvm group the unit names does not exist after install"
# What RuntimeDirectory= makes, and an image given to shoal; the other
# users only traverse $T.
chmod 0711 "$T"
install -d -o shoal -g shoal -m 0755 "$T/xdg" "$T/xdg/shoal"
install -d -o shoal -g shoal -m 0750 "$T/img"
random_file "$T/img/gold.raw" $((1 << 20))
chown shoal:shoal "$T/img/gold.raw"
printf '[shoald]\nhttp = 127.0.0.1:%s\nlisten = unix:%s\nsocket-group = kvm\n[volume gold]\nbacking = %s\n' \
    "$(free_port)" "$T/xdg/shoal/nbd.sock" "$T/img/gold.raw" >"$T/unit.conf"
SHOALD_LOG="$T/shoald-unit.log"
setpriv --reuid=shoal --regid=shoal --groups=kvm --inh-caps=-all --bounding-set=-all \
    env XDG_RUNTIME_DIR="$T/xdg" /usr/bin/shoald -f -c "$T/unit.conf" -m 16M >"$SHOALD_LOG" 2>&1 &
SHOALD_PID=$!
_SHOAL_PIDS+=("$SHOALD_PID")
wait_for 20 test -S "$T/xdg/shoal/nbd.sock" || fail "shoald as shoal did not start: $(tail -5 "$SHOALD_LOG")"
assert_eq "$(stat -c '%U:%G %a' "$T/xdg/shoal/nbd.sock")" "shoal:kvm 660" "the socket of shoald run as the unit runs it"
wait_for 10 test -s "$T/xdg/shoal/api-token" || fail "no token in \$XDG_RUNTIME_DIR/shoal: $(tail -5 "$SHOALD_LOG")"
assert_eq "$(stat -c '%U %a' "$T/xdg/shoal/api-token")" "shoal 600" "the token of shoald run as the unit runs it"
uri="nbd+unix:///gold?socket=$T/xdg/shoal/nbd.sock"
out=$(setpriv --reuid=nobody --regid=nogroup --groups=kvm nbdinfo --size "$uri" 2>&1) ||
    fail "a client in group kvm cannot connect: $out"
assert_eq "$out" $((1 << 20)) "gold's size, read by a client in group kvm"
if out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups nbdinfo --size "$uri" 2>&1); then
    fail "a client outside group kvm connected: $out"
fi
assert_contains "$out" "Permission denied" "a client outside group kvm"
stop_shoald
log "as the unit runs it: socket shoal:kvm 0660, read by a client in kvm, refused to one outside"

# --- purge ---------------------------------------------------------------
dpkg --purge shoal >"$T/purge.log" 2>&1 || fail "dpkg --purge failed: $(tail -5 "$T/purge.log")"
installed=0
for f in /usr/bin/shoald /usr/bin/shoalctl /lib/systemd/system/shoald.service /etc/shoal \
    /etc/systemd/system/multi-user.target.wants/shoald.service; do
    if [ -e "$f" ] || [ -L "$f" ]; then fail "$f is still there after dpkg --purge"; fi
done
log PASS
