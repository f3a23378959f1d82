#!/usr/bin/env bash
# Build the vm-boot guest's initramfs: a static busybox, vm/init.sh as /init
# and the kernel modules kernel.sh prepared, as a gzipped newc cpio.
#
#   tests/integration/vm/initramfs.sh KERNEL_DIR OUT.cpio.gz
set -euo pipefail

kdir=${1:?usage: initramfs.sh KERNEL_DIR OUT}
out=${2:?usage: initramfs.sh KERNEL_DIR OUT}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
    printf 'vm/initramfs.sh: %s\n' "$*" >&2
    exit 1
}

bb=$(command -v busybox || true)
[ -n "$bb" ] || die "busybox is missing (Debian package busybox-static)"
# The guest has no libc: a dynamically linked busybox cannot run as /init.
{ ldd "$bb" 2>&1 || true; } | grep -q 'not a dynamic executable' ||
    die "$bb is dynamically linked; install busybox-static"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/lib/modules" "$root/dev" "$root/proc" "$root/sys" "$root/mnt" "$root/tmp"
cp "$bb" "$root/bin/busybox"
cp "$here/init.sh" "$root/init"
chmod 0755 "$root/init" "$root/bin/busybox"
cp "$kdir"/modules/order "$root/lib/modules/order"
while read -r m; do
    cp "$kdir/modules/$m.ko" "$root/lib/modules/"
done <"$kdir/modules/order"

# busybox's own cpio writes newc; files owned by root in the guest.
(cd "$root" && find . -mindepth 1 | "$bb" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$out" ||
    die "writing $out failed"
[ -s "$out" ] || die "$out is empty"
