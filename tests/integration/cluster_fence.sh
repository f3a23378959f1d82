#!/usr/bin/env bash
# Self-fencing across hosts (netns_lib.sh: hosts A and B, one etcd in the
# hub). vol, read-write, lives behind an nbdkit upstream both hosts reach;
# its clients are real NBD clients (nbdsh, nbdcopy).
# (1) A owns vol (3 s lease) and is cut off from etcd (a prohibit route to
#     the hub): A fences vol's writes before its lease can expire (within
#     3/4 of the TTL of its last renewal); a write through A then fails, a
#     read through A gives the back end's bytes. B takes vol once A's lease
#     expired and writes it; a read through A sees B's bytes (fenced reads
#     pass the cache by). A reconnected finds vol taken: vol stays fenced
#     on A, and no write of A reached the back end after the fence.
# (2) B owns vol (10 s lease) and is cut off for less than its TTL: B
#     fences, then, reconnected, its next renewal lifts the fence (the
#     lease never lapsed): writes through B work again and land.
# Root only; exits 77 when namespaces cannot be made or etcd is missing.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=netns_lib.sh
source "$(dirname "$0")/netns_lib.sh"
need memcached nbdkit nbdcopy jq curl cmp
need_python_nbd
netns_init 2
netns_etcd

MIB=8
random_file "$T/vol.img" $((MIB << 20))
bg nbdkit -f -U "$T/up.sock" file "$T/vol.img"
wait_for 20 test -S "$T/up.sock" || fail "nbdkit did not start"
UP="nbd+unix:///?socket=$T/up.sock"

netns_shoald 1 A "vol=$UP"
TTL=10 netns_shoald 2 B

vjson() { # I: host I's JSON of vol ("" if none)
    in_ns "$1" curl -sf --max-time 2 "http://10.77.0.1$1:10810/api/v1/stats" |
        jq -c '.volumes[] | select(.name == "vol")' 2>/dev/null || true
}
fenced_on() { [ "$(vjson "$1" | jq -r '.fenced // ""')" = lease ]; }
not_fenced_on() { [ -n "$(vjson "$1")" ] && [ "$(vjson "$1" | jq -r '.fenced // ""')" = "" ]; }
cut() { ip -n "$NS-n$1" route add prohibit 10.77.0.1/32; } # host I loses etcd (the hub)
mend() { ip -n "$NS-n$1" route del prohibit 10.77.0.1/32; }
# pwrite I OFFSET BYTE: 64 KiB of BYTE at OFFSET through host I; its status
pwrite() {
    nbdsh -u "$(uri vol "$T/n$1.sock")" \
        -c "h.pwrite(bytes([$3]) * 65536, $2)" -c 'h.flush()' >/dev/null 2>"$T/pwrite.err"
}
# pread I OUT: the whole of vol through host I, into OUT
pread() { nbdcopy --no-extents "$(uri vol "$T/n$1.sock")" "$2" || fail "read of vol through host $1"; }
# fill FILE OFFSET BYTE: FILE with 64 KiB of BYTE at OFFSET (the model)
fill() { head -c 65536 /dev/zero | tr '\0' "\\$(printf '%03o' "$3")" |
    dd of="$1" bs=64k seek=$(($2 / 65536)) conv=notrunc status=none; }

cp "$T/vol.img" "$T/model"
pwrite 1 0 0x11 || fail "write through A before the cut: $(cat "$T/pwrite.err")"
fill "$T/model" 0 0x11
pread 1 "$T/r0"
assert_same_file "$T/r0" "$T/model" "vol through A (cached) before the cut"

# A client connected before the fence (its handshake said writable): its
# writes after the fence reach shoald and must fail there.
early() { # I GO OUT: connect to host I, write, wait for file GO, write again
    "$PY" - "$(uri vol "$T/n$1.sock")" "$2" "$3" <<'PY'
import os, sys, time, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(b"\x11" * 4096, 0)
deadline = time.monotonic() + 120  # the test failed before it said go
while not os.path.exists(sys.argv[2]):
    if time.monotonic() > deadline:
        sys.exit("no go file within 120 s")
    time.sleep(0.05)
try:
    h.pwrite(b"\x99" * 4096, 4096)
    h.flush()
    res = "written"
except nbd.Error as e:
    res = "refused errno=%s" % e.errno
open(sys.argv[3], "w").write(res)
PY
}
early 1 "$T/go1" "$T/early1" &
early_pid=$!
# Killed at exit: a failure before go1 must not leave it holding the
# test's output open (meson waits for that until its timeout).
_HELPER_PIDS+=("$early_pid")

# ---- (1) the lease lost -----------------------------------------------------------------
cut 1
t0=$(date +%s%N)
wait_for 10 fenced_on 1 || fail "(1) A did not fence vol within 10 s of the cut"
ms=$((($(date +%s%N) - t0) / 1000000))
# The fence comes 3/4 TTL after the last renewal was sent, which was before
# the cut; what must hold is that it comes before etcd could expire the
# lease, a TTL after that renewal at the earliest. ms overstates the fence's
# time (it includes this poll's), so the bound is sound; 3/4 TTL + 0.5 s,
# the expected figure, was missed by 3 ms once under TSan on a loaded host.
assert_num "$ms" '<' $((TTL * 1000)) "(1) ms from the cut to A's fence (before the lease can expire)"
log "(1) A fenced vol $ms ms after the cut"
assert_eq "$(vjson 1 | jq -r .readonly)" true "(1) vol's readonly on A while fenced"
assert_contains "$(nctl 1 volumes)" "fenced (lease)" "(1) shoalctl volumes on A"
# The cluster's status without etcd: etcd's lists are unknown, the node's
# own view answers (fenced, what it owns, when etcd last renewed).
cs=$(nctl 1 cluster status --json) || fail "(1) cluster status on A while cut off"
assert_eq "$(jq -r .fenced <<<"$cs")" true "(1) A's cluster status: fenced"
assert_eq "$(jq -r '.owned | join(",")' <<<"$cs")" vol "(1) A's cluster status: owned"
[ "$(jq -r '.etcd_error // ""' <<<"$cs")" != "" ] || fail "(1) A's cluster status has no etcd_error: $cs"
assert_eq "$(jq -r '.nodes | length' <<<"$cs")" 0 "(1) A's cluster status: nodes unknown"
assert_num "$(jq -r .lease_renewed_seconds_ago <<<"$cs")" '>=' "$(awk -v t="$TTL" 'BEGIN { print t * 0.75 }')" \
    "(1) A's cluster status: seconds since etcd renewed"
cs=$(nctl 1 cluster status) || fail "(1) cluster status (text) on A while cut off"
assert_contains "$cs" "etcd cannot be read" "(1) shoalctl cluster status on A"
assert_contains "$cs" "FENCED" "(1) shoalctl cluster status on A"
log "(1) A's cluster status while cut off: $(jq -c '{fenced, owned, etcd_error}' <<<"$(nctl 1 cluster status --json)")"
if pwrite 1 65536 0x22; then
    fail "(1) a write through fenced A succeeded"
fi
log "(1) write through A refused: $(tail -1 "$T/pwrite.err")"
touch "$T/go1"
wait "$early_pid" || fail "(1) the early client failed"
assert_eq "$(cat "$T/early1")" "refused errno=EPERM" "(1) a write on a connection from before the fence"
pread 1 "$T/r1"
assert_same_file "$T/r1" "$T/model" "(1) vol through fenced A"

# B takes vol once A's lease expired in etcd.
b_takes() { nctl 2 volume add vol "$UP" >/dev/null 2>&1; }
wait_for $((TTL * 3 + 10)) b_takes || fail "(1) B cannot take vol after A's lease expired"
log "(1) B took vol $((($(date +%s%N) - t0) / 1000000)) ms after the cut"
pwrite 2 131072 0x33 || fail "(1) write through B: $(cat "$T/pwrite.err")"
fill "$T/model" 131072 0x33
# The byte at 0 was read through A and cached there before the fence: a
# fenced read goes to the back end, so A sees B's write too.
pread 1 "$T/r2"
assert_same_file "$T/r2" "$T/model" "(1) vol through fenced A after B's write"
if pwrite 1 131072 0x44; then
    fail "(1) a write through A succeeded after B took vol"
fi

mend 1
lost() { grep -q "volume vol: node B took its ownership" "$T/shoald1.log"; }
wait_for $((TTL * 3 + 10)) lost || fail "(1) A did not find vol taken once reconnected"
fenced_on 1 || fail "(1) vol is no longer fenced on A after it found vol taken"
if pwrite 1 196608 0x55; then
    fail "(1) a write through A succeeded after A reconnected"
fi
pread 2 "$T/r3"
assert_same_file "$T/r3" "$T/model" "(1) vol through B"
assert_same_file "$T/vol.img" "$T/model" "(1) the back end"
owner=$(nctl 2 cluster status --json | jq -r '.owners[] | select(.volume == "vol") | .node')
assert_eq "$owner" B "(1) vol's owner in etcd"
log "(1) A reconnected: vol stays fenced there, owned by B; no write of A landed after the fence"

# ---- (2) cut off for less than the lease ----------------------------------------------------
nctl 1 volume remove vol >/dev/null || fail "(2) removing vol from A"
pread 2 "$T/r4" # B's cache holds vol
cut 2
t0=$(date +%s%N)
wait_for 15 fenced_on 2 || fail "(2) B did not fence vol within 15 s of the cut"
mend 2
ms=$((($(date +%s%N) - t0) / 1000000))
log "(2) B fenced vol $ms ms after the cut; reconnected"
if pwrite 2 262144 0x66; then
    # Written between the mend and the next renewal: it must have landed.
    fill "$T/model" 262144 0x66
    log "(2) a write went through just after the mend (the lease was renewed first)"
fi
wait_for 10 not_fenced_on 2 || fail "(2) B's fence was not lifted after it reconnected"
grep -q "etcd lease renewed in time" "$T/shoald2.log" || fail "(2) B's lease was not renewed in time"
pwrite 2 327680 0x77 || fail "(2) write through B after the fence was lifted: $(cat "$T/pwrite.err")"
fill "$T/model" 327680 0x77
pread 2 "$T/r5"
assert_same_file "$T/r5" "$T/model" "(2) vol through B"
assert_same_file "$T/vol.img" "$T/model" "(2) the back end"
assert_eq "$(nctl 2 cluster status --json | jq -c '[.fenced, .etcd_error]')" '[false,null]' "(2) B's cluster status"
log "(2) B's fence lifted, the lease kept; writes land again"

stop_daemon "${NODE_PID[1]}" TERM
stop_daemon "${NODE_PID[2]}" TERM
log PASS
