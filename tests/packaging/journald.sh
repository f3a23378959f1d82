#!/usr/bin/env bash
# Logging to the journal: when $JOURNAL_STREAM names stderr's device and
# inode (what systemd sets for StandardError=journal), shoald's log lines
# carry a "<N>" syslog priority prefix (3 error, 4 warning, 6 info,
# 7 debug) and no timestamp of their own. Without the variable, or when it
# names another file (inherited, stderr redirected), lines are unchanged:
# "HH:MM:SS.mmm shoald[component] level: message".
# shellcheck source-path=SCRIPTDIR source=../integration/lib.sh
source "$(dirname "$0")/../integration/lib.sh"

random_file "$T/a.img" $((1 << 20))

# bad_option_magic: an NBD client whose first option has a wrong magic
# (shoald logs a warning and closes that connection).
bad_option_magic() {
    "$PY" - "$SOCK" <<'EOF'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
greeting = b""
while len(greeting) < 18:
    greeting += s.recv(18 - len(greeting))
s.sendall(struct.pack(">I", 1))                   # fixed newstyle
s.sendall(b"\x00" * 8 + struct.pack(">II", 1, 0))  # not IHAVEOPT
try:
    s.recv(1)
except OSError:
    pass
EOF
}

# run_daemon LOG JOURNAL_STREAM: start shoald with stderr appended to LOG
# and the given $JOURNAL_STREAM (empty: unset), debug logging for nbd, one
# bad client, then SIGTERM.
run_daemon() {
    local logf=$1 js=$2
    : >"$logf"
    HTTP_PORT=$(free_port)
    SOCK="$T/nbd.sock"
    env -u JOURNAL_STREAM ${js:+JOURNAL_STREAM=$js} \
        "$SHOALD" -f -m 16M -D nbd=debug -l "unix:$SOCK" --http "127.0.0.1:$HTTP_PORT" \
        --http-token-file "$T/token" "a=$T/a.img" 2>>"$logf" &
    local pid=$!
    _SHOAL_PIDS+=("$pid")
    wait_for 20 test -S "$SOCK" || fail "shoald did not create $SOCK"
    wait_for 20 grep -q 'ready' "$logf" || fail "shoald did not log its readiness"
    bad_option_magic
    wait_for 10 grep -q 'bad option magic' "$logf" || fail "no warning for a bad option magic"
    kill -TERM "$pid"
    wait "$pid" || fail "shoald exited with status $? on SIGTERM"
    wait_for 5 grep -q 'stopped' "$logf" || fail "shoald did not log 'stopped'"
}

# --- under journald -----------------------------------------------------
J="$T/journal.log"
: >"$J"
run_daemon "$J" "$(stat -c '%d:%i' "$J")"
log "journal stream: $(wc -l <"$J") lines"
bad=$(grep -vE '^<[0-7]>[a-z]+: ' "$J" || true)
[ -z "$bad" ] || fail "lines without a '<N>component: ' prefix: $(head -3 <<<"$bad")"
! grep -qE '[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}' "$J" || fail "a timestamp in journal lines: $(grep -m1 -E '[0-9]{2}:[0-9]{2}:[0-9]{2}' "$J")"
grep -qE '^<6>main: shoald .* ready' "$J" || fail "readiness not logged at <6> (info)"
grep -qE '^<4>nbd: bad option magic' "$J" || fail "the bad client's warning is not <4>: $(grep 'option magic' "$J")"
grep -qE '^<7>' "$J" || fail "no <7> (debug) line with -D nbd=debug"
grep -qE '^<6>main: stopped' "$J" || fail "'stopped' not logged at <6>"

# An error: a TLS PSK file that does not exist is logged at <3> before
# shoald gives up.
: >"$T/err.log"
js=$(stat -c '%d:%i' "$T/err.log")
JOURNAL_STREAM=$js "$SHOALD" -f -m 16M --http off \
    -l "unix:$T/e.sock" --tls require --tls-psk "$T/missing.psk" 2>>"$T/err.log" &&
    fail "shoald started with a missing PSK file"
grep -qE '^<3>tls: cannot open TLS PSK file' "$T/err.log" ||
    fail "the PSK error is not logged at <3>: $(cat "$T/err.log")"

# --- not the journal: unchanged -----------------------------------------
P="$T/plain.log"
run_daemon "$P" ""
! grep -qE '^<[0-7]>' "$P" || fail "a <N> prefix without \$JOURNAL_STREAM"
grep -qE '^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} shoald\[main\] info: shoald .* ready' "$P" ||
    fail "the plain format changed: $(head -2 "$P")"

# $JOURNAL_STREAM inherited but stderr is another file: unchanged.
O="$T/other.log"
: >"$T/elsewhere"
run_daemon "$O" "$(stat -c '%d:%i' "$T/elsewhere")"
! grep -qE '^<[0-7]>' "$O" || fail "a <N> prefix though \$JOURNAL_STREAM names another file"
grep -qE '^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} shoald\[nbd\] warn: bad option magic' "$O" ||
    fail "the plain format changed: $(grep 'option magic' "$O")"
log PASS
