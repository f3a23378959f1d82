#!/usr/bin/env bash
# The upstream NBD back end: shoald in front of nbdkit (memory and file
# plugins, and an nbd:// TCP URI). Data copied in through shoald must reach
# nbdkit (checked by reading nbdkit directly), and data read through shoald
# must match.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need nbdkit nbdcopy cmp

# start_nbdkit SOCKET PLUGIN ARGS...: nbdkit in the foreground on a unix
# socket (or -p PORT via ARGS), waited for.
start_nbdkit() {
    local sock=$1
    shift
    bg nbdkit -f -U "$sock" "$@"
    wait_for 20 test -S "$sock" || fail "nbdkit $* did not start"
}

make_image "$T/src.img" 64
start_nbdkit "$T/mem.sock" memory 64M
cp --sparse=always "$T/src.img" "$T/file.img"
start_nbdkit "$T/file.sock" file "$T/file.img"
# nbd:// over TCP: nbdkit on a free port.
port=$(free_port)
bg nbdkit -f -p "$port" -i 127.0.0.1 memory 16M
wait_for 20 nbdinfo --size "nbd://127.0.0.1:$port/" || fail "nbdkit on TCP port $port did not start"

start_shoald -m 128M "mem=nbd+unix:///?socket=$T/mem.sock" "file=nbd+unix:///?socket=$T/file.sock" \
    "tcp=nbd://127.0.0.1:$port/"

assert_eq "$(nbdinfo --size "$(uri mem)")" $((64 << 20)) "size of mem"
assert_eq "$(nbdinfo --size "$(uri tcp)")" $((16 << 20)) "size of tcp"

# memory plugin: copy in through shoald, read nbdkit directly, then through shoald.
nbdcopy "$T/src.img" "$(uri mem)" || fail "nbdcopy into mem"
nbdcopy "nbd+unix:///?socket=$T/mem.sock" "$T/mem.direct" || fail "nbdcopy from nbdkit directly"
assert_same_file "$T/mem.direct" "$T/src.img" "nbdkit memory after writing through shoald"
nbdcopy "$(uri mem)" "$T/mem.out1" || fail "nbdcopy out of mem"
assert_same_file "$T/mem.out1" "$T/src.img" "read of mem through shoald"
nbdcopy --no-extents "$(uri mem)" "$T/mem.out2" || fail "nbdcopy out of mem (warm)"
assert_same_file "$T/mem.out2" "$T/src.img" "warm read of mem"
assert_num "$(vstat mem read_hit_bytes)" '>' 0 "no hits on mem"

# file plugin: read, then overwrite part and check the file itself.
nbdcopy "$(uri file)" "$T/file.out" || fail "nbdcopy out of file"
assert_same_file "$T/file.out" "$T/src.img" "read of the nbdkit file volume"
if command -v qemu-io >/dev/null; then
    qemu-io -f raw -c "write -P 0x3c 1M 2M" -c "write -z 20M 1M" -c "discard 40M 64k" \
        "$(uri file)" >/dev/null || fail "qemu-io on the file volume"
    head -c $((2 << 20)) /dev/zero | tr '\0' '\074' |
        dd of="$T/src.img" bs=1M seek=1 conv=notrunc status=none
    dd if=/dev/zero of="$T/src.img" bs=1M seek=20 count=1 conv=notrunc status=none
    # Outside the discarded range the file must equal the expectation; a
    # discard may leave data or zeros (the protocol allows both), but reads
    # through shoald must then agree with the file.
    cmp -n $((40 << 20)) "$T/file.img" "$T/src.img" >/dev/null ||
        fail "nbdkit file after writes through shoald: $(cmp -n $((40 << 20)) "$T/file.img" "$T/src.img")"
    cmp -i $((40 * 1048576 + 65536)) "$T/file.img" "$T/src.img" >/dev/null ||
        fail "nbdkit file changed after the discarded range"
    nbdcopy --no-extents "$(uri file)" "$T/file.out2" || fail "nbdcopy out of file (2)"
    assert_same_file "$T/file.out2" "$T/file.img" "read after writes through shoald"
fi

# TCP upstream.
head -c $((16 << 20)) /dev/urandom >"$T/tcp.src"
nbdcopy "$T/tcp.src" "$(uri tcp)" || fail "nbdcopy into tcp"
nbdcopy "nbd://127.0.0.1:$port/" "$T/tcp.direct" || fail "nbdcopy from nbdkit TCP directly"
assert_same_file "$T/tcp.direct" "$T/tcp.src" "nbdkit TCP memory after writing through shoald"
nbdcopy "$(uri tcp)" "$T/tcp.out" || fail "nbdcopy out of tcp"
assert_same_file "$T/tcp.out" "$T/tcp.src" "read of tcp through shoald"

assert_eq "$(stats_json | jq '[.volumes[].errors] | add')" 0 "error counters"

# An upstream that accepts and never answers (a hung server) costs a volume
# add the connect timeout (10 s), with an error that says the handshake
# hung; a port where nothing listens is refused at once. The daemon keeps
# serving meanwhile.
silent_listener
hport=$SILENT_PORT
t0=$(date +%s.%N)
out=$(ctl volume add hung "nbd://127.0.0.1:$hport/" 2>&1) && fail "adding a hung upstream succeeded: $out"
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
log "volume add of a hung upstream: ${secs}s: $out"
assert_contains "$out" "no NBD handshake within 10.0 s" "error for a hung upstream"
assert_between "$secs" 9 30 "seconds before giving up on a hung upstream"
nport=$(free_port)
out=$(ctl volume add nothing "nbd://127.0.0.1:$nport/" 2>&1) && fail "adding a closed port succeeded: $out"
assert_contains "$out" "refused" "error for a port where nothing listens"
nbdcopy "$(uri tcp)" "$T/tcp.out3" || fail "nbdcopy out of tcp after the failed adds"
assert_same_file "$T/tcp.out3" "$T/tcp.src" "read of tcp after the failed adds"
stop_shoald
log PASS
