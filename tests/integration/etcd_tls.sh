#!/usr/bin/env bash
# Cluster membership over TLS: a real etcd on 127.0.0.1 serving https only
# and requiring client certificates (--client-cert-auth, a certtool-made
# CA), two shoald nodes with --etcd https://... --etcd-cacert --etcd-cert
# --etcd-key:
# - both register and see each other; A owns vol and etcdctl (with the same
#   client certificate) finds A's registration and ownership;
# - the watch streams over TLS: each node's ring gets the other's memcached;
#   one writer per volume still holds (B refused vol read-write, naming A);
# - a node killed (-9) restarted with its TLS files within its lease waits
#   for the old registration, keeps its new lease alive meanwhile, and
#   registers again;
# - refused at start, with one line: a CA that did not sign etcd's
#   certificate, no client certificate, a certificate without its key, TLS
#   files with only http:// endpoints, an endpoint that accepts and never
#   answers (within the call timeout), and (with --user nobody) a key file
#   that user cannot read (the files are read at each connection).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
command -v etcd >/dev/null 2>&1 || skip "etcd not installed (Debian package etcd-server)"
need certtool memcached etcdctl jq curl nbdcopy cmp

# ---- credentials ----------------------------------------------------------
PKI=$T/pki
mkdir -p "$PKI"
ca() { # NAME: a CA in $PKI/NAME-ca-{key,cert}.pem
    certtool --generate-privkey --outfile "$PKI/$1-ca-key.pem" >/dev/null 2>&1
    printf 'cn = shoal test %s CA\nca\ncert_signing_key\nexpiration_days = 2\n' "$1" >"$T/$1-ca.info"
    certtool --generate-self-signed --load-privkey "$PKI/$1-ca-key.pem" \
        --template "$T/$1-ca.info" --outfile "$PKI/$1-ca-cert.pem" >/dev/null 2>&1
}
leaf() { # CA NAME TEMPLATE-LINES...: $PKI/NAME-{key,cert}.pem signed by CA
    local signer=$1 name=$2
    shift 2
    certtool --generate-privkey --outfile "$PKI/$name-key.pem" >/dev/null 2>&1
    printf '%s\n' "$@" "expiration_days = 2" >"$T/$name.info"
    certtool --generate-certificate --load-ca-certificate "$PKI/$signer-ca-cert.pem" \
        --load-ca-privkey "$PKI/$signer-ca-key.pem" --load-privkey "$PKI/$name-key.pem" \
        --template "$T/$name.info" --outfile "$PKI/$name-cert.pem" >/dev/null 2>&1
}
ca main
ca other
# etcd's HTTP gateway reaches etcd's own gRPC with the server certificate as
# its client certificate: it needs both usages.
leaf main server "cn = etcd" "ip_address = 127.0.0.1" tls_www_server tls_www_client \
    encryption_key signing_key
leaf main client "cn = shoald" tls_www_client encryption_key signing_key
for f in main-ca-cert other-ca-cert server-cert server-key client-cert client-key; do
    [ -s "$PKI/$f.pem" ] || fail "certtool did not write $f.pem"
done
chmod 600 "$PKI"/*-key.pem

# ---- etcd, https only ------------------------------------------------------
TLS=(--cacert "$PKI/main-ca-cert.pem" --cert "$PKI/client-cert.pem" --key "$PKI/client-key.pem")
ETCD_CURL_ARGS=("${TLS[@]}")
start_etcd https --cert-file "$PKI/server-cert.pem" --key-file "$PKI/server-key.pem" \
    --client-cert-auth --trusted-ca-file "$PKI/main-ca-cert.pem"
cport=$ETCD_PORT
# Plain http to the TLS port, or https without a client certificate, is
# refused: what the nodes pass below is what etcd demands.
if curl -sf --max-time 2 --cacert "$PKI/main-ca-cert.pem" "$EP/health" >/dev/null 2>&1; then
    fail "etcd answered a client without a certificate"
fi
export ETCDCTL_API=3
ectl() {
    etcdctl --endpoints="$EP" --cacert="$PKI/main-ca-cert.pem" --cert="$PKI/client-cert.pem" \
        --key="$PKI/client-key.pem" --dial-timeout=3s "$@"
}

# ---- memcached --------------------------------------------------------------
start_memcacheds 2

random_file "$T/vol.img" $((4 << 20))
TTL=3
node_args() { # NAME MEMCACHED
    printf '%s\n' --etcd "$EP" --etcd-cacert "$PKI/main-ca-cert.pem" \
        --etcd-cert "$PKI/client-cert.pem" --etcd-key "$PKI/client-key.pem" \
        --node-name "$1" --memcached "$2" --etcd-lease "${TTL}s" --memcached-timeout 500ms \
        --state-dir off
}

# ---- two nodes ----------------------------------------------------------------
mapfile -t args_a < <(node_args A "${MC[0]}")
start_shoald "${args_a[@]}" "vol=$T/vol.img"
A_URL=$URL A_PID=$SHOALD_PID A_SOCK=$SOCK A_LOG=$SHOALD_LOG
mapfile -t args_b < <(node_args B "${MC[1]}")
start_shoald "${args_b[@]}"
B_URL=$URL B_PID=$SHOALD_PID

on() { # URL CMD...
    local URL=$1
    shift
    "$@"
}
js=$(on "$B_URL" ctl cluster status --json)
assert_eq "$(jq -r '[.nodes[].name] | sort | join(",")' <<<"$js")" "A,B" "nodes in etcd, seen by B"
assert_eq "$(jq -r '.owners[] | "\(.volume)=\(.node)"' <<<"$js")" "vol=A" "owners in etcd"
keys=$(ectl get --prefix shoal/v1/ --keys-only) || fail "etcdctl over TLS"
assert_contains "$keys" "shoal/v1/nodes/A" "A's registration, read by etcdctl"
assert_contains "$keys" "shoal/v1/owners/vol" "vol's ownership, read by etcdctl"
want=$(printf '%s\n' "${MC[@]}" | sort | paste -sd,)
for u in "$A_URL" "$B_URL"; do
    wait_for 10 bash -c "[ \"\$(curl -sf $u/api/v1/cluster | jq -r '.ring | sort | join(\",\")')\" = $want ]" ||
        fail "ring of $u is not $want (the watch over TLS)"
done
nbdcopy "$(uri vol "$A_SOCK")" "$T/out.img" || fail "read vol through A"
cmp "$T/out.img" "$T/vol.img" || fail "vol through A differs"
code=$(curl -s -o "$T/add.out" -w '%{http_code}' -X POST -H @"$(URL=$B_URL auth_header)" \
    -d "{\"name\": \"vol\", \"backing\": \"$T/vol.img\"}" "$B_URL/api/v1/volumes")
assert_eq "$code" 409 "B adding vol read-write"
assert_contains "$(cat "$T/add.out")" "served read-write by node A" "B's refusal"
log "two nodes over TLS: registered, ring $want, vol owned by A"

# ---- A killed and restarted within its lease ------------------------------------
kill -KILL "$A_PID"
wait "$A_PID" 2>/dev/null || true
start_shoald "${args_a[@]}" "vol=$T/vol.img"
A_URL=$URL A_SOCK=$SOCK A_LOG=$SHOALD_LOG
grep -q "still registered in etcd" "$A_LOG" || fail "A did not wait for its old registration"
js=$(on "$A_URL" ctl cluster status --json)
assert_eq "$(jq -r '.owners[] | "\(.volume)=\(.node)"' <<<"$js")" "vol=A" "owners after A's restart"
# Registered under a lease that lives on (not one that ran out during the
# wait): still there a lease later.
sleep $((TTL + 1))
assert_eq "$(ectl get shoal/v1/nodes/A --keys-only | grep -c .)" 1 \
    "A's registrations one lease after its restart"
nbdcopy "$(uri vol "$A_SOCK")" "$T/out.img" || fail "read vol through A after its restart"
cmp "$T/out.img" "$T/vol.img" || fail "vol through A after its restart differs"

# ---- refusals ---------------------------------------------------------------------
common=(--node-name C --etcd-lease "${TTL}s" --state-dir off)
assert_refused "cannot take a lease in etcd" --etcd "$EP" --etcd-cacert "$PKI/other-ca-cert.pem" \
    --etcd-cert "$PKI/client-cert.pem" --etcd-key "$PKI/client-key.pem" "${common[@]}"
assert_refused "cannot take a lease in etcd" --etcd "$EP" --etcd-cacert "$PKI/main-ca-cert.pem" \
    "${common[@]}"
assert_refused "needs both --etcd-cert and --etcd-key" --etcd "$EP" \
    --etcd-cert "$PKI/client-cert.pem" "${common[@]}"
assert_refused "no etcd endpoint is https://" --etcd "http://127.0.0.1:$cport" \
    --etcd-cacert "$PKI/main-ca-cert.pem" "${common[@]}"
assert_refused "bad etcd endpoint" --etcd "https://" "${common[@]}"
# An endpoint that accepts and never answers (a hung TLS handshake): the
# start stops within the 2 s call timeout, not never.
silent_listener
hport=$SILENT_PORT
t0=$SECONDS
assert_refused "cannot take a lease in etcd" --etcd "https://127.0.0.1:$hport" \
    --etcd-cacert "$PKI/main-ca-cert.pem" "${common[@]}"
[ $((SECONDS - t0)) -le 6 ] || fail "a silent etcd endpoint held the start $((SECONDS - t0)) s"
if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1; then
    chmod 755 "$PKI" "$T"
    chmod 644 "$PKI/main-ca-cert.pem" "$PKI/client-cert.pem"
    # Refused after the pid file was written: a failed start removes it (a
    # directory the dropped user may remove it from).
    mkdir -m 777 "$T/run"
    assert_refused "--etcd-key $PKI/client-key.pem: not readable by user nobody" \
        --user nobody --etcd "$EP" --etcd-cacert "$PKI/main-ca-cert.pem" \
        --etcd-cert "$PKI/client-cert.pem" --etcd-key "$PKI/client-key.pem" \
        --pid-file "$T/run/refused.pid" "${common[@]}"
    [ ! -e "$T/run/refused.pid" ] || fail "a start refused after writing its pid file left it behind"
fi

stop_daemon "$B_PID" TERM
log PASS
