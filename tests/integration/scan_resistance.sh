#!/usr/bin/env bash
# Scan resistance (issue "Cache effectiveness", item 4): a backup-style
# pass (nbdcopy of a cold volume twice the cache's size) must not flush
# another volume's hot set: with the default policy the hot set's hit ratio
# drops by at most 5 points. The hot reads compare every byte with the
# image (counters are not data).
#  - cache 64 MiB; volume a: 64 MiB, its hot set the first 16 MiB, read
#    (20000 random 4 KiB reads) until warm;
#  - volume b: 128 MiB of random data, copied out once with nbdcopy;
#  - the hot pass again: hit ratio before and after, from counter deltas.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need nbdcopy jq curl
need_python_nbd

random_file "$T/a.img" $((64 << 20))
random_file "$T/b.img" $((128 << 20))
start_shoald -m 64M "a=$T/a.img" "b=$T/b.img"

# hot: 20000 reads of random blocks among the first 4096 of a, each
# compared with the image.
hot() {
    "$PY" - "$(uri a)" "$T/a.img" <<'EOF' || fail "hot pass over a"
import random, sys
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
img = open(sys.argv[2], "rb")
rnd = random.Random(7)
for _ in range(20000):
    b = rnd.randrange(4096)
    got = h.pread(4096, b * 4096)
    img.seek(b * 4096)
    if got != img.read(4096):
        sys.exit("block %d of a read back wrong" % b)
h.shutdown()
EOF
}

# pass_ratio: the hit ratio of one hot pass, from a's counters.
pass_ratio() {
    local r0 h0 r1 h1
    r0=$(vstat a read_bytes)
    h0=$(vstat a read_hit_bytes)
    hot
    r1=$(vstat a read_bytes)
    h1=$(vstat a read_hit_bytes)
    awk -v h=$((h1 - h0)) -v r=$((r1 - r0)) 'BEGIN{printf "%.4f", h/r}'
}

hot
hot
before=$(pass_ratio)
nbdcopy "$(uri b)" "$T/b.out" || fail "nbdcopy out of b"
assert_same_file "$T/b.out" "$T/b.img" "the scanned volume"
rm -f "$T/b.out"
after=$(pass_ratio)
log "hot set hit ratio: $before before the scan, $after after"
assert_num "$before" '>=' 0.99 "hot set hit ratio before the scan"
assert_num "$(awk -v a="$after" -v b="$before" 'BEGIN{printf "%.4f", b-a}')" '<=' 0.05 \
    "hit ratio points lost by the hot set to the scan"
stop_shoald
log PASS
