#!/usr/bin/env bash
# qemu-io patterns through shoald: aligned and unaligned writes, discard,
# write -z; each checked through NBD (qemu-io read -P) and on the backing
# file itself (write-through is visible on disk at once).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need qemu-io od cmp

make_image "$T/a.img" 16
cp --sparse=always "$T/a.img" "$T/expect.img"
start_shoald -m 64M "a=$T/a.img"

# qemu_io CMD...: run qemu-io commands on volume a; fail on a failed
# command or a pattern mismatch (older qemu-io exited 0 on those).
qemu_io() {
    local args=() c out
    for c in "$@"; do args+=(-c "$c"); done
    out=$(qemu-io -f raw "${args[@]}" "$(uri a)" 2>&1) || fail "qemu-io $* failed: $out"
    if grep -qiE 'verification failed|error|failed' <<<"$out"; then
        fail "qemu-io $*: $out"
    fi
}

expect_bytes() { assert_bytes "$T/a.img" "$@"; }

# mirror OFF LEN BYTE: apply the same change to the expected image.
mirror() {
    head -c "$2" /dev/zero | tr '\0' "\\$(printf '%03o' "$3")" |
        dd of="$T/expect.img" bs=1M seek="$1" oflag=seek_bytes conv=notrunc status=none
}

# Warm the cache over the areas about to change, so stale data would show.
qemu_io "read 0 2M" "read 4096 8192"

qemu_io "write -P 0xab 0 1M"
qemu_io "read -P 0xab 0 1M"
expect_bytes 0 1048576 0xab
mirror 0 1048576 0xab

# Unaligned: crosses a 4 KiB boundary, partial blocks at both ends.
qemu_io "write -P 0xcd 4097 3000"
qemu_io "read -P 0xcd 4097 3000" "read -P 0xab 0 4097" "read -P 0xab 7097 8192"
expect_bytes 4097 3000 0xcd
expect_bytes 4096 1 0xab
expect_bytes 7097 1 0xab
mirror 4097 3000 0xcd

# An unaligned write into random data (not cached as a whole block).
qemu_io "read 3M 64k"
qemu_io "write -P 0x5a $((3 * 1048576 + 100)) 10000"
qemu_io "read -P 0x5a $((3 * 1048576 + 100)) 10000"
expect_bytes $((3 * 1048576 + 100)) 10000 0x5a
mirror $((3 * 1048576 + 100)) 10000 0x5a

# discard: the file back end punches a hole, so the range reads as zeros.
qemu_io "read 1M 1M"
qemu_io "discard 1M 1M"
qemu_io "read -P 0 1M 1M"
expect_bytes 1048576 1048576 0
mirror 1048576 1048576 0

# write -z over random data, then read zeros; also an unaligned one.
qemu_io "read 8M 1M"
qemu_io "write -z 8M 1M"
qemu_io "read -P 0 8M 1M"
expect_bytes $((8 << 20)) 1048576 0
mirror $((8 << 20)) 1048576 0
qemu_io "write -z $((10 * 1048576 + 300)) 5000"
qemu_io "read -P 0 $((10 * 1048576 + 300)) 5000"
expect_bytes $((10 * 1048576 + 300)) 5000 0
mirror $((10 * 1048576 + 300)) 5000 0

# FUA write and flush.
qemu_io "write -f -P 0x11 12M 64k" "flush"
qemu_io "read -P 0x11 12M 64k"
expect_bytes $((12 << 20)) 65536 0x11
mirror $((12 << 20)) 65536 0x11

# The whole file is exactly what we expect, and reading it all back
# through NBD (now mostly from RAM) matches too.
assert_same_file "$T/a.img" "$T/expect.img" "backing file vs expected image"
if command -v nbdcopy >/dev/null; then
    nbdcopy --no-extents "$(uri a)" "$T/out" || fail "nbdcopy out"
    assert_same_file "$T/out" "$T/expect.img" "volume vs expected image"
fi

jq -e '.volumes[0] | .trim_ops >= 1 and .zero_ops >= 2 and .flush_ops >= 1 and .errors == 0' \
    <<<"$(stats_json)" >/dev/null || fail "op counters: $(stats_json | jq -c '.volumes[0]')"
stop_shoald
log PASS
