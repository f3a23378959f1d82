#!/usr/bin/env bash
# Regenerate the seed corpus of the NBD and TLS targets from real client
# traffic, plus hand-made seeds:
#
#   tests/fuzz/make_corpus.sh [BUILDDIR]      (default: build)
#
# Starts shoald (from BUILDDIR) with exports shaped like fuzz_nbd's ("fuzz",
# 5 GiB + 1 MiB + 1000 bytes, a sparse file; "small", 1 MiB + 1234 bytes;
# "ro", 64 KiB + 100 bytes, read-only), puts record_proxy.py in front of it,
# runs nbdinfo, nbdcopy, nbdsh, qemu-img and qemu-io through the proxy, and
# turns each recorded client stream into
#   corpus/fuzz_nbd/<client>-<n>            the whole stream (after the
#                                           server's greeting)
#   corpus/fuzz_nbd_transmit/<client>-<n>   the requests after the handshake
#                                           (for the canned handshake)
#   corpus/fuzz_tls/tls-03|07-<client>-<n>  fuzz_tls mode 3 (TLS 1.3 / 1.2):
#                                           the stream after the client
#                                           flags, which the harness sends
#                                           inside TLS
# Then three shoalds with TLS, set up like fuzz_tls's servers with the test
# keys of tls_keys.h (x509; x509 verifying clients, TLS optional; PSK), and
# nbdinfo, nbdcopy and qemu-img through the proxy give
#   corpus/fuzz_tls/<mode>-<client>-<n>     mode byte 0, 1 or 2, then the
#                                           raw stream: STARTTLS, a real
#                                           ClientHello and the client's
#                                           later TLS records
# Last, craft_seeds.py writes corpus/fuzz_nbd*/crafted-*: large trims,
# zeroes, caches and block status, ranges at and past the end and wrapping
# 2^64, which no real client sends.
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

truncate -s $(((5 << 30) + (1 << 20) + 1000)) "$T/fuzz.img" # sparse
truncate -s $(((1 << 20) + 1234)) "$T/small.img"
truncate -s $((64 * 1024 + 100)) "$T/ro.img"
head -c 262144 /dev/urandom | dd of="$T/fuzz.img" conv=notrunc status=none
head -c 262144 /dev/urandom | dd of="$T/small.img" conv=notrunc status=none
"$PY" "$HERE/tls_keys.py" "$T" # $T/pki, $T/pki-client, $T/psk/keys.psk

# start NAME ARGS...: a shoald listening on $T/NAME.sock.
start() {
    local name=$1
    shift
    "$SHOALD" -f --http off -m 512K -l "unix:$T/$name.sock" "$@" >"$T/shoald-$name.log" 2>&1 &
    PIDS+=($!)
}
start s "fuzz=$T/fuzz.img" "small=$T/small.img"
start ro -r "ro=$T/ro.img" # -r applies to every volume of a daemon
start x509 --tls=require --tls-certificates "$T/pki" "fuzz=$T/small.img"
start verify --tls=on --tls-certificates "$T/pki" --tls-verify-peer "fuzz=$T/small.img"
start psk --tls=require --tls-psk "$T/psk/keys.psk" "fuzz=$T/small.img"
for s in s ro x509 verify psk; do
    for _ in $(seq 100); do [ -S "$T/$s.sock" ] && break; sleep 0.05; done
    [ -S "$T/$s.sock" ] || { cat "$T/shoald-$s.log" >&2; exit 1; }
done

# record NAME UPSTREAM CMD...: run CMD through a recording proxy in front of
# UPSTREAM; "@P@" in CMD's arguments stands for the proxy's socket. The
# client's stream goes to $RAW/NAME-N.raw.
RAW=$T/raw
NREC=0
record() {
    local name=$1 upstream=$2 a
    shift 2
    NREC=$((NREC + 1))
    local P=$T/p-$NREC.sock
    local args=()
    for a in "$@"; do args+=("${a//@P@/$P}"); done
    "$PY" "$HERE/record_proxy.py" "$P" "$upstream" "$RAW" "$name" &
    local pp=$!
    for _ in $(seq 100); do [ -S "$P" ] && break; sleep 0.05; done
    "${args[@]}" >"$T/$NREC.out" 2>&1 || echo "note: '$name' exited non-zero: $(tail -1 "$T/$NREC.out")" >&2
    sleep 0.2
    kill "$pp"
    wait "$pp" 2>/dev/null || true
}

head -c 65536 /dev/urandom >"$T/in.img"
U='nbd+unix:///fuzz?socket=@P@'
SM='nbd+unix:///small?socket=@P@'
R='nbd+unix:///ro?socket=@P@'
record nbdinfo "$T/s.sock" nbdinfo "$U"
record nbdinfo-map "$T/s.sock" nbdinfo --map "$U"
record nbdinfo-list "$T/s.sock" nbdinfo --list 'nbd+unix:///?socket=@P@'
record nbdinfo-ro "$T/ro.sock" nbdinfo "$R"
# Whole-image copies on the small export (the big one is 5 GiB).
record nbdcopy-read "$T/s.sock" nbdcopy --connections=2 --request-size=65536 "$SM" "$T/out.img"
record nbdcopy-write "$T/s.sock" nbdcopy --connections=1 "$T/in.img" "$SM"
record qemu-img-info "$T/s.sock" qemu-img info -f raw "$U"
record qemu-img-map "$T/s.sock" qemu-img map -f raw "$U"
record qemu-img-convert "$T/s.sock" qemu-img convert -f raw -O raw "$SM" "$T/conv.img"
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
size = h.get_size()
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
tolerate(h.pwrite, b"w" * 4096, size)
h.flush()
h.block_status(1 << 20, 0, lambda *a: 0)
h.block_status(65536, 4096, lambda *a: 0, nbd.CMD_FLAG_REQ_ONE)
for off, ln in ((size, 1), (size - 10, 20), (1 << 62, 4096)):
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

# TLS: real clients' raw streams, one directory per fuzz_tls mode.
RAW=$T/rawtls/0
X509="nbds+unix:///fuzz?socket=@P@&tls-certificates=$T/pki-client"
PSK="nbds+unix://fuzz@/fuzz?socket=@P@&tls-psk-file=$T/psk/keys.psk"
QNBD="driver=nbd,server.type=unix,server.path=@P@,export=fuzz,tls-creds=tls0"
record nbdinfo "$T/x509.sock" nbdinfo "$X509"
record nbdcopy "$T/x509.sock" nbdcopy "$X509" "$T/out-tls.img"
record qemu-img "$T/x509.sock" qemu-img info \
    --object "tls-creds-x509,id=tls0,dir=$T/pki-client,endpoint=client" \
    --image-opts "$QNBD,tls-hostname=localhost"
RAW=$T/rawtls/1
record nbdinfo "$T/verify.sock" nbdinfo "$X509"
record nbdinfo-plain "$T/verify.sock" nbdinfo --list 'nbd+unix:///?socket=@P@'
RAW=$T/rawtls/2
record nbdinfo "$T/psk.sock" nbdinfo "$PSK"
record nbdcopy "$T/psk.sock" nbdcopy "$PSK" "$T/out-tls.img"
record qemu-img "$T/psk.sock" qemu-img info \
    --object "tls-creds-psk,id=tls0,dir=$T/psk,endpoint=client,username=fuzz" \
    --image-opts "$QNBD"

# Split the raw client streams into the targets' seeds.
"$PY" - "$T/raw" "$T/rawtls" "$HERE/corpus" <<'PYEOF'
import os, struct, sys
raw, rawtls, out = sys.argv[1:4]
IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513
LIMIT = 65536
for d in ("fuzz_nbd", "fuzz_nbd_transmit", "fuzz_tls"):
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
    # fuzz_tls mode 3, TLS 1.3 and 1.2 in turn: the harness sends the
    # client flags itself, the rest goes inside TLS.
    mode = 3 if n % 2 == 0 else 7
    open(os.path.join(out, "fuzz_tls", f"tls-{mode:02x}-{base}"), "wb").write(
        bytes([mode]) + data[4:LIMIT])
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
t = 0
for mode in sorted(os.listdir(rawtls)):
    for name in sorted(os.listdir(os.path.join(rawtls, mode))):
        data = open(os.path.join(rawtls, mode, name), "rb").read()
        if data:
            open(os.path.join(out, "fuzz_tls", f"{int(mode):02x}-{name[:-4]}"), "wb").write(
                bytes([int(mode)]) + data[:LIMIT])
            t += 1
print(f"{n} client streams and {t} TLS client streams recorded into {out}")
PYEOF
"$PY" "$HERE/craft_seeds.py" "$HERE/corpus"
