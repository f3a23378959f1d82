#!/usr/bin/env bash
# Issue 14, item 5: a hung NBD upstream holds neither the API nor the start.
# "wait": false adds answer 202 at once and open in the background (state
# opening, then failed with the back end's error, or open); the API and the
# other volumes keep serving meanwhile; a failed add is dropped by DELETE;
# a successful one is kept in the state file like a synchronous add. At
# start, volumes open in parallel: three hung upstreams cost one connect
# timeout, not three.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need nbdcopy curl jq cmp

# elapsed T0: seconds since T0 (date +%s.%N), one decimal.
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

# A server that accepts and never says a word: a hung NBD upstream.
silent_listener
hport=$SILENT_PORT
hung="nbd://127.0.0.1:$hport/"

make_image "$T/base.img" 16
make_image "$T/good.img" 8
sd="$T/state"
mkdir -p "$sd"
start_shoald -m 64M --connect-timeout 2s --state-dir "$sd" "base=$T/base.img"

# post JSON: POST /api/v1/volumes; prints "STATUS SECONDS", body in $T/body,
# headers in $T/hdr.
post() {
    _curl -s --max-time 30 -D "$T/hdr" -o "$T/body" -w '%{http_code} %{time_total}\n' \
        -H @"$(auth_header)" -H 'Content-Type: application/json' --data-binary "$1" \
        "$URL/api/v1/volumes"
}
vol_json() { api_get "/api/v1/volumes/$1"; }

# --- a hung upstream, asynchronously --------------------------------------
t0=$(date +%s.%N)
read -r code secs < <(post '{"name":"hung","backing":"'"$hung"'","wait":false}')
assert_eq "$code" 202 "HTTP status of an async add (body: $(cat "$T/body"))"
assert_num "$secs" '<' 1 "seconds for the 202 of an async add of a hung upstream"
assert_eq "$(jq -r .state "$T/body")" opening "state in the 202 body"
assert_eq "$(jq -r .name "$T/body")" hung "name in the 202 body"
grep -qi '^Location: /api/v1/volumes/hung' "$T/hdr" || fail "no Location header: $(cat "$T/hdr")"
assert_eq "$(vol_json hung | jq -r .state)" opening "GET of a volume still opening"
assert_eq "$(api_get /api/v1/volumes | jq -r '.[] | select(.name=="hung") | .state')" opening \
    "the list while opening"
# Another add of that name while it opens: 409, sync or not.
read -r code _ < <(post '{"name":"hung","backing":"'"$hung"'","wait":false}')
assert_eq "$code" 409 "async add of a name that is opening"
read -r code _ < <(post '{"name":"hung","backing":"'"$T/good.img"'"}')
assert_eq "$code" 409 "sync add of a name that is opening"
# Requests are still validated at once.
read -r code _ < <(post '{"name":"x","backing":"'"$hung"'","wait":"no"}')
assert_eq "$code" 400 "\"wait\" that is not a boolean"
read -r code _ < <(post '{"name":"base","backing":"'"$hung"'","wait":false}')
assert_eq "$code" 409 "async add of an existing volume's name"
# DELETE of a volume still opening is refused.
dcode=$(_curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X DELETE -H @"$(auth_header)" \
    "$URL/api/v1/volumes/hung")
assert_eq "$dcode" 409 "DELETE while opening"
# The API and the other volumes answer meanwhile.
s0=$(date +%s.%N)
api_get /api/v1/stats >/dev/null || fail "stats while an add hangs"
assert_num "$(elapsed "$s0")" '<' 1 "seconds for the stats while an add hangs"
nbdcopy "$(uri base)" "$T/base.out" || fail "nbdcopy of base while an add hangs"
assert_same_file "$T/base.out" "$T/base.img" "base read while an add hangs"

wait_for 30 sh -c "curl -sf '$URL/api/v1/volumes/hung' -H @'$(auth_header)' | jq -e '.state == \"failed\"'" ||
    fail "the hung add did not fail: $(vol_json hung)"
secs=$(elapsed "$t0")
log "async add of a hung upstream failed after ${secs}s: $(vol_json hung)"
assert_between "$secs" 1.8 15 "seconds before the async add of a hung upstream failed"
assert_contains "$(vol_json hung | jq -r .error)" "no NBD handshake within 2.0 s" "error of the failed add"
assert_eq "$(api_get /api/v1/volumes | jq -r '.[] | select(.name=="hung") | .state')" failed \
    "the list after the failure"
# Without the token the error (it may name a path) is hidden, the state is not.
assert_eq "$(curl -sf "$URL/api/v1/volumes/hung" | jq -r .state)" failed "state without the token"
curl -sf "$URL/api/v1/volumes/hung" | grep -q "$hport" && fail "the backing shows without the token"
out=$(ctl volumes) || fail "shoalctl volumes: $out"
grep -Eq '^hung +- +failed ' <<<"$out" || fail "shoalctl volumes does not show hung as failed: $out"
# DELETE drops the failed entry.
dcode=$(_curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X DELETE -H @"$(auth_header)" \
    "$URL/api/v1/volumes/hung")
assert_eq "$dcode" 204 "DELETE of a failed add"
gcode=$(_curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H @"$(auth_header)" "$URL/api/v1/volumes/hung")
assert_eq "$gcode" 404 "GET after the DELETE of a failed add"

# shoalctl --no-wait on a hung upstream: prints the state, exits 0 at once.
t0=$(date +%s.%N)
out=$(ctl volume add hung2 "$hung" --no-wait) || fail "shoalctl volume add --no-wait: $out"
assert_eq "$out" "volume hung2: opening" "shoalctl --no-wait output"
assert_num "$(elapsed "$t0")" '<' 1 "seconds for shoalctl volume add --no-wait of a hung upstream"
out=$(ctl volumes) || fail "shoalctl volumes: $out"
grep -Eq '^hung2 +- +opening ' <<<"$out" || fail "shoalctl volumes does not show hung2 opening: $out"
# A new POST of a failed name replaces the failed entry.
wait_for 30 sh -c "curl -sf '$URL/api/v1/volumes/hung2' -H @'$(auth_header)' | jq -e '.state == \"failed\"'" ||
    fail "hung2 did not fail: $(vol_json hung2)"
read -r code _ < <(post '{"name":"hung2","backing":"'"$T/good.img"'"}')
assert_eq "$code" 201 "sync add of a failed add's name (body: $(cat "$T/body"))"
assert_eq "$(vol_json hung2 | jq -r .state)" enabled "the replacement is open"
ctl volume remove hung2 >/dev/null || fail "remove hung2"

# --- a good file volume, asynchronously ------------------------------------
out=$(ctl volume add good "$T/good.img" --no-wait) || fail "shoalctl volume add good --no-wait: $out"
assert_eq "$out" "volume good: opening" "shoalctl --no-wait output for a file"
wait_for 20 sh -c "curl -sf '$URL/api/v1/volumes/good' | jq -e '.state == \"enabled\"'" ||
    fail "good did not open: $(vol_json good)"
nbdcopy "$(uri good)" "$T/good.out" || fail "nbdcopy out of good"
assert_same_file "$T/good.out" "$T/good.img" "good, added asynchronously, read back"
# A failed add is not kept in the state file; a successful one is.
read -r code _ < <(post '{"name":"hung3","backing":"'"$hung"'","wait":false}')
assert_eq "$code" 202 "async add of hung3"
wait_for 30 sh -c "curl -sf '$URL/api/v1/volumes/hung3' -H @'$(auth_header)' | jq -e '.state == \"failed\"'" ||
    fail "hung3 did not fail"
stop_shoald
start_shoald -m 64M --connect-timeout 2s --state-dir "$sd" "base=$T/base.img"
names=$(api_get /api/v1/volumes | jq -r '[.[].name] | sort | join(",")')
assert_eq "$names" "base,good" "volumes after a restart (state file)"
nbdcopy "$(uri good)" "$T/good.out2" || fail "nbdcopy out of good after the restart"
assert_same_file "$T/good.out2" "$T/good.img" "good after the restart"
# A stop while an add is opening waits for it (at most the connect timeout),
# then exits cleanly (stop_shoald checks status 0; ASan, no leak).
read -r code _ < <(post '{"name":"hung4","backing":"'"$hung"'","wait":false}')
assert_eq "$code" 202 "async add of hung4"
t0=$(date +%s.%N)
stop_shoald
assert_num "$(elapsed "$t0")" '<' 8 "seconds to stop while an add is opening"

# --- start-up: three hung upstreams cost one connect timeout ---------------
t0=$(date +%s.%N)
rc=0
timeout -k 1 30 "$SHOALD" -f \
    -l "unix:$T/r.sock" --http off --state-dir off --connect-timeout 2s "base=$T/base.img" \
    "h1=$hung" "h2=$hung" "h3=$hung" >"$T/out" 2>"$T/err" </dev/null || rc=$?
secs=$(elapsed "$t0")
# Exactly 1: a failed start stops the opens still running and frees what
# it took (under ASan a leak would be another status).
[ "$rc" -eq 1 ] || fail "shoald with hung upstreams: exit status $rc, want 1 (a refusal)"
log "start-up with three hung upstreams refused after ${secs}s: $(grep '^shoald: ' "$T/err")"
assert_eq "$(grep -c '^shoald: ' "$T/err")" 1 "error lines from shoald with hung upstreams"
assert_contains "$(grep '^shoald: ' "$T/err")" "volume h1: cannot open '$hung'" "the first volume named"
assert_contains "$(grep '^shoald: ' "$T/err")" "no NBD handshake within 2.0 s" "the back end's error"
# One after the other they would take 6 s.
assert_between "$secs" 1.8 5 "seconds for a start with three hung upstreams"
log PASS
