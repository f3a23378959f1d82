#!/usr/bin/env bash
# Issue 11, test (a): three clones of one gold image, one per host, each
# read fully. Three nodes in network namespaces (netns_lib.sh: each with
# its memcached and shoald, one etcd); each node serves the gold image
# read-only from the shared directory, and each clone is a qcow2 overlay
# on its node's gold export (README: "qcow2 overlays on a shoal-served
# gold image") with a few private writes. Read one after the other with
# qemu-img convert, every byte compared with cmp:
# - the cluster holds about one image of unique blocks: memcached's items
#   are the gold's distinct non-zero blocks plus one map chunk per 64
#   blocks (within 2%), whatever the local stores hold besides;
# - the second and third clones' first reads come mostly from the global
#   tier, their keys from the cluster's shared map (map_hits >= 90% of
#   the blocks): the third's node read at most 5% of the image from the
#   back end and at least 90% of its non-zero blocks from memcached; the
#   second's at most 25% and 70%, because node 1's put queue (16 MiB,
#   bounded by design) drops puts when the first read outruns it, and
#   node 2 reads (and puts) those blocks again.
# Root only; exits 77 without namespaces, etcd, memcached or qemu-img.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need qemu-img qemu-io cmp
# shellcheck source-path=SCRIPTDIR source=netns_lib.sh
source "$(dirname "$0")/netns_lib.sh"
need memcached memcstat jq curl
netns_init 3
netns_etcd

MIB=$((1 << 20))
SIZE=$((32 * MIB))
BLOCKS=$((SIZE / 4096))
# The gold: random data with two zero MiBs and a MiB repeated (dedup).
random_file "$T/gold.raw" "$SIZE"
dd if=/dev/zero of="$T/gold.raw" bs=1M seek=8 count=1 conv=notrunc status=none
dd if=/dev/zero of="$T/gold.raw" bs=1M seek=20 count=1 conv=notrunc status=none
dd if="$T/gold.raw" of="$T/gold.raw" bs=1M skip=0 seek=16 count=1 conv=notrunc status=none
UNIQUE=$("$PY" - "$T/gold.raw" <<'PY'
import sys
data = open(sys.argv[1], 'rb').read()
zero = bytes(4096)
print(len({data[i:i + 4096] for i in range(0, len(data), 4096)} - {zero}))
PY
)
CHUNKS=$(((BLOCKS + 63) / 64))
log "gold: $BLOCKS blocks, $UNIQUE distinct non-zero"

for i in 1 2 3; do
    netns_shoald "$i" "N$i" -r "gold=$T/gold.raw"
done
all=10.77.0.11:11211,10.77.0.12:11211,10.77.0.13:11211
for i in 1 2 3; do
    wait_ring "$i" "$all"
done

# The clones: an overlay each, with private writes at different places.
for i in 1 2 3; do
    qemu-img create -q -f qcow2 -F raw -b "$(uri gold "$T/n$i.sock")" "$T/clone$i.qcow2" ||
        fail "qemu-img create clone $i"
    qemu-io -f qcow2 -c "write -P 0x$((i + 4))$i $((i * 3))M 256k" "$T/clone$i.qcow2" >/dev/null ||
        fail "private write to clone $i"
    cp "$T/gold.raw" "$T/expect$i.raw"
    "$PY" -c "import sys; sys.stdout.buffer.write(bytes([0x$((i + 4))$i]) * 262144)" |
        dd of="$T/expect$i.raw" bs=256K seek=$((i * 12)) conv=notrunc status=none
done

vstat_n() { # I FIELD: volume gold's stat on node I
    nctl "$1" stats --json | jq -er ".volumes[] | select(.name==\"gold\") | .$2"
}
cstat_n() { nctl "$1" stats --json | jq -er ".cache.$2"; }
items_all() { echo $(($(mc_items 1) + $(mc_items 2) + $(mc_items 3))); }

# qemu-img convert -m 1: one request at a time, as one guest reads. Its
# default, 8 parallel 2 MiB reads from a file in page cache, finishes 4096
# blocks at once: the memcached tier's 16 MiB put queue overflows and
# drops puts (by design: bounded memory), and the next clone reads those
# blocks from the back end once more.
for i in 1 2 3; do
    t0=$SECONDS
    in_ns "$i" qemu-img convert -m 1 -f qcow2 -O raw "$T/clone$i.qcow2" "$T/out$i.raw" ||
        fail "read clone $i through node $i"
    cmp "$T/out$i.raw" "$T/expect$i.raw" || fail "clone $i read through node $i differs"
    be=$(vstat_n "$i" backend_read_bytes)
    th=$(vstat_n "$i" tier_hit_blocks)
    rb=$(vstat_n "$i" read_bytes)
    mh=$(cstat_n "$i" map_hits)
    ml=$(cstat_n "$i" map_lookups)
    mp=$(cstat_n "$i" map_puts)
    lu=$(cstat_n "$i" unique_blocks)
    log "clone $i on node $i ($((SECONDS - t0)) s): read $((rb / MIB)) MiB, back end $be bytes, $th blocks from memcached, map: $ml lookups, $mh keys, $mp puts; local store $lu blocks"
    if [ "$i" = 1 ]; then
        assert_num "$be" '>=' $((SIZE - 2 * MIB)) "node 1 reads the gold from the back end"
        assert_num "$mp" '>=' $((BLOCKS - 64)) "node 1 offers what it read to the map"
    elif [ "$i" = 2 ]; then
        assert_num "$be" '<=' $((SIZE / 4)) "back end bytes of clone 2's first read"
        assert_num "$th" '>=' $((UNIQUE * 7 / 10)) "blocks of clone 2 from the global tier"
        assert_num "$mh" '>=' $((BLOCKS * 9 / 10)) "keys clone 2's node had from the map"
    else
        assert_num "$be" '<=' $((SIZE / 20)) "back end bytes of clone 3's first read"
        assert_num "$th" '>=' $((UNIQUE * 9 / 10)) "blocks of clone 3 from the global tier"
        assert_num "$mh" '>=' $((BLOCKS * 9 / 10)) "keys clone 3's node had from the map"
    fi
    # what this node offered is in memcached before the next one reads
    # (after node 1, less what its put queue dropped: node 2 puts those)
    min=$((UNIQUE + CHUNKS - UNIQUE / 50))
    [ "$i" = 1 ] && min=$((UNIQUE / 2))
    mc_settle 3 "$min" 30 || fail "memcached holds $(items_all) items after clone $i"
    log "memcached items after clone $i: $(items_all)"
done

n1=$(mc_items 1) n2=$(mc_items 2) n3=$(mc_items 3)
total=$((n1 + n2 + n3))
local_sum=0
for i in 1 2 3; do
    local_sum=$((local_sum + $(cstat_n "$i" unique_blocks)))
done
log "memcached items: $n1 + $n2 + $n3 = $total (gold: $UNIQUE distinct non-zero blocks + $CHUNKS map chunks); local stores: $local_sum blocks; cluster: $((total + local_sum)) blocks for an image of $BLOCKS"
assert_between "$total" $(((UNIQUE + CHUNKS) * 98 / 100)) $(((UNIQUE + CHUNKS) * 102 / 100)) \
    "memcached items after three clones"
for i in 1 2 3; do
    stop_daemon "${NODE_PID[i]}" TERM
done
log PASS
