#!/usr/bin/env bash
# Membership and ownership across hosts: three nodes, each in its own
# network namespace (10.77.0.11-13, veth pairs on a bridge in a fourth
# namespace that also runs etcd at 10.77.0.1), each running its memcached
# and shoald with --etcd; the shared storage is an nbdkit upstream on a
# unix socket (the file system is shared by the namespaces).
# - every node's ring holds the three servers at their own addresses;
# - a volume read through node A spreads its blocks over the three
#   memcached servers across the network, each within 10% of the mean;
# - vol, read-write on A, is refused read-write on B (409 naming A) and
#   accepted read-only on C;
# - kill -9 of A: after its lease B takes vol read-write and reads every
#   byte A acknowledged; A's server leaves B's and C's rings.
# Root only (namespaces); exits 77 when namespaces cannot be made or etcd
# is not installed.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
command -v etcd >/dev/null 2>&1 || skip "etcd not installed (Debian package etcd-server)"
need memcached memcstat nbdkit nbdcopy jq curl ip
[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"

NS=shoal-it-$$
HUB=$NS-hub
ip netns add "$HUB" 2>/dev/null || skip "cannot make a network namespace"
_ns_cleanup() {
    local n
    for n in "$HUB" "$NS-n1" "$NS-n2" "$NS-n3"; do
        ip netns del "$n" 2>/dev/null
    done
}
_exit_all() {
    local rc=$?
    _ns_cleanup
    (exit "$rc")
    _cleanup
}
trap _exit_all EXIT

ip -n "$HUB" link set lo up
ip -n "$HUB" link add br0 type bridge
ip -n "$HUB" addr add 10.77.0.1/24 dev br0
ip -n "$HUB" link set br0 up
for i in 1 2 3; do
    ip netns add "$NS-n$i"
    ip -n "$HUB" link add "v$i" type veth peer name eth0 netns "$NS-n$i"
    ip -n "$HUB" link set "v$i" master br0 up
    ip -n "$NS-n$i" link set lo up
    ip -n "$NS-n$i" addr add "10.77.0.1$i/24" dev eth0
    ip -n "$NS-n$i" link set eth0 up
done
in_ns() { # I CMD...: run CMD in node I's namespace
    local i=$1
    shift
    ip netns exec "$NS-n$i" "$@"
}

EP=http://10.77.0.1:2379
bg ip netns exec "$HUB" etcd --name hub --data-dir "$T/etcd" \
    --listen-client-urls "$EP" --advertise-client-urls "$EP" \
    --listen-peer-urls http://10.77.0.1:2380 --initial-advertise-peer-urls http://10.77.0.1:2380 \
    --initial-cluster hub=http://10.77.0.1:2380 >"$T/etcd.log" 2>&1
wait_for 30 in_ns 1 curl -sf --max-time 1 "$EP/health" || fail "etcd did not start, or node 1 cannot reach it"

random_file "$T/vol.img" $((16 << 20))
cp "$T/vol.img" "$T/expect.img"
bg nbdkit -f -U "$T/up.sock" file "$T/vol.img"
wait_for 20 test -S "$T/up.sock" || fail "nbdkit did not start"
UP="nbd+unix:///?socket=$T/up.sock"

TTL=3
declare -a NODE_PID
start_node() { # I NAME [VOLUMES...]
    local i=$1 name=$2
    shift 2
    bg ip netns exec "$NS-n$i" memcached -u nobody -U 0 -l "10.77.0.1$i" -p 11211 -m 64 -t 1
    wait_for 20 in_ns "$i" bash -c "exec 3<>/dev/tcp/10.77.0.1$i/11211" ||
        fail "memcached of node $name did not start"
    ip netns exec "$NS-n$i" "$SHOALD" -f -l "unix:$T/n$i.sock" --http "10.77.0.1$i:10810" \
        --http-token-file "$T/token" --state-dir off -m 8M --etcd "$EP" --node-name "$name" \
        --memcached "10.77.0.1$i:11211" --etcd-lease "${TTL}s" --memcached-timeout 500ms \
        "$@" >>"$T/shoald$i.log" 2>&1 &
    NODE_PID[i]=$!
    _SHOAL_PIDS+=("$!")
    wait_for 30 in_ns "$i" curl -sf -o /dev/null --max-time 2 "http://10.77.0.1$i:10810/api/v1/stats" ||
        fail "shoald of node $name did not start"
}
nctl() { # I ARGS...: shoalctl against node I
    local i=$1
    shift
    in_ns "$i" "$SHOALCTL" --url "http://10.77.0.1$i:10810" --token-file "$T/token" "$@"
}
ring() { nctl "$1" cluster status --json | jq -r '.ring | sort | join(",")'; }
wait_ring() { # I WANT
    local i=$1 want=$2 deadline=$((SECONDS + 15))
    until [ "$(ring "$i")" = "$want" ]; do
        [ "$SECONDS" -ge "$deadline" ] && fail "ring of node $i is '$(ring "$i")', want $want"
        sleep 0.2
    done
}

start_node 1 A "vol=$UP"
start_node 2 B
start_node 3 C
all=10.77.0.11:11211,10.77.0.12:11211,10.77.0.13:11211
for i in 1 2 3; do
    wait_ring "$i" "$all"
done
status=$(nctl 2 cluster status)
log "cluster status on B:"
printf '%s\n' "$status"
assert_eq "$(nctl 3 cluster status --json | jq -r '[.nodes[] | "\(.name)@\(.memcached)"] | join(" ")')" \
    "A@10.77.0.11:11211 B@10.77.0.12:11211 C@10.77.0.13:11211" "nodes as C sees them"

# The global tier across the network: A's reads land on all three servers.
nbdcopy "$(uri vol "$T/n1.sock")" "$T/a.out" || fail "read vol through A"
assert_same_file "$T/a.out" "$T/expect.img" "vol through A"
items() { in_ns "$1" memcstat --servers="10.77.0.1$1:11211" | awk '$1 == "curr_items:" {print $2}'; }
enough() { [ $(($(items 1) + $(items 2) + $(items 3))) -ge 2048 ]; }
wait_for 20 enough || true
n1=$(items 1) n2=$(items 2) n3=$(items 3)
total=$((n1 + n2 + n3))
log "memcached items: $n1 $n2 $n3 (of 4096 blocks read)"
assert_num "$total" '>=' 2048 "blocks stored in memcached by A's read"
for n in "$n1" "$n2" "$n3"; do
    assert_between "$n" "$((total * 9 / 30))" "$((total * 11 / 30))" "one server's share of $total keys"
done

# One writer per volume across hosts.
code=$(in_ns 2 curl -s -o "$T/add.out" -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $(cat "$T/token")" -H 'Content-Type: application/json' \
    --data "{\"name\":\"vol\",\"backing\":\"$UP\"}" "http://10.77.0.12:10810/api/v1/volumes")
assert_eq "$code" 409 "status of a read-write add of vol on B"
assert_eq "$(jq -r .error "$T/add.out")" "volume vol is served read-write by node A" "B's refusal"
nctl 3 volume add vol "$UP" --readonly >/dev/null || fail "read-only add of vol on C"
nbdsh -u "$(uri vol "$T/n1.sock")" -c "
h.pwrite(b'\xa5' * 65536, 5 << 20)
h.flush()
" || fail "write through A"
"$PY" -c "import sys; sys.stdout.buffer.write(b'\xa5' * 65536)" |
    dd of="$T/expect.img" bs=64K seek=80 conv=notrunc status=none

# A host dies: its volume and its server go with its lease.
kill -KILL "${NODE_PID[1]}"
wait "${NODE_PID[1]}" 2>/dev/null || true
t0=$SECONDS
no_owner() { [ "$(nctl 2 cluster status --json | jq '.owners | length')" = 0 ]; }
wait_for $((TTL * 3 + 5)) no_owner ||
    fail "A's ownership of vol is still in etcd $((SECONDS - t0)) s after kill -9"
log "A's ownership expired about $((SECONDS - t0)) s after kill -9 (lease ${TTL} s)"
nctl 2 volume add vol "$UP" >/dev/null || fail "B cannot take vol read-write after A died"
nbdcopy "$(uri vol "$T/n2.sock")" "$T/b.out" || fail "read vol through B"
assert_same_file "$T/b.out" "$T/expect.img" "vol through B after A's kill -9 (A's writes kept)"
for i in 2 3; do
    wait_ring "$i" 10.77.0.12:11211,10.77.0.13:11211
done
assert_eq "$(nctl 3 cluster status --json | jq -r '.owners[] | "\(.volume)=\(.node)"')" "vol=B" \
    "owner as C sees it"
stop_daemon "${NODE_PID[2]}" TERM
stop_daemon "${NODE_PID[3]}" TERM
log PASS
