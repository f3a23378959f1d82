#!/usr/bin/env bash
# Image formats: shoal serves raw images. A file back end that starts with
# another format's header (here a real qcow2) is refused, on the command
# line, from the config file and through the API, with one line naming the
# file, the format and the supported layout, unless the volume says
# format=raw (then its bytes are served as they are). The supported layout
# works: a raw gold image served by shoald, a qcow2 overlay on top of it
# (backing file nbd+unix://...), writes land in the overlay, reads through
# the overlay see them over the gold image's data, and the gold image is
# never written.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need qemu-img qemu-io cmp
# Leak checking stays on (under ASan): a refused start frees what it took.

qemu-img create -q -f qcow2 "$T/disk.qcow2" 16M
(umask 077 && echo "image-format-test-token" >"$T/token")
port=$(free_port)
want="volume q: $T/disk.qcow2 is a qcow2 image; shoal serves raw images: serve the raw gold image through shoal and put each VM's qcow2 overlay on top (qemu-img create -f qcow2 -F raw -b 'nbd+unix:///gold?socket="

# refused ARGS...: shoald ARGS exits non-zero within 5 s, with the one
# line above on stderr and no socket left behind.
refused() {
    local rc=0
    rm -f "$T/s.sock"
    timeout -k 1 5 "$SHOALD" -f -l "unix:$T/s.sock" --http "127.0.0.1:$port" \
        --http-token-file "$T/token" "$@" >"$T/out" 2>"$T/err" </dev/null || rc=$?
    case $rc in
    0 | 124 | 137) fail "shoald $*: exit status $rc, want a refusal" ;;
    esac
    assert_eq "$(wc -l <"$T/err")" 1 "lines on stderr from shoald $*"
    grep -qF -- "shoald: $want" "$T/err" || fail "shoald $*: unexpected error: $(cat "$T/err")"
    grep -qF -- "or set format=raw to export the file's bytes as they are" "$T/err" ||
        fail "shoald $*: the error does not say how to serve the bytes: $(cat "$T/err")"
    [ ! -e "$T/s.sock" ] || fail "shoald $* left its unix socket behind"
    log "refused: $(cat "$T/err")"
}

refused "q=$T/disk.qcow2"
refused "q=$T/disk.qcow2,format=auto"
printf '[volume q]\nbacking = %s\n' "$T/disk.qcow2" >"$T/auto.ini"
refused -c "$T/auto.ini"
# A bad format value names itself.
rc=0
"$SHOALD" -f --http off "q=$T/disk.qcow2,format=qcow2" 2>"$T/err" || rc=$?
if [ "$rc" -eq 0 ] || ! grep -qF "invalid format 'qcow2': want auto or raw" "$T/err"; then
    fail "format=qcow2: status $rc, $(cat "$T/err")"
fi

# format=raw, on the command line and in the config file: the container's
# bytes, as they are.
start_shoald "q=$T/disk.qcow2,format=raw"
qemu-img convert -f raw -O raw "$(uri q)" "$T/q.out" || fail "qemu-img convert from volume q"
# (qemu's NBD client rounds the size up to 512 bytes: compare the file's.)
cmp -n "$(file_size "$T/disk.qcow2")" "$T/q.out" "$T/disk.qcow2" ||
    fail "volume q with format=raw does not serve the file's bytes"
# The API refuses the same file in the same words, and takes "format".
rc=0
ctl volume add q2 "$T/disk.qcow2" >"$T/ctl.out" 2>&1 || rc=$?
assert_eq "$rc" 2 "shoalctl volume add of a qcow2 file: exit status"
grep -qF -- "${want/volume q:/volume q2:}" "$T/ctl.out" ||
    fail "shoalctl volume add q2: unexpected error: $(cat "$T/ctl.out")"
log "shoalctl refused: $(cat "$T/ctl.out")"
# A copy: q serves disk.qcow2 read-write, and one file takes one
# read-write export (image_lock.sh).
cp "$T/disk.qcow2" "$T/disk2.qcow2"
ctl volume add q2 "$T/disk2.qcow2" --raw >"$T/ctl.out" 2>&1 ||
    fail "shoalctl volume add --raw: $(cat "$T/ctl.out")"
log "shoalctl --raw: $(cat "$T/ctl.out")"
stop_shoald
printf '[volume q]\nbacking = %s\nformat = raw\n' "$T/disk.qcow2" >"$T/raw.ini"
start_shoald -c "$T/raw.ini"
stop_shoald

# The supported layout: a raw gold image, a qcow2 overlay per VM on top.
make_image "$T/gold.raw" 16
cp --sparse=always "$T/gold.raw" "$T/gold.orig"
start_shoald -m 64M "gold=$T/gold.raw"
qemu-img create -q -f qcow2 -F raw -b "$(uri gold)" "$T/vm1.qcow2" ||
    fail "qemu-img create of an overlay on volume gold"
qemu-img info --output=json "$T/vm1.qcow2" >"$T/info.json"
assert_eq "$(jq -r '."virtual-size"' "$T/info.json")" $((16 << 20)) "overlay virtual size"
qemu-io -f qcow2 -c 'write -P 0x5a 1M 64k' "$T/vm1.qcow2" >"$T/io.out" ||
    fail "qemu-io write through the overlay: $(cat "$T/io.out")"
qemu-io -f qcow2 -c 'read -P 0x5a 1M 64k' "$T/vm1.qcow2" >"$T/io.out" ||
    fail "qemu-io read back through the overlay: $(cat "$T/io.out")"
qemu-img convert -f qcow2 -O raw "$T/vm1.qcow2" "$T/vm1.out" || fail "qemu-img convert of the overlay"
# What the VM sees: the gold image, with 0x5a over [1M, 1M + 64K).
cp --sparse=always "$T/gold.orig" "$T/vm1.want"
head -c 65536 /dev/zero | tr '\0' '\132' |
    dd of="$T/vm1.want" bs=64k seek=16 count=1 iflag=fullblock conv=notrunc status=none
assert_bytes "$T/vm1.out" $((1 << 20)) 65536 0x5a
assert_same_file "$T/vm1.out" "$T/vm1.want" "the overlay's disk (gold + the write)"
# The gold image was never written, neither through shoal nor behind it.
assert_same_file "$T/gold.raw" "$T/gold.orig" "gold image after writes through the overlay"
stop_shoald
# The same overlay over a read-only gold volume (as README.md suggests):
# QEMU opens a backing file read-only, so the VM's disk is unchanged.
# The overlay names the first daemon's socket: the second one takes it over.
NEXT_SOCK=$SOCK
start_shoald -m 64M -r "gold=$T/gold.raw"
qemu-img convert -f qcow2 -O raw "$T/vm1.qcow2" "$T/vm1-ro.out" ||
    fail "qemu-img convert of the overlay over a read-only gold volume"
assert_same_file "$T/vm1-ro.out" "$T/vm1.want" "the overlay's disk over a read-only gold volume"
stop_shoald
log PASS
