#!/usr/bin/env bash
# Issue 11's cluster cases across hosts (netns_lib.sh: hosts A, B, C as
# network namespaces, each with its memcached and shoald --etcd, one etcd,
# a 3 s lease). Back ends: a gold image in the shared directory (read-only
# on every node) and vol, read-write, behind an nbdkit upstream every host
# reaches. Clients are real NBD clients run inside the hosts' namespaces.
# (b) gold read through A: each server's curr_items within 10% of the mean.
# (c) `shoalctl cluster add` of a 4th server (a 4th host): over the image's
#     keys (computed from its blocks, asked of every server), at most 1.2/4
#     change server, all of them to the new one; `cluster remove` of it
#     moves exactly its keys and no other. Each placement is read after
#     flush_all of every server and a cold read through another node.
# (d) SIGKILL of C's memcached while A reads gold again and again: every
#     pass exits 0 and equals the image.
# (g) vol, read-write on A, is refused read-write on B, naming A.
# (h) SIGKILL of A's shoald while a libnbd client writes vol (each
#     acknowledged write logged): B is refused while A's lease lives, takes
#     vol after it expires, and reads back every acknowledged write; the
#     rest of vol is unchanged.
# Root only; exits 77 when namespaces cannot be made or etcd is missing.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=netns_lib.sh
source "$(dirname "$0")/netns_lib.sh"
need memcached memcstat nbdkit nbdcopy jq curl cmp
need_python_nbd
netns_init 3
netns_etcd
HERE=$(cd "$(dirname "$0")" && pwd)
keys() { "$PY" "$HERE/cluster_keys.py" "$@"; }

GOLD_MIB=16
NB=$((GOLD_MIB << 8)) # 4 KiB blocks, all different (random)
random_file "$T/gold.img" $((GOLD_MIB << 20))
random_file "$T/vol.img" $((16 << 20))
cp "$T/vol.img" "$T/vol.orig"
bg nbdkit -f -U "$T/up.sock" file "$T/vol.img"
wait_for 20 test -S "$T/up.sock" || fail "nbdkit did not start"
UP="nbd+unix:///?socket=$T/up.sock"

netns_shoald 1 A "vol=$UP"
netns_shoald 2 B
netns_shoald 3 C
S1=10.77.0.11:11211 S2=10.77.0.12:11211 S3=10.77.0.13:11211 S4=10.77.0.14:11211
for i in 1 2 3; do
    wait_ring "$i" "$S1,$S2,$S3"
    nctl "$i" volume add gold "$T/gold.img" --readonly >/dev/null || fail "gold on host $i"
done

nread() { # I VOLUME OUT: read a whole volume through host I's shoald
    in_ns "$1" nbdcopy --no-extents "$(uri "$2" "$T/n$1.sock")" "$3" ||
        fail "nbdcopy of $2 through host $1"
}
nstat() { # I JQ: one value of host I's stats
    in_ns "$1" curl -sf --max-time 5 "http://10.77.0.1$1:10810/api/v1/stats" | jq -er "$2"
}

# ---- (b) balance ---------------------------------------------------------------
t0=$SECONDS
nread 1 gold "$T/g1.out"
assert_same_file "$T/g1.out" "$T/gold.img" "gold through A"
# Puts are sent after the replies, from a queue that holds the whole image.
mc_settle 3 $((NB * 9 / 10)) 30 || true
n1=$(mc_items 1) n2=$(mc_items 2) n3=$(mc_items 3)
total=$((n1 + n2 + n3))
log "(b) items after A's read: $n1 $n2 $n3 (of $NB blocks; $((SECONDS - t0)) s)"
assert_num "$total" '>=' $((NB * 9 / 10)) "blocks stored in memcached by A's read"
for n in "$n1" "$n2" "$n3"; do
    assert_between "$n" "$((total * 9 / 30))" "$((total * 11 / 30))" "one server's share of $total keys"
done

# ---- (c) a 4th server, added then removed ---------------------------------------
t0=$SECONDS
in_ns 1 "$PY" "$HERE/cluster_keys.py" where "$T/gold.img" "$T/where3.json" "$S1" "$S2" "$S3" ||
    fail "probing the servers"
netns_host 4
netns_memcached 4
assert_eq "$(nctl 1 cluster add "$S4")" "memcached $S4 added to the cluster" "cluster add"
for i in 1 2 3; do
    wait_ring "$i" "$S1,$S2,$S3,$S4"
done
in_ns 1 "$PY" "$HERE/cluster_keys.py" flush "$S1" "$S2" "$S3" "$S4" || fail "flush_all"
# B has not read gold: every block comes from the back end and is put to
# the server that owns its key now (`where` asks until every key is
# somewhere, up to 20 s).
nread 2 gold "$T/g2.out"
assert_same_file "$T/g2.out" "$T/gold.img" "gold through B"
in_ns 2 "$PY" "$HERE/cluster_keys.py" where "$T/gold.img" "$T/where4.json" "$S1" "$S2" "$S3" "$S4" ||
    fail "probing the servers"
m=$(keys moves "$T/where3.json" "$T/where4.json")
log "(c) adding $S4: $m"
compared=$(jq .compared <<<"$m") moved=$(jq .moved <<<"$m")
assert_num "$compared" '>=' $((NB * 9 / 10)) "keys placed once before and after the add"
assert_num "$moved" '>' 0 "keys moved to the new server"
assert_num "$((moved * 400))" '<=' "$((compared * 120))" "keys moved by the add ($moved of $compared)"
assert_eq "$(jq -c '.to | keys' <<<"$m")" "[\"$S4\"]" "where the moved keys went"

assert_eq "$(nctl 2 cluster remove "$S4")" "memcached $S4 removed from the cluster" "cluster remove"
for i in 1 2 3; do
    wait_ring "$i" "$S1,$S2,$S3"
done
in_ns 1 "$PY" "$HERE/cluster_keys.py" flush "$S1" "$S2" "$S3" "$S4" || fail "flush_all"
nread 3 gold "$T/g3.out"
assert_same_file "$T/g3.out" "$T/gold.img" "gold through C"
in_ns 3 "$PY" "$HERE/cluster_keys.py" where "$T/gold.img" "$T/where3b.json" "$S1" "$S2" "$S3" "$S4" ||
    fail "probing the servers"
m=$(keys moves "$T/where4.json" "$T/where3b.json")
log "(c) removing $S4: $m"
on4=$(jq --arg s "$S4" '[.[] | select(. == [$s])] | length' "$T/where4.json")
assert_num "$(jq .compared <<<"$m")" '>=' $((NB * 9 / 10)) "keys placed once before and after the remove"
assert_eq "$(jq -c '.from | keys' <<<"$m")" "[\"$S4\"]" "where the keys moved by the remove came from"
# Every key of the removed server moved (none is on it any more), no other.
assert_eq "$(jq --arg s "$S4" '[.[] | select(index($s))] | length' "$T/where3b.json")" 0 \
    "keys on the removed server after the remove"
assert_num "$(jq .moved <<<"$m")" '>=' "$((on4 * 9 / 10))" "keys moved off the removed server (it held $on4)"
log "(c) done in $((SECONDS - t0)) s"

# ---- (d) a memcached server killed mid-read ---------------------------------------
t0=$SECONDS
lookups0=$(nstat 1 '.cache.tier_lookups')
(
    for p in 1 2 3 4; do
        in_ns 1 nbdcopy --no-extents "$(uri gold "$T/n1.sock")" "$T/d$p.out" || exit 10
        cmp -s "$T/d$p.out" "$T/gold.img" || exit 20
        touch "$T/d$p.done"
    done
) &
reader=$!
wait_for 30 test -e "$T/d1.done" || fail "(d) the first pass through A did not finish"
kill -KILL "${MC_PID[3]}"
lookups1=$(nstat 1 '.cache.tier_lookups')
rc=0
wait "$reader" || rc=$?
assert_eq "$rc" 0 "(d) reader status (10: nbdcopy failed, 20: wrong data) with $S3 killed"
lookups=$(($(nstat 1 '.cache.tier_lookups') - lookups0))
after=$(($(nstat 1 '.cache.tier_lookups') - lookups1))
assert_num "$after" '>' 0 "lookups of the global tier after the kill"
assert_eq "$(nstat 1 '[.volumes[].errors] | add')" 0 "client errors on A"
assert_eq "$(nstat 1 '.cache.tier_corrupt')" 0 "corrupt blocks on A"
log "(d) 4 passes through A, $S3 killed after the first: all equal, $lookups lookups" \
    "($after after the kill)," \
    "$(nstat 1 '.cache.tier_hits') hits ($((SECONDS - t0)) s)"

# ---- (g) one writer per volume -------------------------------------------------------
rc=0
err=$(nctl 2 volume add vol "$UP" 2>&1) || rc=$?
assert_eq "$rc" 2 "(g) exit status of a read-write add of vol on B"
assert_contains "$err" "volume vol is served read-write by node A" "(g) B's refusal"
log "(g) refused: $err"

# ---- (h) a whole node killed while a client writes -------------------------------------
t0=$SECONDS
SLOTS=1024 # 16 KiB each: all of vol
in_ns 1 "$PY" "$HERE/cluster_writer.py" write "$(uri vol "$T/n1.sock")" "$T/acked" "$SLOTS" 2 \
    2>"$T/writer.err" &
writer=$!
acked() { [ "$(wc -l <"$T/acked" 2>/dev/null || echo 0)" -ge "$1" ]; }
wait_for 30 acked 100 || fail "(h) the writer got no 100 writes acknowledged"
kill -KILL "${NODE_PID[1]}"
killed=$(date +%s%N)
wait "${NODE_PID[1]}" 2>/dev/null || true
rc=0
wait "$writer" || rc=$?
assert_eq "$rc" 0 "(h) writer status"
n=$(wc -l <"$T/acked")
[ "$n" -lt "$SLOTS" ] || fail "(h) all $SLOTS writes finished before the kill"
rc=0
err=$(nctl 2 volume add vol "$UP" 2>&1) || rc=$?
ms=$((($(date +%s%N) - killed) / 1000000))
# A's lease was renewed at most a third of it before the kill: it lives
# at least 2 s more.
if [ "$ms" -lt 1500 ]; then
    assert_eq "$rc" 2 "(h) B's add of vol ${ms} ms after A's kill (A's lease lives)"
    assert_contains "$err" "volume vol is served read-write by node A" "(h) B's refusal"
    log "(h) B refused vol $ms ms after A's kill -9: $err"
fi
no_owner() { [ "$(nctl 2 cluster status --json | jq '.owners | length')" = 0 ]; }
wait_for $((TTL * 3 + 5)) no_owner || fail "(h) A's ownership of vol is still in etcd"
nctl 2 volume add vol "$UP" >/dev/null || fail "(h) B cannot take vol after A's lease expired"
nread 2 vol "$T/h.out"
"$PY" "$HERE/cluster_writer.py" check "$T/h.out" "$T/acked" || fail "(h) acknowledged writes lost"
# Past the acknowledged slots and the one that may have been in flight,
# vol is as it was.
from=$(((n + 1) * 16384))
cmp -s -i "$from" "$T/h.out" "$T/vol.orig" || fail "(h) vol changed past offset $from"
log "(h) $n writes acknowledged by A before kill -9, all read back through B ($((SECONDS - t0)) s)"

stop_daemon "${NODE_PID[2]}" TERM
stop_daemon "${NODE_PID[3]}" TERM
log PASS
