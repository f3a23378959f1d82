#!/usr/bin/env bash
# SIGTERM and SIGINT stop shoald within a few seconds with exit status 0,
# even with clients connected and idle; the unix socket is removed; SIGHUP
# does not stop it.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need nbdinfo
need_python_nbd

random_file "$T/a.img" $((4 << 20))

connected() { [ "$(vstat a connections)" -ge "$1" ]; }

# idle_client N: an nbdsh connected to volume a that reads once, then sits.
idle_client() {
    bg "$PY" -m nbd -u "$(uri a)" -c 'h.pread(4096, 0)' -c 'import time; time.sleep(120)'
    wait_for 10 connected "$1" ||
        fail "idle client not connected (connections: $(vstat a connections))"
}

# stop_within SIGNAL SECONDS
stop_within() {
    local sig=$1 secs=$2 t0 rc=0
    t0=$(date +%s%N)
    kill -"$sig" "$SHOALD_PID"
    local deadline=$((SECONDS + secs + 1))
    while kill -0 "$SHOALD_PID" 2>/dev/null &&
        [ "$(awk '{print $3}' "/proc/$SHOALD_PID/stat" 2>/dev/null)" != Z ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "shoald still running $secs s after SIG$sig"
        sleep 0.05
    done
    wait "$SHOALD_PID" || rc=$?
    local ms=$((($(date +%s%N) - t0) / 1000000))
    log "SIG$sig: exit status $rc after $ms ms"
    assert_eq "$rc" 0 "exit status after SIG$sig"
    assert_num "$ms" '<=' $((secs * 1000)) "time to stop after SIG$sig (ms)"
    [ ! -e "$SOCK" ] || fail "unix socket $SOCK left behind after SIG$sig"
    check_no_sanitizer_report
}

for sig in TERM INT; do
    start_shoald -m 16M "a=$T/a.img"
    idle_client 1
    idle_client 2
    # An idle connection in the handshake (connected, never sent anything).
    "$PY" -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(120)' "$SOCK" &
    _HELPER_PIDS+=("$!")
    sleep 0.3
    stop_within "$sig" 5
done

# SIGHUP: still serving afterwards.
start_shoald -m 16M "a=$T/a.img"
kill -HUP "$SHOALD_PID"
sleep 0.5
kill -0 "$SHOALD_PID" 2>/dev/null || fail "shoald died on SIGHUP"
assert_eq "$(nbdinfo --size "$(uri a)")" $((4 << 20)) "serving after SIGHUP"
stop_within TERM 5
log PASS
