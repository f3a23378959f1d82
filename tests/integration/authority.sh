#!/usr/bin/env bash
# Invariant 6 for the management API (issue 9, defect 3): a local user
# without the API token gains no authority through shoald. Run as root: it
# plays the unprivileged user with `setpriv --reuid=nobody` against a root
# shoald, with real clients (shoalctl, curl, nbdinfo, nbdcopy):
#   - the generated token file is 0600 root: nobody cannot read it;
#   - `shoalctl volume add x /etc/shadow` and a raw curl POST (with and
#     without a guessed token, loopback Host or not) get 401, and no volume
#     appears; nobody's GETs (volumes, stats, /metrics) show no backing path;
#   - nobody cannot connect to the NBD unix socket (its mode is reported);
#   - root with the token adds a volume and reads it back;
#   - --backing-dir D: a path outside D, D/../x, a symlink in D pointing out,
#     /etc/shadow and an nbd+unix socket outside D are refused by the API
#     (403, naming the rule) and on the command line (one line, no start);
#     a file inside D is added and its data, written and read over NBD,
#     matches (nbdcopy + cmp);
#   - the API over HTTPS (--http-tls-certificates, certtool-made CA):
#     shoalctl --cacert and curl --cacert work, the token is still needed,
#     plain HTTP to the HTTPS port gets no answer, and a client that does
#     not trust the CA is refused.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need setpriv curl jq nbdinfo nbdcopy cmp certtool
[ "$(id -u)" = 0 ] || skip "needs root to act as another local user (setpriv --reuid=nobody)"
getent passwd nobody >/dev/null || skip "no user nobody"
GROUP=$(getent group nogroup >/dev/null && echo nogroup || echo nobody)

# as_nobody CMD...: run CMD as uid nobody, no supplementary groups, with an
# environment of its own (no HOME or XDG dir of root's, no $SHOAL_TOKEN).
as_nobody() {
    setpriv --reuid=nobody --regid="$GROUP" --clear-groups -- \
        env -i PATH="$PATH" HOME=/nonexistent ASAN_OPTIONS="${ASAN_OPTIONS:-}" "$@"
}
as_nobody true || skip "setpriv cannot switch to nobody here"

# The temp dir is searchable by everyone: only the files' own modes (and
# shoald's rules) stand between nobody and them.
chmod 755 "$T"
random_file "$T/a.img" $((4 << 20))
random_file "$T/data.img" $((4 << 20))

# --- 1. a root shoald with a generated token --------------------------------
# Under umask 000 everything shoald creates would be open to all unless it
# sets the modes itself (the token file, the NBD socket).
old_umask=$(umask)
umask 000
start_shoald -m 64M "a=$T/a.img"
umask "$old_umask"
[ -f "$T/token" ] || fail "shoald did not create its token file $T/token"
assert_eq "$(stat -c '%a %U' "$T/token")" "600 root" "mode and owner of the generated token"
grep -qx '[0-9a-f]\{64\}' "$T/token" || fail "the generated token is not 64 hex digits"
grep -q "API token created in $T/token" "$SHOALD_LOG" || fail "the token file's path is not in the log"

# nobody cannot read the token.
if as_nobody cat "$T/token" >/dev/null 2>&1; then
    fail "uid nobody can read the token file"
fi

volume_names() { api_get /api/v1/volumes | jq -r 'map(.name) | sort | join(",")'; }
assert_eq "$(volume_names)" a "volumes at start"

# shoalctl as nobody: refused with one line saying a token is needed.
rc=0
as_nobody "$SHOALCTL" --url "$URL" volume add x /etc/shadow >"$T/out" 2>"$T/err" || rc=$?
assert_eq "$rc" 2 "exit code of shoalctl volume add as nobody"
assert_contains "$(cat "$T/err")" "needs the API token" "shoalctl's message to nobody"
assert_eq "$(wc -l <"$T/err")" 1 "lines of shoalctl's message to nobody"
rc=0
as_nobody "$SHOALCTL" --url "$URL" --token-file "$T/token" volume add x /etc/shadow >/dev/null \
    2>"$T/err" || rc=$?
assert_eq "$rc" 1 "exit code of shoalctl --token-file (unreadable) as nobody"
assert_contains "$(cat "$T/err")" "Permission denied" "unreadable token file message"

# Raw requests as nobody: every change is 401, whatever the headers say.
body='{"name": "x", "backing": "/etc/shadow"}'
for hdr in "X-Nothing: 1" "Authorization: Bearer guess" "Authorization: Bearer " \
    "Host: 127.0.0.1" "Host: localhost:$HTTP_PORT"; do
    code=$(as_nobody curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
        -H 'Content-Type: application/json' -H "$hdr" --data-binary "$body" "$URL/api/v1/volumes")
    assert_eq "$code" 401 "POST /api/v1/volumes as nobody with '$hdr'"
done
for req in "POST /api/v1/volumes/a/disable" "DELETE /api/v1/volumes/a" "POST /api/v1/cache/resize" \
    "POST /api/v1/volumes/a/invalidate" "PUT /api/v1/volumes"; do
    code=$(as_nobody curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "${req%% *}" \
        --data-binary '{"size": "4M"}' "$URL${req#* }")
    assert_eq "$code" 401 "$req as nobody"
done
assert_eq "$(volume_names)" a "volumes after nobody's attempts"
assert_eq "$(api_get /api/v1/volumes/a | jq -r .state)" enabled "state of a after nobody's attempts"

# nobody's reads: no backing path anywhere.
for path in /api/v1/volumes /api/v1/volumes/a /api/v1/stats /api/v1/stats/volumes/a /metrics; do
    as_nobody curl -sf --max-time 10 "$URL$path" >"$T/read" || fail "GET $path as nobody"
    if grep -qF -e "$T" -e ".img" "$T/read"; then
        fail "GET $path as nobody shows a backing path: $(grep -oF -e "$T" -e .img "$T/read" | head -1)"
    fi
done
as_nobody curl -sf "$URL/api/v1/volumes" | jq -e 'all(.[]; .backend_hidden == true and (has("backend") | not))' \
    >/dev/null || fail "volumes as nobody: backend not marked hidden"
as_nobody "$SHOALCTL" --url "$URL" volumes >"$T/out" || fail "shoalctl volumes as nobody"
assert_contains "$(cat "$T/out")" "(hidden: needs the API token)" "shoalctl volumes as nobody"
# ... while root with the token sees them.
api_get /api/v1/volumes/a | jq -e --arg p "$T/a.img" '.backend | contains($p)' >/dev/null ||
    fail "root with the token does not see a's backing path"

# The NBD unix socket is created 0660 whatever the umask (connecting needs
# write permission), so another local user cannot reach the volumes.
mode=$(stat -c %a "$SOCK")
assert_eq "$mode" "660" "mode of the NBD unix socket"
if as_nobody nbdinfo --size "$(uri a)" >/dev/null 2>&1; then
    fail "nobody reached the NBD socket of mode $mode"
fi

# Root with the token: a volume is added and serves its file.
ctl volume add data "$T/data.img" >/dev/null || fail "root with the token cannot add a volume"
nbdcopy "$(uri data)" "$T/data.out" || fail "nbdcopy out of the added volume"
assert_same_file "$T/data.out" "$T/data.img" "data of the volume root added"
stop_shoald
log "without the token: nothing changes, no path is shown; with it: changes work"

# --- 2. --backing-dir ----------------------------------------------------------
D=$T/D
mkdir -p "$D" "$T/out-dir"
random_file "$D/in.img" $((2 << 20))
truncate -s 4M "$D/new.img"
random_file "$T/out-dir/outside.img" $((1 << 20))
ln -s /etc/passwd "$D/link-passwd"
ln -s ../out-dir/outside.img "$D/link-rel"
start_shoald -m 64M --backing-dir "$D" "in=$D/in.img"
refused_add() { # NAME BACKING WHAT
    local code
    code=$(_curl -s -o "$T/resp" -w '%{http_code}' --max-time 10 -X POST -H @"$(auth_header)" \
        -H 'Content-Type: application/json' \
        --data-binary "$(jq -cn --arg n "$1" --arg b "$2" '{name: $n, backing: $b}')" "$URL/api/v1/volumes")
    assert_eq "$code" 403 "API add of $3"
    assert_contains "$(jq -r .error "$T/resp")" "--backing-dir" "API refusal of $3"
    rc=0
    ctl volume add "$1" "$2" >/dev/null 2>"$T/err" || rc=$?
    assert_eq "$rc" 2 "shoalctl volume add of $3"
    assert_contains "$(cat "$T/err")" "--backing-dir" "shoalctl's refusal of $3"
}
refused_add x1 "$T/out-dir/outside.img" "a file outside D"
refused_add x2 "$D/../out-dir/outside.img" "D/../outside"
refused_add x3 "$D/../../etc/passwd" "D/../../etc/passwd"
refused_add x4 "$D/link-passwd" "a symlink in D to /etc/passwd"
refused_add x5 "$D/link-rel" "a relative symlink in D leading out"
refused_add x6 /etc/shadow "/etc/shadow"
refused_add x7 "nbd+unix:///?socket=$SOCK" "an nbd+unix socket outside D"
assert_eq "$(volume_names)" in "volumes after the refused adds"

# Inside D: added; data written and read over NBD matches the file.
ctl volume add new "$D/new.img" >/dev/null || fail "adding a file inside --backing-dir"
random_file "$T/payload" $((4 << 20))
nbdcopy "$T/payload" "$(uri new)" || fail "nbdcopy into the volume inside D"
nbdcopy "$(uri new)" "$T/new.out" || fail "nbdcopy out of the volume inside D"
assert_same_file "$T/new.out" "$T/payload" "read back over NBD"
assert_same_file "$D/new.img" "$T/payload" "the backing file inside D"
nbdcopy "$(uri in)" "$T/in.out" || fail "nbdcopy out of the command line's volume"
assert_same_file "$T/in.out" "$D/in.img" "the command line's volume inside D"
stop_shoald

# On the command line, shoald refuses to start, with one line.
for spec in "$T/out-dir/outside.img" "$D/../out-dir/outside.img" "$D/link-passwd" "$D/link-rel"; do
    rc=0
    timeout 10 "$SHOALD" -f -l "unix:$T/cl.sock" --http "127.0.0.1:$(free_port)" \
        --http-token-file "$T/token" --backing-dir "$D" "v=$spec" >"$T/out" 2>"$T/err" </dev/null || rc=$?
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "shoald started with v=$spec outside --backing-dir (status $rc)"
    assert_eq "$(wc -l <"$T/err")" 1 "lines of the refusal of $spec"
    assert_contains "$(cat "$T/err")" "--backing-dir" "the refusal of $spec"
    [ ! -e "$T/cl.sock" ] || fail "a refused start left its socket"
done
log "--backing-dir: outside, .., symlinks out and sockets outside refused (API 403, command line); inside works"

# --- 3. the API over HTTPS ----------------------------------------------------------
PKI=$T/pki
mkdir -p "$PKI"
certtool --generate-privkey --outfile "$PKI/ca-key.pem" >/dev/null 2>&1
printf 'cn = shoal authority test CA\nca\ncert_signing_key\nexpiration_days = 2\n' >"$T/ca.info"
certtool --generate-self-signed --load-privkey "$PKI/ca-key.pem" --template "$T/ca.info" \
    --outfile "$PKI/ca-cert.pem" >/dev/null 2>&1
certtool --generate-privkey --outfile "$PKI/server-key.pem" >/dev/null 2>&1
printf 'cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n' \
    >"$T/server.info"
certtool --generate-certificate --load-ca-certificate "$PKI/ca-cert.pem" \
    --load-ca-privkey "$PKI/ca-key.pem" --load-privkey "$PKI/server-key.pem" \
    --template "$T/server.info" --outfile "$PKI/server-cert.pem" >/dev/null 2>&1
chmod 600 "$PKI/server-key.pem"
[ -s "$PKI/server-cert.pem" ] || fail "certtool did not write the server certificate"
HTTPS_CA=$PKI/ca-cert.pem
start_shoald -m 64M --http-tls-certificates "$PKI" "a=$T/a.img"
[[ $URL == https://* ]] || fail "lib.sh did not switch to https"
grep -q "management API on https://127.0.0.1:$HTTP_PORT/" "$SHOALD_LOG" || fail "the log does not say https"
# shoalctl and curl with the CA.
ctl volumes | grep -qF "$T/a.img" || fail "shoalctl --cacert volumes over https"
ctl disable a >/dev/null || fail "shoalctl --cacert disable over https"
assert_eq "$(api_get /api/v1/volumes/a | jq -r .state)" disabled "state after a change over https"
api_call POST /api/v1/volumes/a/enable >/dev/null || fail "curl --cacert POST over https"
assert_eq "$(curl -sf --cacert "$HTTPS_CA" "$URL/api/v1/volumes/a" | jq -r .state)" enabled "curl GET over https"
# The token is still needed over TLS.
code=$(as_nobody curl -s -o /dev/null -w '%{http_code}' --cacert "$HTTPS_CA" -X POST "$URL/api/v1/volumes/a/disable")
assert_eq "$code" 401 "a change without the token over https"
# Plain HTTP to the HTTPS port gets no HTTP answer.
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$HTTP_PORT/api/v1/stats" || true)
[ "$code" = 000 ] || fail "plain HTTP to the HTTPS port got HTTP $code"
# A client that does not trust the CA is refused (curl, and shoalctl exit 3).
if curl -sf --max-time 5 "$URL/api/v1/stats" >/dev/null 2>&1; then
    fail "curl without the CA trusted the server"
fi
rc=0
"$SHOALCTL" --url "$URL" --token-file "$API_TOKEN_FILE" volumes >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 3 "exit code of shoalctl without --cacert"
get_json_ok=$(api_get /api/v1/stats | jq -r '.volumes | length')
assert_eq "$get_json_ok" 1 "the API still serves after the bad clients"
stop_shoald
log "HTTPS: shoalctl/curl --cacert work, token still needed, plain HTTP and untrusted clients fail"
log PASS
