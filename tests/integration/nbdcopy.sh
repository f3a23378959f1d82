#!/usr/bin/env bash
# nbdcopy out of and into shoald volumes, compared with cmp against the
# backing files (reads through the cache, writes through to the file).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need nbdcopy cmp jq curl

make_image "$T/a.img" 64
random_file "$T/odd.img" $((3 * 1048576 + 1234)) # unaligned tail
truncate -s 64M "$T/dst.img"
make_image "$T/src.img" 64
start_shoald -m 128M "a=$T/a.img" "odd=$T/odd.img" "dst=$T/dst.img"

# Read a whole volume, twice (cold, then from RAM), and compare.
nbdcopy "$(uri a)" "$T/out1" || fail "nbdcopy out of a (cold)"
assert_same_file "$T/out1" "$T/a.img" "cold read of a"
nbdcopy "$(uri a)" "$T/out2" || fail "nbdcopy out of a (warm)"
assert_same_file "$T/out2" "$T/a.img" "warm read of a"
hits=$(vstat a read_hit_bytes)
assert_num "$hits" '>' 0 "second pass over a produced no hits"

# Without extents (every byte read over the wire, zeros included).
nbdcopy --no-extents "$(uri a)" "$T/out3" || fail "nbdcopy --no-extents out of a"
assert_same_file "$T/out3" "$T/a.img" "read of a without extents"

# A volume whose size is not a multiple of the 4 KiB cache block.
nbdcopy "$(uri odd)" "$T/odd.out" || fail "nbdcopy out of odd"
assert_same_file "$T/odd.out" "$T/odd.img" "read of odd-sized volume"
nbdcopy "$(uri odd)" "$T/odd.out2" || fail "nbdcopy out of odd (warm)"
assert_same_file "$T/odd.out2" "$T/odd.img" "warm read of odd-sized volume"

# Copy into a volume: the backing file must hold the data afterwards
# (write-through, no need to stop the daemon), and reading back matches.
nbdcopy "$T/src.img" "$(uri dst)" || fail "nbdcopy into dst"
assert_same_file "$T/dst.img" "$T/src.img" "backing file after nbdcopy into dst"
nbdcopy "$(uri dst)" "$T/dst.out" || fail "nbdcopy out of dst"
assert_same_file "$T/dst.out" "$T/src.img" "read back of dst"

# Overwrite a volume whose blocks are cached: reads must not be stale.
make_image "$T/src2.img" 64
nbdcopy "$T/src2.img" "$(uri dst)" || fail "nbdcopy into dst (second)"
assert_same_file "$T/dst.img" "$T/src2.img" "backing file after overwrite"
nbdcopy --no-extents "$(uri dst)" "$T/dst.out2" || fail "nbdcopy out of dst (second)"
assert_same_file "$T/dst.out2" "$T/src2.img" "read after overwrite (stale cache?)"

# Volume to volume through the same daemon.
nbdcopy "$(uri a)" "$(uri dst)" || fail "nbdcopy a -> dst"
assert_same_file "$T/dst.img" "$T/a.img" "volume to volume copy"

errors=$(jq -r '[.volumes[].errors] | add' <<<"$(stats_json)")
assert_eq "$errors" 0 "error counters"
stop_shoald
log PASS
