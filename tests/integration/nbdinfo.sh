#!/usr/bin/env bash
# nbdinfo against shoald: export size, read-only flag, block size
# constraints, the export list and the base:allocation map.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need nbdinfo jq curl

make_image "$T/a.img" 64
random_file "$T/b.img" $((1048576 + 512)) # size not a multiple of 4 KiB
random_file "$T/c.img" 4096
start_shoald -m 64M "a=$T/a.img" "b=$T/b.img" "c=$T/c.img"

info=$(nbdinfo --json "$(uri a)")
assert_eq "$(jq -r '.exports[0]."export-size"' <<<"$info")" $((64 << 20)) "size of a"
assert_eq "$(jq -r '.exports[0].is_read_only' <<<"$info")" false "a read-only without -r"
assert_eq "$(jq -r '.exports[0].block_size_minimum' <<<"$info")" 1 "minimum block size"
assert_eq "$(jq -r '.exports[0].block_size_preferred' <<<"$info")" 4096 "preferred block size"
assert_eq "$(jq -r '.exports[0].block_size_maximum' <<<"$info")" $((32 << 20)) "maximum block size"
assert_eq "$(jq -r '.exports[0].can_flush' <<<"$info")" true "can_flush"
assert_eq "$(jq -r '.exports[0].can_fua' <<<"$info")" true "can_fua"
assert_eq "$(jq -r '.exports[0].can_trim' <<<"$info")" true "can_trim"
assert_eq "$(jq -r '.exports[0].can_zero' <<<"$info")" true "can_zero"
assert_eq "$(jq -r '.exports[0].can_cache' <<<"$info")" true "can_cache"
assert_eq "$(jq -r '.exports[0].can_multi_conn' <<<"$info")" true "can_multi_conn"
assert_eq "$(jq -r '.exports[0].can_df' <<<"$info")" true "can_df"

info=$(nbdinfo --json "$(uri b)")
assert_eq "$(jq -r '.exports[0]."export-size"' <<<"$info")" $((1048576 + 512)) "size of b (unaligned)"
assert_eq "$(nbdinfo --size "$(uri c)")" 4096 "nbdinfo --size of c"

# An unknown export is refused, the server keeps serving.
if nbdinfo --size "$(uri nosuch)" >/dev/null 2>"$T/err"; then
    fail "nbdinfo on an unknown export succeeded"
fi
assert_eq "$(nbdinfo --size "$(uri a)")" $((64 << 20)) "size of a after a refused export"

# --list: every volume, with its size.
list=$(nbdinfo --list --json "nbd+unix:///?socket=$SOCK")
assert_eq "$(jq -r '[.exports[]."export-name"] | sort | join(",")' <<<"$list")" "a,b,c" "export list"
assert_eq "$(jq -r '.exports[] | select(."export-name"=="b") | ."export-size"' <<<"$list")" \
    $((1048576 + 512)) "listed size of b"
# The list answers any client that may connect: its descriptions say size
# and mode, never the host's paths.
desc=$(jq -r '.exports[] | select(."export-name"=="b") | .description' <<<"$list")
log "b's description: $desc"
assert_contains "$desc" "shoal volume"
case $desc in *"$T"* | */*) fail "the export list names a host path: $desc" ;; esac

# --map (base:allocation): extents cover the whole volume without gaps, and
# the random regions are data (a ZERO bit there would be a wrong answer).
map=$(nbdinfo --map --json "$(uri a)")
jq -e 'length > 0' <<<"$map" >/dev/null || fail "empty map"
size=$((64 << 20))
jq -e --argjson size "$size" '
    reduce .[] as $e ({next: 0, ok: true};
        {next: ($e.offset + $e.length), ok: (.ok and $e.offset == .next and $e.length > 0)})
    | .ok and .next == $size' <<<"$map" >/dev/null || fail "map does not tile [0, $size): $map"
eighth=$((size / 8))
for region in "0 $((2 * eighth))" "$((3 * eighth)) $((5 * eighth))"; do
    read -r lo hi <<<"$region"
    bad=$(jq -c --argjson lo "$lo" --argjson hi "$hi" \
        '[.[] | select(.offset < $hi and .offset + .length > $lo and (.type % 4) != 0)]' <<<"$map")
    assert_eq "$bad" "[]" "extents over random data [$lo, $hi) marked hole/zero"
done
# The plain text form works too and names the context's types.
nbdinfo --map "$(uri a)" >"$T/map.txt" || fail "nbdinfo --map failed"
grep -q data "$T/map.txt" || fail "nbdinfo --map printed no data extent: $(cat "$T/map.txt")"

stop_shoald

# -r: every volume is read-only.
start_shoald -r "a=$T/a.img" "b=$T/b.img"
info=$(nbdinfo --json "$(uri a)")
assert_eq "$(jq -r '.exports[0].is_read_only' <<<"$info")" true "a read-only with -r"
assert_eq "$(jq -r '.exports[0]."export-size"' <<<"$info")" $((64 << 20)) "size of a with -r"
stop_shoald
log PASS
