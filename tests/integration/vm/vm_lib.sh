# shellcheck shell=bash
# The real guest of vm_boot.sh and vm_migrate.sh: its kernel and initramfs,
# the accelerator, and QEMU started for it. Sourced after lib.sh.
#
#   vm_prepare            kernel (vm/kernel.sh, cached in $BUILDDIR/vm-kernel),
#                         initramfs ($T/initrd.gz, /init is vm/init.sh) and
#                         ACCEL: kvm when a short probe boot shows that it
#                         works, else tcg (SHOAL_VM_ACCEL=kvm|tcg skips the
#                         probe; its answer is kept for the build dir until
#                         the next boot)
#   vm_qemu SERIAL SECS ACCEL CMDLINE [QEMU ARGS...]
#                         one boot in the foreground; QEMU's status (124 when
#                         the timeout killed it)
#   vm_qemu_bg SERIAL ACCEL CMDLINE [QEMU ARGS...]
#                         the same in the background (killed at exit); VM_PID
#   vm_wait_exit PID SECS SERIAL
#                         waits for a background QEMU to exit; the serial
#                         console's tail and 1 when it does not
#   vm_serial_tail SERIAL the console's last lines (and QEMU's stderr) on stderr

VM=$SRCDIR/tests/integration/vm
VM_BOOT_TIMEOUT=100 # seconds for one boot under TCG on a busy machine
VM_PROBE_TIMEOUT=8  # seconds for a KVM probe boot (a working KVM takes ~1 s)

_vm_args() { # SERIAL ACCEL CMDLINE: QEMU's arguments for the guest
    # -display none -monitor none rather than -nographic: nothing reads
    # stdin, and the serial console goes to a file for the checks.
    VM_ARGS=(-accel "$2" -m 256 -smp 1
        -nodefaults -no-user-config -display none -monitor none -no-reboot
        -serial "file:$1"
        -kernel "$KDIR/vmlinuz" -initrd "$T/initrd.gz"
        -append "console=ttyS0 panic=-1 loglevel=4 $3")
}

vm_qemu() {
    local serial=$1 secs=$2 accel=$3 cmdline=$4
    shift 4
    : >"$serial"
    _vm_args "$serial" "$accel" "$cmdline"
    timeout -k 5 "$secs" qemu-system-x86_64 "${VM_ARGS[@]}" "$@" >>"$T/qemu.err" 2>&1
}

vm_qemu_bg() {
    local serial=$1 accel=$2 cmdline=$3
    shift 3
    : >"$serial"
    _vm_args "$serial" "$accel" "$cmdline"
    bg qemu-system-x86_64 "${VM_ARGS[@]}" "$@" >>"$T/qemu.err" 2>&1
    VM_PID=$BG_PID
}

vm_serial_tail() {
    printf -- '--- %s (last 40 lines) ---\n' "$(basename "$1")" >&2
    tail -n 40 "$1" >&2
    if [ -s "$T/qemu.err" ]; then
        printf -- '--- qemu stderr (last 10 lines) ---\n' >&2
        tail -n 10 "$T/qemu.err" >&2
    fi
}

vm_wait_exit() {
    local pid=$1 secs=$2 serial=$3
    if ! wait_for "$secs" bash -c "! kill -0 $pid 2>/dev/null"; then
        vm_serial_tail "$serial"
        return 1
    fi
}

vm_prepare() {
    command -v timeout >/dev/null 2>&1 || fail "timeout is missing (run scripts/install-deps)"
    log "preparing the guest kernel (cached in ${BUILDDIR:-$T}/vm-kernel)"
    KDIR=$("$VM/kernel.sh" "${BUILDDIR:-$T}/vm-kernel") || fail "could not prepare a guest kernel"
    log "kernel: $(cat "$KDIR/package"), modules: $(tr '\n' ' ' <"$KDIR/modules/order")"
    "$VM/initramfs.sh" "$KDIR" "$T/initrd.gz" || fail "could not build the initramfs"

    ACCEL=${SHOAL_VM_ACCEL:-}
    # One probe per build directory and boot: both guest tests ask.
    local probed=${BUILDDIR:-$T}/vm-kernel/accel.$(cut -d' ' -f1 /proc/sys/kernel/random/boot_id)
    [ -n "$ACCEL" ] || [ ! -s "$probed" ] || ACCEL=$(cat "$probed")
    if [ -z "$ACCEL" ]; then
        ACCEL=tcg
        if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
            # /dev/kvm can exist where guests do not run (nested
            # virtualization that asserts or hangs): only a guest that
            # reaches its /init counts.
            local rc=0
            vm_qemu "$T/probe.log" "$VM_PROBE_TIMEOUT" kvm "shoal.mode=probe" || rc=$?
            if [ "$rc" -eq 0 ] && grep -q 'SHOAL-VM: RESULT ok probe' "$T/probe.log"; then
                ACCEL=kvm
            else
                log "KVM probe failed (status $rc, $(grep -c . "$T/probe.log") console lines): using TCG"
            fi
        fi
        echo "$ACCEL" >"$probed"
    fi
    log "accelerator: $ACCEL"
}
