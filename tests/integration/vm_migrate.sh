#!/usr/bin/env bash
# vm-migrate: a real guest live-migrates between two QEMUs while its disk
# moves between two shoal nodes, the way contrib/libvirt/qemu does it.
#
# Two nodes in network namespaces (netns_lib.sh: etcd, a memcached each);
# vol, a raw file on the shared directory, is served read-write by node A.
# The guest (vm/init.sh, shoal.mode=rounds) writes 16 chunks of 64 KiB to
# its raw /dev/vda each round, fsync'd, and reads them all back past its
# page cache. While it runs on the source QEMU (disk: A's export):
#   1. contrib/libvirt/qemu, run on B as libvirt runs it when an incoming
#      migration begins: it moves vol to B and waits until B serves it;
#   2. the destination QEMU starts with -incoming, its disk B's export;
#   3. QMP `migrate` on the source, then `cont` on the destination, as
#      libvirt does for a domain that was running.
# The source's disk has werror=stop,rerror=stop, as docs/cluster.md tells
# users: the requests the move refuses stop the source VM and are retried
# on the destination. The guest must finish every round with every chunk
# read back right, and the file must hold the last round's chunks.
#
# Skips (77) without qemu-system-x86_64 or namespaces (root), etcd or
# memcached.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need qemu-system-x86_64
# shellcheck source-path=SCRIPTDIR source=netns_lib.sh
source "$(dirname "$0")/netns_lib.sh"
need memcached jq curl
# shellcheck source-path=SCRIPTDIR source=vm/vm_lib.sh
source "$(dirname "$0")/vm/vm_lib.sh"

ROUNDS=${SHOAL_VM_ROUNDS:-6}
vm_prepare
netns_init 2
netns_etcd

MIB=$((1 << 20))
head -c $((4 * MIB)) /dev/zero >"$T/vol.img"
netns_shoald 1 A -m 64M --memcached-timeout 10s -D nbd=debug "vol=$T/vol.img"
netns_shoald 2 B -m 64M --memcached-timeout 10s
for i in 1 2; do
    wait_ring "$i" 10.77.0.11:11211,10.77.0.12:11211
done

# qmp SOCKET CMD [ARGS-JSON]: one QMP command; prints its "return" as JSON.
qmp() {
    "$PY" - "$@" <<'PY'
import json, socket, sys
path, cmd = sys.argv[1], sys.argv[2]
args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(path)
f = s.makefile("rw")
def reply():
    while True:
        m = json.loads(f.readline())
        if "event" not in m:
            return m
reply()  # the greeting
f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n"); f.flush()
reply()
msg = {"execute": cmd}
if args is not None:
    msg["arguments"] = args
f.write(json.dumps(msg) + "\n"); f.flush()
r = reply()
if "error" in r:
    sys.exit(f"qmp {cmd}: {r['error'].get('desc')}")
print(json.dumps(r["return"]))
PY
}

# guest SIDE EXTRA...: one QEMU for the guest, in the background; its disk is
# vol through node SIDE's socket (1 = A, 2 = B).
guest() {
    local side=$1
    shift
    vm_qemu_bg "$T/serial$side.log" "$ACCEL" "shoal.mode=rounds shoal.rounds=$ROUNDS" \
        -qmp "unix:$T/qmp$side.sock,server=on,wait=off" \
        -blockdev "driver=nbd,server.type=unix,server.path=$T/n$side.sock,export=vol,node-name=d0" \
        -device virtio-blk-pci,drive=d0,werror=stop,rerror=stop "$@"
}

guest 1
SRC_PID=$VM_PID
rounds_seen() { tr -d '\r' <"$1" | grep -c 'SHOAL-VM: round [0-9]* ok' || true; }
wait_for "$VM_BOOT_TIMEOUT" bash -c "[ \$(tr -d '\r' <'$T/serial1.log' | grep -c 'SHOAL-VM: round [0-9]* ok') -ge 2 ]" || {
    vm_serial_tail "$T/serial1.log"
    fail "the guest did not finish 2 rounds on the source within $VM_BOOT_TIMEOUT s"
}
log "source: $(rounds_seen "$T/serial1.log") rounds done; moving vol to B"

# libvirt runs its qemu hook on the destination (B) before it starts the
# destination's QEMU, with the domain's XML on stdin.
run_hook 2
assert_contains "$HOOK_OUT" "volume vol moved to node B"
guest 2 -incoming "unix:$T/migrate.sock"
DST_PID=$VM_PID
wait_for 20 test -S "$T/qmp2.sock" || fail "the destination QEMU did not start"
wait_for 20 test -S "$T/migrate.sock" || fail "the destination QEMU does not listen for the migration"

log "source status before the migration: $(qmp "$T/qmp1.sock" query-status | jq -c .)"
qmp "$T/qmp1.sock" migrate "{\"uri\": \"unix:$T/migrate.sock\"}" >/dev/null || fail "QMP migrate"
mstate() { qmp "$T/qmp1.sock" query-migrate | jq -r '.status // "none"'; }
done_or_failed() { case $(mstate) in completed | failed | cancelled) return 0 ;; esac; return 1; }
wait_for 120 done_or_failed || fail "the migration did not end within 120 s: $(mstate)"
st=$(qmp "$T/qmp1.sock" query-migrate)
log "migration: $(jq -c '{status, "error-desc", "total-time"}' <<<"$st")"
log "source status: $(qmp "$T/qmp1.sock" query-status | jq -c .)"
[ "$(jq -r .status <<<"$st")" = completed ] || {
    cat "$T/qemu.err" >&2
    fail "the migration failed: $(jq -r '."error-desc" // .status' <<<"$st")"
}
log "destination status: $(qmp "$T/qmp2.sock" query-status | jq -c .)"
qmp "$T/qmp2.sock" cont >/dev/null || fail "QMP cont on the destination"
qmp "$T/qmp1.sock" quit >/dev/null 2>&1 || true

vm_wait_exit "$DST_PID" $((VM_BOOT_TIMEOUT * 2)) "$T/serial2.log" || fail "the guest did not power off on the destination"
cat "$T/serial1.log" "$T/serial2.log" | tr -d '\r' | grep '^SHOAL-VM:' | sed 's/^/    /'
grep -q "SHOAL-VM: RESULT ok rounds" <(tr -d '\r' <"$T/serial2.log") ||
    fail "the guest's result: $(tr -d '\r' <"$T/serial2.log" | grep 'SHOAL-VM: RESULT' || echo none)"

on_dst=$(rounds_seen "$T/serial2.log")
log "rounds on the destination: $on_dst"
assert_num "$on_dst" '>' 0 "rounds the guest finished after the migration"
# The source's last requests failed on A and were retried through B; A
# told the source its final flush succeeded (the move flushed the image).
grep -q "export 'vol' is gone: answering its client without it (flushes succeed)" "$T/shoald1.log" ||
    fail "A did not answer the source QEMU's connection after the move"
wb=$(nctl 2 stats --json | jq -er '.volumes[] | select(.name == "vol") | .write_bytes')
assert_num "$wb" '>' 0 "bytes the guest wrote through B"
for i in 1 2; do
    stop_daemon "${NODE_PID[i]}" TERM
done
# The file holds the last round's chunks.
for c in $(seq 0 15); do
    head -c 65536 <(yes "round $ROUNDS chunk $c ") >"$T/want"
    dd if="$T/vol.img" bs=65536 skip="$c" count=1 status=none | cmp -s - "$T/want" ||
        fail "chunk $c in the file is not round $ROUNDS's"
done
log PASS
