#!/usr/bin/env bash
# --allow: only listed client addresses may connect. Loopback has a whole
# /8, so a client can pick its source address (127.0.0.1 or 127.0.0.2)
# while connecting to one listener on 127.0.0.1. A refused client is closed
# before the server sends a byte (no greeting); allowed clients are served;
# unix-socket clients need "unix" in the list; IPv6 entries and prefixes
# work; a malformed entry stops shoald at start.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need nbdinfo
[ -x "$PY" ] || skip "$PY is not installed"

# probe HOST PORT [SOURCE]: connect (from SOURCE if given) and print
# "greeting" when the NBD greeting arrives, "closed" on EOF without a byte.
probe() {
    "$PY" - "$@" <<'EOF'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(10)
if len(sys.argv) > 3:
    s.bind((sys.argv[3], 0))
s.connect((host, port))
data = b""
try:
    while len(data) < 16:
        c = s.recv(16 - len(data))
        if not c:
            break
        data += c
except ConnectionResetError:
    pass
if data[:8] == b"NBDMAGIC":
    print("greeting")
elif not data:
    print("closed")
else:
    print("other:" + data.hex())
EOF
}

# probe_unix PATH: the same over a unix socket.
probe_unix() {
    "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    data = s.recv(16)
except ConnectionResetError:
    data = b""
print("greeting" if data[:8] == b"NBDMAGIC" else "closed" if not data else "other")
EOF
}

random_file "$T/a.img" $((4 << 20))

# --- one host allowed ------------------------------------------------------
PORT=$(free_port)
start_shoald -m 16M -l "127.0.0.1:$PORT" --allow 127.0.0.2 "a=$T/a.img"
assert_eq "$(probe 127.0.0.1 "$PORT")" closed "client 127.0.0.1 with --allow 127.0.0.2"
assert_eq "$(probe 127.0.0.1 "$PORT" 127.0.0.2)" greeting "client 127.0.0.2 with --allow 127.0.0.2"
assert_eq "$(probe 127.0.0.1 "$PORT" 127.0.0.3)" closed "client 127.0.0.3 with --allow 127.0.0.2"
# unix clients are not listed: refused too.
assert_eq "$(probe_unix "$SOCK")" closed "unix client without --allow unix"
if nbdinfo --size "$(uri a)" >/dev/null 2>&1; then
    fail "nbdinfo over unix succeeded without --allow unix"
fi
if nbdinfo --size "nbd://127.0.0.1:$PORT/a" >/dev/null 2>&1; then
    fail "nbdinfo from 127.0.0.1 succeeded with --allow 127.0.0.2"
fi
# Many refused clients leave nothing behind and the daemon still serves.
for _ in $(seq 1 50); do probe 127.0.0.1 "$PORT" >/dev/null; done
assert_eq "$(probe 127.0.0.1 "$PORT" 127.0.0.2)" greeting "allowed client after 50 refusals"
stop_shoald
log "single host: ok"

# --- prefixes and unix ----------------------------------------------------
PORT=$(free_port)
start_shoald -m 16M -l "127.0.0.1:$PORT" --allow 127.0.0.0/30 --allow unix --allow 10.0.0.0/8 \
    "a=$T/a.img"
assert_eq "$(nbdinfo --size "nbd://127.0.0.1:$PORT/a")" $((4 << 20)) "nbdinfo from 127.0.0.1 in /30"
assert_eq "$(nbdinfo --size "$(uri a)")" $((4 << 20)) "nbdinfo over unix with --allow unix"
assert_eq "$(probe 127.0.0.1 "$PORT" 127.0.0.3)" greeting "127.0.0.3 in 127.0.0.0/30"
assert_eq "$(probe 127.0.0.1 "$PORT" 127.0.0.4)" closed "127.0.0.4 outside 127.0.0.0/30"
nbdcopy "nbd://127.0.0.1:$PORT/a" "$T/out.img" || fail "nbdcopy from an allowed client"
assert_same_file "$T/out.img" "$T/a.img" "data read by an allowed client"
stop_shoald
log "prefixes and unix: ok"

# --- IPv6 -------------------------------------------------------------------
if "$PY" -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
    PORT=$(free_port)
    start_shoald -m 16M -l "[::1]:$PORT" --allow "::1/128" "a=$T/a.img"
    assert_eq "$(nbdinfo --size "nbd://[::1]:$PORT/a")" $((4 << 20)) "nbdinfo from ::1"
    stop_shoald
    PORT=$(free_port)
    start_shoald -m 16M -l "[::1]:$PORT" --allow "fd00::/8" --allow 127.0.0.1 "a=$T/a.img"
    assert_eq "$(probe ::1 "$PORT")" closed "::1 outside fd00::/8"
    stop_shoald
    log "IPv6: ok"
else
    log "no IPv6 loopback here: IPv6 part skipped"
fi

# --- iSCSI: --allow covers the portal too, --iscsi-allow overrides it -------
# An iSCSI initiator speaks first: a refused one sees the connection closed
# at once, an allowed one is left waiting for its login (the probe stops
# after 2 s of silence).
iprobe() { # HOST PORT SOURCE
    "$PY" - "$@" <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(2)
s.bind((sys.argv[3], 0))
s.connect((sys.argv[1], int(sys.argv[2])))
try:
    print("closed" if not s.recv(1) else "other")
except ConnectionResetError:
    print("closed")
except socket.timeout:
    print("open")
EOF
}
if command -v iscsi-inq >/dev/null; then
    IPORT=$(free_port)
    PORT=$(free_port)
    start_shoald -m 16M -l "127.0.0.1:$PORT" --iscsi "127.0.0.1:$IPORT" --allow 127.0.0.2 "a=$T/a.img"
    assert_eq "$(iprobe 127.0.0.1 "$IPORT" 127.0.0.1)" closed "iSCSI client 127.0.0.1 with --allow 127.0.0.2"
    assert_eq "$(iprobe 127.0.0.1 "$IPORT" 127.0.0.2)" open "iSCSI client 127.0.0.2 with --allow 127.0.0.2"
    if iscsi-inq "iscsi://127.0.0.1:$IPORT/iqn.2026-12.org.shoal:a/0" >/dev/null 2>&1; then
        fail "iscsi-inq from 127.0.0.1 succeeded with --allow 127.0.0.2"
    fi
    stop_shoald
    IPORT=$(free_port)
    PORT=$(free_port)
    start_shoald -m 16M -l "127.0.0.1:$PORT" --iscsi "127.0.0.1:$IPORT" --allow 127.0.0.2 \
        --iscsi-allow 127.0.0.1 "a=$T/a.img"
    assert_eq "$(probe 127.0.0.1 "$PORT")" closed "NBD client 127.0.0.1: --allow 127.0.0.2 still applies"
    assert_eq "$(iprobe 127.0.0.1 "$IPORT" 127.0.0.2)" closed "iSCSI client 127.0.0.2 with --iscsi-allow 127.0.0.1"
    iscsi-inq "iscsi://127.0.0.1:$IPORT/iqn.2026-12.org.shoal:a/0" >"$T/inq.txt" 2>&1 ||
        fail "iscsi-inq from 127.0.0.1 refused with --iscsi-allow 127.0.0.1: $(cat "$T/inq.txt")"
    grep -q "SHOAL" "$T/inq.txt" || fail "iscsi-inq printed no vendor: $(cat "$T/inq.txt")"
    stop_shoald
    rc=0
    timeout 20 "$SHOALD" -f --http off -l "unix:$T/bad.sock" --iscsi "127.0.0.1:$(free_port)" \
        --iscsi-allow 127.0.0.1/33 "a=$T/a.img" >"$T/bad.log" 2>&1 || rc=$?
    { [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; } || fail "--iscsi-allow '127.0.0.1/33': shoald exit status $rc"
    grep -q -- "--iscsi-allow" "$T/bad.log" || fail "--iscsi-allow '127.0.0.1/33': no message: $(cat "$T/bad.log")"
    log "iSCSI: ok"
else
    log "no iscsi-inq: iSCSI part skipped"
fi

# --- malformed entries stop shoald at start ---------------------------------
for bad in 127.0.0.1/33 ::1/129 example.com 10.0.0.0/ 1.2.3.4/x "" 300.1.1.1; do
    rc=0
    timeout 20 "$SHOALD" -f --http off -l "unix:$T/bad.sock" --allow "$bad" "a=$T/a.img" \
        >"$T/bad.log" 2>&1 || rc=$?
    { [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; } || fail "--allow '$bad': shoald exit status $rc"
    grep -q -- "--allow" "$T/bad.log" || fail "--allow '$bad': no message: $(cat "$T/bad.log")"
done
log "malformed entries refused: ok"
log PASS
