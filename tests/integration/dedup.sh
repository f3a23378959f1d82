#!/usr/bin/env bash
# Dedup across volumes. Two identical images, each read fully through its
# own volume, must cost about one image's worth of distinct blocks:
# cache.unique_blocks close to the image's distinct non-zero blocks,
# cache.dedup_ratio about 2; a second pass over one volume is served from
# RAM (hit ratio of that pass >= 0.95). Counters are not data: every pass
# is also compared byte for byte (cmp) with the image, so a dedup that
# served one block's bytes for another would fail here even with perfect
# counters.
#  - random: 48 MiB of random data (every block distinct), exact figures
#  - ext4:   an image built by mke2fs -d from real files (/usr/lib/python3*)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need nbdcopy jq curl mke2fs
need_python_nbd

# blocks FILE: "NONZERO DISTINCT" 4 KiB blocks of FILE.
blocks() {
    "$PY" - "$1" <<'EOF'
import hashlib, sys
zero = bytes(4096)
n, seen = 0, set()
with open(sys.argv[1], "rb") as f:
    while True:
        b = f.read(4096)
        if not b:
            break
        b = b.ljust(4096, b"\0")
        if b != zero:
            n += 1
            seen.add(hashlib.sha256(b).digest())
print(n, len(seen))
EOF
}

# read_all VOLUME IMAGE: read every byte of a volume through NBD (no
# extents, so zeros are read too and the pass is the same every time) and
# compare it with the image it must serve.
read_all() {
    local out=$T/readback.img
    rm -f "$out"
    nbdcopy --no-extents "$(uri "$1")" "$out" || fail "nbdcopy out of $1"
    cmp "$out" "$2" >/dev/null 2>&1 ||
        fail "volume $1 does not read back as $(basename "$2"): $(cmp "$out" "$2" 2>&1 | head -1)"
    rm -f "$out"
}

# check_pair A B IMAGE: A and B serve identical copies of IMAGE.
check_pair() {
    local a=$1 b=$2 img=$3 nonzero distinct s unique logical ratio want_ratio
    read -r nonzero distinct <<<"$(blocks "$img")"
    log "$img: $nonzero non-zero blocks, $distinct distinct"
    read_all "$a" "$img"
    read_all "$b" "$img"
    s=$(stats_json)
    unique=$(jq -r '.cache.unique_blocks' <<<"$s")
    logical=$(jq -r '.cache.logical_blocks' <<<"$s")
    ratio=$(jq -r '.cache.dedup_ratio' <<<"$s")
    log "unique_blocks $unique logical_blocks $logical dedup_ratio $ratio"
    # Distinct contents held: this image's, within 3 %.
    assert_between "$unique" "$(awk -v d="$distinct" 'BEGIN{print d*0.97}')" \
        "$(awk -v d="$distinct" 'BEGIN{print d*1.03}')" "unique_blocks vs $distinct distinct blocks"
    # Volume blocks mapped to them: both volumes' non-zero blocks.
    assert_between "$logical" "$(awk -v n="$nonzero" 'BEGIN{print 2*n*0.97}')" \
        "$(awk -v n="$nonzero" 'BEGIN{print 2*n*1.03}')" "logical_blocks vs 2 x $nonzero"
    want_ratio=$(awk -v n="$nonzero" -v d="$distinct" 'BEGIN{print 2*n/d}')
    assert_between "$ratio" "$(awk -v r="$want_ratio" 'BEGIN{print r*0.97}')" \
        "$(awk -v r="$want_ratio" 'BEGIN{print r*1.03}')" "dedup_ratio vs expected $want_ratio"
    assert_num "$(jq -r '.cache.used_bytes' <<<"$s")" '>=' $((unique * 4096)) "used_bytes < unique blocks"

    # Second pass over A: the hit ratio of that pass, from counter deltas.
    local rb0 hb0 rb1 hb1 pass
    rb0=$(vstat "$a" read_bytes)
    hb0=$(vstat "$a" read_hit_bytes)
    read_all "$a" "$img"
    rb1=$(vstat "$a" read_bytes)
    hb1=$(vstat "$a" read_hit_bytes)
    assert_num $((rb1 - rb0)) '>=' "$(file_size "$img")" "second pass read fewer bytes than the image"
    pass=$(awk -v h=$((hb1 - hb0)) -v r=$((rb1 - rb0)) 'BEGIN{printf "%.4f", h/r}')
    log "second pass over $a: hit ratio $pass"
    assert_num "$pass" '>=' 0.95 "hit ratio of the second pass over $a"
}

# --- random content: every block distinct, exact expectations ----------
random_file "$T/r1.img" $((48 << 20))
cp "$T/r1.img" "$T/r2.img"
start_shoald -m 256M "r1=$T/r1.img" "r2=$T/r2.img"
check_pair r1 r2 "$T/r1.img"
ratio=$(jstat '.cache.dedup_ratio')
assert_between "$ratio" 1.9 2.1 "dedup_ratio of two identical random volumes"
stop_shoald

# --- real files: an ext4 image built with mke2fs -d --------------------
src=""
for d in /usr/lib/python3.11 /usr/lib/python3 /usr/share/doc; do
    if [ -d "$d" ]; then
        src=$d
        break
    fi
done
[ -n "$src" ] || fail "no directory of real files to build an ext4 image from"
mib=$(($(du -sm "$src" | cut -f1) * 3 / 2 + 16))
[ "$mib" -le 160 ] || mib=160
truncate -s "${mib}M" "$T/e1.img"
mke2fs -q -F -t ext4 -d "$src" "$T/e1.img" >"$T/mke2fs.log" 2>&1 ||
    fail "mke2fs -d $src into ${mib}M: $(tail -3 "$T/mke2fs.log")"
cp --sparse=always "$T/e1.img" "$T/e2.img"
start_shoald -m 512M "e1=$T/e1.img" "e2=$T/e2.img"
check_pair e1 e2 "$T/e1.img"
stop_shoald
log PASS
