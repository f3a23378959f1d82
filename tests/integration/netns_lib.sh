# shellcheck shell=bash disable=SC2034 # NODE_PID, MC_PID: for the tests that source this
# Hosts of a cluster on one machine, for the tests that source this after
# lib.sh: each host is a network namespace (10.77.0.1I, eth0 of a veth pair)
# joined to a bridge in a hub namespace (10.77.0.1, which also runs etcd).
# The addresses exist only inside the namespaces this test makes, so tests
# running at once do not collide. The file system is shared by all of them
# (images, unix sockets, logs in $T).
#
#   netns_init N          hub and hosts 1..N (skip 77 without root or netns)
#   netns_host I          one more host later (a 4th server)
#   in_ns I CMD...        run CMD in host I
#   netns_etcd            etcd in the hub; sets EP
#   netns_memcached I     memcached on 10.77.0.1I:11211; sets MC_PID[I]
#   netns_shoald I NAME [ARGS...] [VOLUMES...]
#                         shoald with --etcd, its own memcached, a
#                         ${TTL}-second lease; sets NODE_PID[I]
#   nctl I ARGS...        shoalctl against host I's API
#   ring I / wait_ring I WANT   the servers host I's tier uses (sorted)
#   mc_items I            curr_items of host I's memcached
#   mc_settle N MIN SECS  wait until hosts 1..N's memcached hold >= MIN items
#                         in all and the counts stopped changing (puts are
#                         asynchronous: counts read one after another while
#                         they land are skewed toward the last one read)

NS=shoal-it-$$
HUB=$NS-hub
TTL=${TTL:-3}
declare -a NODE_PID MC_PID
_NS_HOSTS=()

_ns_cleanup() {
    local n
    for n in "$HUB" "${_NS_HOSTS[@]}"; do
        ip netns del "$n" 2>/dev/null || true
    done
}
_exit_all() {
    local rc=$?
    # set +e: under the test's set -e the (exit) that hands _cleanup the
    # status would end the trap there, leaving every daemon running (and
    # meson waiting on their inherited output until its timeout).
    set +e
    _ns_cleanup
    (exit "$rc")
    _cleanup
}

netns_init() { # N
    command -v ip >/dev/null 2>&1 || skip "ip is not installed (Debian package iproute2)"
    [ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
    ip netns add "$HUB" 2>/dev/null || skip "cannot make a network namespace"
    trap _exit_all EXIT
    ip -n "$HUB" link set lo up
    ip -n "$HUB" link add br0 type bridge
    ip -n "$HUB" addr add 10.77.0.1/24 dev br0
    ip -n "$HUB" link set br0 up
    local i
    for ((i = 1; i <= $1; i++)); do
        netns_host "$i"
    done
}

netns_host() { # I
    local i=$1
    ip netns add "$NS-n$i"
    _NS_HOSTS+=("$NS-n$i")
    ip -n "$HUB" link add "v$i" type veth peer name eth0 netns "$NS-n$i"
    ip -n "$HUB" link set "v$i" master br0 up
    ip -n "$NS-n$i" link set lo up
    ip -n "$NS-n$i" addr add "10.77.0.1$i/24" dev eth0
    ip -n "$NS-n$i" link set eth0 up
}

in_ns() { # I CMD...
    local i=$1
    shift
    ip netns exec "$NS-n$i" "$@"
}

netns_etcd() {
    command -v etcd >/dev/null 2>&1 || skip "etcd not installed (Debian package etcd-server)"
    EP=http://10.77.0.1:2379
    bg ip netns exec "$HUB" etcd --name hub --data-dir "$T/etcd" \
        --listen-client-urls "$EP" --advertise-client-urls "$EP" \
        --listen-peer-urls http://10.77.0.1:2380 --initial-advertise-peer-urls http://10.77.0.1:2380 \
        --initial-cluster hub=http://10.77.0.1:2380 >"$T/etcd.log" 2>&1
    wait_for 30 in_ns 1 curl -sf --max-time 1 "$EP/health" ||
        fail "etcd did not start, or host 1 cannot reach it"
}

netns_memcached() { # I: host I's memcached (kept if it runs already)
    local i=$1
    local st
    st=$(awk '{print $3}' "/proc/${MC_PID[i]:-0}/stat" 2>/dev/null || true)
    if [ -n "$st" ] && [ "$st" != Z ]; then
        return 0 # a node restarted keeps its host's memcached
    fi
    # Not through bg: a helper is killed by its wrapper's pid, and the
    # tests SIGKILL memcached itself (ip netns exec execs it, same pid).
    ip netns exec "$NS-n$i" memcached -u nobody -U 0 -l "10.77.0.1$i" -p 11211 -m 64 -t 1 &
    MC_PID[i]=$!
    _HELPER_PIDS+=("$!")
    wait_for 20 in_ns "$i" bash -c "exec 3<>/dev/tcp/10.77.0.1$i/11211" ||
        fail "memcached of host $i did not start"
}

netns_shoald() { # I NAME [ARGS...]
    local i=$1 name=$2
    shift 2
    netns_memcached "$i"
    ip netns exec "$NS-n$i" "$SHOALD" -f -l "unix:$T/n$i.sock" --http "10.77.0.1$i:10810" \
        --http-token-file "$T/token" --state-dir off -m 8M --etcd "$EP" --node-name "$name" \
        --memcached "10.77.0.1$i:11211" --etcd-lease "${TTL}s" --memcached-timeout 500ms \
        "$@" >>"$T/shoald$i.log" 2>&1 &
    NODE_PID[i]=$!
    _SHOAL_PIDS+=("$!")
    wait_for 30 in_ns "$i" curl -sf -o /dev/null --max-time 2 "http://10.77.0.1$i:10810/api/v1/stats" ||
        fail "shoald of host $i ($name) did not start"
}

nctl() { # I ARGS...
    local i=$1
    shift
    in_ns "$i" "$SHOALCTL" --url "http://10.77.0.1$i:10810" --token-file "$T/token" "$@"
}

ring() { nctl "$1" cluster status --json | jq -r '.ring | sort | join(",")'; }

wait_ring() { # I WANT
    local i=$1 want=$2 deadline=$((SECONDS + 15))
    until [ "$(ring "$i")" = "$want" ]; do
        [ "$SECONDS" -ge "$deadline" ] && fail "ring of host $i is '$(ring "$i")', want $want"
        sleep 0.2
    done
}

mc_items() { # I
    in_ns "$1" memcstat --servers="10.77.0.1$1:11211" | awk '$1 == "curr_items:" {print $2}'
}

_mc_counts() { # N
    local i out=""
    for ((i = 1; i <= $1; i++)); do
        out+="$(mc_items "$i") "
    done
    printf '%s' "$out"
}

mc_settle() { # N MIN SECS
    local n=$1 min=$2 deadline=$((SECONDS + $3)) a b sum c
    a=$(_mc_counts "$n")
    while :; do
        sleep 0.5
        b=$(_mc_counts "$n")
        sum=0
        for c in $b; do sum=$((sum + c)); done
        [ "$a" = "$b" ] && [ "$sum" -ge "$min" ] && return 0
        [ "$SECONDS" -ge "$deadline" ] && return 1
        a=$b
    done
}

# run_hook I [EXTRA_DISKS_XML]: contrib/libvirt/qemu on host I, as libvirt
# runs it on a migration's destination (`qemu vm1 migrate begin -`, the
# domain's XML on stdin: vol through host I's socket, error_policy=stop as
# docs/cluster.md advises, and any more <disk> elements given); its output
# in HOOK_OUT.
run_hook() {
    local i=$1 extra=${2:-}
    cat >"$T/dom.xml" <<XML
<domain type='kvm'>
  <name>vm1</name>
  <memory unit='MiB'>256</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none' error_policy='stop' rerror_policy='stop'/>
      <source protocol='nbd' name='vol'>
        <host transport='unix' socket='$T/n$i.sock'/>
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>$extra
  </devices>
</domain>
XML
    if command -v virt-xml-validate >/dev/null 2>&1; then
        virt-xml-validate "$T/dom.xml" domain >/dev/null 2>&1 || fail "the test's domain XML is not valid"
    fi
    HOOK_OUT=$(SHOALCTL="$SHOALCTL" SHOAL_URL="http://10.77.0.1$i:10810" SHOAL_TOKEN_FILE="$T/token" \
        in_ns "$i" "$SRCDIR/contrib/libvirt/qemu" vm1 migrate begin - <"$T/dom.xml" 2>&1) ||
        fail "the libvirt hook failed: $HOOK_OUT"
    log "hook: $HOOK_OUT"
}
