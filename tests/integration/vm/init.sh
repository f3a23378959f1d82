#!/bin/busybox sh
# shellcheck shell=dash
# /init of the vm-boot test's guest (busybox, no systemd). What to do comes
# from the kernel command line:
#   shoal.mode=probe   print a marker and power off (is this accelerator usable?)
#   shoal.mode=write   mount /dev/vda, check the tree against SHA256SUMS, write
#                      guest/seq.txt (seq 1 N) and guest/copy.bin (a copy of
#                      tree/big.bin), sync, unmount
#   shoal.mode=verify  mount /dev/vda read-only, check the tree and both
#                      written files
#   shoal.mode=rounds  no file system: R rounds, each writing 16 chunks of
#                      64 KiB of round-and-chunk text to the raw /dev/vda
#                      (fsync'd) and reading them all back past the page
#                      cache (vm_migrate.sh migrates the guest meanwhile)
#   shoal.seq=N        the N of seq.txt
#   shoal.rounds=R     the R of rounds
# Every step prints a "SHOAL-VM:" line on the serial console; the last one is
# "SHOAL-VM: RESULT ok MODE" or "SHOAL-VM: RESULT fail MODE: WHY". The guest
# always powers off (-no-reboot makes QEMU exit), whatever happened.

/bin/busybox mkdir -p /bin /sbin /proc /sys /dev /mnt /tmp
/bin/busybox --install -s /bin
export PATH=/bin:/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

mode=none
seqn=1000
rounds=10
# shellcheck disable=SC2013 # the command line's words, not its lines
for arg in $(cat /proc/cmdline); do
    case $arg in
    shoal.mode=*) mode=${arg#shoal.mode=} ;;
    shoal.seq=*) seqn=${arg#shoal.seq=} ;;
    shoal.rounds=*) rounds=${arg#shoal.rounds=} ;;
    esac
done

say() { echo "SHOAL-VM: $* (t=$(cut -d' ' -f1 /proc/uptime))"; }

finish() {
    echo "SHOAL-VM: RESULT $1 $mode${2:+: $2}"
    sync
    poweroff -f
    # poweroff -f does not return; if it did, stop here rather than let
    # init exit (a panic, which -no-reboot also turns into QEMU's exit).
    sleep 60
}

[ "$mode" = probe ] && finish ok

say "init started, mode $mode"
while read -r m; do
    insmod "/lib/modules/$m.ko" || finish fail "insmod $m failed"
done </lib/modules/order
say "modules loaded: $(tr '\n' ' ' </lib/modules/order)"

i=0
while [ ! -b /dev/vda ]; do
    i=$((i + 1))
    [ $i -gt 200 ] && finish fail "no /dev/vda after 20 s"
    sleep 0.1
done

# chunk R C: chunk C's 64 KiB as round R writes it.
chunk() { yes "round $1 chunk $2 " | head -c 65536; }

if [ "$mode" = rounds ]; then
    r=1
    while [ $r -le "$rounds" ]; do
        c=0
        while [ $c -lt 16 ]; do
            # From a file: dd's one read of a pipe may be short.
            chunk $r $c >/tmp/chunk
            dd if=/tmp/chunk of=/dev/vda bs=65536 seek=$c count=1 conv=fsync,notrunc 2>/tmp/dd ||
                finish fail "round $r: writing chunk $c failed: $(cat /tmp/dd)"
            c=$((c + 1))
        done
        echo 3 >/proc/sys/vm/drop_caches
        c=0
        while [ $c -lt 16 ]; do
            chunk $r $c >/tmp/want
            dd if=/dev/vda bs=65536 skip=$c count=1 2>/dev/null | cmp -s - /tmp/want ||
                finish fail "round $r: chunk $c reads back wrong"
            c=$((c + 1))
        done
        say "round $r ok"
        r=$((r + 1))
    done
    finish ok
fi

opts=rw
[ "$mode" = verify ] && opts=ro
mount -t ext4 -o "$opts" /dev/vda /mnt || finish fail "mount -t ext4 -o $opts /dev/vda failed"
say "mounted /dev/vda $opts"

cd /mnt || finish fail "cd /mnt failed"
if ! sha256sum -c SHA256SUMS >/tmp/check 2>&1; then
    grep -v ': OK$' /tmp/check | head -n 20
    finish fail "sha256sum -c: $(grep -c ': FAILED$' /tmp/check) of $(wc -l <SHA256SUMS) files differ"
fi
say "tree ok: $(grep -c ': OK$' /tmp/check) files match SHA256SUMS"

case $mode in
write)
    mkdir -p guest || finish fail "mkdir guest failed"
    seq 1 "$seqn" >guest/seq.txt || finish fail "writing guest/seq.txt failed"
    cp tree/big.bin guest/copy.bin || finish fail "writing guest/copy.bin failed"
    sync || finish fail "sync failed"
    say "wrote guest/seq.txt ($(wc -c <guest/seq.txt) bytes) and guest/copy.bin"
    ;;
verify)
    seq 1 "$seqn" | cmp - guest/seq.txt || finish fail "guest/seq.txt differs from seq 1 $seqn"
    cmp tree/big.bin guest/copy.bin || finish fail "guest/copy.bin differs from tree/big.bin"
    say "the first boot's writes read back"
    ;;
*) finish fail "unknown shoal.mode" ;;
esac

cd /
umount /mnt || finish fail "umount /mnt failed"
say "unmounted"
finish ok
