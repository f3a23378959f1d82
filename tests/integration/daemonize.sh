#!/usr/bin/env bash
# Without -f, shoald daemonizes: the command returns only once the daemon
# serves (nbdinfo works right after it), --pid-file holds the daemon's pid,
# and SIGTERM stops it and removes the pid file. Start-up errors are still
# reported by the command's exit status.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need nbdinfo curl

random_file "$T/a.img" $((2 << 20))
# no_sanitizer_report FILE WHAT: under ASan, a failed start frees what it
# took: no leak (or other) report in its stderr.
no_sanitizer_report() {
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)' "$1"; then
        fail "sanitizer report $2: $(grep -A12 'ERROR: ' "$1")"
    fi
}
port=$(free_port)
sock=$T/d.sock
pidfile=$T/shoald.pid

rc=0
"$SHOALD" -l "unix:$sock" --http "127.0.0.1:$port" --http-token-file "$T/token" \
    --pid-file "$pidfile" -m 16M "a=$T/a.img" \
    >"$T/out" 2>"$T/err" </dev/null || rc=$?
[ -s "$pidfile" ] && _SHOAL_PIDS+=("$(cat "$pidfile")")
assert_eq "$rc" 0 "exit status of the daemonizing command ($(cat "$T/err"))"
# Ready the moment the command returned: no polling here.
assert_eq "$(nbdinfo --size "nbd+unix:///a?socket=$sock")" $((2 << 20)) "nbdinfo right after start"
curl -sf "http://127.0.0.1:$port/api/v1/stats" >/dev/null || fail "API not up right after start"

[ -s "$pidfile" ] || fail "pid file $pidfile not written"
pid=$(cat "$pidfile")
[[ "$pid" =~ ^[0-9]+$ ]] || fail "pid file holds '$pid'"
kill -0 "$pid" 2>/dev/null || fail "no process $pid"
grep -q shoald "/proc/$pid/cmdline" || fail "pid $pid is not shoald"
# Detached: its own session, not a child of this shell.
[ "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$pid" ] || fail "daemon is not a session leader"
[ ! -s "$T/out" ] || fail "daemon wrote to stdout: $(cat "$T/out")"

kill -TERM "$pid"
_wait_pid_gone "$pid" 10 || fail "daemon $pid still running 10 s after SIGTERM"
[ ! -e "$pidfile" ] || fail "pid file left behind after SIGTERM"
[ ! -e "$sock" ] || fail "socket left behind after SIGTERM"

# A start-up error is the command's exit status, with the message on stderr
# (and under ASan no leak report: a failed start frees what it took, in the
# command or in the forked daemon).
rc=0
timeout 10 "$SHOALD" -l "unix:$sock" --http "127.0.0.1:$port" --http-token-file "$T/token" \
    "a=$T/nonexistent.img" \
    >"$T/out" 2>"$T/err" </dev/null || rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
    fail "daemonizing with a missing backing file: status $rc"
fi
grep -qF nonexistent.img "$T/err" || fail "missing backing file not reported: $(cat "$T/err")"
assert_eq "$(wc -l <"$T/err")" 1 "lines on stderr for a missing backing file"
# A port already taken is only found after the fork: still reported.
busy_port=$(free_port)
"$PY" -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(60)' "$busy_port" &
_HELPER_PIDS+=("$!")
wait_for 5 "$PY" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$busy_port"
rc=0
timeout 10 "$SHOALD" -l "unix:$sock" --http "127.0.0.1:$busy_port" --http-token-file "$T/token" \
    --pid-file "$T/busy.pid" \
    "a=$T/a.img" >"$T/out" 2>"$T/err" </dev/null || rc=$?
[ -s "$T/busy.pid" ] && _SHOAL_PIDS+=("$(cat "$T/busy.pid")")
if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
    fail "daemonizing with a busy API port: status $rc"
fi
grep -qF "$busy_port" "$T/err" || fail "busy API port not reported on stderr: '$(cat "$T/err")'"
# The forked daemon failed with volumes open and the NBD server started:
# all stopped and freed (under ASan, its leak report would be here: the
# parent returns once the daemon has exited).
no_sanitizer_report "$T/err" "from the daemon that failed to start"

# A --pid-file that is a symlink is refused, and what it points at is left
# alone (root writing through a link another user planted would clobber
# any file).
echo "precious" >"$T/precious"
ln -s "$T/precious" "$T/link.pid"
rc=0
timeout 20 "$SHOALD" -f -l "unix:$T/link.sock" --http "127.0.0.1:$(free_port)" \
    --http-token-file "$T/token" --pid-file "$T/link.pid" -m 16M "a=$T/a.img" \
    >"$T/out" 2>"$T/err" </dev/null || rc=$?
assert_eq "$rc" 1 "exit status with a symlinked --pid-file ($(cat "$T/err"))"
no_sanitizer_report "$T/err" "with a symlinked --pid-file"
grep -q "it is a symbolic link" "$T/err" || fail "symlinked --pid-file not reported: '$(cat "$T/err")'"
assert_eq "$(cat "$T/precious")" precious "the file the --pid-file link points at"

# A relative --pid-file, socket and --http-token-file are relative to the
# directory shoald was started in (as the backing file paths are), even
# though it chdirs to /.
mkdir "$T/rel"
rc=0
(cd "$T/rel" && "$SHOALD" -l unix:rel.sock --http "127.0.0.1:$port" --pid-file rel.pid -m 16M \
    --http-token-file rel.token \
    "a=../a.img" >"$T/out" 2>"$T/err" </dev/null) || rc=$?
assert_eq "$rc" 0 "exit status with relative paths ($(cat "$T/err"))"
problems=()
pid=""
for f in "$T/rel/rel.pid" /rel.pid; do
    if [ -s "$f" ]; then
        pid=$(cat "$f")
        _SHOAL_PIDS+=("$pid")
    fi
done
[ -n "$pid" ] || fail "no pid file for --pid-file rel.pid (neither $T/rel/rel.pid nor /rel.pid)"
[ -s "$T/rel/rel.pid" ] || problems+=("--pid-file rel.pid was written to /rel.pid, not $T/rel/rel.pid")
if [ -S "$T/rel/rel.sock" ]; then
    assert_eq "$(nbdinfo --size "nbd+unix:///a?socket=$T/rel/rel.sock")" $((2 << 20)) "relative socket"
elif [ -S /rel.sock ]; then
    problems+=("-l unix:rel.sock listens on /rel.sock, not $T/rel/rel.sock")
else
    problems+=("-l unix:rel.sock: no socket in $T/rel or /")
fi
[ -s "$T/rel/rel.token" ] || problems+=("--http-token-file rel.token was not created in $T/rel")
[ -e /rel.token ] && problems+=("--http-token-file rel.token was created as /rel.token")
kill -TERM "$pid"
_wait_pid_gone "$pid" 10 || fail "daemon $pid still running 10 s after SIGTERM"
[ "${#problems[@]}" -eq 0 ] || fail "relative paths: $(printf '%s; ' "${problems[@]}")"
log PASS
