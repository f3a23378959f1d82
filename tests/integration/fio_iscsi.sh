#!/usr/bin/env bash
# A verified random load through the iSCSI front end (issue 12). Debian 12's
# fio has no libiscsi engine (`fio --enghelp` lists none), so the load is
# qemu-io's over iscsi:// (qemu-block-extra, libiscsi inside): rounds of
# concurrent `aio_write -P` (some FUA, some `-z` zeroes and `-z -u`
# unmaps) at random 512-byte-aligned places, an `aio_flush`, then
# `aio_read -P` of every range of the round, all in flight at once; then
# random reads of runs the final image must hold; then the whole image
# read through NBD, through iSCSI and the backing file, each compared with
# the image the test computed. qemu-io's aio commands exit 0 whatever
# happens, so every completion is counted and every pattern mismatch or
# error line fails the test. Negative control: a pattern read of a range
# the test never wrote that pattern to must be reported as a mismatch.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need qemu-io qemu-img nbdcopy cmp
qemu-img --help | grep -qw iscsi || skip "qemu-img has no iscsi driver (qemu-block-extra)"
if fio --enghelp 2>/dev/null | grep -qw libiscsi; then
    log "note: this fio has a libiscsi engine; the qemu-io load below runs all the same"
fi

IQN=iqn.2026-12.org.shoal
SIZE=$((64 << 20))
SEED=${SHOAL_SEED:-$((RANDOM * 32768 + RANDOM))}
log "seed $SEED (SHOAL_SEED=$SEED replays the load)"
random_file "$T/s.img" "$SIZE"
cp "$T/s.img" "$T/expect.img"
PORT=$(free_port)
# a cache smaller than the volume: the load misses, inserts and evicts
start_shoald -m 16M --iscsi "127.0.0.1:$PORT" "scratch=$T/s.img"
DEV="iscsi://127.0.0.1:$PORT/$IQN:scratch/0"

# plan ROUND: writes CMDS (qemu-io commands of one round, one a line) and
# updates expect.img; the generator keeps the ranges of a round disjoint,
# so their order does not matter, and rounds overlap each other.
plan() {
    "$PY" - "$T" "$SEED" "$1" "$SIZE" <<'EOF'
import random, sys
t, seed, rnd, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = random.Random(seed * 1000 + rnd)
taken, cmds, reads = [], [], []
with open(f"{t}/expect.img", "r+b") as f:
    while len(cmds) < 96:
        ln = r.choice([512, 4096, 4096, 8192, 65536, r.randint(1, 256) * 512, r.randint(1, 4096) * 512])
        hot = r.random() < 0.5  # half of them in the first 4 MiB: rounds overwrite each other
        off = r.randrange(0, ((4 << 20) if hot else size) - ln + 1) // 512 * 512
        if any(off < b and a < off + ln for a, b in taken):
            continue
        taken.append((off, off + ln))
        x = r.random()
        if x < 0.12:
            cmds.append(f"aio_write -q -z -u {off} {ln}"); pat = 0
        elif x < 0.2:
            cmds.append(f"aio_write -q -z {off} {ln}"); pat = 0
        else:
            pat = r.randint(1, 255)
            cmds.append(f"aio_write -q {'-f ' if x > 0.85 else ''}-P {pat:#x} {off} {ln}")
        f.seek(off)
        f.write(bytes([pat]) * ln)
        reads.append(f"aio_read -P {pat:#x} {off} {ln}")
print("\n".join(cmds + ["aio_flush"] + reads + ["aio_flush"]))
EOF
}

# qemu_io_checked WHAT NREADS: run the commands on stdin in one qemu-io over
# iSCSI, then require NREADS completed reads and no error or mismatch.
qemu_io_checked() {
    local what=$1 nreads=$2 out=$T/qio.out
    local -a args=()
    mapfile -t cmds
    for c in "${cmds[@]}"; do args+=(-c "$c"); done
    qemu-io -f raw -d unmap "${args[@]}" "$DEV" >"$out" 2>&1 || fail "$what: qemu-io exited $?: $(tail -5 "$out")"
    if grep -qiE "verification failed|error|failed" "$out"; then
        fail "$what: $(grep -iE -m3 "verification failed|error|failed" "$out")"
    fi
    assert_eq "$(grep -c '^read ' "$out")" "$nreads" "$what: reads completed"
}

ROUNDS=12
for ((r = 1; r <= ROUNDS; r++)); do
    plan "$r" >"$T/round.cmds"
    n=$(grep -c "^aio_read" "$T/round.cmds")
    qemu_io_checked "round $r" "$n" <"$T/round.cmds"
done
log "$ROUNDS rounds of 96 concurrent writes (pattern, FUA, zeroes, unmaps), each read back at once"

log "random reads of runs the image must hold, 256 in flight"
"$PY" - "$T/expect.img" "$SEED" >"$T/rr.cmds" <<'EOF'
import random, sys
img = open(sys.argv[1], "rb").read()
r = random.Random(int(sys.argv[2]) ^ 0x5EAD)
out = []
while len(out) < 256:
    off = r.randrange(0, len(img) - 512)
    if r.random() < 0.5:
        off = r.randrange(0, 4 << 20)
    b = img[off]
    end = off + 1
    want = r.choice([1, 512, 4096, 65536])
    while end < len(img) and end - off < want and img[end] == b:
        end += 1
    if end - off >= 16:
        out.append(f"aio_read -P {b:#x} {off} {end - off}")
print("\n".join(out + ["aio_flush"]))
EOF
qemu_io_checked "random reads" 256 <"$T/rr.cmds"

log "negative control: a pattern the range does not hold is reported"
off=$(grep -m1 '^aio_read' "$T/rr.cmds" | awk '{print $4}')
byte=$(od -An -tu1 -j "$off" -N1 "$T/expect.img" | tr -d ' ')
qemu-io -f raw -c "aio_read -P $(((byte + 1) % 256)) $off 16" -c aio_flush "$DEV" >"$T/neg.out" 2>&1 || true
grep -q "verification failed" "$T/neg.out" ||
    fail "qemu-io read -P of a pattern the range does not hold passed: $(cat "$T/neg.out")"

log "whole image: through NBD, through iSCSI, the backing file"
nbdcopy "$(uri scratch)" "$T/nbd.img" || fail "nbdcopy from NBD failed"
cmp "$T/nbd.img" "$T/expect.img" || fail "NBD reads differ from the image the load wrote"
qemu-img convert -O raw "$DEV" "$T/iscsi.img" 2>"$T/qi.err" || fail "convert: $(cat "$T/qi.err")"
cmp "$T/iscsi.img" "$T/expect.img" || fail "iSCSI reads differ from the image the load wrote"
cmp "$T/s.img" "$T/expect.img" || fail "the backing file differs from the image the load wrote"
assert_eq "$(vstat scratch errors)" 0 "errors counted by shoald"
log "PASS"
