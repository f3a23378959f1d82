#!/usr/bin/env bash
# The iSCSI back end's header-digest URI option against Debian's tgt with
# HeaderDigest=CRC32C, through a proxy that keeps the login's text keys:
# header-digest=crc32c offers CRC32C only and tgt takes it, none offers None
# only (tgt takes that too: its "CRC32C" does not force digests), and with
# either, and with the default (auto, straight to tgt), the LUN reads back
# right: CRC32C header digests work on the wire. A bad value is refused.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need tgtd tgtadm nbdcopy cmp
[ "$(id -u)" -eq 0 ] || skip "tgtd needs root"

IQN=iqn.2026-12.test.shoal:digest
PORT=$(free_port)
tgtd_control "$PORT"

random_file "$T/disk.img" $((4 << 20))
tgtd -f -C "$CTL" --iscsi "portal=127.0.0.1:$PORT" >>"$T/tgtd.log" 2>&1 &
TGTD_PID=$!
wait_for 20 tgtctl --mode target --op show || fail "tgtd did not start: $(tail -5 "$T/tgtd.log")"
tgtctl --mode target --op new --tid 1 --targetname "$IQN"
tgtctl --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$T/disk.img"
tgtctl --mode target --op bind --tid 1 --initiator-address ALL
tgtctl --mode target --op update --tid 1 --name HeaderDigest --value CRC32C
assert_contains "$(tgtctl --mode target --op show --tid 1)" "HeaderDigest=CRC32C" "tgt's header digest"

# A pass-through TCP proxy in front of tgt keeps the first 64 KiB each way
# of every connection: the login's text keys say what was negotiated.
PPORT=$(free_port)
"$PY" - "$PPORT" "$PORT" "$T" <<'PYEOF' &
import itertools, socket, sys, threading
lport, tport, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", lport))
ls.listen(16)
open(d + "/proxy.ready", "w").close()
def pump(a, b, path):
    kept = 0
    with open(path, "wb") as f:
        while True:
            try:
                buf = a.recv(65536)
            except OSError:
                buf = b""
            if not buf:
                break
            if kept < 65536:
                f.write(buf[: 65536 - kept])
                f.flush()
                kept += len(buf)
            try:
                b.sendall(buf)
            except OSError:
                break
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
for n in itertools.count():
    c, _ = ls.accept()
    t = socket.create_connection(("127.0.0.1", tport))
    threading.Thread(target=pump, args=(c, t, "%s/c2s.%d" % (d, n)), daemon=True).start()
    threading.Thread(target=pump, args=(t, c, "%s/s2c.%d" % (d, n)), daemon=True).start()
PYEOF
_HELPER_PIDS+=($!)
wait_for 10 test -e "$T/proxy.ready" || fail "the proxy did not start"

# digest_keys DIR: the HeaderDigest keys seen going DIR (c2s, s2c), sorted.
digest_keys() { cat "$T/$1".* | tr '\0' '\n' | grep -a '^HeaderDigest=' | sort | uniq -c | sed 's/^ *//'; }

BASE="iscsi://127.0.0.1:$PORT/$IQN/1"
PBASE="iscsi://127.0.0.1:$PPORT/$IQN/1"
start_shoald -m 64M --connect-timeout 2s "crc=$PBASE?header-digest=crc32c" "none=$PBASE?header-digest=none" "auto=$BASE"
# Four sessions per volume; each login says it once each way.
want=$'4 HeaderDigest=CRC32C\n4 HeaderDigest=None'
assert_eq "$(digest_keys c2s)" "$want" "HeaderDigest keys shoald offered"
assert_eq "$(digest_keys s2c)" "$want" "HeaderDigest keys tgt answered"
for v in crc none auto; do
    nbdcopy "$(uri "$v")" "$T/$v.out" || fail "nbdcopy out of $v"
    assert_same_file "$T/$v.out" "$T/disk.img" "bytes of $v"
done
stop_shoald
if grep -i 'digest error' "$T/tgtd.log"; then fail "tgt saw bad header digests"; fi

assert_refused "header-digest 'md5': want crc32c, none or auto" "x=$BASE?header-digest=md5"
log "ok"
