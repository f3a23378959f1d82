#!/usr/bin/env bash
# The state dir (issue 14, item 4): volume changes made through the API
# survive a restart. A volume added and a config volume disabled and
# another removed through shoalctl are as they were after a restart (bytes
# of the added one read back); enabling again and removing the added one
# persist too. The file is valid JSON, mode 0600, and no temp file is left.
# A corrupt or foreign state file stops the start with one line naming it;
# a second shoald on the same dir is refused; $STATE_DIRECTORY (systemd's
# StateDirectory=) is the default, else /var/lib/shoal (checked in a private
# mount namespace), and --state-dir off turns it off; an unusable directory
# nobody named is a warning, not a refusal.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need jq curl
need_python_nbd

for f in a b x; do
    head -c 1M /dev/urandom >"$T/$f.img"
done
printf '[volume a]\nbacking = %s\n[volume b]\nbacking = %s\n' "$T/a.img" "$T/b.img" >"$T/shoald.conf"
sd=$T/sd # not $T/state, which lib.sh makes $STATE_DIRECTORY
names() { api_get /api/v1/volumes | jq -r 'map(.name) | sort | join(",")'; }
state_of() { api_get "/api/v1/volumes/$1" | jq -r .state; }

start_shoald --state-dir "$sd" -c "$T/shoald.conf"
assert_eq "$(names)" a,b "volumes at the first start"
ctl volume add x "$T/x.img" >/dev/null || fail "volume add x"
ctl disable a >/dev/null || fail "disable a"
ctl volume remove b >/dev/null || fail "volume remove b"
jq -e . "$sd/state.json" >/dev/null || fail "state.json is not JSON: $(cat "$sd/state.json")"
assert_eq "$(stat -c %a "$sd/state.json")" 600 "state.json mode"
assert_eq "$(stat -c %a "$sd")" 700 "state dir mode"
assert_eq "$(cd "$sd" && ls -A | sort | tr '\n' ' ')" "state.json state.lock " "files in the state dir"

# A second daemon on the same state dir is refused (one line, naming it).
rc=0
timeout -k 1 5 "$SHOALD" -f -l "unix:$T/second.sock" --http off --state-dir "$sd" \
    "y=$T/x.img" >"$T/second.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "a second shoald on $sd: status $rc"
assert_eq "$(wc -l <"$T/second.out")" 1 "lines from the second shoald"
assert_contains "$(cat "$T/second.out")" "is in use by another shoald"
stop_shoald

start_shoald --state-dir "$sd" -c "$T/shoald.conf"
assert_eq "$(names)" a,x "volumes after a restart"
assert_eq "$(state_of a)" disabled "a after a restart"
assert_eq "$(state_of x)" enabled "x after a restart"
nbdsh -u "$(uri x)" -c 'import sys; sys.stdout.buffer.write(h.pread(h.get_size(), 0))' >"$T/x.read"
assert_same_file "$T/x.read" "$T/x.img" "volume x after a restart"
ctl enable a >/dev/null || fail "enable a"
ctl volume remove x >/dev/null || fail "volume remove x"
ctl volume add b "$T/b.img" >/dev/null || fail "volume add b (removed before)"
stop_shoald
start_shoald --state-dir "$sd" -c "$T/shoald.conf"
assert_eq "$(names)" a,b "volumes after the second restart"
assert_eq "$(state_of a)" enabled "a after enable and a restart"
stop_shoald

# bad_state NAME NEEDLE: shoald refuses to start on the state file now in
# $sd, quickly, with one line naming it.
bad_state() {
    local rc=0
    timeout -k 1 5 "$SHOALD" -f -l "unix:$T/bad.sock" --http off --state-dir "$sd" \
        -c "$T/shoald.conf" >"$T/bad.out" 2>&1 || rc=$?
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "$1: shoald exit status $rc"
    assert_eq "$(wc -l <"$T/bad.out")" 1 "$1: lines on stderr"
    assert_contains "$(cat "$T/bad.out")" "$sd/state.json" "$1: the file is named"
    assert_contains "$(cat "$T/bad.out")" "$2" "$1: the reason"
    [ ! -e "$T/bad.sock" ] || fail "$1: left its socket"
    log "$1: refused: $(cat "$T/bad.out")"
}
cp "$sd/state.json" "$T/state.good"
printf '{"version": 1, "volumes": {' >"$sd/state.json"
bad_state "truncated state file" "fix or remove the file"
printf '{"version": 2, "volumes": {}, "removed": {}, "enabled": {}}\n' >"$sd/state.json"
bad_state "state file of another version" "not a shoald state file"
printf '{"version": 1, "volumes": {"v": {"backing": 3}}, "removed": {}, "enabled": {}}\n' >"$sd/state.json"
bad_state "state file with a bad volume" "without \"backing\""
printf '{"version": 1, "volumes": {"v": {"backing": "%s"}}, "removed": {"v": true}, "enabled": {}}\n' \
    "$T/a.img" >"$sd/state.json"
bad_state "state file with a volume added and removed" "both in \"volumes\" and in \"removed\""
printf '{"version": 1, "volumes": {"v\\\n": 1}}\n' >"$sd/state.json"
bad_state "state file with a backslash and a line break in a string" "invalid escape"
printf '{"version": 1, "volumes": {"v": {"backing": "%s"}}, "removed": {}, "enabled": {}}\n' \
    "$T/gone.img" >"$sd/state.json"
bad_state "state file volume whose image is gone" "volume v: cannot open"
cp "$T/state.good" "$sd/state.json"

# $STATE_DIRECTORY is the default; --state-dir off turns it off.
STATE_DIRECTORY=$T/sysd start_shoald "a=$T/a.img"
ctl disable a >/dev/null || fail "disable a (STATE_DIRECTORY)"
jq -e '.enabled.a == false' "$T/sysd/state.json" >/dev/null ||
    fail "\$STATE_DIRECTORY/state.json does not hold the change: $(cat "$T/sysd/state.json" 2>&1)"
stop_shoald
rm -rf "$T/sysd"
STATE_DIRECTORY=$T/sysd start_shoald --state-dir off "a=$T/a.img"
ctl disable a >/dev/null || fail "disable a (--state-dir off)"
[ ! -e "$T/sysd" ] || fail "--state-dir off still wrote $T/sysd"
stop_shoald

# Neither: /var/lib/shoal, seen from a private mount namespace with a tmpfs
# on /var/lib so the host's stays untouched.
if unshare -m --propagation private true 2>/dev/null; then
    cat >"$T/nsrun" <<EOF
#!/bin/sh
exec unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /var/lib && exec "\$0" "\$@"' "$SHOALD" "\$@"
EOF
    chmod +x "$T/nsrun"
    STATE_DIRECTORY='' SHOALD=$T/nsrun start_shoald "a=$T/a.img"
    ctl disable a >/dev/null || fail "disable a (default state dir)"
    grep -q "API changes are kept in /var/lib/shoal/state.json" "$SHOALD_LOG" ||
        fail "the default state dir is not /var/lib/shoal: $(cat "$SHOALD_LOG")"
    nsenter -t "$SHOALD_PID" -m jq -e '.enabled.a == false' /var/lib/shoal/state.json >/dev/null ||
        fail "/var/lib/shoal/state.json does not hold the change"
    stop_shoald
else
    log "no mount namespaces here: the /var/lib/shoal default is not checked"
fi

# A directory nobody named that another daemon holds: this one runs without
# a state file and says so; a named one stops the start (checked above).
start_shoald --state-dir "$T/held" "a=$T/a.img"
held_pid=$SHOALD_PID
STATE_DIRECTORY=$T/held start_shoald "b=$T/b.img"
grep -q "no state file: state dir '$T/held' is in use by another shoald" "$SHOALD_LOG" ||
    fail "no warning for a held \$STATE_DIRECTORY: $(cat "$SHOALD_LOG")"
stop_shoald
stop_daemon "$held_pid" TERM
log PASS
