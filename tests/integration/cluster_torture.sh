#!/usr/bin/env bash
# Issue 11, test (f): no stale read across warm volume moves and a
# memcached SIGKILL. Three nodes in network namespaces (netns_lib.sh),
# small caches (blocks evicted, remembered by key, asked of memcached);
# vol is read and written by cluster_checker.py (an exact model, several
# requests in flight, every read compared) in segments:
#   1. on A;  2. on A while `volume move vol --to B` runs (writes in flight
#   finish or are refused; the connection drops);  3. on B while node C's
#   memcached is killed with SIGKILL;  4. on B while vol moves back to A;
#   5. on A;  then vol read whole and its file compared with the model.
# Root only; exits 77 without namespaces, etcd, memcached or python3-libnbd.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need_python_nbd
# shellcheck source-path=SCRIPTDIR source=netns_lib.sh
source "$(dirname "$0")/netns_lib.sh"
need memcached memcstat jq curl
netns_init 3
netns_etcd

MIB=$((1 << 20))
random_file "$T/vol.img" $((16 * MIB))
cp "$T/vol.img" "$T/init.img"
netns_shoald 1 A -m 4M "vol=$T/vol.img"
netns_shoald 2 B -m 4M
netns_shoald 3 C -m 4M
all=10.77.0.11:11211,10.77.0.12:11211,10.77.0.13:11211
for i in 1 2 3; do
    wait_ring "$i" "$all"
done

ctl_cmd() { # I: the shoalctl command line for node I, as one string
    printf 'ip netns exec %q %q --url http://10.77.0.1%s:10810 --token-file %q' \
        "$NS-n$1" "$SHOALCTL" "$1" "$T/token"
}
checker() { # I ARGS...: a checker segment against node I's socket
    local i=$1
    shift
    "$PY" "$SRCDIR/tests/integration/cluster_checker.py" --uri "$(uri vol "$T/n$i.sock")" \
        --state "$T/model" "$@" || fail "checker segment on node $i: status $?"
}
serves() { nctl "$1" volumes --json | jq -e '.[] | select(.name == "vol")' >/dev/null; }
vstat_n() { nctl "$1" stats --json | jq -er ".volumes[] | select(.name==\"vol\") | .$2"; }

checker 1 --init "$T/init.img" --ops 3000 --seed 1
checker 1 --ops 3000 --seed 2 --during "$(ctl_cmd 1) volume move vol --to B"
wait_for 20 serves 2 || fail "B does not serve vol after the move"
checker 2 --ops 3000 --seed 3 --during "sleep 0.5; kill -KILL ${MC_PID[3]}"
log "B after C's memcached died: $(vstat_n 2 tier_hit_blocks) blocks from memcached, $(vstat_n 2 key_hit_blocks) by key from RAM"
checker 2 --ops 2000 --seed 4 --during "$(ctl_cmd 2) volume move vol --to A"
wait_for 20 serves 1 || fail "A does not serve vol after moving back"
checker 1 --ops 3000 --seed 5
log "A after moving back: $(vstat_n 1 tier_hit_blocks) blocks from memcached, $(vstat_n 1 backend_read_bytes) bytes from the back end"
checker 1 --verify "$T/vol.img"
for i in 1 2 3; do
    stop_daemon "${NODE_PID[i]}" TERM
done
log PASS
