#!/usr/bin/env bash
# Reload and the files only a start opens: a changed setting that names a
# certificate, secret, pid file or state dir is checked the way the start
# would check it (nothing applied). A bad one refuses the whole reload:
# shoalctl exits 2 with one FILE:LINE line naming the key, and the running
# configuration (here the cache size) is unchanged. A good one is still
# "applied at the next restart". Classes: NBD tls-certificates and tls-psk,
# [iscsi] chap, http-tls-certificates, etcd-cacert/cert/key, pid-file,
# state-dir. As root, a daemon run as --user nobody: a file only root can
# read is reported as not checked rather than refused.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need jq curl certtool

head -c 1M /dev/urandom >"$T/a.img"
conf=$T/shoald.conf
write_conf() { printf '%s\n' "$@" >"$conf.tmp" && mv "$conf.tmp" "$conf"; }
capacity() { api_get /api/v1/cache | jq -r .capacity_bytes; }

# A self-signed server certificate: enough for the NBD and API loaders.
PKI=$T/pki
mkdir -p "$PKI"
certtool --generate-privkey --outfile "$PKI/server-key.pem" >/dev/null 2>&1
printf '%s\n' "cn = localhost" "tls_www_server" "encryption_key" "signing_key" \
    "expiration_days = 2" >"$T/cert.info"
certtool --generate-self-signed --load-privkey "$PKI/server-key.pem" --template "$T/cert.info" \
    --outfile "$PKI/server-cert.pem" >/dev/null 2>&1
[ -s "$PKI/server-cert.pem" ] || fail "certtool did not write the certificate"
echo "alice:00112233445566778899aabbccddeeff" >"$T/good.psk"
echo "alice has no key" >"$T/bad.psk"
echo "user alice secret-of-16-chars" >"$T/chap"
chmod 600 "$T/chap"
cp "$T/chap" "$T/chap.open"
chmod 644 "$T/chap.open"
mkdir -p "$T/badstate" "$T/goodstate"
echo '{"version": ' >"$T/badstate/state.json"

write_conf "[shoald]" "cache-size = 32M" "[volume a]" "backing = $T/a.img"
start_shoald -c "$conf"
assert_eq "$(capacity)" $((32 << 20)) "cache at start"

# refused KEY LINE SETTING...: the volume, [shoald] with cache-size 16M,
# then SETTING... from line 5 (KEY's on line LINE): refused with one line,
# and the cache size is not changed.
n=0
refused() {
    local key=$1 line=$2
    shift 2
    n=$((n + 1))
    write_conf "[volume a]" "backing = $T/a.img" "[shoald]" "cache-size = 16M" "$@"
    local rc=0
    ctl reload >"$T/bad$n.out" 2>"$T/bad$n.err" || rc=$?
    assert_eq "$rc" 2 "reload with a bad $key: exit status ($(cat "$T/bad$n.out" "$T/bad$n.err"))"
    assert_eq "$(wc -l <"$T/bad$n.err")" 1 "lines on stderr for a bad $key"
    assert_contains "$(cat "$T/bad$n.err")" "$conf:$line: $key: "
    wait_for 10 grep -qF "reload refused, nothing changed: $conf:$line: $key: " "$SHOALD_LOG"
    assert_eq "$(capacity)" $((32 << 20)) "cache after a refused reload ($key)"
}

refused tls-certificates 7 "[nbd]" "tls = require" "tls-certificates = $T/no-such-dir"
refused tls-psk 7 "[nbd]" "tls = require" "tls-psk = $T/bad.psk"
refused iscsi-chap 6 "[iscsi]" "chap = $T/missing-chap"
refused iscsi-chap 6 "[iscsi]" "chap = $T/chap.open"
assert_contains "$(cat "$T/bad$n.err")" "must be 0600"
refused http-tls-certificates 5 "http-tls-certificates = $T/no-such-dir"
refused pid-file 5 "pid-file = $T/no-such-dir/shoald.pid"
ln -s "$T/elsewhere" "$T/link.pid"
refused pid-file 5 "pid-file = $T/link.pid"
refused state-dir 5 "state-dir = $T/badstate"
refused state-dir 5 "state-dir = $T/no/such/parent"
etcd=("[cluster]" "etcd = https://127.0.0.1:1")
refused etcd-cacert 7 "${etcd[@]}" "etcd-cacert = $T/missing.pem"
refused etcd-cert 7 "${etcd[@]}" "etcd-cert = $T/missing.pem" "etcd-key = $PKI/server-key.pem"
refused etcd-key 7 "${etcd[@]}" "etcd-key = $T/missing.pem" "etcd-cert = $PKI/server-cert.pem"
# SIGHUP reads the same checks (no shoalctl: the log has the line).
write_conf "[shoald]" "cache-size = 16M" "pid-file = $T/no-such-dir/p" "[volume a]" "backing = $T/a.img"
kill -HUP "$SHOALD_PID"
wait_for 10 grep -qF "reload refused, nothing changed: $conf:3: pid-file: cannot write pid file '$T/no-such-dir/p'" "$SHOALD_LOG"
assert_eq "$(capacity)" $((32 << 20)) "cache after a refused SIGHUP"

# Good files: applied at the next restart, the rest of the file live.
write_conf "[shoald]" "cache-size = 16M" "http-tls-certificates = $PKI" \
    "pid-file = $T/new.pid" "state-dir = $T/goodstate" \
    "[volume a]" "backing = $T/a.img" \
    "[nbd]" "tls = require" "tls-certificates = $PKI" "tls-psk = $T/good.psk" \
    "[iscsi]" "chap = $T/chap" \
    "[cluster]" "etcd = https://127.0.0.1:1" "etcd-cacert = $PKI/server-cert.pem" \
    "etcd-cert = $PKI/server-cert.pem" "etcd-key = $PKI/server-key.pem"
ctl reload >"$T/good.out" 2>&1 || fail "reload of good files exited $?: $(cat "$T/good.out")"
for k in http-tls-certificates pid-file state-dir tls-certificates tls-psk iscsi-chap \
    etcd-cacert etcd-cert etcd-key; do
    assert_contains "$(cat "$T/good.out")" "$k changed"
done
assert_eq "$(capacity)" $((16 << 20)) "cache after the good reload"
# Checked, not applied: no pid file written, nothing created in the state dir.
[ ! -e "$T/new.pid" ] || fail "the reload wrote the new pid file"
assert_eq "$(ls -A "$T/goodstate")" "" "state dir after the reload"
stop_shoald

# Run as --user nobody (root only): the reload runs as nobody, which cannot
# read a file the start reads as root (a 0700 certificate directory): that
# is reported as not checked, not refused. A missing one still is refused.
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    chmod 0711 "$T"
    mkdir "$T/run"
    chown nobody "$T/run"
    chmod 0700 "$PKI"
    conf=$T/run/shoald.conf
    write_conf "[shoald]" "cache-size = 32M" "[volume a]" "backing = $T/a.img"
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" NEXT_SOCK=$T/run/nbd.sock \
        start_shoald --user nobody -c "$conf"
    write_conf "[shoald]" "cache-size = 32M" "[volume a]" "backing = $T/a.img" \
        "[nbd]" "tls = require" "tls-certificates = $PKI"
    ctl reload >"$T/nobody.out" 2>&1 || fail "reload as nobody exited $?: $(cat "$T/nobody.out")"
    assert_contains "$(cat "$T/nobody.out")" "tls-certificates: $PKI: cannot load: Permission denied"
    assert_contains "$(cat "$T/nobody.out")" "not checked (shoald runs as user nobody"
    refused tls-certificates 7 "[nbd]" "tls = require" "tls-certificates = $T/no-such-dir"
    stop_shoald
fi
