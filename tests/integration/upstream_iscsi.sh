#!/usr/bin/env bash
# The iSCSI back end (iscsi://host:port/target-iqn/lun, libiscsi) in front
# of Debian's tgt target, started here on 127.0.0.1 with its own port and
# control socket. Data read through shoald must match the LUN's backing
# file, and writes, write zeroes and trims through shoald must reach it; a
# 4096-byte-block LUN, a write-protected LUN and CHAP (secret file) work;
# a target that hangs or is not there gives a clear error within the
# connect timeout; a stopped target fails reads within the command timeout
# and a killed one fails them at once, shoald stays up, and both are used
# again once they are back.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need tgtd tgtadm nbdinfo nbdcopy qemu-io cmp jq
[ "$(id -u)" -eq 0 ] || skip "tgtd needs root"
need_python_nbd

IQN=iqn.2026-12.test.shoal:disks
CHAP_IQN=iqn.2026-12.test.shoal:chap
ACL_IQN=iqn.2026-12.test.shoal:acl
ACL_INITIATOR=iqn.2026-12.test.shoal:admitted
PORT=$(free_port)
tgtd_control "$PORT"

# start_tgtd: tgtd in the foreground with the targets and LUNs below.
start_tgtd() {
    tgtd -f -C "$CTL" --iscsi "portal=127.0.0.1:$PORT" >>"$T/tgtd.log" 2>&1 &
    TGTD_PID=$!
    wait_for 20 tgtctl --mode target --op show || fail "tgtd did not start: $(tail -5 "$T/tgtd.log")"
    tgtctl --mode target --op new --tid 1 --targetname "$IQN"
    # LUN 1: thin provisioned (UNMAP, WRITE SAME with unmap, GET LBA STATUS).
    tgtctl --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$T/disk.img"
    tgtctl --mode logicalunit --op update --tid 1 --lun 1 --params thin_provisioning=1
    # LUN 2: 4096-byte logical blocks.
    tgtctl --mode logicalunit --op new --tid 1 --lun 2 --backing-store "$T/big.img" --blocksize 4096
    # LUN 3: write protected.
    tgtctl --mode logicalunit --op new --tid 1 --lun 3 --backing-store "$T/ro.img"
    tgtctl --mode logicalunit --op update --tid 1 --lun 3 --params readonly=1
    # LUN 4: read only after the target fails (nothing of it is cached).
    tgtctl --mode logicalunit --op new --tid 1 --lun 4 --backing-store "$T/spare.img"
    tgtctl --mode target --op bind --tid 1 --initiator-address ALL
    # Target 2 wants CHAP.
    tgtctl --mode target --op new --tid 2 --targetname "$CHAP_IQN"
    tgtctl --mode logicalunit --op new --tid 2 --lun 1 --backing-store "$T/chap.img"
    tgtctl --mode account --op new --user alice --password 'sesame-0123456'
    tgtctl --mode account --op bind --tid 2 --user alice
    tgtctl --mode target --op bind --tid 2 --initiator-address ALL
    # Target 3 admits one initiator name.
    tgtctl --mode target --op new --tid 3 --targetname "$ACL_IQN"
    tgtctl --mode logicalunit --op new --tid 3 --lun 1 --backing-store "$T/acl.img"
    tgtctl --mode target --op bind --tid 3 --initiator-name "$ACL_INITIATOR"
}

# elapsed T0: seconds since T0 (date +%s.%N), one decimal.
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

# nbd_try URI PYTHON: run PYTHON with h connected to URI; prints "ok" or
# the error; the exit status is nbdsh's.
nbd_try() {
    nbdsh -u "$1" -c "
try:
    $2
    print('ok')
except nbd.Error as e:
    print('error:', e.string)"
}

make_image "$T/disk.img" 64
cp --sparse=always "$T/disk.img" "$T/disk.orig"
random_file "$T/big.img" $((16 << 20))
random_file "$T/ro.img" $((8 << 20))
cp "$T/ro.img" "$T/ro.orig"
random_file "$T/spare.img" $((16 << 20))
random_file "$T/chap.img" $((8 << 20))
random_file "$T/acl.img" $((4 << 20))
umask 077
printf 'sesame-0123456\n' >"$T/chap.secret"
printf 'wrong-secret-99\n' >"$T/bad.secret"
umask 022
start_tgtd

BASE="iscsi://127.0.0.1:$PORT/$IQN"
CHAP_URI="iscsi://alice@127.0.0.1:$PORT/$CHAP_IQN/1?secret-file=$T/chap.secret"
SHOAL_ISCSI_TIMEOUT_MS=3000 start_shoald -m 256M --connect-timeout 2s "disk=$BASE/1" "big=$BASE/2" \
    "ro=$BASE/3" "spare=$BASE/4" "chap=$CHAP_URI" "local=$T/ro.orig"

# --- what the LUNs are -----------------------------------------------------
info=$(nbdinfo --json "$(uri disk)")
assert_eq "$(jq -r '.exports[0]."export-size"' <<<"$info")" $((64 << 20)) "size of disk"
assert_eq "$(jq -r '.exports[0].block_size_minimum' <<<"$info")" 512 "disk's minimum block"
assert_eq "$(jq -r '.exports[0].is_read_only' <<<"$info")" false "disk is writable"
assert_eq "$(jq -r '.exports[0].can_trim' <<<"$info")" true "disk can trim"
info=$(nbdinfo --json "$(uri big)")
assert_eq "$(jq -r '.exports[0].block_size_minimum' <<<"$info")" 4096 "big's minimum block (4K LUN)"
assert_eq "$(jq -r '.exports[0]."export-size"' <<<"$info")" $((16 << 20)) "size of big"
info=$(nbdinfo --json "$(uri ro)")
assert_eq "$(jq -r '.exports[0].is_read_only' <<<"$info")" true "write-protected LUN is read-only"
grep -q 'iscsi: .*/3: .*LUN is write-protected' "$SHOALD_LOG" || fail "no log line about LUN 3's write protection"
desc=$(vstat disk backend)
log "disk: $desc"
assert_contains "$desc" "iscsi $IQN LUN 1 at 127.0.0.1:$PORT" "disk's back end description"

# --- reads -----------------------------------------------------------------
nbdcopy "$(uri disk)" "$T/disk.out" || fail "nbdcopy out of disk"
assert_same_file "$T/disk.out" "$T/disk.orig" "read of the iSCSI LUN through shoald"
nbdcopy "$(uri big)" "$T/big.out" || fail "nbdcopy out of big"
assert_same_file "$T/big.out" "$T/big.img" "read of the 4K LUN"
nbdcopy "$(uri ro)" "$T/ro.out" || fail "nbdcopy out of ro"
assert_same_file "$T/ro.out" "$T/ro.orig" "read of the write-protected LUN"
nbdcopy "$(uri chap)" "$T/chap.out" || fail "nbdcopy out of chap"
assert_same_file "$T/chap.out" "$T/chap.img" "read of the CHAP LUN"

# Extents: GET LBA STATUS reports make_image's hole at [16M, 24M).
map=$(nbdinfo --map --json "$(uri disk)")
hole=$(jq '[.[] | select(.offset <= 16777216 and .offset + .length >= 25165824 and (.description | test("hole")))] | length' <<<"$map")
assert_eq "$hole" 1 "extent map of disk shows the hole at 16M (map: $(head -c 600 <<<"$map"))"

# --- writes, write zeroes, trims reach the backing file --------------------
qemu-io -f raw -c "write -P 0x3c 1M 2M" -c "write -f -P 0x5a 3M 64k" -c "write -z 30M 1M" \
    -c "write -z -u 32M 1M" -c "discard 36M 1M" "$(uri disk)" >"$T/qio.out" ||
    fail "qemu-io writes on disk: $(cat "$T/qio.out")"
sync
assert_bytes "$T/disk.img" $((1 << 20)) $((2 << 20)) 0x3c
assert_bytes "$T/disk.img" $((3 << 20)) 65536 0x5a
assert_bytes "$T/disk.img" $((30 << 20)) $((1 << 20)) 0
assert_bytes "$T/disk.img" $((32 << 20)) $((1 << 20)) 0
assert_bytes "$T/disk.img" $((36 << 20)) $((1 << 20)) 0
# WRITE SAME with UNMAP and UNMAP deallocate: tgt punches holes.
for off in 32 36; do
    "$PY" -c "import os,sys
fd = os.open('$T/disk.img', os.O_RDONLY)
sys.exit(0 if os.lseek(fd, $off << 20, os.SEEK_HOLE) == $off << 20 else 1)" ||
        fail "no hole in the backing file at ${off}M after an unmapping zero / trim"
done
grep -q 'no WRITE SAME' "$SHOALD_LOG" && fail "WRITE SAME(16) was refused by tgt"
# Everything else is unchanged.
cmp -n $((1 << 20)) "$T/disk.img" "$T/disk.orig" >/dev/null || fail "disk's first MiB changed"
cmp -i $((37 << 20)) "$T/disk.img" "$T/disk.orig" >/dev/null || fail "disk changed after 37M"
nbdcopy "$(uri disk)" "$T/disk.out2" || fail "nbdcopy out of disk (2)"
assert_same_file "$T/disk.out2" "$T/disk.img" "read after writes through shoald"

# 4K LUN: write through shoald, check the file.
random_file "$T/big.new" $((16 << 20))
nbdcopy "$T/big.new" "$(uri big)" || fail "nbdcopy into big"
assert_same_file "$T/big.img" "$T/big.new" "4K LUN's file after writing through shoald"
out=$(nbd_try "$(uri big)" 'h.pwrite(b"x" * 512, 512)')
assert_contains "$out" "error:" "a 512-byte write to a 4K LUN"

# Write-protected: refused, file unchanged.
qemu-io -f raw -c "write -P 0x11 0 64k" "$(uri ro)" >"$T/qio.ro" 2>&1 && fail "write to ro succeeded"
assert_same_file "$T/ro.img" "$T/ro.orig" "write-protected LUN's file"

# --- login errors ------------------------------------------------------------
out=$(ctl volume add badchap "iscsi://alice@127.0.0.1:$PORT/$CHAP_IQN/1?secret-file=$T/bad.secret" 2>&1) &&
    fail "a wrong CHAP secret was accepted: $out"
log "wrong secret: $out"
assert_contains "$out" "login to target $CHAP_IQN" "error for a wrong CHAP secret"
out=$(ctl volume add nochap "$BASE/9" 2>&1) && fail "a missing LUN was accepted: $out"
assert_contains "$out" "has no LUN 9" "error for a missing LUN"
out=$(ctl volume add badtarget "iscsi://127.0.0.1:$PORT/iqn.2026-12.test.shoal:nothing/1" 2>&1) &&
    fail "a missing target was accepted: $out"
assert_contains "$out" "login to target iqn.2026-12.test.shoal:nothing" "error for a missing target"
# The initiator name: ours by default (not admitted), or the URI's.
out=$(ctl volume add acl "iscsi://127.0.0.1:$PORT/$ACL_IQN/1" 2>&1) && fail "an unlisted initiator got in: $out"
assert_contains "$out" "as iqn.2026-12.shoal:" "error for an initiator the target does not admit"
ctl volume add acl "iscsi://127.0.0.1:$PORT/$ACL_IQN/1?initiator-name=$ACL_INITIATOR" >/dev/null ||
    fail "the admitted initiator name was refused"
nbdcopy "$(uri acl)" "$T/acl.out" || fail "nbdcopy out of acl"
assert_same_file "$T/acl.out" "$T/acl.img" "read of the LUN behind an initiator-name ACL"
assert_refused "unknown parameter 'foo'" "x=iscsi://127.0.0.1:$PORT/$IQN/1?foo=bar"
out=$(ctl volume add baduri "iscsi://127.0.0.1:$PORT/$IQN/1?foo=bar" 2>&1) && fail "a bad URI was added"
assert_contains "$out" "unknown parameter 'foo'" "the API's error for a bad URI"
assert_refused "user 'alice' has no CHAP secret" "x=iscsi://alice@127.0.0.1:$PORT/$CHAP_IQN/1"
nport=$(free_port)
out=$(ctl volume add closed "iscsi://127.0.0.1:$nport/$IQN/1" 2>&1) && fail "a closed port was accepted: $out"
assert_contains "$out" "refused" "error for a port where nothing listens"

# A target that accepts and never answers: the connect timeout (2 s here)
# with an error naming the login as the half that hung.
silent_listener
hport=$SILENT_PORT
t0=$(date +%s.%N)
out=$(ctl volume add hung "iscsi://127.0.0.1:$hport/$IQN/1" 2>&1) && fail "adding a hung target succeeded: $out"
secs=$(elapsed "$t0")
log "volume add of a hung target: ${secs}s: $out"
assert_contains "$out" "no iSCSI login answer within 2.0 s" "error for a hung target"
assert_between "$secs" 1.5 10 "seconds before giving up on a hung target"

# --- the target stops answering (SIGSTOP): the command timeout (3 s) -------
kill -STOP "$TGTD_PID"
t0=$(date +%s.%N)
out=$(nbd_try "$(uri spare)" 'h.pread(65536, 1 << 20)')
secs=$(elapsed "$t0")
log "read from a stopped target: ${secs}s: $out"
assert_contains "$out" "error:" "read from a stopped target"
assert_between "$secs" 2.5 12 "seconds before a read from a stopped target fails"
kill -CONT "$TGTD_PID"
sleep 1.2 # a failed session logs in again no sooner than 1 s later
out=$(nbd_try "$(uri spare)" 'assert h.pread(65536, 2 << 20) == open("'"$T/spare.img"'", "rb").read()[2 << 20:(2 << 20) + 65536]')
assert_eq "$out" ok "read after the target answers again"
grep -q 'got no answer within 3000 ms' "$SHOALD_LOG" || fail "no log line about the command timeout"

# --- the target dies (SIGKILL): errors at once, shoald stays up ------------
stop_tgtd
t0=$(date +%s.%N)
out=$(nbd_try "$(uri spare)" 'h.pread(65536, 4 << 20)')
assert_contains "$out" "error:" "read from a dead target"
out=$(nbd_try "$(uri disk)" 'h.pwrite(b"y" * 4096, 8192)')
assert_contains "$out" "error:" "write to a dead target"
secs=$(elapsed "$t0")
assert_between "$secs" 0 5 "seconds for two failed requests to a dead target"
# Cached data and other volumes still serve; the API answers.
nbdcopy "$(uri local)" "$T/local.out" || fail "nbdcopy out of the file volume"
assert_same_file "$T/local.out" "$T/ro.orig" "file volume while the target is down"
stats_json >/dev/null || fail "the API does not answer while the target is down"
errors=$(vstat spare errors)
assert_num "$errors" '>' 0 "spare's error counter"

# The target comes back with another disk as LUN 4: not used.
mv "$T/spare.img" "$T/spare.keep"
random_file "$T/spare.img" $((8 << 20))
start_tgtd
sleep 1.2 # a failed session logs in again no sooner than 1 s later
out=$(nbd_try "$(uri spare)" 'h.pread(65536, 6 << 20)')
assert_contains "$out" "error:" "read after LUN 4 came back with another size"
grep -q 'after logging in again the LUN is 16384 blocks of 512 bytes, not 32768 of 512' "$SHOALD_LOG" ||
    fail "no log line about LUN 4's new size"
stop_tgtd
mv "$T/spare.keep" "$T/spare.img"

# The target comes back (same port, same LUNs): sessions log in again.
start_tgtd
sleep 1.2
out=$(nbd_try "$(uri spare)" 'assert h.pread(65536, 4 << 20) == open("'"$T/spare.img"'", "rb").read()[4 << 20:(4 << 20) + 65536]')
assert_eq "$out" ok "read after the target came back"
qemu-io -f raw -c "write -P 0x77 8M 1M" "$(uri disk)" >/dev/null || fail "write after the target came back"
assert_bytes "$T/disk.img" $((8 << 20)) $((1 << 20)) 0x77
grep -q 'logged in again' "$SHOALD_LOG" || fail "no log line about sessions logging in again"

stop_shoald
log PASS
