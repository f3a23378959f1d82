#!/usr/bin/env bash
# The cluster's global tier through the real daemon: shoald --memcached
# with a real memcached on 127.0.0.1. A volume twice the local cache is
# read whole (every block offered to memcached after the reply), then again:
# the blocks evicted locally come back from memcached by their remembered
# key instead of the back end. Then memcached is killed (SIGKILL) and a
# third pass still reads right with no error: the tier turns into misses.
# Every pass is compared byte for byte with the image.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need memcached nbdcopy jq curl cmp

mport=$(free_port)
mc_user=() # memcached refuses to run as root without -u
[ "$(id -u)" -ne 0 ] || mc_user=(-u nobody)
bg memcached "${mc_user[@]}" -U 0 -l 127.0.0.1 -p "$mport" -m 64 -t 2
MC_PID=$BG_PID
wait_for 20 "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $mport), 1).close()" ||
    fail "memcached did not start on port $mport"

random_file "$T/v.img" $((32 << 20))
# The timeout is generous: sanitizer builds on a loaded machine must not
# turn hits into timeouts (the default, 5 ms, is for real networks). The
# put queue holds the whole first pass (8192 blocks), twice the default.
start_shoald -m 8M --memcached "127.0.0.1:$mport" --memcached-timeout 500ms \
    --memcached-put-queue 32M "v=$T/v.img"
grep -q "put queue 8192 blocks" "$SHOALD_LOG" || fail "the tier's put queue is not 32M (8192 blocks)"

read_pass() { # N
    nbdcopy --no-extents "$(uri v)" "$T/out$1" || fail "pass $1: nbdcopy out of v"
    assert_same_file "$T/out$1" "$T/v.img" "pass $1 over v"
    rm -f "$T/out$1"
}

read_pass 1
puts=$(jstat '.cache.tier_puts')
assert_num "$puts" '>=' 8192 "blocks offered to memcached by the first pass"
# Puts are sent after the replies, by the tier's own thread, from a queue
# bounded in bytes (a put that does not fit is dropped, not waited for; a
# sanitizer build sends slower and drops more): wait until memcached holds
# at least half of them.
items() { memcstat --servers="127.0.0.1:$mport" 2>/dev/null | awk '$1 == "curr_items:" {print $2}'; }
wait_for 20 bash -c "[ \"\$(memcstat --servers=127.0.0.1:$mport | awk '\$1 == \"curr_items:\" {print \$2}')\" -ge 4096 ]" ||
    fail "memcached holds $(items) items after the first pass, want at least half of 8192"
log "memcached holds $(items) items after the first pass"

# Which blocks can come back by key: those whose key the directory
# remembers (it learns an evicted block's key from the store's eviction
# log, which keeps a sixteenth of the cache's turnover: after a fast sweep
# over a volume 4x the cache, only the last evictions are known).
sleep 0.5 # a maintenance pass (every 100 ms) turns stale cells into keys
remembered=$(jstat '.cache.directory_remembered_blocks')
be0=$(vstat v backend_read_bytes)
hits0=$(jstat '.cache.tier_hits')
read_pass 2
be1=$(vstat v backend_read_bytes)
hits=$(($(jstat '.cache.tier_hits') - hits0))
log "second pass: $remembered blocks remembered before it, $hits blocks from memcached," \
    "$(((be1 - be0) >> 20)) MiB from the back end"
assert_num "$remembered" '>=' 100 "blocks remembered before the second pass"
# Every remembered block read before being evicted again comes from
# memcached: the pass reads in order, so at least those read before the
# cache's worth of new blocks pushed them out of the eviction log again.
assert_num "$hits" '>=' $((remembered / 2)) "blocks the second pass got from memcached"
assert_num $((be1 - be0)) '<=' $(((32 << 20) - hits * 4096)) "back end bytes of the second pass"
assert_eq "$(jstat '.cache.tier_corrupt')" 0 "corrupt blocks from memcached"

kill -KILL "$MC_PID"
read_pass 3
assert_eq "$(stats_json | jq '[.volumes[].errors] | add')" 0 "client errors with memcached dead"
# Lookups that met the dead server are counted by the tier (the core sees
# misses); none may have, when a put or the stats poller found it dead
# first and had it ejected (test_memcached's inline test checks the count).
log "third pass: $(jstat '.memcached.tier.lookup_failures') lookups met the dead server, $(jstat '.memcached.tier.ejections') ejection(s)"
stop_shoald
log PASS
