#!/usr/bin/env bash
# The sample configuration (dist/shoald.conf, installed as
# /etc/shoal/shoald.conf):
#   - it names every key shoald takes: each long option of `shoald --help`
#     a file may set, and each [volume] key of options.c's volume_setting;
#   - as shipped (everything commented out) shoald starts with it;
#   - with every setting uncommented and its paths and ports moved into
#     the test's directory, shoald starts with it too and serves what it
#     describes: the gold file volume and the array volume over nbd+unix
#     (an nbdkit memory export), [cluster] etcd (a real etcd over http,
#     left out when none is installed; etcd-cacert, etcd-cert and
#     etcd-key, for https endpoints, are left out: etcd-tls tests them),
#     the API over HTTPS, a pid file, the unix
#     socket's owner, group and mode; as root, the user and group it
#     drops to (nobody and its group stand in for shoal and kvm, which a
#     build machine lacks).
# shellcheck source-path=SCRIPTDIR source=../integration/lib.sh
source "$(dirname "$0")/../integration/lib.sh"
need nbdkit nbdinfo certtool curl jq
SAMPLE="$SRCDIR/dist/shoald.conf"
[ -f "$SAMPLE" ] || fail "$SAMPLE is missing"

# --- every key is there ------------------------------------------------
n=0
for opt in $("$SHOALD" --help | grep -oE -- '(^|[ ,])--[a-z][a-z-]*' | sed 's/^[ ,]*//' | sort -u); do
    key=${opt#--}
    case $key in config | help | version | foreground | verbose) continue ;; esac
    n=$((n + 1))
    grep -qE "^#${key} = " "$SAMPLE" || fail "[shoald] key '$key' (shoald --help) is not in the sample"
done
# The first name of each branch; its aliases (path, uri, read-only,
# accelerate) need not be shown.
vkeys=$(sed -n '/^static int volume_setting/,/^}/p' "$SRCDIR/src/daemon/options.c" |
    grep -oE '(if|else if) \(!strcmp\(name, "[a-z-]+"\)' | sed -E 's/.*"([a-z-]+)".*/\1/')
[ "$(wc -w <<<"$vkeys")" -ge 7 ] || fail "found only $(wc -w <<<"$vkeys") volume keys in options.c"
vsect=$(sed -n '/^#\[volume /,$p' "$SAMPLE")
for key in $vkeys; do
    n=$((n + 1))
    grep -qE "^#${key} = " <<<"$vsect" || fail "[volume] key '$key' (options.c) is not in the sample"
done
log "the sample names all $n keys"

# --- as shipped ---------------------------------------------------------
grep -qE '^[a-z]' "$SAMPLE" && fail "the sample sets something: $(grep -m1 -E '^[a-z]' "$SAMPLE")"
start_shoald -c "$SAMPLE" -m 16M
assert_eq "$(api_get /api/v1/volumes | jq length)" 0 "volumes of the shipped sample"
stop_shoald

# --- everything uncommented ----------------------------------------------
mkdir -p "$T/etc/api-tls" "$T/lib/nbd" "$T/run"
if [ "$(id -u)" -eq 0 ]; then
    RUN_USER=nobody
    id nobody >/dev/null 2>&1 || skip "no user nobody to stand in for shoal"
    RUN_GROUP=$(id -gn nobody)
    # LeakSanitizer cannot trace a process that changed its uids.
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
else
    RUN_USER=$(id -un)
    RUN_GROUP=$(id -gn)
fi
NBD_PORT=$(free_port)
API_PORT=$(free_port)
ISCSI_PORT=$(free_port)
sed -E -e 's/^#(\[volume [a-z]+\])$/\1/' -e 's/^#([a-z-]+ = )/\1/' \
    -e "s|/etc/shoal|$T/etc|g" -e "s|/var/lib/shoal|$T/lib|g" -e "s|/run/nbd|$T/lib/nbd|g" \
    -e "s|/run/shoal|$T/run|g" -e "s|:10809|:$NBD_PORT|" -e "s|:10810|:$API_PORT|" -e "s|:3260|:$ISCSI_PORT|" \
    -e "s/^(user|socket-owner) = shoal\$/\1 = $RUN_USER/" \
    -e "s/^(group|socket-group) = (shoal|kvm)\$/\1 = $RUN_GROUP/" \
    "$SAMPLE" >"$T/shoald.conf"
if [ "$(id -u)" -ne 0 ]; then
    # Only root can switch users: the drop is left out.
    sed -i -E '/^(user|group) = /d' "$T/shoald.conf"
fi
grep -E '^(user|group|socket-owner|socket-group) = ' "$T/shoald.conf" | grep -vE " = ($RUN_USER|$RUN_GROUP)\$" &&
    fail "a user or group the test did not replace"
grep -E '^[a-z]' "$T/shoald.conf" | grep -E '=[ ]?/(etc|var|run)/' &&
    fail "a path the test did not move"
log "uncommented: $(grep -cE '^[a-z-]+ = ' "$T/shoald.conf") settings, $(grep -c '^\[' "$T/shoald.conf") sections"

# What the uncommented file points at.
if command -v etcd >/dev/null 2>&1; then
    # [cluster] etcd: a real etcd at free ports.
    cport=$(free_port)
    pport=$(free_port)
    bg etcd --name sample --data-dir "$T/etcd" --listen-client-urls "http://127.0.0.1:$cport" \
        --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "sample=http://127.0.0.1:$pport" >"$T/etcd.log" 2>&1
    wait_for 30 curl -sf --max-time 1 "http://127.0.0.1:$cport/health" || fail "etcd did not start"
    sed -i "s|^etcd = http://127.0.0.1:2379\$|etcd = http://127.0.0.1:$cport|" "$T/shoald.conf"
else
    log "etcd is not installed (etcd-server): [cluster] etcd left out"
    sed -i '/^etcd = /d' "$T/shoald.conf"
fi
sed -i -E '/^etcd-(cacert|cert|key) = /d' "$T/shoald.conf"
(umask 077 && printf 'user iqn.2026-12.org.example:host secret-of-the-host\n' >"$T/etc/iscsi-chap")
random_file "$T/lib/gold.raw" $((2 << 20))
bg nbdkit -f -U "$T/lib/nbd/array.sock" memory 8M
wait_for 10 test -S "$T/lib/nbd/array.sock" || fail "nbdkit did not start"
certtool --generate-privkey --outfile "$T/ca-key.pem" >/dev/null 2>&1
printf 'cn = shoal test CA\nca\ncert_signing_key\nexpiration_days = 2\n' >"$T/ca.info"
certtool --generate-self-signed --load-privkey "$T/ca-key.pem" --template "$T/ca.info" \
    --outfile "$T/ca-cert.pem" >/dev/null 2>&1
certtool --generate-privkey --outfile "$T/etc/api-tls/server-key.pem" >/dev/null 2>&1
printf 'cn = localhost\nip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n' >"$T/server.info"
certtool --generate-certificate --load-ca-certificate "$T/ca-cert.pem" \
    --load-ca-privkey "$T/ca-key.pem" --load-privkey "$T/etc/api-tls/server-key.pem" \
    --template "$T/server.info" --outfile "$T/etc/api-tls/server-cert.pem" >/dev/null 2>&1
[ -s "$T/etc/api-tls/server-cert.pem" ] || fail "certtool did not write the server certificate"

# Started by hand: the file sets the listeners, the API and its token.
SHOALD_LOG="$T/shoald-full.log"
"$SHOALD" -f -c "$T/shoald.conf" -m 16M >>"$SHOALD_LOG" 2>&1 &
SHOALD_PID=$!
_SHOAL_PIDS+=("$SHOALD_PID")
URL="https://127.0.0.1:$API_PORT"
HTTPS_CA="$T/ca-cert.pem"
API_TOKEN_FILE="$T/run/api-token"
SOCK="$T/run/nbd.sock"
_wait_ready "$SHOALD_PID" 30 || fail "shoald did not start with every setting of the sample"
vols=$(api_get /api/v1/volumes)
assert_eq "$(jq -r '[.[].name] | sort | join(" ")' <<<"$vols")" "array gold" "volumes of the sample"
assert_contains "$(jq -r '.[] | select(.name == "gold") | .backend' <<<"$vols")" "$T/lib/gold.raw" "gold's backing"
assert_eq "$(nbdinfo --size "$(uri gold)")" $((2 << 20)) "gold's size over the unix listener"
assert_eq "$(nbdinfo --size "nbd://127.0.0.1:$NBD_PORT/array")" $((8 << 20)) "array's size over TCP"
assert_eq "$(cat "$T/run/shoald.pid")" "$SHOALD_PID" "pid file"
assert_eq "$(stat -c '%U:%G %a' "$SOCK")" "$RUN_USER:$RUN_GROUP 660" "the unix socket's owner, group and mode"
uid=$(id -u "$RUN_USER")
assert_eq "$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$SHOALD_PID/status")" \
    "$uid $uid $uid $uid" "shoald's real, effective, saved and file uids"
stop_shoald
log PASS
