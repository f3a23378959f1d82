#!/usr/bin/env bash
# The iSCSI front end with real initiators (libiscsi's tools, qemu's
# iscsi:// driver): discovery lists one target per volume, INQUIRY and READ
# CAPACITY, bytes read through iSCSI equal the backing file, writes through
# iSCSI are read back through NBD (the same volume, both protocols) and are
# on disk, header digests, unknown targets, CHAP (one-way and mutual, good
# and bad secrets, the file's mode), --readonly.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need iscsi-ls iscsi-inq iscsi-readcapacity16 qemu-img qemu-io cmp
qemu-img --help | grep -qw iscsi || skip "qemu-img has no iscsi driver (qemu-block-extra)"

IQN=iqn.2026-12.org.shoal
make_image "$T/a.img" 16
random_file "$T/b.img" $((8 << 20))
PORT=$(free_port)
start_shoald -m 64M -v --iscsi "127.0.0.1:$PORT" "alpha=$T/a.img" "Beta_2=$T/b.img"
P="iscsi://127.0.0.1:$PORT"

log "discovery: one target per volume, on the portal we reached"
out=$(iscsi-ls "$P") || fail "iscsi-ls failed: $out"
assert_contains "$out" "Target:$IQN:alpha Portal:127.0.0.1:$PORT,1"
assert_contains "$out" "Target:$IQN:Beta_2 Portal:127.0.0.1:$PORT,1"
assert_eq "$(grep -c '^Target:' <<<"$out")" 2 "targets listed"

out=$(iscsi-ls -s "$P") || fail "iscsi-ls -s failed: $out"
assert_eq "$(grep -c 'Lun:0 *Type:DIRECT_ACCESS' <<<"$out")" 2 "LUN 0 of each target"

out=$(iscsi-inq "$P/$IQN:alpha/0") || fail "iscsi-inq failed: $out"
assert_contains "$out" "Peripheral Device Type:DIRECT_ACCESS"
out=$(iscsi-readcapacity16 "$P/$IQN:alpha/0") || fail "iscsi-readcapacity16 failed: $out"
assert_contains "$out" "Total size:$((16 << 20))"
assert_contains "$out" "LOGICAL BLOCK LENGTH IN BYTES:512"

log "reads: qemu-img convert from iscsi:// equals the backing file"
qemu-img convert -O raw "$P/$IQN:alpha/0" "$T/out.img" 2>"$T/qi.err" || fail "convert: $(cat "$T/qi.err")"
assert_same_file "$T/out.img" "$T/a.img"
log "reads with a CRC32C header digest"
json="json:{\"file.driver\":\"iscsi\",\"file.transport\":\"tcp\",\"file.portal\":\"127.0.0.1:$PORT\",\"file.target\":\"$IQN:Beta_2\",\"file.lun\":0,\"file.header-digest\":\"crc32c\"}"
qemu-img convert -O raw "$json" "$T/out2.img" 2>"$T/qi.err" || fail "digest convert: $(cat "$T/qi.err")"
assert_same_file "$T/out2.img" "$T/b.img"
grep -q "Beta_2 (TSIH [0-9]*, digests CRC32C/None" "$SHOALD_LOG" || fail "no session with a CRC32C header digest"

log "writes: a large write (R2T) lands on disk"
random_file "$T/new.img" $((8 << 20))
qemu-img convert -n -O raw "$T/new.img" "$P/$IQN:Beta_2/0" 2>"$T/qi.err" ||
    fail "convert into iscsi: $(cat "$T/qi.err")"
assert_same_file "$T/b.img" "$T/new.img"

log "writes through iSCSI, read back through NBD"
qemu-io -f raw -c "read 0 2M" "$(uri alpha)" >/dev/null # warm the cache: stale data would show
for w in "0xab 0 1M" "0xcd 4097 3000" "0x5a 3145828 70000"; do
    set -- $w
    out=$(qemu-io -f raw -c "write -P $1 $2 $3" "$P/$IQN:alpha/0" 2>&1) || fail "qemu-io write $w: $out"
    out=$(qemu-io -f raw -c "read -P $1 $2 $3" "$(uri alpha)" 2>&1) || fail "NBD read-back $w: $out"
    grep -qi "verification failed\|error" <<<"$out" && fail "NBD read-back of $w: $out"
    out=$(qemu-io -f raw -c "read -P $1 $2 $3" "$P/$IQN:alpha/0" 2>&1) || fail "iSCSI read-back $w: $out"
    grep -qi "verification failed\|error" <<<"$out" && fail "iSCSI read-back of $w: $out"
done
assert_bytes "$T/a.img" 4097 3000 0xcd
assert_bytes "$T/a.img" 0 4097 0xab

log "an unknown target is refused at login"
if iscsi-inq "$P/$IQN:nope/0" >"$T/inq.out" 2>&1; then
    fail "login to an unknown target succeeded"
fi
grep -q "unknown target '$IQN:nope'" "$SHOALD_LOG" || fail "no log line for the unknown target"

log "CHAP: the secrets file must be private"
stop_shoald
printf 'user alice alice-secret-123\ntarget shoal-tgt target-secret-456\n' >"$T/chap"
chmod 644 "$T/chap"
if "$SHOALD" -f -l "unix:$T/x.sock" --http "127.0.0.1:$(free_port)" --iscsi "127.0.0.1:$(free_port)" \
    --iscsi-chap "$T/chap" "c=$T/b.img" >"$T/chap-start.log" 2>&1; then
    fail "shoald started with a world-readable CHAP file"
fi
assert_contains "$(cat "$T/chap-start.log")" "must be 0600"
chmod 600 "$T/chap"
PORT2=$(free_port)
start_shoald -m 64M --iscsi "127.0.0.1:$PORT2" --iscsi-chap "$T/chap" "alpha=$T/a.img"
P2="iscsi://127.0.0.1:$PORT2"
out=$(iscsi-inq "iscsi://alice%alice-secret-123@127.0.0.1:$PORT2/$IQN:alpha/0" 2>&1) ||
    fail "CHAP login with the right secret failed: $out"
assert_contains "$out" "DIRECT_ACCESS"
if iscsi-inq "iscsi://alice%wrong-secret-99@127.0.0.1:$PORT2/$IQN:alpha/0" >/dev/null 2>&1; then
    fail "CHAP login with a wrong secret succeeded"
fi
grep -q "CHAP authentication of 'alice' failed" "$SHOALD_LOG" || fail "no log line for the bad secret"
if iscsi-inq "$P2/$IQN:alpha/0" >/dev/null 2>&1; then
    fail "login without CHAP succeeded on a target that requires it"
fi
if iscsi-ls "$P2" >/dev/null 2>&1; then
    fail "discovery without CHAP succeeded"
fi
out=$(iscsi-ls "iscsi://alice%alice-secret-123@127.0.0.1:$PORT2" 2>&1) || fail "CHAP discovery: $out"
assert_contains "$out" "$IQN:alpha"
log "mutual CHAP"
out=$(iscsi-inq "iscsi://alice%alice-secret-123@127.0.0.1:$PORT2/$IQN:alpha/0?target_user=shoal-tgt&target_password=target-secret-456" 2>&1) ||
    fail "mutual CHAP with the right target secret failed: $out"
if iscsi-inq "iscsi://alice%alice-secret-123@127.0.0.1:$PORT2/$IQN:alpha/0?target_user=shoal-tgt&target_password=not-the-secret1" >/dev/null 2>&1; then
    fail "the initiator accepted a target that does not know the mutual secret"
fi

log "--readonly: writes refused, reads work"
stop_shoald
PORT3=$(free_port)
start_shoald -m 64M --readonly --iscsi "127.0.0.1:$PORT3" "alpha=$T/a.img"
cp "$T/a.img" "$T/before.img"
if qemu-io -f raw -c "write -P 0x11 0 64k" "iscsi://127.0.0.1:$PORT3/$IQN:alpha/0" >"$T/ro.out" 2>&1 &&
    ! grep -qi "error\|failed" "$T/ro.out"; then
    fail "a write through a read-only iSCSI target succeeded: $(cat "$T/ro.out")"
fi
assert_same_file "$T/a.img" "$T/before.img"
qemu-img convert -O raw "iscsi://127.0.0.1:$PORT3/$IQN:alpha/0" "$T/out3.img" 2>/dev/null ||
    fail "read from the read-only target failed"
assert_same_file "$T/out3.img" "$T/a.img"
# A volume added through the API later is not read-only itself: the front
# end refuses its writes (as NBD does).
cp "$T/b.img" "$T/late.img"
ctl volume add late "$T/late.img" >/dev/null || fail "shoalctl volume add failed"
if qemu-io -f raw -c "write -P 0x22 0 64k" "iscsi://127.0.0.1:$PORT3/$IQN:late/0" >"$T/ro2.out" 2>&1 &&
    ! grep -qi "error\|failed" "$T/ro2.out"; then
    fail "a write to a volume added under --readonly succeeded: $(cat "$T/ro2.out")"
fi
assert_same_file "$T/late.img" "$T/b.img"
log "ok"
