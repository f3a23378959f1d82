#!/usr/bin/env bash
# fio's nbd engine through shoald: a random read/write mix with crc32c
# verification (two jobs, disjoint halves, queue depth 16); a random write
# pass verified again warm, and cold after a restart on a read-only export;
# and a read-only random read pass. Exit codes are not data: each verify
# pass must have read back every byte the write pass wrote (fio's JSON:
# read io_bytes of each verify job == write io_bytes of the same write job,
# error 0), and a pass over a deliberately corrupted backing file must fail
# (the negative control: proof that the verify really compares data).
# Last, a queue-depth-1 mix with and without busy polling (--busy-poll).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need fio jq
fio --enghelp=nbd >/dev/null 2>&1 || skip "fio was built without the nbd engine"

truncate -s 64M "$T/a.img"
start_shoald -m 128M "a=$T/a.img"

# fio_json NAME ARGS...: run a fio job, require exit 0 and error 0 in every job.
fio_json() {
    local name=$1 out=$T/$1.json rc=0
    shift
    (cd "$T" && fio --name="$name" --ioengine=nbd --uri="$(uri a)" --output-format=json \
        --output="$out" "$@") || rc=$?
    [ -s "$out" ] || fail "fio $name wrote no output (exit $rc)"
    # fio prints warnings before the JSON document; keep the document only.
    sed -n '/^{/,$p' "$out" >"$out.clean"
    jq -e . "$out.clean" >/dev/null || fail "fio $name: no JSON in output: $(head -c 500 "$out")"
    [ "$rc" -eq 0 ] || fail "fio $name exited $rc: $(jq -c '[.jobs[] | {jobname, error}]' "$out.clean")"
    jq -e '[.jobs[].error] | all(. == 0)' "$out.clean" >/dev/null ||
        fail "fio $name: job errors $(jq -c '[.jobs[].error]' "$out.clean")"
}

# The mixed workload of the issue: random reads and writes of 4k..64k,
# every written block verified (crc32c) while running and at the end.
fio_json rw --rw=randrw --bsrange=4k-64k --size=32M --offset_increment=32M --numjobs=2 \
    --iodepth=16 --verify=crc32c --verify_fatal=1 --verify_backlog=256 --rwmixread=30
read_io=$(jq '[.jobs[].read.io_bytes] | add' "$T/rw.json.clean")
write_io=$(jq '[.jobs[].write.io_bytes] | add' "$T/rw.json.clean")
assert_num "$write_io" '>' $((16 << 20)) "fio wrote too little"
assert_num "$read_io" '>' $((16 << 20)) "fio read/verified too little"

# A random write pass covering the whole volume, verified again later with
# verify_only (which replays the same offsets from the same seed).
common=(--rw=randwrite --bsrange=4k-64k --size=32M --offset_increment=32M --numjobs=2
    --iodepth=16 --verify=crc32c --verify_fatal=1 --randseed=1234)
fio_json w "${common[@]}"

# assert_verified NAME: every job of the verify_only run NAME read (and so
# verified: verify_only reads only to compare) exactly the bytes the same
# job of the write pass wrote, and reported no error.
assert_verified() {
    local name=$1 wrote got
    wrote=$(jq -c '[.jobs[].write.io_bytes]' "$T/w.json.clean")
    got=$(jq -c '[.jobs[].read.io_bytes]' "$T/$name.json.clean")
    jq -e 'length == 2 and all(. > 0)' <<<"$wrote" >/dev/null || fail "write pass: wrote $wrote"
    assert_eq "$got" "$wrote" "$name: bytes read and verified per job vs bytes written"
    jq -e '[.jobs[].error] | all(. == 0)' "$T/$name.json.clean" >/dev/null ||
        fail "$name: verify errors $(jq -c '[.jobs[].error]' "$T/$name.json.clean")"
    log "$name: verified $got bytes per job (written: $wrote)"
}

# Verify from RAM (the blocks were cached on write or by the first verify).
fio_json verify1 "${common[@]}" --verify_only
assert_verified verify1
stop_shoald

# Cold: a new daemon, read-only export. The data must have been written
# through to the file.
start_shoald -r -m 128M "a=$T/a.img"
fio_json verify2 "${common[@]}" --verify_only
assert_verified verify2
fio_json randread --rw=randread --bs=4k --size=64M --iodepth=32 --readonly \
    --time_based --runtime=3 --numjobs=2
reads=$(jq '[.jobs[].read.total_ios] | add' "$T/randread.json.clean")
assert_num "$reads" '>' 1000 "randread pass did too little I/O"
hit=$(vstat a hit_ratio)
assert_num "$hit" '>' 0 "no hits in the read-only pass"
assert_eq "$(vstat a errors)" 0 "error counter"
log "default --busy-poll: caught $(jstat .cache.busy_poll_caught), missed $(jstat .cache.busy_poll_missed)"
stop_shoald

# Busy polling: a queue-depth-1 client's requests are caught by the
# polling reader instead of waking it, and every byte still verifies; with
# --busy-poll off none is polled. It is on by default (what the passes
# above caught is logged before their daemon stops), but how many requests
# the default 50 us window catches depends on the machine (fio's
# turnaround under TSan on a loaded 2-CPU host: 567-4275 caught), so the
# count is asserted with a 1 ms window, which most turnarounds fit: of
# about 3080 requests, 2787-3075 caught and 9-297 missed under TSan, the
# most missed beside 'hostile'.
qd1=(--rw=randrw --rwmixread=50 --bs=4k --size=8M --iodepth=1 --verify=crc32c --verify_fatal=1
    --verify_backlog=64 --randseed=99)
start_shoald --busy-poll 1000 -m 128M "a=$T/a.img"
fio_json qd1 "${qd1[@]}"
caught=$(jstat .cache.busy_poll_caught)
missed=$(jstat .cache.busy_poll_missed)
log "busy polling (1 ms): caught $caught requests, missed $missed"
assert_num "$caught" '>' 512 "requests caught by busy polling at queue depth 1"
assert_num "$caught" '>' "$missed" "requests caught vs missed by a 1 ms window"
assert_eq "$(vstat a errors)" 0 "error counter (busy polling)"
stop_shoald
start_shoald --busy-poll off -m 128M "a=$T/a.img"
fio_json qd1off "${qd1[@]}"
assert_eq "$(jstat .cache.busy_poll_caught)" 0 "requests caught with --busy-poll off"
assert_eq "$(jstat .cache.busy_poll_cpu_seconds)" 0 "time polled with --busy-poll off"
stop_shoald

# Negative control: corrupt one 4 KiB block the write pass wrote (job 0's
# region is [0, 32M), every block of it written), restart cold: the same
# verify_only pass must now fail.
dd if=/dev/urandom of="$T/a.img" bs=4k seek=2000 count=1 conv=notrunc status=none
start_shoald -r -m 128M "a=$T/a.img"
rc=0
(cd "$T" && fio --name=corrupt --ioengine=nbd --uri="$(uri a)" --output-format=json \
    --output="$T/corrupt.json" "${common[@]}" --verify_only) >/dev/null 2>&1 || rc=$?
sed -n '/^{/,$p' "$T/corrupt.json" >"$T/corrupt.json.clean"
errs=$(jq -c '[.jobs[].error]' "$T/corrupt.json.clean" 2>/dev/null || echo '?')
if [ "$rc" -eq 0 ] && jq -e 'all(. == 0)' <<<"$errs" >/dev/null 2>&1; then
    fail "fio verify_only passed over a corrupted block: its verify proves nothing (errors $errs)"
fi
log "negative control: fio's verify caught the corrupted block (exit $rc, job errors $errs)"
stop_shoald
log PASS
