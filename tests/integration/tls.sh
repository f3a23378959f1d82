#!/usr/bin/env bash
# NBD over TLS: x509 (certtool-made CA, server and client certificates) and
# PSK (psktool), with --tls=require and --tls=on, tested with real clients:
# nbdinfo / nbdcopy over nbds:// and nbds+unix://, and qemu-img with
# --object tls-creds-x509 / tls-creds-psk (qemu-img 7.2 has no nbds:// URI,
# so it uses --image-opts). Also: a client that skips STARTTLS is refused
# when TLS is required, wrong keys and unknown users are refused,
# --tls-verify-peer refuses clients without a certificate, and bad
# credential files stop shoald at start with a clear message.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need certtool psktool nbdinfo nbdcopy qemu-img
need_python_nbd

PKI=$T/pki
mkdir -p "$PKI" "$T/psk" "$T/noclient"

# --- credentials --------------------------------------------------------
certtool --generate-privkey --outfile "$PKI/ca-key.pem" >/dev/null 2>&1
cat >"$T/ca.info" <<EOF
cn = shoal test CA
ca
cert_signing_key
expiration_days = 2
EOF
certtool --generate-self-signed --load-privkey "$PKI/ca-key.pem" --template "$T/ca.info" \
    --outfile "$PKI/ca-cert.pem" >/dev/null 2>&1
certtool --generate-privkey --outfile "$PKI/server-key.pem" >/dev/null 2>&1
cat >"$T/server.info" <<EOF
organization = shoal test
cn = localhost
dns_name = localhost
ip_address = 127.0.0.1
tls_www_server
encryption_key
signing_key
expiration_days = 2
EOF
certtool --generate-certificate --load-ca-certificate "$PKI/ca-cert.pem" \
    --load-ca-privkey "$PKI/ca-key.pem" --load-privkey "$PKI/server-key.pem" \
    --template "$T/server.info" --outfile "$PKI/server-cert.pem" >/dev/null 2>&1
certtool --generate-privkey --outfile "$PKI/client-key.pem" >/dev/null 2>&1
cat >"$T/client.info" <<EOF
organization = shoal test
cn = client
tls_www_client
encryption_key
signing_key
expiration_days = 2
EOF
certtool --generate-certificate --load-ca-certificate "$PKI/ca-cert.pem" \
    --load-ca-privkey "$PKI/ca-key.pem" --load-privkey "$PKI/client-key.pem" \
    --template "$T/client.info" --outfile "$PKI/client-cert.pem" >/dev/null 2>&1
for f in ca-cert.pem server-cert.pem server-key.pem client-cert.pem client-key.pem; do
    [ -s "$PKI/$f" ] || fail "certtool did not write $f"
done
# A client directory with the CA only (no client certificate).
cp "$PKI/ca-cert.pem" "$T/noclient/"

# qemu's tls-creds-psk reads DIR/keys.psk; libnbd takes any file. The user
# is named explicitly: libnbd's default (getlogin) fails without a tty.
psktool -u alice -p "$T/psk/keys.psk" >/dev/null 2>&1
psktool -u mallory -p "$T/mallory.psk" >/dev/null 2>&1
sed 's/^mallory:/alice:/' "$T/mallory.psk" >"$T/wrongkey.psk" # alice, wrong key
grep -q '^alice:[0-9a-f]\{32,\}$' "$T/psk/keys.psk" || fail "psktool wrote an unexpected file"

# --- data ---------------------------------------------------------------
make_image "$T/src.img" 16
truncate -s 16M "$T/vol.img"
PORT=$(free_port)
start_shoald -m 64M -l "127.0.0.1:$PORT" --tls=require --tls-certificates "$PKI" \
    --tls-psk "$T/psk/keys.psk" --handshake-timeout 2s "vol=$T/vol.img"
SOCK0=$SOCK

x509_unix="nbds+unix:///vol?socket=$SOCK0&tls-certificates=$PKI"
psk_unix="nbds+unix://alice@/vol?socket=$SOCK0&tls-psk-file=$T/psk/keys.psk"
x509_tcp="nbds://127.0.0.1:$PORT/vol?tls-certificates=$PKI"
psk_tcp="nbds://alice@127.0.0.1:$PORT/vol?tls-psk-file=$T/psk/keys.psk"

# nbdinfo over each transport and credential kind.
for u in "$x509_unix" "$psk_unix" "$x509_tcp" "$psk_tcp"; do
    out=$(nbdinfo "$u" 2>&1) || fail "nbdinfo $u: $out"
    assert_contains "$out" "with TLS" "nbdinfo $u did not negotiate TLS"
    assert_contains "$out" "export-size: 16777216" "nbdinfo $u size"
done
log "nbdinfo over TLS (x509 and PSK, unix and TCP): ok"

# A client that skips STARTTLS is refused (NBD_REP_ERR_TLS_REQD to GO).
if out=$(nbdinfo --size "$(uri vol)" 2>&1); then
    fail "plain nbdinfo succeeded against --tls=require: $out"
fi
if nbdinfo --size "nbd://127.0.0.1:$PORT/vol" >/dev/null 2>&1; then
    fail "plain nbdinfo over TCP succeeded against --tls=require"
fi
# Oldstyle-ish clients using EXPORT_NAME without TLS are closed.
"$PY" - "$SOCK0" <<'EOF' || fail "EXPORT_NAME without TLS was not refused"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
g = b""
while len(g) < 18:
    c = s.recv(18 - len(g))
    assert c, "closed during greeting"
    g += c
assert g[:16] == b"NBDMAGICIHAVEOPT", g
s.sendall(struct.pack(">I", 1))  # FIXED_NEWSTYLE
s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, 3) + b"vol")  # EXPORT_NAME
rest = b""
while True:
    c = s.recv(4096)
    if not c:
        break
    rest += c
# No export data may follow; the server just closes.
assert len(rest) == 0, f"server answered EXPORT_NAME without TLS: {rest[:40]!r}"
EOF
log "clients skipping STARTTLS are refused: ok"

# STARTTLS and then silence, or garbage instead of a ClientHello: the
# connection is closed (by the handshake timeout, 2 s here), the daemon
# goes on serving.
"$PY" - "$SOCK0" <<'EOF' || fail "a stalled or garbage TLS handshake was not closed"
import socket, struct, sys, time
def starttls():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(15)
    s.connect(sys.argv[1])
    g = b""
    while len(g) < 18:
        g += s.recv(18 - len(g))
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", 0x49484156454F5054, 5, 0))
    r = b""
    while len(r) < 20:
        c = s.recv(20 - len(r))
        assert c, "closed before the STARTTLS reply"
        r += c
    magic, opt, rtype, ln = struct.unpack(">QIII", r)
    assert opt == 5 and rtype == 1, f"STARTTLS reply type {rtype:#x}"
    return s
def closed(s, what):
    t0 = time.time()
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError(f"{what}: still open after 15 s")
    return time.time() - t0
took = closed(starttls(), "silent after STARTTLS")
assert 1.0 < took < 10, f"silent TLS client closed after {took:.1f} s (timeout is 2 s)"
s = starttls()
s.sendall(b"\x16\x03\x01\xff\xff" + b"\x00" * 100)  # a bogus TLS record
closed(s, "garbage ClientHello")
s = starttls()
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
closed(s, "plaintext after STARTTLS")
EOF
nbdinfo --size "$psk_unix" >/dev/null || fail "TLS client after bad TLS handshakes"
log "stalled and garbage TLS handshakes are closed: ok"

# Wrong PSK key, unknown PSK user, untrusted server CA: refused.
nbdinfo --size "nbds+unix://alice@/vol?socket=$SOCK0&tls-psk-file=$T/wrongkey.psk" \
    >/dev/null 2>&1 && fail "a wrong PSK key was accepted"
nbdinfo --size "nbds+unix://mallory@/vol?socket=$SOCK0&tls-psk-file=$T/mallory.psk" \
    >/dev/null 2>&1 && fail "an unknown PSK user was accepted"
mkdir -p "$T/otherca"
certtool --generate-privkey --outfile "$T/otherca/k.pem" >/dev/null 2>&1
certtool --generate-self-signed --load-privkey "$T/otherca/k.pem" --template "$T/ca.info" \
    --outfile "$T/otherca/ca-cert.pem" >/dev/null 2>&1
# (over TCP: libnbd 1.14 checks the server certificate only when it has a
# host name to check it against)
nbdinfo --size "nbds://127.0.0.1:$PORT/vol?tls-certificates=$T/otherca" \
    >/dev/null 2>&1 && fail "client trusted a server signed by another CA"
log "wrong key, unknown user, foreign CA: refused"

# qemu-img over TLS: write the image through shoald (x509, TCP, checks the
# server's name against its certificate), compare it back over PSK.
qx509="--object tls-creds-x509,id=tls0,dir=$PKI,endpoint=client"
qpsk="--object tls-creds-psk,id=tls0,dir=$T/psk,endpoint=client,username=alice"
qnbd="driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PORT,export=vol,tls-creds=tls0"
# shellcheck disable=SC2086
qemu-img convert -n $qx509 --target-image-opts -f raw "$T/src.img" "$qnbd" ||
    fail "qemu-img convert to nbd over TLS (x509)"
# shellcheck disable=SC2086
qemu-img compare $qpsk --image-opts "driver=raw,file.driver=file,file.filename=$T/src.img" \
    "$qnbd" >/dev/null || fail "qemu-img compare over TLS (PSK)"
# shellcheck disable=SC2086
qemu-img compare $qx509 --image-opts "driver=raw,file.driver=file,file.filename=$T/src.img" \
    "driver=nbd,server.type=unix,server.path=$SOCK0,export=vol,tls-creds=tls0,tls-hostname=localhost" \
    >/dev/null || fail "qemu-img compare over TLS (x509, unix socket)"
assert_same_file "$T/vol.img" "$T/src.img" "back end after qemu-img convert over TLS"
log "qemu-img convert/compare over TLS (x509 and PSK): ok"

# nbdcopy both ways, with multi-conn and bigger requests than one record.
nbdcopy --connections=4 --request-size=4194304 "$psk_tcp" "$T/out.img" ||
    fail "nbdcopy from shoald over TLS"
assert_same_file "$T/out.img" "$T/src.img" "nbdcopy over TLS read"
random_file "$T/src2.img" $((16 << 20))
nbdcopy --connections=4 "$T/src2.img" "$x509_unix" || fail "nbdcopy to shoald over TLS"
nbdcopy "$x509_tcp" "$T/out2.img" || fail "nbdcopy read back over TLS"
assert_same_file "$T/out2.img" "$T/src2.img" "nbdcopy over TLS write + read"
assert_same_file "$T/vol.img" "$T/src2.img" "back end after nbdcopy over TLS"
log "nbdcopy over TLS: ok"

stop_shoald

# --- --tls=on: TLS optional ---------------------------------------------
start_shoald -m 64M --tls=on --tls-psk "$T/psk/keys.psk" "vol=$T/vol.img"
out=$(nbdinfo "$(uri vol)" 2>&1) || fail "plain client refused by --tls=on: $out"
assert_contains "$out" "without TLS" "plain client against --tls=on"
out=$(nbdinfo "nbds+unix://alice@/vol?socket=$SOCK&tls-psk-file=$T/psk/keys.psk" 2>&1) ||
    fail "PSK client refused by --tls=on: $out"
assert_contains "$out" "with TLS" "TLS client against --tls=on"
# x509 was not configured here: a certificate client cannot agree on TLS.
nbdinfo --size "nbds+unix:///vol?socket=$SOCK&tls-certificates=$PKI" >/dev/null 2>&1 &&
    fail "x509 client succeeded against a PSK-only server"
stop_shoald
log "--tls=on accepts plain and TLS clients: ok"

# --- busy polling over TLS ----------------------------------------------
# A queue-depth-1 client's next request is found by the reader's polling
# (GnuTLS asked with a pull that never waits) instead of after a sleep.
# Every byte read is compared with a model of the volume, and the file with
# it at the end; requests of 1 byte to more than two TLS records, so
# records that arrive over several polls are read whole.
cp "$T/vol.img" "$T/poll-model.img"
start_shoald -m 64M --busy-poll 1000 --tls=require --tls-psk "$T/psk/keys.psk" \
    --tls-certificates "$PKI" "vol=$T/vol.img"
"$PY" - "nbds+unix://alice@/vol?socket=$SOCK&tls-psk-file=$T/psk/keys.psk" "$T/poll-model.img" <<'PY' ||
import nbd, random, sys
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
size = h.get_size()
model = bytearray(open(sys.argv[2], "rb").read())
rnd = random.Random(7)
for i in range(3000):
    n = rnd.choice([1, 512, 4096, 16384, 16385, 40000])
    off = rnd.randrange(0, size - n)
    if rnd.random() < 0.3:
        data = rnd.randbytes(n)
        h.pwrite(data, off)
        model[off:off + n] = data
    else:
        got = h.pread(n, off)
        assert got == bytes(model[off:off + n]), f"request {i}: {n} bytes at {off} differ"
h.flush()
h.shutdown()
open(sys.argv[2], "wb").write(model)
PY
    fail "QD1 reads and writes over TLS with busy polling"
caught=$(jstat .cache.busy_poll_caught)
log "busy polling over TLS: caught $caught of 3000 requests"
assert_num "$caught" '>=' 600 "requests over TLS caught by busy polling"
# Records as a hostile or unusual client sends them, to the polling reader:
# a request whose one record arrives in three pieces 20 ms apart (the
# poll gives up with part of a record read, the sleeping read finishes
# it); a request in 28 one-byte records; then a forged record (bad MAC):
# the connection is closed, and the daemon serves the next client.
"$PY" - "$SOCK" "$PKI/ca-cert.pem" "$T/poll-model.img" <<'PY' || fail "TLS records split and forged"
import socket, ssl, struct, sys, time
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
model = open(sys.argv[3], "rb").read()

def recvn(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        assert c, "closed"
        b += c
    return b

assert recvn(18)[:16] == b"NBDMAGICIHAVEOPT"
s.sendall(struct.pack(">I", 3) + struct.pack(">QII", 0x49484156454F5054, 5, 0))  # STARTTLS
magic, opt, rtype, ln = struct.unpack(">QIII", recvn(20))
assert opt == 5 and rtype == 1, rtype
ctx = ssl.create_default_context(cafile=sys.argv[2])
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
t = ctx.wrap_bio(inc, out, server_hostname="localhost")

def flush(pieces=1, gap=0.0):
    raw = out.read()
    step = max(1, -(-len(raw) // pieces))
    for i in range(0, len(raw), step):
        s.sendall(raw[i:i + step])
        if gap and i + step < len(raw):
            time.sleep(gap)

while True:
    try:
        t.do_handshake()
        break
    except ssl.SSLWantReadError:
        flush()
        c = s.recv(65536)
        assert c, "closed during the TLS handshake"
        inc.write(c)
flush()

def tread(n):
    b = b""
    while len(b) < n:
        try:
            c = t.read(n - len(b))
            if not c:
                raise EOFError  # close_notify
            b += c
        except ssl.SSLWantReadError:
            c = s.recv(65536)
            if not c:
                raise EOFError
            inc.write(c)
    return b

# NBD_OPT_GO "vol", then transmission with simple replies.
t.write(struct.pack(">QII", 0x49484156454F5054, 7, 4 + 3 + 2) + struct.pack(">I", 3) + b"vol" +
        struct.pack(">H", 0))
flush()
while True:
    magic, opt, rtype, ln = struct.unpack(">QIII", tread(20))
    tread(ln)
    assert rtype in (1, 3), f"NBD_OPT_GO reply {rtype:#x}"
    if rtype == 1:
        break

def request(handle, off, n):
    return struct.pack(">IHHQQI", 0x25609513, 0, 0, handle, off, n)

def check(handle, off, n):
    magic, err, h = struct.unpack(">IIQ", tread(16))
    assert magic == 0x67446698 and err == 0 and h == handle, (magic, err, h)
    assert tread(n) == model[off:off + n], f"read {handle} differs"

t.write(request(1, 4096, 4096))
flush(pieces=3, gap=0.02)
check(1, 4096, 4096)
for b in request(2, 12288, 512):
    t.write(bytes([b]))
    flush()
check(2, 12288, 512)
# A forged application-data record: the MAC check fails.
s.sendall(b"\x17\x03\x03\x00\x20" + bytes(range(32)))
try:
    while tread(1):
        pass
except (EOFError, ssl.SSLError, ConnectionResetError):
    pass
PY
nbdinfo --size "nbds+unix://alice@/vol?socket=$SOCK&tls-psk-file=$T/psk/keys.psk" >/dev/null ||
    fail "TLS client after a forged record"
stop_shoald
assert_same_file "$T/vol.img" "$T/poll-model.img" "back end after QD1 I/O over TLS"
log "busy polling over TLS: ok"

# --- --tls-verify-peer --------------------------------------------------
start_shoald -m 64M --tls=require --tls-certificates "$PKI" --tls-verify-peer "vol=$T/vol.img"
nbdinfo --size "nbds+unix:///vol?socket=$SOCK&tls-certificates=$PKI" >/dev/null ||
    fail "client with a CA-signed certificate refused by --tls-verify-peer"
nbdinfo --size "nbds+unix:///vol?socket=$SOCK&tls-certificates=$T/noclient" >/dev/null 2>&1 &&
    fail "client without a certificate accepted by --tls-verify-peer"
stop_shoald
log "--tls-verify-peer: ok"

# --- bad credentials stop shoald at start, with a message -----------------
# start_bad WHAT EXPECTED-TEXT ARGS...: shoald must exit non-zero, quickly,
# and say EXPECTED-TEXT.
start_bad() {
    local what=$1 text=$2 rc=0
    shift 2
    timeout 20 "$SHOALD" -f --http off -l "unix:$T/bad.sock" "$@" "vol=$T/vol.img" \
        >"$T/bad.log" 2>&1 || rc=$?
    { [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; } || fail "$what: shoald exit status $rc"
    grep -qF -- "$text" "$T/bad.log" || fail "$what: no '$text' in: $(cat "$T/bad.log")"
}
start_bad "missing certificate dir" "server-cert.pem" --tls=require --tls-certificates "$T/nope"
mkdir -p "$T/badpki"
echo "not a key" >"$T/badpki/server-key.pem"
cp "$PKI/server-cert.pem" "$T/badpki/"
start_bad "invalid server key" "server-key.pem" --tls=on --tls-certificates "$T/badpki"
start_bad "verify-peer without CA" "ca-cert.pem" --tls=on --tls-certificates "$T/badpki" \
    --tls-verify-peer
start_bad "missing PSK file" "nope.psk" --tls=on --tls-psk "$T/nope.psk"
printf 'alice:xyz\n' >"$T/bad.psk"
start_bad "malformed PSK file" "username:hexkey" --tls=on --tls-psk "$T/bad.psk"
: >"$T/empty.psk"
start_bad "empty PSK file" "no keys" --tls=on --tls-psk "$T/empty.psk"
start_bad "TLS without credentials" "needs" --tls=require
log "bad credentials refused at start: ok"
log PASS
