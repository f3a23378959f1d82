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
# shellcheck source-path=SCRIPTDIR source=netns_lib.sh
source "$(dirname "$0")/netns_lib.sh"
need memcached memcstat nbdkit nbdcopy jq curl
netns_init 3
netns_etcd

random_file "$T/vol.img" $((16 << 20))
cp "$T/vol.img" "$T/expect.img"
bg nbdkit -f -U "$T/up.sock" file "$T/vol.img"
wait_for 20 test -S "$T/up.sock" || fail "nbdkit did not start"
UP="nbd+unix:///?socket=$T/up.sock"

netns_shoald 1 A "vol=$UP"
netns_shoald 2 B
netns_shoald 3 C
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
mc_settle 3 2048 30 || true
n1=$(mc_items 1) n2=$(mc_items 2) n3=$(mc_items 3)
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
