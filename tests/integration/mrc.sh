#!/usr/bin/env bash
# What-if sizing (issue 13, item 5): the miss-ratio curve a daemon reports
# after a workload predicts the hit ratio that daemons with half, the same
# and twice its cache measure on the same workload, within 0.03. The
# workload: fio's zipf(0.9) random 4 KiB reads over a 64 MiB image of
# unique blocks, seeded, so each run reads the same blocks in the same
# order. Also checked: GET /api/v1/mrc, `shoalctl mrc` (cache and volume),
# the curve in /metrics, and the curve's memory in the cache stats.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need fio jq
fio --enghelp=nbd >/dev/null 2>&1 || skip "fio was built without the nbd engine"

head -c 64M /dev/urandom >"$T/a.img"
READS=150000

# run CACHE_MIB: a fresh daemon, the workload, then its measured hit ratio.
run() {
    start_shoald -m "$1M" "a=$T/a.img"
    (cd "$T" && fio --name=zipf --ioengine=nbd --uri="$(uri a)" --rw=randread --bs=4k \
        --size=64M --random_distribution=zipf:0.9 --randseed=4242 --norandommap \
        --io_size=$((READS * 4096)) --iodepth=1 --output-format=json --output="$T/fio$1.json") ||
        fail "fio with a $1 MiB cache: $(tail -5 "$T/fio$1.json")"
    measured=$(vstat a hit_ratio)
}

# The reference daemon: 16 MiB, a quarter of the image.
run 16
api_get /api/v1/mrc >"$T/mrc.json"
stats_json >"$T/stats.json"
ctl mrc >"$T/mrc.txt" || fail "shoalctl mrc"
ctl mrc a >"$T/mrc_a.txt" || fail "shoalctl mrc a"
ctl mrc --json >"$T/mrc_cli.json" || fail "shoalctl mrc --json"
curl -sf "$URL/metrics" >"$T/metrics.txt" || fail "GET /metrics"
rc=0
ctl mrc nosuch >/dev/null 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] && grep -q "no such volume: nosuch" "$T/err" || fail "shoalctl mrc nosuch: rc $rc $(cat "$T/err")"
stop_shoald
ref=$measured
log "16 MiB: measured hit ratio $ref"

jq -e '.cache.points | length == 8' "$T/mrc.json" >/dev/null || fail "not 8 points: $(cat "$T/mrc.json")"
jq -e '.volumes[0].name == "a" and (.volumes[0].mrc.points | length == 8)' "$T/mrc.json" >/dev/null ||
    fail "no curve for volume a: $(cat "$T/mrc.json")"
assert_num "$(jq '.cache.sampled_reads' "$T/mrc.json")" '>' 1000 "sampled reads"
assert_num "$(jq '.cache.mrc_bytes' "$T/stats.json")" '>' 0 "mrc_bytes in the cache stats"
# Predictions rise with the cache (allowing sampling noise).
jq -e '[.cache.points[].hit_ratio] as $h | all(range(1; 8); $h[.] >= $h[. - 1] - 0.01)' "$T/mrc.json" \
    >/dev/null || fail "the curve falls with more cache: $(jq -c '[.cache.points[].hit_ratio]' "$T/mrc.json")"
grep -q '^shoal_cache_mrc_hit_ratio{factor="2"} 0\.' "$T/metrics.txt" ||
    fail "no cache curve in /metrics: $(grep mrc "$T/metrics.txt")"
grep -q '^shoal_volume_mrc_hit_ratio{volume="a",factor="0.5"} 0\.' "$T/metrics.txt" ||
    fail "no volume curve in /metrics"
grep -q "Predicted read hit ratio of the whole cache" "$T/mrc.txt" || fail "shoalctl mrc: $(cat "$T/mrc.txt")"
grep -q "Predicted read hit ratio of a " "$T/mrc_a.txt" || fail "shoalctl mrc a: $(cat "$T/mrc_a.txt")"
# The CLI's rows are the API's points.
for f in 0.5 1 2; do
    pct=$(jq -r --argjson f "$f" '.cache.points[] | select(.factor == $f) | .hit_ratio * 100' "$T/mrc.json")
    row=$(awk -v f="$f" '$(NF-1) == f {print $NF}' "$T/mrc.txt")
    [ -n "$row" ] || fail "shoalctl mrc has no row for x$f: $(cat "$T/mrc.txt")"
    awk -v a="$pct" -v b="$row" 'BEGIN { d = a - b; exit !(d < 0.11 && d > -0.11) }' ||
        fail "shoalctl mrc row x$f says $row%, the API $pct%"
done
jq -e '.points | length == 8' "$T/mrc_cli.json" >/dev/null || fail "shoalctl mrc --json"

# The predictions against measurements with 8, 16 and 32 MiB.
check() { # FACTOR MEASURED
    local pred
    pred=$(jq -r --argjson f "$1" '.cache.points[] | select(.factor == $f) | .hit_ratio' "$T/mrc.json")
    log "x$1: predicted $pred, measured $2"
    awk -v p="$pred" -v m="$2" 'BEGIN { d = p - m; exit !(d <= 0.03 && d >= -0.03) }' ||
        fail "with x$1 the cache the curve predicted a hit ratio of $pred, a real run measured $2"
}
# x1 is pinned to the daemon's own hit ratio (core/mrc.h): this checks the
# pinning; 8 and 32 MiB check the prediction.
check 1 "$ref"
run 8
stop_shoald
check 0.5 "$measured"
run 32
stop_shoald
check 2 "$measured"
log PASS
