#!/usr/bin/env bash
# vm-boot: a real Linux guest boots with its root disk served by shoald.
#
# QEMU boots Debian's kernel (tests/integration/vm/kernel.sh fetches it with
# apt-get download into $BUILDDIR/vm-kernel, once) and a busybox initramfs
# built here (vm/initramfs.sh, /init is vm/init.sh), with an ext4 image made
# by mke2fs -d as /dev/vda: virtio-blk over QEMU's own NBD client to a unix
# socket of the real shoald. KVM is used only when a short probe boot shows
# that it works; otherwise TCG.
#
#   boot 1: the guest checks the tree against SHA256SUMS, writes two files,
#           syncs, unmounts and powers off;
#   boot 2: the guest mounts read-only, checks the tree and the files boot 1
#           wrote (now read through shoal's cache: its hit bytes must grow);
#   then shoald stops, `e2fsck -fn` must find the backing image clean, and
#   the written files, read out of the image with debugfs, must match.
#
# SHOAL_VM_ACCEL=kvm|tcg skips the probe. Skips (77) only without
# qemu-system-x86_64.
source "$(dirname "$0")/lib.sh"

need qemu-system-x86_64
for t in mke2fs e2fsck debugfs sha256sum; do
    command -v "$t" >/dev/null 2>&1 || fail "$t is missing (run scripts/install-deps)"
done

SEQ_N=200000 # guest/seq.txt is `seq 1 200000`, 1.3 MB
# shellcheck source-path=SCRIPTDIR source=vm/vm_lib.sh
source "$(dirname "$0")/vm/vm_lib.sh"
vm_prepare

# --- the disk: a tree of files with known sha256s ----------------------------
tree=$T/root
mkdir -p "$tree/tree"
sizes=(1 4095 4096 4097 12345 65536 300000 1048576)
for d in 0 1 2 3 4 5 6 7; do
    mkdir -p "$tree/tree/d$d"
    for i in "${!sizes[@]}"; do
        head -c "${sizes[$i]}" /dev/urandom >"$tree/tree/d$d/f$i"
    done
done
head -c $((4 << 20)) /dev/urandom >"$tree/tree/big.bin"
# Identical files: their blocks are one content in shoal's cache.
mkdir -p "$tree/tree/dup"
cp "$tree/tree/d0/"* "$tree/tree/dup/"
: >"$tree/tree/empty"
(cd "$tree" && find tree -type f -print0 | sort -z | xargs -0 sha256sum >SHA256SUMS)
nfiles=$(wc -l <"$tree/SHA256SUMS")

img=$T/disk.img
mke2fs -q -t ext4 -L shoal-vm -d "$tree" "$img" 64M >"$T/mke2fs.log" 2>&1 ||
    fail "mke2fs -d failed: $(tail -n 5 "$T/mke2fs.log")"
e2fsck -fn "$img" >"$T/e2fsck0.log" 2>&1 || fail "the fresh image is not clean: $(tail -n 5 "$T/e2fsck0.log")"
log "disk: 64 MiB ext4, $nfiles files ($(du -sk "$tree/tree" | cut -f1) KiB)"

# --- boots through shoald -----------------------------------------------------
start_shoald -m 256M root="$img"

# boot N MODE: one boot with shoald's volume "root" as virtio-blk /dev/vda.
boot() {
    local n=$1 mode=$2 serial=$T/serial$1.log rc=0 t0=$SECONDS
    vm_qemu "$serial" "$VM_BOOT_TIMEOUT" "$ACCEL" "shoal.mode=$mode shoal.seq=$SEQ_N" \
        -blockdev "driver=nbd,server.type=unix,server.path=$SOCK,export=root,node-name=root0" \
        -device virtio-blk-pci,drive=root0 || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        vm_serial_tail "$serial"
        fail "boot $n ($mode, $ACCEL) did not power off within $VM_BOOT_TIMEOUT s"
    fi
    if ! grep -q "SHOAL-VM: RESULT ok $mode\$" <(tr -d '\r' <"$serial"); then
        vm_serial_tail "$serial"
        fail "boot $n ($mode): $(tr -d '\r' <"$serial" | grep 'SHOAL-VM: RESULT' || echo 'no result marker on the serial console')"
    fi
    [ "$rc" -eq 0 ] || {
        vm_serial_tail "$serial"
        fail "boot $n: qemu exited with status $rc after the guest's result"
    }
    grep -q "SHOAL-VM: tree ok: $nfiles files match" <(tr -d '\r' <"$serial") ||
        fail "boot $n did not check all $nfiles files: $(grep 'tree ok' "$serial")"
    log "boot $n ($mode, $ACCEL): ok in $((SECONDS - t0)) s"
    tr -d '\r' <"$serial" | grep '^SHOAL-VM:' | sed 's/^/    /'
}

boot 1 write
r1=$(vstat root read_bytes)
h1=$(vstat root read_hit_bytes)
w1=$(vstat root write_bytes)
log "after boot 1: read $r1 bytes (hits $h1), wrote $w1 bytes"
assert_num "$r1" '>' 0 "shoald served no reads to the guest"
assert_num "$w1" '>' 0 "shoald saw no writes from the guest"

boot 2 verify
r2=$(vstat root read_bytes)
h2=$(vstat root read_hit_bytes)
log "boot 2: read $((r2 - r1)) bytes, of which $((h2 - h1)) from the cache"
assert_num "$((h2 - h1))" '>' 0 "the second boot read nothing from the cache"
ctl stats | sed 's/^/    /'

stop_shoald

# --- the backing image after shoald has stopped ------------------------------
e2fsck -fn "$img" >"$T/e2fsck.log" 2>&1 || {
    cat "$T/e2fsck.log" >&2
    fail "e2fsck -fn finds the image unclean after the guest's writes"
}
debugfs -R 'cat /guest/seq.txt' "$img" >"$T/seq.out" 2>"$T/debugfs.err" ||
    fail "debugfs cat /guest/seq.txt: $(cat "$T/debugfs.err")"
seq 1 "$SEQ_N" >"$T/seq.want"
assert_same_file "$T/seq.out" "$T/seq.want" "guest/seq.txt on the backing image"
debugfs -R 'cat /guest/copy.bin' "$img" >"$T/copy.out" 2>"$T/debugfs.err" ||
    fail "debugfs cat /guest/copy.bin: $(cat "$T/debugfs.err")"
assert_same_file "$T/copy.out" "$tree/tree/big.bin" "guest/copy.bin on the backing image"
log "backing image: e2fsck clean, guest/seq.txt and guest/copy.bin match"
log "ok"
