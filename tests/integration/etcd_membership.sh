#!/usr/bin/env bash
# Cluster membership and volume ownership in a real etcd (issue 11): three
# memcached servers, an etcd on 127.0.0.1 at free ports, two shoald nodes
# (A and B) with --etcd and a 3 s lease, each registering its own
# memcached.
# - Both nodes see each other: `shoalctl cluster status` lists A and B,
#   their servers, and who owns which volume; each node's ring holds both
#   servers.
# - `shoalctl cluster add` of the third server reaches every node's ring;
#   `cluster remove` takes it out of every ring again.
# - One writer per volume: vol, served read-write by A, is refused
#   read-write on B (API 409 naming A, and a shoald started with it refuses
#   to start with the same line); B may serve it read-only, reading A's
#   writes.
# - A's lease revoked (as if etcd was out of its reach for a lease): A
#   takes a new one and registers itself and its volume again.
# - kill -9 of A: within the lease TTL, A's ownership and memcached server
#   go; B then takes vol read-write and reads every byte A acknowledged.
# - Stopping B (SIGTERM) revokes its lease: etcdctl finds no owner left.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
command -v etcd >/dev/null 2>&1 || skip "etcd not installed (Debian package etcd-server)"
need memcached etcdctl nbdkit nbdcopy jq curl cmp ss

# ---- etcd -----------------------------------------------------------------
start_etcd http
export ETCDCTL_API=3
ectl() { etcdctl --endpoints="$EP" --dial-timeout=3s "$@"; }

# ---- memcached ------------------------------------------------------------
start_memcacheds 3

random_file "$T/vol.img" $((8 << 20))
cp "$T/vol.img" "$T/expect.img"
# The storage every node reaches (as hosts share an array): an nbdkit
# upstream, since a file opened read-write by one shoald is locked against
# the others on one machine.
bg nbdkit -f -U "$T/up.sock" file "$T/vol.img"
wait_for 20 test -S "$T/up.sock" || fail "nbdkit did not start"
UP="nbd+unix:///?socket=$T/up.sock"
TTL=3

# ---- two nodes --------------------------------------------------------------
node_args() { # NAME MEMCACHED
    printf '%s\n' --etcd "$EP" --node-name "$1" --memcached "$2" --etcd-lease "${TTL}s" \
        --memcached-timeout 500ms --state-dir off
}
mapfile -t args_a < <(node_args A "${MC[0]}")
start_shoald "${args_a[@]}" "vol=$UP"
A_URL=$URL A_PID=$SHOALD_PID A_SOCK=$SOCK
mapfile -t args_b < <(node_args B "${MC[1]}")
start_shoald "${args_b[@]}"
B_URL=$URL B_PID=$SHOALD_PID B_SOCK=$SOCK

on() { # URL CMD...: run CMD with URL as the daemon's
    local URL=$1
    shift
    "$@"
}
ring() { on "$1" api_get /api/v1/cluster | jq -r '.ring | sort | join(",")'; }
sorted() { printf '%s\n' "$@" | sort | paste -sd, -; }

status=$(on "$B_URL" ctl cluster status)
log "cluster status on B:"
printf '%s\n' "$status"
assert_contains "$status" "A " "status lists node A"
assert_contains "$status" "B (this)" "status lists node B as itself"
assert_contains "$status" "${MC[0]}" "status lists A's memcached"
assert_contains "$status" "${MC[1]}" "status lists B's memcached"
js=$(on "$A_URL" ctl cluster status --json)
assert_eq "$(jq -r '[.nodes[].name] | sort | join(",")' <<<"$js")" "A,B" "nodes in etcd"
assert_eq "$(jq -r '.owners[] | "\(.volume)=\(.node)"' <<<"$js")" "vol=A" "owners in etcd"
want2=$(sorted "${MC[0]}" "${MC[1]}")
for u in "$A_URL" "$B_URL"; do
    wait_for 10 bash -c "[ \"\$(curl -sf $u/api/v1/cluster | jq -r '.ring | sort | join(\",\")')\" = $want2 ]" ||
        fail "ring of $u is '$(ring "$u")', want $want2"
done

# ---- etcd calls keep their connections ---------------------------------------
# Each node renews its lease every TTL/3 (and the API's cluster view asks
# etcd too). A call that opened a connection of its own closed it after,
# leaving a TIME-WAIT socket towards etcd's port here (21 in a node's
# first 12 s); kept connections leave none.
tw() { ss -Htan state time-wait "( dport = :$ETCD_PORT or sport = :$ETCD_PORT )" | wc -l; }
before=$(tw)
sleep 4
closed=$(($(tw) - before))
[ "$closed" -le 2 ] || fail "etcd calls closed $closed connections in 4 s (not kept)"
log "etcd connections kept: $closed closed in 4 s of lease renewals"

# ---- cluster add / remove reach every ring --------------------------------------
out=$(on "$A_URL" ctl cluster add "${MC[2]}")
assert_eq "$out" "memcached ${MC[2]} added to the cluster" "cluster add"
want3=$(sorted "${MC[@]}")
for u in "$A_URL" "$B_URL"; do
    wait_for 10 bash -c "[ \"\$(curl -sf $u/api/v1/cluster | jq -r '.ring | sort | join(\",\")')\" = $want3 ]" ||
        fail "after cluster add, ring of $u is '$(ring "$u")', want $want3"
done
log "cluster add ${MC[2]}: both rings hold 3 servers"
rc=0
err=$(on "$A_URL" ctl cluster add "127.0.0.1:99999" 2>&1) || rc=$?
assert_eq "$rc" 2 "exit status of cluster add with a bad port"
assert_contains "$err" 'bad memcached server "127.0.0.1:99999"' "cluster add with a bad port"

# ---- one writer per volume ------------------------------------------------------
# A writes part of vol (acknowledged writes, read back later through B).
head -c $((1 << 20)) /dev/urandom >"$T/patch"
nbdsh -u "$(uri vol "$A_SOCK")" -c "
data = open('$T/patch', 'rb').read()
h.pwrite(data, 3 << 20)
h.flush()
" || fail "write through A"
dd if="$T/patch" of="$T/expect.img" bs=1M seek=3 conv=notrunc status=none

code=$(curl -s -o "$T/add.out" -w '%{http_code}' -X POST -H @"$(URL=$B_URL auth_header)" \
    -H 'Content-Type: application/json' \
    --data "{\"name\":\"vol\",\"backing\":\"$UP\"}" "$B_URL/api/v1/volumes")
assert_eq "$code" 409 "status of a read-write add of vol on B"
assert_eq "$(jq -r .error "$T/add.out")" "volume vol is served read-write by node A" "B's refusal"
rc=0
err=$(on "$B_URL" ctl volume add vol "$UP" 2>&1) || rc=$?
assert_eq "$rc" 2 "exit status of shoalctl volume add vol on B"
assert_contains "$err" "volume vol is served read-write by node A" "shoalctl on B"
assert_refused "volume vol is served read-write by node A" --state-dir off --etcd "$EP" \
    --node-name C --etcd-lease "${TTL}s" "vol=$UP"
# Read-only: any node may serve it, and reads what A acknowledged.
on "$B_URL" ctl volume add vol "$UP" --readonly >/dev/null || fail "read-only add of vol on B"
nbdcopy "$(uri vol "$B_SOCK")" "$T/ro.out" || fail "read vol through B"
assert_same_file "$T/ro.out" "$T/expect.img" "vol read-only through B"
assert_eq "$(on "$B_URL" ctl cluster status --json | jq -r '[.owners[].node] | join(",")')" "A" \
    "owners after B's read-only add"
# Who owns what, as each node's volume list and the cluster's nodes say.
assert_eq "$(on "$A_URL" api_get /api/v1/volumes | jq -r '.[] | "\(.name)=\(.owner)"')" "vol=A" \
    "owner in A's volume list"
assert_eq "$(on "$B_URL" api_get /api/v1/volumes | jq -r '.[] | "\(.name)=\(.owner)"')" \
    "vol=every node" "owner of the read-only vol in B's volume list"
assert_eq "$(on "$A_URL" stats_json | jq -r '.volumes[] | "\(.name)=\(.owner)"')" "vol=A" \
    "owner in A's stats"
assert_contains "$(on "$B_URL" ctl volumes)" "every node" "shoalctl volumes on B"
js=$(on "$B_URL" api_get /api/v1/cluster)
assert_eq "$(jq -r '.nodes[] | "\(.name):\(.state):\(.volumes | join("+"))"' <<<"$js" | sort | paste -sd' ')" \
    "A:alive:vol B:alive:" "nodes' states and volumes"
# Every memcached server of the ring with its figures; shares sum to 1.
assert_eq "$(jq -r '[.memcached[] | select(.in_ring) | .state] | join(",")' <<<"$js")" \
    "live,live,live" "memcached states"
assert_between "$(jq -r '[.memcached[].ring_share] | add' <<<"$js")" 0.9999 1.0001 "ring shares, summed"
assert_eq "$(jq -r '.tier.servers' <<<"$js")" 3 "servers in the tier's figures"
status=$(on "$B_URL" ctl cluster status)
assert_contains "$status" "alive" "cluster status: node states"
assert_contains "$status" "ring_share" "cluster status: the servers' figures"

# ---- a lost lease is taken again ----------------------------------------------------
# As if etcd had been out of A's reach for a whole lease: revoked, A's keys
# go; A's next renewal finds it gone, takes a new lease and registers its
# name, its server and its volume again.
# (The lease through the gateway, where int64 is a string: jq would round
# etcdctl's JSON number.)
lease_of_a() {
    curl -sf --max-time 5 "$EP/v3/kv/range" -d "{\"key\":\"$(printf shoal/v1/nodes/A | base64)\"}" |
        jq -r '.kvs[0].lease'
}
lease=$(lease_of_a)
ectl lease revoke "$(printf '%x' "$lease")" >/dev/null || fail "revoke A's lease $lease"
back() { [ -n "$(ectl get --keys-only shoal/v1/owners/vol)" ] && [ -n "$(ectl get --keys-only shoal/v1/nodes/A)" ]; }
wait_for $((TTL + 5)) back || fail "A did not register again after its lease was revoked"
grep -q "etcd lease expired: registering node A again" "$T/shoald0.log" ||
    fail "A's log does not say it registered again"
assert_eq "$(on "$B_URL" ctl cluster status --json | jq -r '.owners[] | "\(.volume)=\(.node)"')" \
    "vol=A" "owner after A registered again"
newlease=$(lease_of_a)
[ "$newlease" != "$lease" ] || fail "A registered again under its revoked lease"
log "A took a new lease and its volume again after its lease was revoked"

# ---- a dead node releases its volume and its server -----------------------------
kill -KILL "$A_PID"
wait "$A_PID" 2>/dev/null || true
t0=$SECONDS
on "$B_URL" ctl volume remove vol >/dev/null || fail "remove B's read-only vol"
wait_for $((TTL * 3 + 5)) bash -c "[ \"\$(ETCDCTL_API=3 etcdctl --endpoints=$EP get --prefix --keys-only shoal/v1/owners/ | grep -c .)\" = 0 ]" ||
    fail "A's ownership of vol is still in etcd $((SECONDS - t0)) s after kill -9"
log "A's ownership expired about $((SECONDS - t0)) s after kill -9 (lease ${TTL} s)"
on "$B_URL" ctl volume add vol "$UP" >/dev/null || fail "B cannot take vol read-write after A died"
nbdcopy "$(uri vol "$B_SOCK")" "$T/rw.out" || fail "read vol through B (read-write)"
assert_same_file "$T/rw.out" "$T/expect.img" "vol through B after A's kill -9 (A's writes kept)"
# An add that fails gives its claim back.
rc=0
on "$B_URL" ctl volume add ghost "$T/missing.img" >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "exit status of adding a missing image"
grep -q "volume ghost: ownership released" "$T/shoald1.log" || fail "B kept the claim of a failed add"
js=$(on "$B_URL" ctl cluster status --json)
assert_eq "$(jq -r '.owners[] | "\(.volume)=\(.node)"' <<<"$js")" "vol=B" "owner after A died"
assert_eq "$(jq -r '[.nodes[].name] | join(",")' <<<"$js")" "B" "nodes after A died"
want=$(sorted "${MC[1]}" "${MC[2]}")
wait_for 10 bash -c "[ \"\$(curl -sf $B_URL/api/v1/cluster | jq -r '.ring | sort | join(\",\")')\" = $want ]" ||
    fail "B's ring after A died is '$(ring "$B_URL")', want $want"

out=$(on "$B_URL" ctl cluster remove "${MC[2]}")
assert_eq "$out" "memcached ${MC[2]} removed from the cluster" "cluster remove"
wait_for 10 bash -c "[ \"\$(curl -sf $B_URL/api/v1/cluster | jq -r '.ring | join(\",\")')\" = ${MC[1]} ]" ||
    fail "B's ring after cluster remove is '$(ring "$B_URL")', want ${MC[1]}"
rc=0
err=$(on "$B_URL" ctl cluster remove "${MC[2]}" 2>&1) || rc=$?
assert_eq "$rc" 2 "exit status of removing a server twice"
assert_contains "$err" "memcached ${MC[2]} is not in the cluster" "removing a server twice"

# ---- an orderly stop revokes the lease at once ----------------------------------
SHOALD_PID=$B_PID stop_shoald
# (but the cluster's map secret, which outlives nodes: docs/cluster.md)
assert_eq "$(ectl get --prefix --keys-only shoal/v1/ | grep -v '^shoal/v1/map-secret$' | grep -c . || true)" 0 \
    "keys left in etcd after B stopped"
assert_eq "$(ectl get --print-value-only shoal/v1/map-secret | grep -cE '^[0-9a-f]{64}$')" 1 \
    "the map's secret in etcd"
log PASS
