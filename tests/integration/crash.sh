#!/usr/bin/env bash
# Write-through survives kill -9: acknowledged writes are in the backing
# file at once, and a restarted daemon serves them (a small version; the
# full crash harness is another issue).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need qemu-io

make_image "$T/a.img" 16
start_shoald -m 64M "a=$T/a.img"
sock0=$SOCK

# Warm the cache, then write; qemu-io exits only after the acks.
qemu-io -f raw -c "read 0 16M" "$(uri a)" >/dev/null || fail "warm-up read"
qemu-io -f raw -c "write -P 0x71 0 1M" -c "write -P 0x72 5000 3000" -c "write -z 4M 64k" \
    -c "write -P 0x73 10M 2M" "$(uri a)" >"$T/qio.out" 2>&1 || fail "qemu-io writes: $(cat "$T/qio.out")"
! grep -qi 'error\|fail' "$T/qio.out" || fail "qemu-io writes: $(cat "$T/qio.out")"

kill -KILL "$SHOALD_PID"
wait "$SHOALD_PID" 2>/dev/null || true

# On disk right away (no flush was sent).
assert_bytes "$T/a.img" 0 5000 0x71
assert_bytes "$T/a.img" 5000 3000 0x72
assert_bytes "$T/a.img" 8000 $((1048576 - 8000)) 0x71
assert_bytes "$T/a.img" $((4 << 20)) 65536 0
assert_bytes "$T/a.img" $((10 << 20)) 2097152 0x73

# A restarted daemon on the same socket path (kill -9 left the socket file
# behind; shoald must replace a stale one) serves them.
[ -S "$sock0" ] || log "note: no stale socket file left by kill -9"
# shellcheck disable=SC2034 # read by start_shoald
NEXT_SOCK=$sock0
start_shoald -m 64M "a=$T/a.img"
out=$(qemu-io -f raw -c "read -P 0x71 0 5000" -c "read -P 0x72 5000 3000" -c "read -P 0x71 8000 $((1048576 - 8000))" \
    -c "read -P 0 4M 64k" -c "read -P 0x73 10M 2M" "$(uri a)" 2>&1) || fail "qemu-io reads after restart: $out"
! grep -qi 'fail\|error' <<<"$out" || fail "read after restart: $out"
stop_shoald
log PASS
