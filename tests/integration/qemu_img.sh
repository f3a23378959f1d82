#!/usr/bin/env bash
# qemu-img against shoald: compare a volume with its backing file, convert
# a volume to a raw file, and convert a qcow2 image into a volume.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need qemu-img cmp

make_image "$T/a.img" 64
truncate -s 64M "$T/dst.img"
make_image "$T/src.raw" 64
qemu-img convert -f raw -O qcow2 "$T/src.raw" "$T/src.qcow2"
start_shoald -m 128M "a=$T/a.img" "dst=$T/dst.img"

qemu-img compare -f raw -F raw "$(uri a)" "$T/a.img" >"$T/cmp.out" ||
    fail "qemu-img compare volume a vs a.img: $(cat "$T/cmp.out")"

# compare must also notice a difference (the check can fail).
cp --sparse=always "$T/a.img" "$T/a-changed.img"
printf 'X' | dd of="$T/a-changed.img" bs=1 seek=12345 conv=notrunc status=none
if qemu-img compare -f raw -F raw "$(uri a)" "$T/a-changed.img" >/dev/null 2>&1; then
    fail "qemu-img compare found no difference with a changed copy"
fi

qemu-img convert -f raw -O raw "$(uri a)" "$T/a.out" || fail "qemu-img convert from volume a"
assert_same_file "$T/a.out" "$T/a.img" "qemu-img convert of a"

# qcow2 into a volume (-n: the target exists); qemu-img writes data and
# zeroes/trims the holes.
qemu-img convert -n -f qcow2 -O raw "$T/src.qcow2" "$(uri dst)" || fail "qemu-img convert qcow2 -> dst"
assert_same_file "$T/dst.img" "$T/src.raw" "backing file of dst after convert"
qemu-img compare -f raw -F qcow2 "$(uri dst)" "$T/src.qcow2" >"$T/cmp2.out" ||
    fail "qemu-img compare dst vs src.qcow2: $(cat "$T/cmp2.out")"

# qemu-img info sees the size through NBD.
qemu-img info --output=json -f raw "$(uri dst)" >"$T/info.json" || fail "qemu-img info"
assert_eq "$(jq -r '."virtual-size"' "$T/info.json")" $((64 << 20)) "qemu-img virtual size"

stop_shoald
log PASS
