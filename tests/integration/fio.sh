#!/usr/bin/env bash
# fio's nbd engine through shoald: a random read/write mix with crc32c
# verification (two jobs, disjoint halves, queue depth 16); a random write
# pass verified again warm, and cold after a restart on a read-only export;
# and a read-only random read pass.
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
# Verify from RAM (the blocks were cached on write or by the first verify).
fio_json verify1 "${common[@]}" --verify_only
stop_shoald

# Cold: a new daemon, read-only export. The data must have been written
# through to the file.
start_shoald -r -m 128M "a=$T/a.img"
fio_json verify2 "${common[@]}" --verify_only
fio_json randread --rw=randread --bs=4k --size=64M --iodepth=32 --readonly \
    --time_based --runtime=3 --numjobs=2
reads=$(jq '[.jobs[].read.total_ios] | add' "$T/randread.json.clean")
assert_num "$reads" '>' 1000 "randread pass did too little I/O"
hit=$(vstat a hit_ratio)
assert_num "$hit" '>' 0 "no hits in the read-only pass"
assert_eq "$(vstat a errors)" 0 "error counter"
stop_shoald
log PASS
