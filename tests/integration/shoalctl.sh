#!/usr/bin/env bash
# shoalctl against the real daemon: the stats table, stats --json with the
# keys the issue requires, volumes, per-volume stats; the control commands
# (invalidate after an out-of-band change, prefetch, disable/enable, volume
# add by a relative path/remove, cache resize) checked by their effect;
# prefetch refused while disabled; `enabled` a JSON boolean; the API token (found
# by --token-file, $SHOAL_TOKEN; refused without: one line, exit 2; backing
# paths hidden without); exit code 3 when the daemon cannot be reached, and
# after --timeout / $SHOAL_TIMEOUT when a server accepts and never answers.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need jq curl

random_file "$T/alpha.img" $((8 << 20))
random_file "$T/beta-2.img" $((4 << 20))
start_shoald -m 64M "alpha=$T/alpha.img" "beta-2=$T/beta-2.img"
if command -v nbdcopy >/dev/null; then
    nbdcopy "$(uri alpha)" null: || fail "nbdcopy out of alpha"
fi
# The token: a change without it is refused in one line (exit 2) and does
# nothing; with it from $SHOAL_TOKEN it works; reads without it hide the
# backing paths. (Without --token-file and $SHOAL_TOKEN, shoalctl may find
# some other daemon's /run/shoal/api-token: refused all the same.)
rc=0
env -u SHOAL_TOKEN "$SHOALCTL" --url "$URL" disable alpha >"$T/out" 2>"$T/err" || rc=$?
assert_contains "$(cat "$T/err")" "API token" "message of a change without the token"
assert_eq "$(wc -l <"$T/err")" 1 "lines of the message of a change without the token"
assert_eq "$rc" 2 "exit code of a change without the token"
rc=0
SHOAL_TOKEN=not-the-token "$SHOALCTL" --url "$URL" volume add x /etc/shadow >"$T/out" 2>"$T/err" || rc=$?
assert_eq "$rc" 2 "exit code of a change with a wrong token"
assert_contains "$(cat "$T/err")" 'refused the API token from $SHOAL_TOKEN (HTTP 401)' "wrong token message"
assert_eq "$(vstat alpha enabled)" true "a refused disable changed the volume"
assert_eq "$(vstat alpha 'enabled | type')" boolean "type of enabled in stats --json"
assert_eq "$(jstat '.volumes | length')" 2 "a refused add changed the volumes"
SHOAL_TOKEN=$(cat "$API_TOKEN_FILE") "$SHOALCTL" --url "$URL" disable alpha >/dev/null ||
    fail "disable with the token from \$SHOAL_TOKEN"
ctl enable alpha >/dev/null || fail "enable with --token-file"
SHOAL_TOKEN=x "$SHOALCTL" --url "$URL" volumes >"$T/out" || fail "volumes without the token"
assert_contains "$(cat "$T/out")" "(hidden: needs the API token)" "volumes without the token"
grep -q "alpha.img" "$T/out" && fail "volumes without the token shows a backing path"
assert_contains "$(ctl volumes)" "$T/alpha.img" "volumes with the token"

# Table: both volume names, and a few cache figures.
out=$(ctl stats) || fail "shoalctl stats exited $?"
assert_contains "$out" alpha "stats table"
assert_contains "$out" beta-2 "stats table"
assert_contains "$out" dedup_ratio "stats table"
assert_contains "$out" unique_blocks "stats table"

# --json: valid JSON with every key the issue names.
ctl stats --json >"$T/stats.json" || fail "shoalctl stats --json"
jq -e . "$T/stats.json" >/dev/null || fail "shoalctl stats --json is not JSON"
for k in capacity_bytes used_bytes unique_blocks logical_blocks dedup_ratio metadata_bytes evictions; do
    jq -e --arg k "$k" '.cache | has($k) and (.[$k] | type == "number")' "$T/stats.json" >/dev/null ||
        fail "stats --json: cache.$k missing or not a number"
done
jq -e '.volumes | type == "array" and length == 2' "$T/stats.json" >/dev/null || fail "volumes[] in stats --json"
for k in size_bytes read_ops read_bytes read_hit_bytes read_miss_bytes hit_ratio write_ops \
    write_bytes trim_ops zero_ops flush_ops errors; do
    jq -e --arg k "$k" 'all(.volumes[]; has($k) and (.[$k] | type == "number"))' "$T/stats.json" >/dev/null ||
        fail "stats --json: volumes[].$k missing or not a number"
done
jq -e 'all(.volumes[]; .name | type == "string")' "$T/stats.json" >/dev/null || fail "volumes[].name"
assert_eq "$(jq -r '.cache.capacity_bytes' "$T/stats.json")" $((64 << 20)) "capacity_bytes (-m 64M)"
assert_eq "$(jq -r '.volumes[] | select(.name=="alpha") | .size_bytes' "$T/stats.json")" \
    $((8 << 20)) "size_bytes of alpha"
jq -e 'all(.volumes[]; .hit_ratio >= 0 and .hit_ratio <= 1) and .cache.dedup_ratio >= 0' \
    "$T/stats.json" >/dev/null || fail "ratios out of range"
# The CLI prints the same document the API serves.
stats_json >"$T/api.json"
assert_eq "$(jq -c '.volumes | map(.name)' "$T/stats.json")" "$(jq -c '.volumes | map(.name)' "$T/api.json")" \
    "volume names in shoalctl --json vs the API"
if command -v nbdcopy >/dev/null; then
    jq -e '.volumes[] | select(.name=="alpha") | .read_bytes >= 8388608 and .read_ops > 0' \
        "$T/stats.json" >/dev/null || fail "alpha read counters after a full read"
fi

# Per-volume stats.
out=$(ctl stats alpha) || fail "shoalctl stats alpha"
assert_contains "$out" alpha "stats alpha"
assert_contains "$out" hit_ratio "stats alpha"
ctl stats alpha --json | jq -e '.name == "alpha" and has("read_bytes")' >/dev/null ||
    fail "shoalctl stats alpha --json"
rc=0
ctl stats nosuch >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 2 "exit code of stats for an unknown volume"

# volumes
out=$(ctl volumes) || fail "shoalctl volumes"
assert_contains "$out" alpha "volumes"
assert_contains "$out" beta-2 "volumes"
assert_eq "$(ctl volumes --json | jq -r '[.. | objects | select(has("name")) | .name] | sort | unique | join(",")')" \
    "alpha,beta-2" "volumes --json names"

# The control commands need a client to observe their effect.
if command -v nbdcopy >/dev/null && command -v qemu-io >/dev/null; then
    # read_hex VOLUME OFF LEN: read a range through NBD, print it as hex.
    read_hex() {
        qemu-io -f raw -c "read -v $2 $3" "$(uri "$1")" >"$T/hex.out" || fail "qemu-io read $*"
        # "00064000:  aa aa ... ................" -> "aaaa..."
        sed -n 's/^[0-9a-f]*: *\(\([0-9a-f][0-9a-f] \)*\).*/\1/p' "$T/hex.out" | tr -d ' \n'
    }

    # Out-of-band change: the file is written behind shoald. A cached block
    # then reads stale (this is what invalidate is for), and after
    # `invalidate VOL OFFSET LENGTH` the new content is read.
    nbdcopy "$(uri alpha)" null: # cache everything
    printf '\xaa%.0s' $(seq 4096) | dd of="$T/alpha.img" bs=4096 seek=100 conv=notrunc status=none
    printf '\xbb%.0s' $(seq 4096) | dd of="$T/alpha.img" bs=4096 seek=1000 conv=notrunc status=none
    want100=$(od -An -v -tx1 -j $((100 * 4096)) -N 16 "$T/alpha.img" | tr -d ' \n')
    want1000=$(od -An -v -tx1 -j $((1000 * 4096)) -N 16 "$T/alpha.img" | tr -d ' \n')
    got=$(read_hex alpha $((100 * 4096)) 16)
    [ "$got" != "$want100" ] || log "note: block 100 was not served from the cache after the change"
    ctl invalidate alpha $((100 * 4096)) 4096 >/dev/null || fail "shoalctl invalidate alpha OFFSET LENGTH"
    assert_eq "$(read_hex alpha $((100 * 4096)) 16)" "$want100" "block 100 after invalidating its range"
    ctl invalidate alpha >/dev/null || fail "shoalctl invalidate alpha"
    assert_eq "$(read_hex alpha $((1000 * 4096)) 16)" "$want1000" "block 1000 after invalidating the volume"
    m0=$(vstat alpha read_miss_bytes)
    ctl invalidate alpha >/dev/null
    nbdcopy --no-extents "$(uri alpha)" null:
    m1=$(vstat alpha read_miss_bytes)
    assert_num $((m1 - m0)) '>=' $((8 << 20)) "reads after invalidate were not misses"

    # prefetch --wait: afterwards a whole read is served from RAM.
    ctl invalidate alpha >/dev/null
    ctl prefetch alpha --wait >"$T/prefetch.out" || fail "shoalctl prefetch alpha --wait: $(cat "$T/prefetch.out")"
    h0=$(vstat alpha read_hit_bytes)
    r0=$(vstat alpha read_bytes)
    nbdcopy --no-extents "$(uri alpha)" null:
    h1=$(vstat alpha read_hit_bytes)
    r1=$(vstat alpha read_bytes)
    assert_eq $((h1 - h0)) $((r1 - r0)) "read after prefetch --wait: hit bytes vs read bytes"

    # disable: pass-through (no hits, nothing cached), data still right.
    ctl disable alpha >/dev/null || fail "shoalctl disable alpha"
    # (tostring: jq -e fails on a plain false.)
    assert_eq "$(vstat alpha 'enabled | tostring')" false "enabled after disable"
    # In pass-through a prefetch would cache nothing: refused, one line, exit 2.
    rc=0
    ctl prefetch alpha --wait >"$T/out" 2>"$T/err" || rc=$?
    assert_eq "$rc" 2 "exit code of prefetch while disabled"
    assert_eq "$(wc -l <"$T/err")" 1 "lines of the message of prefetch while disabled"
    assert_contains "$(cat "$T/err")" "volume alpha: acceleration is off (pass-through)" \
        "message of prefetch while disabled"
    h0=$(vstat alpha read_hit_bytes)
    nbdcopy --no-extents "$(uri alpha)" "$T/alpha.out" || fail "read while disabled"
    assert_same_file "$T/alpha.out" "$T/alpha.img" "read while disabled"
    assert_eq "$(vstat alpha read_hit_bytes)" "$h0" "hits while disabled"
    qemu-io -f raw -c "write -P 0x42 0 64k" "$(uri alpha)" >/dev/null || fail "write while disabled"
    assert_bytes "$T/alpha.img" 0 65536 0x42
    ctl enable alpha >/dev/null || fail "shoalctl enable alpha"
    assert_eq "$(vstat alpha enabled)" true "enabled after enable"
    nbdcopy --no-extents "$(uri alpha)" null:
    nbdcopy --no-extents "$(uri alpha)" "$T/alpha.out2"
    assert_same_file "$T/alpha.out2" "$T/alpha.img" "read after enable"
    assert_num "$(vstat alpha read_hit_bytes)" '>' "$h0" "no hits after enable"

    # volume add / remove at run time. A relative path is from shoalctl's
    # directory ($T/sub), not shoald's (this script's): sent absolute.
    random_file "$T/gamma.img" $((1 << 20))
    mkdir -p "$T/sub"
    (cd "$T/sub" && ctl volume add gamma ../gamma.img >"$T/out") ||
        fail "shoalctl volume add gamma ../gamma.img"
    assert_contains "$(cat "$T/out")" "file $(cd "$T/sub" && pwd -P)/../gamma.img" \
        "back end of a volume added by a relative path"
    nbdcopy "$(uri gamma)" "$T/gamma.out" || fail "read of an added volume"
    assert_same_file "$T/gamma.out" "$T/gamma.img" "read of an added volume"
    rc=0
    ctl volume add gamma "$T/gamma.img" >/dev/null 2>&1 || rc=$?
    assert_eq "$rc" 2 "exit code of adding a volume twice"
    ctl volume remove gamma >/dev/null || fail "shoalctl volume remove gamma"
    if nbdinfo --size "$(uri gamma)" >/dev/null 2>&1; then
        fail "removed volume is still exported"
    fi
    assert_eq "$(ctl volumes --json | jq -r '[.. | objects | select(has("name")) | .name] | sort | unique | join(",")')" \
        "alpha,beta-2" "volumes after remove"

    # cache resize
    ctl cache resize 32M >/dev/null || fail "shoalctl cache resize 32M"
    assert_eq "$(jstat .cache.capacity_bytes)" $((32 << 20)) "capacity after resize"
    nbdcopy --no-extents "$(uri alpha)" "$T/alpha.out3"
    assert_same_file "$T/alpha.out3" "$T/alpha.img" "read after resize"
fi

# Usage error: exit 1 and one line on stderr.
rc=0
ctl frobnicate >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "exit code of an unknown command"

stop_shoald

# Unreachable: nothing listens on that port any more.
rc=0
"$SHOALCTL" --url "$URL" stats >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 3 "exit code when the daemon is unreachable"
[ -s "$T/err" ] || fail "no message on stderr when unreachable"
rc=0
timeout 20 "$SHOALCTL" --url "http://127.0.0.1:1" volumes >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 3 "exit code for a closed port"
assert_contains "$(cat "$T/err")" "shoalctl: cannot connect to http://127.0.0.1:1: " "closed port message"
assert_eq "$(wc -l <"$T/err")" 1 "lines of the closed port message"

# A server that accepts and never answers: given up on after --timeout
# (else $SHOAL_TIMEOUT), not the 120 s it took, and said as such rather
# than "cannot connect". The explicit timeout holds for volume add too.
silent_listener
for how in "--timeout 2 volumes" "--timeout=1 volume add x /dev/null" "SHOAL_TIMEOUT=1 stats"; do
    env=() args=$how
    case $how in SHOAL_TIMEOUT=*) env=("${how%% *}") args=${how#* } ;; esac
    secs=${how#*--timeout[ =]}
    secs=${secs#SHOAL_TIMEOUT=}
    secs=${secs%% *}
    rc=0
    t0=$(date +%s%N)
    # shellcheck disable=SC2086 # args are words
    timeout 20 env "${env[@]}" "$SHOALCTL" --url "http://127.0.0.1:$SILENT_PORT" \
        --token-file "$API_TOKEN_FILE" $args >/dev/null 2>"$T/err" || rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    assert_eq "$rc" 3 "exit code of '$how' against a silent server"
    assert_eq "$(cat "$T/err")" \
        "shoalctl: no answer from http://127.0.0.1:$SILENT_PORT within $secs s (see --timeout)" \
        "message of '$how' against a silent server"
    assert_between "$ms" $((secs * 1000 - 100)) $((secs * 1000 + 1500)) \
        "ms that '$how' waited for a silent server"
done
rc=0
"$SHOALCTL" --url "http://127.0.0.1:$SILENT_PORT" --timeout 2x volumes >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "exit code of a bad --timeout"
assert_contains "$(cat "$T/err")" 'bad --timeout "2x"' "message of a bad --timeout"
rc=0
SHOAL_TIMEOUT=soon "$SHOALCTL" --url "http://127.0.0.1:$SILENT_PORT" volumes >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "exit code of a bad \$SHOAL_TIMEOUT"
assert_contains "$(cat "$T/err")" "bad \$SHOAL_TIMEOUT \"soon\"" "message of a bad \$SHOAL_TIMEOUT"

# A hostile server: whatever it answers, shoalctl prints one line and
# exits 2, never crashes. /api/v1/mrc: a volume without a name (mrc NAME
# once dereferenced NULL); /big: more than the 64 MiB limit (a realloc per
# chunk took minutes under ASan); anything else: an error with a newline and
# a terminal escape (printed as is, over several lines, before).
hport=$(free_port)
bg "$PY" -c 'import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/api/v1/mrc":
            code, body = 200, json.dumps({"cache": {}, "volumes": [{"mrc": {}}, 5]}).encode()
        elif self.path.startswith("/big"):
            code, body = 200, b" " * (65 << 20)
        else:
            code, body = 500, json.dumps({"error": "one\ntwo\x1b[31m three"}).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_POST = do_DELETE = do_GET
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$hport"
wait_for 20 "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $hport), 1).close()" ||
    fail "the hostile server did not start"
for args in "mrc alpha" "stats" "disable alpha" "--url http://127.0.0.1:$hport/big stats"; do
    rc=0
    # shellcheck disable=SC2086 # args are words
    timeout 60 "$SHOALCTL" --url "http://127.0.0.1:$hport" --token-file "$API_TOKEN_FILE" $args \
        >/dev/null 2>"$T/err" || rc=$?
    assert_eq "$rc" 2 "exit code of '$args' against a hostile server"
    assert_eq "$(wc -l <"$T/err")" 1 "lines of the message of '$args' against a hostile server"
    grep -q $'\e' "$T/err" && fail "'$args': the server's escape reached the terminal"
done
log PASS
