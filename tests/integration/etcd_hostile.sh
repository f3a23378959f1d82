#!/usr/bin/env bash
# Hostile records under shoal's etcd prefix (anyone who can write etcd can
# put anything there) while two nodes run: A serves vol read-write, B
# nothing. Written straight to etcd's gateway, bytes as given:
# - nodes/: not JSON, an array, wrong types, a key with an escape, a key
#   that is not UTF-8 ("\xff", with {"name": "A"} in it);
# - memcached/: a bad port, a control byte in the host, and a second key
#   for A's own server ("127.0.0.1:0PORT");
# - owners/: garbage, truncated JSON, wrong types, a hand-over to B with a
#   bad "gen", hand-overs to B under a key that is no volume's name ("bad\n
#   name") and under "vol\0x" (a NUL: read as C, that is A's vol);
# - owners/huge: a 13 MiB value (etcd with a raised --max-request-bytes):
#   the prefix no longer fits in one answer;
# - map-secret: 64 characters that are not hex digits.
# Then: both nodes still run (and exit cleanly: ASan), each says every bad
# record once in one log line naming its key, and ignores it: B adopts
# nothing, the cluster status (no etcd_error) lists vol owned by A only and
# node A once; the good records still count: `cluster add` of a third
# memcached reaches both rings (the duplicate key made every node refuse
# the whole list); a read-write add of "garbage" on B says its record is
# not shoal's; vol's I/O through A is intact, bytes compared; a new node
# refuses to start on the bad secret, naming its key.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
command -v etcd >/dev/null 2>&1 || skip "etcd not installed (Debian package etcd-server)"
need memcached nbdkit nbdcopy jq curl cmp

start_etcd http --max-request-bytes $((20 << 20))
start_memcacheds 3

random_file "$T/vol.img" $((4 << 20))
bg nbdkit -f -U "$T/up.sock" file "$T/vol.img"
wait_for 20 test -S "$T/up.sock" || fail "nbdkit did not start"
UP="nbd+unix:///?socket=$T/up.sock"
node_args() { # NAME MEMCACHED
    printf '%s\n' --etcd "$EP" --node-name "$1" --memcached "$2" --etcd-lease 3s \
        --memcached-timeout 500ms --state-dir off
}
mapfile -t args < <(node_args A "${MC[0]}")
start_shoald "${args[@]}" "vol=$UP"
A_URL=$URL A_SOCK=$SOCK A_LOG=$SHOALD_LOG
mapfile -t args < <(node_args B "${MC[1]}")
start_shoald "${args[@]}"
B_URL=$URL B_LOG=$SHOALD_LOG
on() { # URL CMD...
    local URL=$1
    shift
    "$@"
}

# put KEY VALUE...: Python bytes literals, each pair put as given.
put() {
    "$PY" - "$EP" "$@" <<'EOF'
import base64, json, sys, urllib.request
ep, args = sys.argv[1], sys.argv[2:]
for k, v in zip(args[::2], args[1::2]):
    body = {"key": base64.b64encode(eval(k)).decode(), "value": base64.b64encode(eval(v)).decode()}
    req = urllib.request.Request(ep + "/v3/kv/put", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(req, timeout=30))
    if "error" in answer:
        sys.exit("put %s: %s" % (k, answer))
EOF
}
P="b'shoal/v1/"
put "${P}nodes/junk'" "b'not json'" \
    "${P}nodes/arr'" "b'[1]'" \
    "${P}nodes/typed'" "b'{\"name\": 5, \"api\": [], \"started\": \"x\"}'" \
    "${P}nodes/\\x1b[31mevil'" "b'{}'" \
    "${P}nodes/\\xff'" "b'{\"name\": \"A\"}'" \
    "${P}memcached/127.0.0.1:99999'" "b'{}'" \
    "${P}memcached/a\\nb:1'" "b'{}'" \
    "${P}memcached/127.0.0.1:0${MC[0]##*:}'" "b'{\"node\": \"A\"}'" \
    "${P}owners/garbage'" "b'garbage'" \
    "${P}owners/trunc'" "b'{\"node\": \"B\", \"gen\": \"00'" \
    "${P}owners/typed'" "b'{\"node\": [\"B\"], \"gen\": 1}'" \
    "${P}owners/badgen'" "b'{\"node\": \"B\", \"from\": \"A\", \"gen\": \"zz\", \"backing\": \"/x\"}'" \
    "${P}owners/bad\\nname'" "b'{\"node\": \"B\", \"from\": \"A\", \"gen\": \"0000000000000001\", \"backing\": \"/x\"}'" \
    "${P}owners/vol\\x00x'" "b'{\"node\": \"B\", \"from\": \"A\", \"gen\": \"0000000000000002\", \"backing\": \"$UP\"}'" \
    "${P}map-secret'" "b'+f' * 32" || fail "cannot write the hostile records"
t0=$SECONDS
put "${P}owners/huge'" "b'{\"node\": \"B\", \"pad\": \"' + b'x' * (13 << 20) + b'\"}'" ||
    fail "cannot write the 13 MiB record"
log "the 13 MiB record took $((SECONDS - t0)) s to write"

# Every bad record is said, once, naming its key, by both nodes.
said() { # LOG KEY WHY
    UNSAID="$2 in $1"
    [ "$(grep -cF "etcd: ignoring shoal/v1/$2 (revision " "$1")" = 1 ] &&
        grep -F "etcd: ignoring shoal/v1/$2 (revision " "$1" | grep -qF -- "$3"
}
all_said() {
    local l
    for l in "$A_LOG" "$B_LOG"; do
        said "$l" "memcached/127.0.0.1:99999" 'bad port in "127.0.0.1:99999"' &&
            said "$l" "memcached/a?b:1" "bad server name (a control byte or space in it)" &&
            said "$l" "memcached/127.0.0.1:0${MC[0]##*:}" "another key names the same memcached server" &&
            said "$l" "owners/garbage" "not a JSON object" &&
            said "$l" "owners/trunc" "not a JSON object" &&
            said "$l" "owners/typed" 'no "node" string' &&
            said "$l" "owners/badgen" '"gen" is not 16 hex digits' &&
            said "$l" "owners/bad?name" "not a volume's name" &&
            said "$l" "owners/vol?x" "not a volume's name" &&
            said "$l" "owners/huge" "a value too large to read" || return 1
    done
}
wait_for 60 all_said || {
    fail "the nodes did not each say every bad record once, naming its key: $UNSAID"
}

# The good records still count: a third server reaches both rings.
on "$A_URL" ctl cluster add "${MC[2]}" >/dev/null || fail "cluster add ${MC[2]}"
want=$(printf '%s\n' "${MC[@]}" | sort | paste -sd, -)
for u in "$A_URL" "$B_URL"; do
    wait_for 10 bash -c "[ \"\$(curl -sf $u/api/v1/cluster | jq -r '.ring | sort | join(\",\")')\" = $want ]" ||
        fail "ring of $u is '$(curl -sf "$u/api/v1/cluster" | jq -c .ring)', want $want"
done
js=$(on "$B_URL" ctl cluster status --json)
assert_eq "$(jq -r .etcd_error <<<"$js")" null "etcd_error of the cluster status"
assert_eq "$(jq -r '.owners[] | "\(.volume)=\(.node)"' <<<"$js")" "vol=A" "owners in the cluster status"
assert_eq "$(jq '[.nodes[] | select(.name == "A")] | length' <<<"$js")" 1 "nodes named A in the status"
on "$B_URL" ctl cluster status >/dev/null || fail "cluster status (table) on B"

# B adopted nothing, and says why "garbage" cannot be claimed.
assert_eq "$(on "$B_URL" api_get /api/v1/volumes | jq length)" 0 "volumes on B"
log "every bad record said once by both nodes after $((SECONDS - t0)) s"
grep -F "owned read-write by node B" "$B_LOG" && fail "B took a hostile record's volume"
rc=0
err=$(on "$B_URL" ctl volume add garbage "$UP" 2>&1) || rc=$?
assert_eq "$rc" 2 "exit status of a read-write add of garbage on B"
assert_contains "$err" "its ownership record shoal/v1/owners/garbage in etcd is not shoal's (not a JSON object)" \
    "B's refusal of garbage"

# vol's I/O through A: a write, read back whole.
random_file "$T/new.img" $((4 << 20))
nbdcopy "$T/new.img" "$(uri vol "$A_SOCK")" || fail "write vol through A"
nbdcopy "$(uri vol "$A_SOCK")" "$T/out.img" || fail "read vol through A"
assert_same_file "$T/out.img" "$T/new.img" "vol through A after the hostile records"
cmp "$T/vol.img" "$T/new.img" >/dev/null || fail "vol's writes did not reach its back end"

# A node that starts now reads the secret: refused, naming the key.
assert_refused "cannot read the map's secret from etcd (shoal/v1/map-secret): not 64 hex digits" \
    --state-dir off --etcd "$EP" --node-name C --memcached "${MC[2]}" --etcd-lease 3s
log PASS
