#!/usr/bin/env bash
# Issue 11, test (e): a warm volume move. Two nodes in network namespaces
# (netns_lib.sh); vol, a file on the shared directory, is served
# read-write by node A, read twice (with writes between) and then moved
# with `shoalctl volume move vol --to B`:
# - A stops serving it and B serves it read-write (etcd names B);
# - B's first pass, every byte compared with what was written, has a hit
#   ratio >= 0.9 of A's second pass, and reads nothing from the back end:
#   every block was cached on A, and B finds them by the keys A published,
#   in memcached;
# - a write through B lands in the file; A's old export is gone;
# - B, killed (SIGKILL) and started again with its state dir, serves vol
#   again by itself: the adoption is in its state file with vol's
#   settings, and B owns vol in etcd again once its old lease is gone;
# - vol's own settings move with it (A serves it with a 16K read-ahead,
#   B's default for a file is none: B serves it with 16K);
# - contrib/libvirt/qemu, run as libvirt runs it on a migration's
#   destination (A), moves vol back, warm again;
# - a move to a node that cannot open the image (B restarted with a
#   --backing-dir that excludes it) gives vol back: A serves it again,
#   its bytes intact, and etcd names A;
# - a move to a node that never claims it (B stopped with SIGSTOP) is
#   taken back by A after 3 lease TTLs: A serves vol again.
# Root only; exits 77 without namespaces, etcd, memcached or nbdcopy.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need nbdcopy cmp
need_python_nbd
# shellcheck source-path=SCRIPTDIR source=netns_lib.sh
source "$(dirname "$0")/netns_lib.sh"
need memcached memcstat jq curl
netns_init 2
netns_etcd

MIB=$((1 << 20))
SIZE=$((16 * MIB))
random_file "$T/vol.img" "$SIZE"
dd if=/dev/zero of="$T/vol.img" bs=1M seek=4 count=1 conv=notrunc status=none
cp "$T/vol.img" "$T/expect.img"
# The back end checks below (0 bytes after each move) judge whether the
# keys lead to the blocks, not how fast memcached answers: a lookup past
# the tier's deadline reads from the back end by design (a lookup queued
# behind the tier's 4 lookup threads, when the 16 inline slots are busy,
# counts its wait too), and netns_lib's 500 ms is within reach under TSan:
# A's reads took up to ~0.5 s with two busy loops beside. The one failure
# (with the whole suite beside; A read 112 blocks, 64 + 48: the non-zero
# blocks of two whole requests, one the request at 2 MiB) fits two lookups
# that gave up, and nothing else found (no map chunk, put or read-ahead
# explains that count). A long deadline keeps the checks strict.
MCT=(--memcached-timeout 10s)
netns_shoald 1 A -m 64M "${MCT[@]}" --readahead 16K "vol=$T/vol.img"
netns_shoald 2 B -m 64M "${MCT[@]}" --state-dir "$T/stateB"
for i in 1 2; do
    wait_ring "$i" 10.77.0.11:11211,10.77.0.12:11211
done

vstat_n() { # I FIELD: vol's stat on node I
    nctl "$1" stats --json | jq -er ".volumes[] | select(.name==\"vol\") | .$2"
}
ra_n() { # I: vol's read-ahead window on node I
    nctl "$1" volumes --json | jq -er '.[] | select(.name=="vol") | .settings.readahead_bytes'
}
read_pass() { # I: read vol through node I and compare
    nbdcopy "$(uri vol "$T/n$1.sock")" "$T/pass.out" || fail "read vol through node $1"
    cmp "$T/pass.out" "$T/expect.img" || fail "vol through node $1 differs"
}

read_pass 1
# Writes on A: installed in its cache, not in memcached until the move.
nbdsh -u "$(uri vol "$T/n1.sock")" -c "
h.pwrite(b'\x5a' * (1 << 20), 9 << 20)
h.pwrite(b'\x00' * 65536, 2 << 20)
h.flush()
" || fail "write through A"
"$PY" - "$T/expect.img" <<'PY'
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(9 << 20); f.write(b'\x5a' * (1 << 20))
    f.seek(2 << 20); f.write(bytes(65536))
PY
rb0=$(vstat_n 1 read_bytes) hb0=$(vstat_n 1 read_hit_bytes)
read_pass 1
rb1=$(vstat_n 1 read_bytes) hb1=$(vstat_n 1 read_hit_bytes)
before=$("$PY" -c "print(($hb1 - $hb0) / ($rb1 - $rb0))")
log "A's second pass: hit ratio $before"

out=$(nctl 1 volume move vol --to B) || fail "volume move vol --to B"
log "$out"
assert_contains "$out" "volume vol moved to node B"
on_b() { nctl 2 volumes --json | jq -e '.[] | select(.name == "vol")' >/dev/null; }
wait_for 20 on_b || fail "B does not serve vol after the move"
assert_eq "$(nctl 1 volumes --json | jq '[.[] | select(.name == "vol")] | length')" 0 \
    "volumes named vol on A after the move"
owner() { # [I]: vol's owner as node I (default 2) reads it in etcd
    nctl "${1:-2}" cluster status --json | jq -r '.owners[] | select(.volume == "vol") | .node'
}
assert_eq "$(owner)" B "vol's owner in etcd"
assert_eq "$(ra_n 2)" 16384 "vol's read-ahead on B (A's setting, moved with it)"
grep -q "block keys loaded from the cluster's map" "$T/shoald2.log" ||
    fail "B did not load vol's keys"

read_pass 2
rb=$(vstat_n 2 read_bytes) hb=$(vstat_n 2 read_hit_bytes) be=$(vstat_n 2 backend_read_bytes)
th=$(vstat_n 2 tier_hit_blocks)
after=$("$PY" -c "print($hb / $rb)")
log "B's first pass: hit ratio $after ($th blocks from memcached, $be bytes from the back end)"
"$PY" -c "import sys; sys.exit(0 if $after >= 0.9 * $before else 1)" ||
    fail "hit ratio after the move $after < 0.9 x $before"
assert_eq "$be" 0 "back end bytes read by B for blocks A had cached"

# B writes; A's export is gone.
nbdsh -u "$(uri vol "$T/n2.sock")" -c "
h.pwrite(b'\xc3' * 4096, 12 << 20)
h.flush()
" || fail "write through B"
"$PY" - "$T/expect.img" <<'PY'
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(12 << 20); f.write(b'\xc3' * 4096)
PY
cmp "$T/vol.img" "$T/expect.img" || fail "the file after B's write"
if nbdsh -u "$(uri vol "$T/n1.sock")" -c 'h.pread(4096, 0)' 2>/dev/null; then
    fail "A still serves vol after the move"
fi

# B crashes and comes back: vol is in B's state file (an adoption is kept
# as a volume added through the API), so B serves it again, read-write,
# with the settings it came with, once its old lease (and the ownership
# that went with it) has expired.
kill -KILL "${NODE_PID[2]}"
wait "${NODE_PID[2]}" 2>/dev/null || true
jq -e '.volumes.vol.readahead == 16384' "$T/stateB/state.json" >/dev/null ||
    fail "B's state file does not keep vol with its read-ahead: $(cat "$T/stateB/state.json")"
netns_shoald 2 B -m 64M "${MCT[@]}" --state-dir "$T/stateB"
wait_for 20 on_b || fail "B does not serve vol after its restart"
assert_eq "$(owner)" B "vol's owner in etcd after B's restart"
assert_eq "$(ra_n 2)" 16384 "vol's read-ahead on B after its restart"
read_pass 2
nbdsh -u "$(uri vol "$T/n2.sock")" -c "
h.pwrite(b'\x3c' * 8192, 13 << 20)
h.flush()
" || fail "write through B after its restart"
"$PY" - "$T/expect.img" <<'PY'
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(13 << 20); f.write(b'\x3c' * 8192)
PY
cmp "$T/vol.img" "$T/expect.img" || fail "the file after B's write after its restart"

# Back to A through the libvirt hook, as libvirt runs it on the
# destination of a migration: `qemu DOMAIN migrate begin -`, the domain's
# XML on stdin; the read-only gold in the overlay's backing chain has no
# owner and stays.
run_hook 1 "
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$T/overlay.qcow2'/>
      <backingStore type='network'>
        <format type='raw'/>
        <source protocol='nbd' name='gold'>
          <host transport='unix' socket='$T/n1.sock'/>
        </source>
        <backingStore/>
      </backingStore>
      <target dev='vdb' bus='virtio'/>
    </disk>"
assert_contains "$HOOK_OUT" "volume vol moved to node A"
# libvirt starts the destination's QEMU when the hook returns: A must
# serve vol by then.
on_a() { nctl 1 volumes --json | jq -e '.[] | select(.name == "vol")' >/dev/null; }
on_a || fail "A does not serve vol when the hook returns"
assert_eq "$(owner)" A "vol's owner in etcd after the hook"
tier_a() { # A's tier counters, for the log
    nctl 1 stats --json |
        jq -r '"timeouts \(.cache.tier_timeouts) errors \(.cache.tier_errors) hits \(.cache.tier_hits) corrupt \(.cache.tier_corrupt) lookups \(.cache.tier_lookups) inline \(.memcached.tier.lookup_inline) failed \(.memcached.tier.lookup_failures) ejections \(.memcached.tier.ejections) live \(.memcached.tier.live)"'
}
be0=$(vstat_n 1 backend_read_bytes) t0=$(tier_a)
read_pass 1
be1=$(vstat_n 1 backend_read_bytes) t1=$(tier_a)
# The tier's counters and the keys A loaded say why, should this fail (it
# did once under TSan with the whole suite beside it: 458752 bytes, cause
# not recorded).
keys=$(grep "block keys loaded from the cluster's map" "$T/shoald1.log" | tail -1)
log "A after moving back: $((be1 - be0)) bytes from the back end; tier before: $t0; after: $t1; $keys"
assert_eq "$((be1 - be0))" 0 \
    "back end bytes read by A after moving back (tier before: $t0; after: $t1; $keys)"
assert_eq "$(ra_n 1)" 16384 "vol's read-ahead on A after moving back"

# A move to a node that cannot open the image: B, restarted with a
# --backing-dir that excludes it, takes the hand-over, fails to open vol
# and gives it back; A serves it again.
stop_daemon "${NODE_PID[2]}" TERM
mkdir -p "$T/elsewhere"
netns_shoald 2 B -m 64M "${MCT[@]}" --backing-dir "$T/elsewhere"
wait_ring 1 10.77.0.11:11211,10.77.0.12:11211
out=$(nctl 1 volume move vol --to B) || fail "volume move vol --to B (B cannot open it)"
assert_contains "$out" "volume vol moved to node B"
given_back() { grep -q "volume vol: given back to node A" "$T/shoald2.log"; }
wait_for 20 given_back || fail "B did not give vol back"
wait_for 20 on_a || fail "A does not serve vol after B gave it back"
assert_eq "$(owner)" A "vol's owner in etcd after B gave it back"
assert_eq "$(nctl 2 volumes --json | jq '[.[] | select(.name == "vol")] | length')" 0 \
    "volumes named vol on B after it gave vol back"
read_pass 1
assert_eq "$(ra_n 1)" 16384 "vol's read-ahead on A after B gave it back"

# A move to a node that never claims it: B is stopped (still registered
# for up to one TTL); A takes vol back after 3 TTLs.
kill -STOP "${NODE_PID[2]}"
out=$(nctl 1 volume move vol --to B) || fail "volume move vol --to B (B stopped)"
assert_contains "$out" "volume vol moved to node B"
t0=$SECONDS
wait_for $((3 * TTL + 20)) on_a || fail "A did not take vol back from a stopped B"
log "A took vol back after $((SECONDS - t0)) s"
grep -q "volume vol: node B did not take it over within $((3 * TTL)) s: taken back" \
    "$T/shoald1.log" || fail "A's log does not say it took vol back"
assert_eq "$(owner 1)" A "vol's owner in etcd after A took it back"
read_pass 1
kill -CONT "${NODE_PID[2]}"
for i in 1 2; do
    stop_daemon "${NODE_PID[i]}" TERM
done
log PASS
