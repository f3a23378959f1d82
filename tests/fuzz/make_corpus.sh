#!/usr/bin/env bash
# Regenerate the seed corpus from real client traffic:
#
#   tests/fuzz/make_corpus.sh [BUILDDIR]      (default: build)
#
# Starts shoald (from BUILDDIR) with the fuzz harness's exports ("fuzz",
# 1 MiB read-write; "ro", 64 KiB + 100 bytes read-only), puts
# record_proxy.py in front of it, runs nbdinfo, nbdcopy, nbdsh, qemu-img and
# qemu-io through the proxy, and turns each recorded client stream into
#   corpus/fuzz_nbd/<client>-<n>            the whole stream (after the
#                                           server's greeting)
#   corpus/fuzz_nbd_transmit/<client>-<n>   the requests after the handshake
#                                           (for the canned handshake)
# Seeds are cut at 64 KiB: bulk write payloads add nothing but length.
# Regression seeds (minimised crash inputs, corpus/*/regress-*) and inputs
# merged from fuzz runs (corpus/*/fuzz-*, scripts/fuzz --merge) are kept.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=${1:-$SRC/build}
SHOALD=$BUILD/src/shoald
PY=/usr/bin/python3
[ -x "$SHOALD" ] || { echo "no $SHOALD: build first" >&2; exit 1; }
for t in nbdinfo nbdcopy qemu-img qemu-io; do
    command -v "$t" >/dev/null || { echo "$t is not installed" >&2; exit 1; }
done

T=$(mktemp -d /tmp/shoal-corpus.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

truncate -s 1M "$T/fuzz.img"
truncate -s $((64 * 1024 + 100)) "$T/ro.img"
head -c 262144 /dev/urandom | dd of="$T/fuzz.img" conv=notrunc status=none
# Two daemons: -r applies to every volume of a daemon.
"$SHOALD" -f --http off -m 512K -l "unix:$T/s.sock" "fuzz=$T/fuzz.img" >"$T/shoald.log" 2>&1 &
PIDS+=($!)
"$SHOALD" -f --http off -m 512K -l "unix:$T/ro.sock" -r "ro=$T/ro.img" >"$T/shoald-ro.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$T/s.sock" ] && [ -S "$T/ro.sock" ] && break; sleep 0.05; done

# record NAME UPSTREAM CMD...: run CMD through a recording proxy in front of
# UPSTREAM; "@P@" in CMD's arguments stands for the proxy's socket.
record() {
    local name=$1 upstream=$2 a
    shift 2
    local P=$T/p-$name.sock
    local args=()
    for a in "$@"; do args+=("${a//@P@/$P}"); done
    "$PY" "$HERE/record_proxy.py" "$P" "$upstream" "$T/raw" "$name" &
    local pp=$!
    for _ in $(seq 100); do [ -S "$P" ] && break; sleep 0.05; done
    "${args[@]}" >"$T/$name.out" 2>&1 || echo "note: '$name' exited non-zero: $(tail -1 "$T/$name.out")" >&2
    sleep 0.2
    kill "$pp"
    wait "$pp" 2>/dev/null || true
}

head -c 65536 /dev/urandom >"$T/in.img"
U='nbd+unix:///fuzz?socket=@P@'
R='nbd+unix:///ro?socket=@P@'
record nbdinfo "$T/s.sock" nbdinfo "$U"
record nbdinfo-map "$T/s.sock" nbdinfo --map "$U"
record nbdinfo-list "$T/s.sock" nbdinfo --list 'nbd+unix:///?socket=@P@'
record nbdinfo-ro "$T/ro.sock" nbdinfo "$R"
record nbdcopy-read "$T/s.sock" nbdcopy --connections=2 --request-size=65536 "$U" "$T/out.img"
record nbdcopy-write "$T/s.sock" nbdcopy --connections=1 "$T/in.img" "$U"
record qemu-img-info "$T/s.sock" qemu-img info -f raw "$U"
record qemu-img-map "$T/s.sock" qemu-img map -f raw "$U"
record qemu-img-convert "$T/s.sock" qemu-img convert -f raw -O raw "$U" "$T/conv.img"
record qemu-io "$T/s.sock" qemu-io -f raw -c 'read 0 4k' -c 'write -P 0xab 4k 8k' \
    -c 'write -f -P 0xcd 20k 4k' -c 'write -z 64k 64k' -c 'discard 128k 64k' \
    -c 'flush' -c 'read 1000 3000' -c 'aio_read 0 4k' -c 'aio_flush' "$U"
record qemu-io-ro "$T/ro.sock" qemu-io -r -f raw -c 'read 60k 4196' "$R"
cat >"$T/nbdsh.py" <<'EOF'
import nbd, sys
uri = sys.argv[1]
h = nbd.NBD()
h.add_meta_context("base:allocation")
h.set_strict_mode(0)  # let the server judge bounds, flags and read-only
h.connect_uri(uri)
buf = h.pread(4096, 0)
h.pread_structured(512, 1000, lambda *a: 0, nbd.CMD_FLAG_DF)

def tolerate(fn, *args):
    try:
        fn(*args)
    except nbd.Error:
        pass

tolerate(h.pwrite, b"x" * 4096, 8192, nbd.CMD_FLAG_FUA)
tolerate(h.pwrite, b"y" * 100, 12345)
h.cache(65536, 0)
tolerate(h.zero, 8192, 16384, nbd.CMD_FLAG_NO_HOLE)
tolerate(h.zero, 8192, 32768, nbd.CMD_FLAG_FAST_ZERO)
tolerate(h.trim, 4096, 65536, nbd.CMD_FLAG_FUA)
tolerate(h.pwrite, b"w" * 4096, 1 << 20)
h.flush()
h.block_status(1 << 20, 0, lambda *a: 0)
h.block_status(65536, 4096, lambda *a: 0, nbd.CMD_FLAG_REQ_ONE)
for off, ln in ((1 << 20, 1), ((1 << 20) - 10, 20), (1 << 62, 4096)):
    try:
        h.pread(ln, off)
    except nbd.Error:
        pass
h.shutdown()

# Option haggling in opt mode: LIST, INFO, LIST_META_CONTEXT, GO.
h = nbd.NBD()
h.set_opt_mode(True)
h.set_request_structured_replies(True)
h.connect_uri(uri)
h.opt_list(lambda *a: 0)
h.set_export_name("ro")
try:
    h.opt_info()
except nbd.Error:
    pass
h.set_export_name("fuzz")
h.opt_list_meta_context(lambda *a: 0)
h.opt_go()
h.pread(100, 0)
h.shutdown()

# Simple replies, no meta context.
h = nbd.NBD()
h.set_request_structured_replies(False)
h.connect_uri(uri)
h.pread(8192, 4096)
tolerate(h.pwrite, b"z" * 4096, 0)
h.flush()
h.shutdown()

# Oldstyle-like EXPORT_NAME path (no GO).
h = nbd.NBD()
h.set_request_structured_replies(False)
h.set_handshake_flags(nbd.HANDSHAKE_FLAG_FIXED_NEWSTYLE)
h.connect_uri(uri)
h.pread(4096, 0)
h.shutdown()
EOF
if "$PY" -c 'import nbd' 2>/dev/null; then
    record nbdsh "$T/s.sock" "$PY" "$T/nbdsh.py" "$U"
    record nbdsh-ro "$T/ro.sock" "$PY" "$T/nbdsh.py" "$R"
fi

# Split each raw client stream into the two targets' seeds.
"$PY" - "$T/raw" "$HERE/corpus" <<'EOF'
import os, struct, sys
raw, out = sys.argv[1:3]
IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513
LIMIT = 65536
for d in ("fuzz_nbd", "fuzz_nbd_transmit"):
    os.makedirs(os.path.join(out, d), exist_ok=True)
    for f in os.listdir(os.path.join(out, d)):
        if not f.startswith(("regress-", "fuzz-")):
            os.unlink(os.path.join(out, d, f))
n = 0
for name in sorted(os.listdir(raw)):
    data = open(os.path.join(raw, name), "rb").read()
    if not data:
        continue
    base = name[:-4]
    open(os.path.join(out, "fuzz_nbd", base), "wb").write(data[:LIMIT])
    n += 1
    # Walk the options; the transmission phase starts at the first request
    # magic after GO / EXPORT_NAME.
    pos = 4
    start = None
    while pos + 16 <= len(data):
        magic, opt, ln = struct.unpack(">QII", data[pos:pos + 16])
        if magic != IHAVEOPT:
            break
        pos += 16 + ln
        if opt in (1, 7) and pos + 4 <= len(data) and \
                struct.unpack(">I", data[pos:pos + 4])[0] == REQ_MAGIC:
            start = pos
            break
    if start is not None:
        open(os.path.join(out, "fuzz_nbd_transmit", base), "wb").write(data[start:start + LIMIT])
print(f"{n} client streams recorded into {out}")
EOF
