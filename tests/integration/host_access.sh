#!/usr/bin/env bash
# Fitting the host (issue 14, item 1): libvirt's QEMU runs as its own user
# and reaches the NBD socket through a group.
#  - --socket-group/--socket-mode/--socket-owner set the socket's group,
#    mode and owner; a client in the group connects and reads and writes,
#    one outside it gets "Permission denied";
#  - --user drops root once everything is open: ps and /proc show the
#    user, no capability is left, the image is still written, a volume
#    added through the API afterwards is opened as that user (refused when
#    the user may not open the file), and the daemon stops cleanly,
#    removing its socket and pid file;
#  - bad names and modes, --group without --user, and --user without root
#    are refused with one line.
# Users: nobody (the daemon), uid 4242 (a client, made a member of nogroup
# or of nothing with setpriv); nothing is added to /etc/passwd.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need nbdinfo nbdcopy setpriv qemu-io stat
[ "$(id -u)" -eq 0 ] || skip "needs root (to drop it, and to run clients as other users)"
id nobody >/dev/null 2>&1 || skip "no user nobody"
getent group nogroup >/dev/null || skip "no group nogroup"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

NOBODY_UID=$(id -u nobody)
NOGROUP_GID=$(getent group nogroup | cut -d: -f3)
CLIENT=4242
# Clients as uid 4242: in nogroup, or in no group at all.
as_member() { setpriv --reuid=$CLIENT --regid=$CLIENT --groups="$NOGROUP_GID" -- "$@"; }
as_outsider() { setpriv --reuid=$CLIENT --regid=$CLIENT --clear-groups -- "$@"; }

# Other users must reach the socket: $T is 0700. The run directory belongs
# to the daemon's user, so it can remove its socket and pid file at exit.
chmod 0711 "$T"
mkdir "$T/run"
chown nobody "$T/run"
random_file "$T/vm.img" $((4 << 20))
chown nobody "$T/vm.img"
chmod 0600 "$T/vm.img"

NEXT_SOCK="$T/run/nbd.sock" start_shoald --user nobody --socket-group nogroup --socket-mode 0660 \
    --pid-file "$T/run/shoald.pid" vm="$T/vm.img"

# ---- who the daemon is -----------------------------------------------------
assert_eq "$(ps -o user= -p "$SHOALD_PID" | tr -d ' ')" nobody "user of shoald (ps)"
st=/proc/$SHOALD_PID/status
assert_eq "$(awk '/^Uid:/ {print $2, $3, $4, $5}' "$st")" \
    "$NOBODY_UID $NOBODY_UID $NOBODY_UID $NOBODY_UID" "real, effective, saved, fs uid"
nobody_gid=$(id -g nobody)
assert_eq "$(awk '/^Gid:/ {print $2, $3, $4, $5}' "$st")" \
    "$nobody_gid $nobody_gid $nobody_gid $nobody_gid" "real, effective, saved, fs gid"
assert_eq "$(awk '/^Groups:/ {$1 = ""; print}' "$st" | tr ' ' '\n' | grep -c '^0$' || true)" 0 \
    "root's group among the supplementary groups"
# Every thread, not just the first (the workers and listeners started as root).
for t in /proc/"$SHOALD_PID"/task/*; do
    assert_eq "$(awk '/^Uid:/ {print $2, $3, $4}' "$t/status")" \
        "$NOBODY_UID $NOBODY_UID $NOBODY_UID" "uids of thread $(basename "$t")"
done
assert_num "$(ls /proc/"$SHOALD_PID"/task | wc -l)" '>' 2 "threads of shoald"
assert_eq "$(awk '/^CapEff:/ {print $2}' "$st")" 0000000000000000 "effective capabilities"
assert_eq "$(awk '/^CapPrm:/ {print $2}' "$st")" 0000000000000000 "permitted capabilities"
assert_contains "$(cat "$SHOALD_LOG")" "running as user nobody (uid $NOBODY_UID" "log line"
assert_eq "$(cat "$T/run/shoald.pid")" "$SHOALD_PID" "pid file (written before the drop)"

# ---- the socket --------------------------------------------------------------
assert_eq "$(stat -c '%a %U %G' "$SOCK")" "660 root nogroup" "socket mode, owner, group"

size=$(as_member nbdinfo --size "$(uri vm)") || fail "nbdinfo as a member of the socket's group"
assert_eq "$size" $((4 << 20)) "size seen by a member of the group"
out=$(as_member qemu-io -f raw -c 'write -P 0x5a 1M 64k' "$(uri vm)" 2>&1) ||
    fail "write as a member of the group: $out"
# Written through a daemon that is no longer root: on the disk.
assert_bytes "$T/vm.img" $((1 << 20)) 65536 0x5a
out=$(as_member qemu-io -f raw -c 'read -P 0x5a 1M 64k' "$(uri vm)" 2>&1) ||
    fail "read back as a member of the group: $out"

rc=0
out=$(as_outsider nbdinfo --size "$(uri vm)" 2>&1) || rc=$?
[ "$rc" -ne 0 ] || fail "a client outside the socket's group connected"
assert_contains "$out" "Permission denied" "client outside the group"
log "outsider: $out"

# ---- volumes added after the drop are opened as nobody -----------------------
random_file "$T/root-only.img" $((1 << 20))
chmod 0600 "$T/root-only.img"
rc=0
ctl volume add r "$T/root-only.img" >"$T/out" 2>&1 || rc=$?
assert_eq "$rc" 2 "shoalctl volume add of a file only root may open: exit status"
assert_contains "$(cat "$T/out")" "Permission denied" "volume add of a file only root may open"
chown nobody "$T/root-only.img"
ctl volume add r "$T/root-only.img" >/dev/null || fail "volume add once nobody owns the file"
cmp <(nbdcopy "$(uri r)" - ) "$T/root-only.img" || fail "read of a volume added after the drop"

stop_shoald
[ ! -e "$T/run/nbd.sock" ] || fail "socket left after the stop"
[ ! -e "$T/run/shoald.pid" ] || fail "pid file left after the stop"

# ---- --socket-owner, and the default ----------------------------------------
NEXT_SOCK="$T/own.sock" start_shoald --socket-owner $CLIENT --socket-mode 600 vm="$T/vm.img"
assert_eq "$(stat -c '%a %u %G' "$SOCK")" "600 $CLIENT root" "socket of --socket-owner 4242 --socket-mode 600"
as_outsider nbdinfo --size "$(uri vm)" >/dev/null || fail "the socket's owner cannot connect"
setpriv --reuid=4243 --regid=4243 --groups=0 -- nbdinfo --size "$(uri vm)" >/dev/null 2>&1 &&
    fail "mode 600: a member of the socket's group connected"
stop_shoald
NEXT_SOCK="$T/def.sock" start_shoald vm="$T/vm.img"
assert_eq "$(stat -c '%a %U %G' "$SOCK")" "660 root root" "default socket mode, owner, group"
stop_shoald

# ---- refusals: one line, nothing started -------------------------------------
assert_refused "shoald: invalid --user 'no-such-user-shoal': no such user" --user no-such-user-shoal vm="$T/vm.img"
assert_refused "shoald: --group needs --user" --group nogroup vm="$T/vm.img"
assert_refused "shoald: invalid --group 'no-such-group-shoal': no such group" --user nobody \
    --group no-such-group-shoal vm="$T/vm.img"
assert_refused "shoald: invalid --socket-group 'no-such-group-shoal': no such group" \
    --socket-group no-such-group-shoal vm="$T/vm.img"
assert_refused "shoald: invalid --socket-owner 'no-such-user-shoal': no such user" \
    --socket-owner no-such-user-shoal vm="$T/vm.img"
assert_refused "shoald: invalid --socket-mode '0689': want an octal mode like 0660" \
    --socket-mode 0689 vm="$T/vm.img"
assert_refused "shoald: invalid --socket-mode '4770'" --socket-mode 4770 vm="$T/vm.img"
assert_refused "shoald: invalid --user '0': is root" --user 0 vm="$T/vm.img"
rc=0
timeout -k 1 10 "$SHOALD" -f --http off -l 127.0.0.1:0 --socket-group nogroup vm="$T/vm.img" \
    2>"$T/err" </dev/null || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "--socket-group without a unix listener: exit status $rc"
assert_contains "$(cat "$T/err")" "shoald: --socket-group applies to unix: listeners, and --listen has none" \
    "--socket-group without a unix listener"
# The same keys in a config file: named with its FILE:LINE.
assert_refused ":2: invalid --socket-mode 'rw'" -c <(printf '[nbd]\nsocket-mode = rw\n') vm="$T/vm.img"
# Not root: --user cannot be honoured, and shoald does not run on as is.
mkdir "$T/u"
chown $CLIENT "$T/u"
cp "$T/vm.img" "$T/u/vm.img"
chown $CLIENT "$T/u/vm.img"
rc=0
as_outsider "$SHOALD" -f -l "unix:$T/u/s.sock" --http off --user nobody vm="$T/u/vm.img" \
    >"$T/out" 2>"$T/err" </dev/null || rc=$?
[ "$rc" -ne 0 ] || fail "shoald --user as a user that is not root: exit status 0"
assert_contains "$(cat "$T/err")" "shoald: --user nobody needs shoald to start as root" \
    "--user without root"
[ ! -e "$T/u/s.sock" ] || fail "shoald --user without root started its listener"
log "ok"
