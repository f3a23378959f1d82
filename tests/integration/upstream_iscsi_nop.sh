#!/usr/bin/env bash
# Idle iSCSI back-end sessions answer the target's NOP-In pings. Debian's
# tgt, told to ping every second and drop a connection after two unanswered
# pings (nop_interval=1, nop_count=2), must still hold all of shoald's
# sessions after 5 s of idleness, the first read after it must need no new
# login and return the LUN's bytes, and the sessions must last another idle
# time after carrying that read.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need tgtd tgtadm nbdcopy cmp
[ "$(id -u)" -eq 0 ] || skip "tgtd needs root"

IQN=iqn.2026-12.test.shoal:nop
PORT=$(free_port)
SESSIONS=4 # the back end's default
tgtd_control "$PORT"

# nexus_count: how many sessions (I_T nexuses) target 1 has.
nexus_count() { tgtctl --mode target --op show | grep -c 'I_T nexus: ' || true; }

random_file "$T/disk.img" $((4 << 20))
tgtd -f -C "$CTL" --iscsi "portal=127.0.0.1:$PORT" >>"$T/tgtd.log" 2>&1 &
TGTD_PID=$!
wait_for 20 tgtctl --mode target --op show || fail "tgtd did not start: $(tail -5 "$T/tgtd.log")"
tgtctl --mode target --op new --tid 1 --targetname "$IQN"
tgtctl --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$T/disk.img"
tgtctl --mode target --op bind --tid 1 --initiator-address ALL
tgtctl --mode target --op update --tid 1 --name nop_interval --value 1
tgtctl --mode target --op update --tid 1 --name nop_count --value 2
show=$(tgtctl --mode target --op show)
assert_contains "$show" "Nop interval: 1" "tgt's NOP-In interval"
assert_contains "$show" "Nop count: 2" "tgt's NOP-In count"

start_shoald -m 64M --connect-timeout 2s "disk=iscsi://127.0.0.1:$PORT/$IQN/1"
assert_eq "$(nexus_count)" "$SESSIONS" "sessions after open"

# Nothing is read before: every block of the read below comes from the LUN.
sleep 5
assert_eq "$(nexus_count)" "$SESSIONS" "sessions left after 5 s idle with nop_interval=1 nop_count=2"
nbdcopy "$(uri disk)" "$T/disk.out" || fail "nbdcopy out of disk"
assert_same_file "$T/disk.out" "$T/disk.img" "bytes read after the idle time"
if grep -E 'logged in again|session [0-9]+ lost' "$SHOALD_LOG"; then
    fail "a session was dropped while idle and logged in again"
fi
assert_eq "$(nexus_count)" "$SESSIONS" "sessions after the read"
# Idle again after the sessions carried requests (the idle service had to
# let go of them and take them back).
sleep 4
assert_eq "$(nexus_count)" "$SESSIONS" "sessions left after the read and 4 s idle"
if grep -E 'logged in again|session [0-9]+ lost' "$SHOALD_LOG"; then
    fail "a session was dropped in the second idle time"
fi
stop_shoald
check_no_sanitizer_report "$SHOALD_LOG"
log "ok"
