#!/usr/bin/env bash
# Prepare a Debian kernel for the vm-boot test without installing it on the
# host: `apt-get download` the package, `dpkg-deb -x` it into a scratch dir,
# keep vmlinuz and the modules the guest needs for its virtio-blk root disk,
# and drop the rest. The result is cached, so reruns cost nothing.
#
#   tests/integration/vm/kernel.sh CACHE_DIR
#
# Prints the prepared directory, which holds:
#   vmlinuz          the kernel
#   modules/*.ko     the modules to load (none when all are built in)
#   modules/order    their names, dependencies first (insmod order)
#   package          the package the kernel came from
#
# SHOAL_VM_KERNEL_PKG picks the package (default linux-image-cloud-amd64, a
# small kernel with virtio; a metapackage is resolved to the image it
# depends on). ext4 must be built in (it is in Debian's kernels); virtio_blk
# and virtio_pci may be modules.
set -euo pipefail

cache=${1:?usage: kernel.sh CACHE_DIR}
pkg=${SHOAL_VM_KERNEL_PKG:-linux-image-cloud-amd64}
wanted=(virtio_pci virtio_blk)

die() {
    printf 'vm/kernel.sh: %s\n' "$*" >&2
    exit 1
}

for t in apt-get apt-cache dpkg-deb flock; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing (a Debian host is needed to fetch the guest kernel)"
done

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
# Two builds (normal and ASan) may run this at once with the same cache.
exec 9>"$cache/.lock"
flock -w 300 9 || die "timed out waiting for the lock on $cache"

# A metapackage (linux-image-cloud-amd64) depends on the versioned image.
real=$pkg
dep=$(apt-cache depends --important "$pkg" 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }' || true)
[ -n "$dep" ] && real=$dep

if [ -f "$cache/$real/ready" ]; then
    echo "$cache/$real"
    exit 0
fi
# use_previous WHY: when apt cannot deliver (no package lists, no mirror),
# a kernel prepared earlier will do; without one, fail with WHY.
use_previous() {
    local prev
    prev=$(find "$cache" -mindepth 2 -maxdepth 2 -name ready -printf '%h\n' 2>/dev/null | sort | tail -n 1)
    [ -n "$prev" ] || die "$1"
    echo "vm/kernel.sh: $1; using the kernel prepared earlier in $prev" >&2
    echo "$prev"
    exit 0
}
apt-cache show "$real" >/dev/null 2>&1 ||
    use_previous "package $real is unknown to apt (run apt-get update first)"

work=$(mktemp -d "$cache/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "$real" >"$work/download.log" 2>&1) ||
    use_previous "apt-get download $real failed: $(tail -n 3 "$work/download.log" | tr '\n' ' ')"
deb=$(find "$work" -maxdepth 1 -name '*.deb' | head -n 1)
[ -n "$deb" ] || die "apt-get download $real left no .deb"
dpkg-deb -x "$deb" "$work/x" || die "dpkg-deb -x $deb failed"

vmlinuz=$(find "$work/x/boot" -name 'vmlinuz-*' | head -n 1)
[ -n "$vmlinuz" ] || die "$real holds no /boot/vmlinuz-*"
moddir=$(find "$work/x/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n 1)
[ -n "$moddir" ] || die "$real holds no /lib/modules/VERSION"
builtin_ext4=$(grep -c '/ext4/ext4.ko$' "$moddir/modules.builtin" || true)
[ "$builtin_ext4" -ge 1 ] || die "$real does not build ext4 in; the guest's init cannot load it"

out=$work/out
mkdir -p "$out/modules"
cp "$vmlinuz" "$out/vmlinuz"
: >"$out/modules/order"

# add_module NAME: copy NAME's .ko and, first, those it depends on (the
# depends= field of its .modinfo section, the same source depmod reads).
# A module built into the kernel needs nothing.
declare -A seen=()
add_module() {
    local name=$1 ko deps d
    [ -n "${seen[$name]:-}" ] && return 0
    seen[$name]=1
    ko=$(find "$moddir/kernel" -name "$name.ko" -o -name "${name//_/-}.ko" | head -n 1)
    if [ -z "$ko" ]; then
        grep -qE "/(${name}|${name//_/-})\.ko$" "$moddir/modules.builtin" && return 0
        die "module $name is neither in $real nor built in (compressed modules are not handled)"
    fi
    deps=$(tr '\0' '\n' <"$ko" | sed -n 's/^depends=//p' | head -n 1)
    for d in ${deps//,/ }; do
        add_module "$d"
    done
    cp "$ko" "$out/modules/$name.ko"
    echo "$name" >>"$out/modules/order"
}
for m in "${wanted[@]}"; do
    add_module "$m"
done
echo "$real" >"$out/package"
touch "$out/ready"

rm -rf "${cache:?}/$real"
mv "$out" "$cache/$real"
# A newer kernel replaces the older ones: the cache keeps one.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$real" ! -name '.work.*' -exec rm -rf {} +
echo "$cache/$real"
