# shellcheck shell=bash
# shellcheck disable=SC2034 # NODE_PID, MC_PID: for the tests that source this
# Hosts as network namespaces, for the cluster tests (sourced after
# lib.sh): a hub namespace with a bridge at 10.77.0.1 that runs etcd, and
# nodes 1..N at 10.77.0.1I (veth pairs on the bridge), each running its
# memcached and shoald with --etcd. The file system is shared by the
# namespaces (back ends on it, or on nbdkit unix sockets in $T).
#
#   netns_setup N            namespaces, bridge, etcd (skips 77 without
#                            root, namespaces or etcd)
#   in_ns I CMD...           run CMD in node I's namespace
#   start_memcached I        node I's memcached on 10.77.0.1I:11211
#   start_node I NAME [SHOALD ARGS...]  memcached + shoald of node I;
#                            its pid in NODE_PID[I]; NBD on unix:$T/nI.sock
#   nctl I ARGS...           shoalctl against node I
#   ring I / wait_ring I WANT  the memcached servers node I's tier uses
#   mc_items I               curr_items of node I's memcached
# Tunables (set before start_node): TTL (lease, s), NODE_CACHE (-m),
# MC_TIMEOUT (--memcached-timeout).
command -v etcd >/dev/null 2>&1 || skip "etcd not installed (Debian package etcd-server)"
need memcached memcstat jq curl ip
[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"

NS=shoal-it-$$
HUB=$NS-hub
EP=http://10.77.0.1:2379
TTL=${TTL:-3}
NODE_CACHE=${NODE_CACHE:-8M}
MC_TIMEOUT=${MC_TIMEOUT:-500ms}
NETNS_NODES=0
declare -a NODE_PID MC_PID

_ns_cleanup() {
    local n i
    for ((i = 1; i <= NETNS_NODES; i++)); do
        ip netns del "$NS-n$i" 2>/dev/null
    done
    ip netns del "$HUB" 2>/dev/null
}
_exit_all() {
    local rc=$?
    _ns_cleanup
    (exit "$rc")
    _cleanup
}

in_ns() { # I CMD...: run CMD in node I's namespace
    local i=$1
    shift
    ip netns exec "$NS-n$i" "$@"
}

netns_setup() { # N
    local n=$1 i
    ip netns add "$HUB" 2>/dev/null || skip "cannot make a network namespace"
    NETNS_NODES=$n
    trap _exit_all EXIT
    ip -n "$HUB" link set lo up
    ip -n "$HUB" link add br0 type bridge
    ip -n "$HUB" addr add 10.77.0.1/24 dev br0
    ip -n "$HUB" link set br0 up
    for ((i = 1; i <= n; i++)); do
        ip netns add "$NS-n$i"
        ip -n "$HUB" link add "v$i" type veth peer name eth0 netns "$NS-n$i"
        ip -n "$HUB" link set "v$i" master br0 up
        ip -n "$NS-n$i" link set lo up
        ip -n "$NS-n$i" addr add "10.77.0.1$i/24" dev eth0
        ip -n "$NS-n$i" link set eth0 up
    done
    bg ip netns exec "$HUB" etcd --name hub --data-dir "$T/etcd" \
        --listen-client-urls "$EP" --advertise-client-urls "$EP" \
        --listen-peer-urls http://10.77.0.1:2380 --initial-advertise-peer-urls http://10.77.0.1:2380 \
        --initial-cluster hub=http://10.77.0.1:2380 >"$T/etcd.log" 2>&1
    wait_for 30 in_ns 1 curl -sf --max-time 1 "$EP/health" ||
        fail "etcd did not start, or node 1 cannot reach it"
}

start_memcached() { # I
    local i=$1
    bg ip netns exec "$NS-n$i" memcached -u nobody -U 0 -l "10.77.0.1$i" -p 11211 -m 64 -t 1 \
        >>"$T/memcached$i.log" 2>&1
    MC_PID[i]=$BG_PID
    wait_for 20 in_ns "$i" bash -c "exec 3<>/dev/tcp/10.77.0.1$i/11211" ||
        fail "memcached of node $i did not start"
}

start_node() { # I NAME [SHOALD ARGS...]
    local i=$1 name=$2
    shift 2
    start_memcached "$i"
    ip netns exec "$NS-n$i" "$SHOALD" -f -l "unix:$T/n$i.sock" --http "10.77.0.1$i:10810" \
        --http-token-file "$T/token" --state-dir off -m "$NODE_CACHE" --etcd "$EP" \
        --node-name "$name" --memcached "10.77.0.1$i:11211" --etcd-lease "${TTL}s" \
        --memcached-timeout "$MC_TIMEOUT" "$@" >>"$T/shoald$i.log" 2>&1 &
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

mc_items() { in_ns "$1" memcstat --servers="10.77.0.1$1:11211" | awk '$1 == "curr_items:" {print $2}'; }
