# shellcheck shell=bash
# Helpers for shoal's integration tests (sourced by every *.sh test here).
#
# Each test gets its own temp dir ($T), its own unix NBD socket and its own
# management port, so the tests can run in parallel under `meson test`.
# Daemons started with start_shoald are always stopped on exit (trap), and a
# test fails if a daemon did not exit cleanly (status 0) on SIGTERM, which
# is also how leaks and sanitizer reports in the ASan build surface.
#
# Environment (set by tests/integration/meson.build):
#   SHOALD, SHOALCTL   paths of the binaries under test
#   SRCDIR, BUILDDIR   source and build roots
# Optional:
#   SHOAL_IT_KEEP=1    keep the temp dir of a failed test
#   SHOAL_IT_TMP=DIR   where temp dirs go (default /tmp; unix socket paths
#                      must stay short)

set -euo pipefail

: "${SHOALD:?SHOALD must point at the shoald binary}"
: "${SHOALCTL:?SHOALCTL must point at the shoalctl binary}"
: "${SRCDIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

PY=/usr/bin/python3
TEST_NAME=$(basename "$0" .sh)
T=$(mktemp -d "${SHOAL_IT_TMP:-/tmp}/shoal-it-${TEST_NAME}.XXXXXX")
export TMPDIR="$T"
# shoald keeps API changes in $STATE_DIRECTORY (else /var/lib/shoal): each
# test its own, so no test sees another's volumes (start_shoald gives each
# daemon its own unless the caller sets STATE_DIRECTORY).
export STATE_DIRECTORY="$T/state"

# pids of daemons and helpers started by this test
declare -a _SHOAL_PIDS=()
declare -a _HELPER_PIDS=()
_FAILED=0

log() { printf '[%s] %s\n' "$TEST_NAME" "$*"; }

fail() {
    _FAILED=1
    printf '[%s] FAIL: %s\n' "$TEST_NAME" "$*" >&2
    exit 1
}

skip() {
    printf '[%s] SKIP: %s\n' "$TEST_NAME" "$*"
    exit 77
}

# need TOOL... : skip (77) when a client tool is not installed.
need() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || skip "$t is not installed"
    done
}

# nbdsh ARGS...: Debian's nbdsh runs `python3 -m nbd` from PATH, which may
# be an interpreter without python3-libnbd; run it with Debian's instead.
nbdsh() { "$PY" -m nbd "$@"; }

need_python_nbd() {
    [ -x "$PY" ] || skip "$PY is not installed"
    "$PY" -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not importable by $PY"
}

_dump_logs() {
    local f
    for f in "$T"/shoald*.log; do
        [ -s "$f" ] || continue
        printf -- '--- %s (last 40 lines) ---\n' "$(basename "$f")" >&2
        tail -n 40 "$f" >&2
    done
}

_cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local p
    for p in "${_HELPER_PIDS[@]}"; do
        _kill_tree "$p"
    done
    for p in "${_SHOAL_PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null
            _wait_pid_gone "$p" 10 || kill -KILL "$p" 2>/dev/null
        fi
    done
    wait 2>/dev/null
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        _dump_logs
        if [ "${SHOAL_IT_KEEP:-0}" = 1 ]; then
            printf '[%s] kept %s\n' "$TEST_NAME" "$T" >&2
            exit "$rc"
        fi
    fi
    rm -rf "$T"
    exit "$rc"
}
trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# _kill_tree PID: SIGTERM a helper and everything it started (a helper that
# outlives the test would keep meson's output pipe open).
_kill_tree() {
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        _kill_tree "$c"
    done
    kill "$1" 2>/dev/null
}

# _wait_pid_gone PID SECONDS: poll until PID no longer exists.
_wait_pid_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        # A zombie child counts as gone for kill -0 only after wait.
        if [ -r "/proc/$pid/stat" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
            return 0
        fi
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.05
    done
    return 0
}

# wait_for SECONDS CMD...: run CMD until it succeeds; fail after SECONDS.
wait_for() {
    local secs=$1
    shift
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
    return 0
}

# free_port: a TCP port the kernel reports free right now.
free_port() {
    "$PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# start_etcd [SCHEME [EXTRA ETCD ARGS...]]: one etcd member on free
# 127.0.0.1 ports, its data in $T/etcd and its log in $T/etcd.log, stopped
# at exit; its client URL in EP, its client port in ETCD_PORT. SCHEME is
# http (default) or https (the TLS flags then come in EXTRA, and curl's
# own, to ask etcd's health, in the array ETCD_CURL_ARGS).
start_etcd() {
    local scheme=${1:-http} pport
    [ $# -gt 0 ] && shift
    ETCD_PORT=$(free_port)
    pport=$(free_port)
    EP="$scheme://127.0.0.1:$ETCD_PORT"
    bg etcd --name shoal-it --data-dir "$T/etcd" \
        --listen-client-urls "$EP" --advertise-client-urls "$EP" \
        --listen-peer-urls "http://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "shoal-it=http://127.0.0.1:$pport" "$@" >"$T/etcd.log" 2>&1
    wait_for 30 curl -sf --max-time 1 ${ETCD_CURL_ARGS[@]+"${ETCD_CURL_ARGS[@]}"} "$EP/health" ||
        fail "etcd did not start on port $ETCD_PORT"
}

# tgtd_control PORT: the tgt array's control for a test that starts tgtd
# (TGTD_PID, set by the test) for iSCSI port PORT: CTL, a control socket
# number of its own (/var/run/tgtd/socket.N for -C N, N a short: derived
# from PORT, moved on while another tgtd has it), tgtctl (tgtadm on it),
# and stop_tgtd, which also runs at exit. tgtd ignores SIGTERM while
# sessions are open: a crash is what we want.
tgtd_control() {
    TGTD_PID=""
    CTL=$(($1 % 32000 + 700))
    while [ -e "/var/run/tgtd/socket.$CTL" ]; do CTL=$((CTL + 1)); done
    tgtctl() { tgtadm -C "$CTL" --lld iscsi "$@"; }
    stop_tgtd() {
        [ -n "$TGTD_PID" ] || return 0
        kill -KILL "$TGTD_PID" 2>/dev/null || true
        wait "$TGTD_PID" 2>/dev/null || true
        TGTD_PID=""
        rm -f "/var/run/tgtd/socket.$CTL" "/var/run/tgtd/socket.$CTL.lock"
    }
    # set +e: the (exit) that hands _cleanup the status must not end the trap.
    # shellcheck disable=SC2154 # _rc is set inside the trap
    trap '_rc=$?; set +e; stop_tgtd; (exit $_rc); _cleanup' EXIT
}

# start_memcacheds N: N memcached servers on free 127.0.0.1 ports (16 MiB,
# one thread each), stopped at exit; their HOST:PORT in MC.
start_memcacheds() {
    local mc_user=() p i
    [ "$(id -u)" -ne 0 ] || mc_user=(-u nobody) # memcached refuses to run as root without -u
    MC=()
    for ((i = 0; i < $1; i++)); do
        p=$(free_port)
        bg memcached "${mc_user[@]}" -U 0 -l 127.0.0.1 -p "$p" -m 16 -t 1
        MC+=("127.0.0.1:$p")
        wait_for 20 "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $p), 1).close()" ||
            fail "memcached did not start on port $p"
    done
}

# silent_listener: a 127.0.0.1 server that accepts connections and never
# says a word (a hung upstream, target or etcd), killed at exit; its port
# in SILENT_PORT.
silent_listener() {
    SILENT_PORT=$(free_port)
    bg "$PY" -c 'import socket
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", '"$SILENT_PORT"')); s.listen(64)
conns=[]
while True: conns.append(s.accept())'
    wait_for 20 "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $SILENT_PORT), 1).close()" ||
        fail "the silent listener did not start"
}

# start_shoald [ARGS...] [NAME=BACKING...]
# Starts `shoald -f -l unix:$SOCK --http 127.0.0.1:$PORT
# --http-token-file $T/token ARGS...` in the background and waits until both
# the NBD socket and the API answer. The daemon creates the token file (the
# API needs the token for every change); an --http-token-file in ARGS wins.
# With --http-tls-certificates DIR in ARGS the API is HTTPS, verified with
# the CA in $HTTPS_CA (set it first). Sets SOCK, HTTP_PORT, URL,
# API_TOKEN_FILE, SHOALD_PID, SHOALD_LOG. The instance number (0, 1, ...)
# keeps several daemons of one test apart; NEXT_SOCK=PATH picks the socket
# path of the next daemon instead.
_SHOALD_N=0
start_shoald() {
    local n=$_SHOALD_N a prev="" scheme=http
    _SHOALD_N=$((n + 1))
    SOCK="${NEXT_SOCK:-$T/nbd$n.sock}"
    NEXT_SOCK=""
    SHOALD_LOG="$T/shoald$n.log"
    API_TOKEN_FILE="$T/token"
    local sdir=$STATE_DIRECTORY
    [ "$sdir" = "$T/state" ] && sdir=$T/state$n
    for a in "$@"; do
        case $prev in
        --http-token-file) API_TOKEN_FILE=$a ;;
        --http-tls-certificates) scheme=https ;;
        esac
        case $a in
        --http-token-file=*) API_TOKEN_FILE=${a#*=} ;;
        --http-tls-certificates=*) scheme=https ;;
        esac
        prev=$a
    done
    for _ in 1 2 3; do
        HTTP_PORT=$(free_port)
        URL="$scheme://127.0.0.1:$HTTP_PORT"
        STATE_DIRECTORY=$sdir "$SHOALD" -f -l "unix:$SOCK" --http "127.0.0.1:$HTTP_PORT" \
            --http-token-file "$T/token" "$@" >>"$SHOALD_LOG" 2>&1 &
        SHOALD_PID=$!
        _SHOAL_PIDS+=("$SHOALD_PID")
        if _wait_ready "$SHOALD_PID" 30; then
            return 0
        fi
        if ! kill -0 "$SHOALD_PID" 2>/dev/null && grep -qi 'address already in use' "$SHOALD_LOG"; then
            log "port $HTTP_PORT was taken, retrying"
            continue
        fi
        fail "shoald did not become ready (args: $*)"
    done
    fail "shoald did not start after 3 attempts"
}

# _curl ARGS...: curl for the last started daemon's API (its CA for https).
_curl() {
    if [[ $URL == https://* ]]; then
        curl --cacert "${HTTPS_CA:?HTTPS_CA must name the CA of an https API}" "$@"
    else
        curl "$@"
    fi
}
_api_up() { _curl -sf -o /dev/null --max-time 2 "$URL/api/v1/stats"; }

_wait_ready() {
    local pid=$1 deadline=$((SECONDS + $2))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null || true
            return 1
        fi
        if [ -S "$SOCK" ] && _api_up; then
            return 0
        fi
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.05
    done
}

# stop_shoald: stop the last started daemon (stop_daemon $SHOALD_PID TERM).
stop_shoald() { stop_daemon "$SHOALD_PID" TERM; }

# stop_daemon PID SIGNAL: signal a daemon started by start_shoald, require
# exit status 0 within 10 s and no sanitizer report in its log.
stop_daemon() {
    local pid=$1 sig=$2 rc=0 deadline
    kill -"$sig" "$pid" || fail "shoald $pid is not running"
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
            break
        fi
        [ "$SECONDS" -ge "$deadline" ] && fail "shoald $pid did not exit within 10 s of SIG$sig"
        sleep 0.05
    done
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || fail "shoald exited with status $rc after SIG$sig"
    check_no_sanitizer_report
}

check_no_sanitizer_report() {
    local f
    for f in "$T"/shoald*.log; do
        [ -f "$f" ] || continue
        if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer' "$f"; then
            # The report's summary lines, for a CI log that keeps only the tail.
            grep -E '^SUMMARY: |^(WARNING|ERROR): ' "$f" | head -4 | sed 's/^/  /' >&2
            fail "sanitizer report in $(basename "$f")"
        fi
    done
}

# uri VOLUME [SOCKET]: the NBD URI of a volume of the last started daemon.
uri() { printf 'nbd+unix:///%s?socket=%s' "$1" "${2:-$SOCK}"; }

# auth_header: a file holding "Authorization: Bearer TOKEN" for curl -H @FILE
# (the token stays out of argv, where ps would show it).
auth_header() {
    local f="$T/auth-header.$(basename "$API_TOKEN_FILE")"
    if [ ! -s "$f" ] || [ "$f" -ot "$API_TOKEN_FILE" ]; then
        (umask 077 && printf 'Authorization: Bearer %s\n' "$(cat "$API_TOKEN_FILE")" >"$f")
    fi
    printf '%s' "$f"
}

# api_get PATH: GET an API path of the last started daemon, with the token
# (so backing paths are shown).
api_get() { _curl -sf --max-time 10 -H @"$(auth_header)" "$URL$1"; }
# api_call METHOD PATH [JSON]: a change through the API with the token;
# prints the answer, fails (status 22) on an HTTP error.
api_call() {
    local data=()
    [ $# -ge 3 ] && data=(-H 'Content-Type: application/json' --data-binary "$3")
    [ "$1" = POST ] && [ $# -lt 3 ] && data=(--data-binary '')
    _curl -sf --max-time 60 -X "$1" -H @"$(auth_header)" "${data[@]}" "$URL$2"
}
# ctl ARGS...: shoalctl against the last started daemon, with its token.
ctl() {
    local ca=()
    [[ $URL == https://* ]] && ca=(--cacert "$HTTPS_CA")
    "$SHOALCTL" --url "$URL" --token-file "$API_TOKEN_FILE" "${ca[@]}" "$@"
}
# stats_json: GET /api/v1/stats.
stats_json() { api_get /api/v1/stats; }

# jstat EXPR: one value from /api/v1/stats through jq, e.g.
#   jstat '.cache.unique_blocks'
# vstat VOLUME KEY: one per-volume value, e.g. vstat a read_bytes
jstat() { stats_json | jq -er "$1"; }
vstat() { stats_json | jq -er --arg v "$1" ".volumes[] | select(.name==\$v) | .$2"; }

# --- assertions ---------------------------------------------------------

assert_eq() { [ "$1" = "$2" ] || fail "${3:-values differ}: got '$1', expected '$2'"; }

# assert_num A OP B [MSG]: numeric (float) comparison with awk; OP is one
# of < <= > >= == !=.
assert_num() {
    awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN {
        if (a !~ /^-?[0-9.eE+-]+$/ || b !~ /^-?[0-9.eE+-]+$/) exit 1
        a += 0; b += 0
        if (op == "<") exit !(a < b); if (op == "<=") exit !(a <= b)
        if (op == ">") exit !(a > b); if (op == ">=") exit !(a >= b)
        if (op == "==") exit !(a == b); if (op == "!=") exit !(a != b)
        exit 1 }' || fail "${4:-assertion}: $1 $2 $3 does not hold"
}

# assert_between X LO HI [MSG]
assert_between() {
    assert_num "$1" '>=' "$2" "${4:-value out of range}"
    assert_num "$1" '<=' "$3" "${4:-value out of range}"
}

assert_same_file() {
    cmp "$1" "$2" >/dev/null 2>&1 || fail "${3:-files differ}: $(cmp "$1" "$2" 2>&1 | head -1)"
}

# assert_bytes FILE OFFSET LENGTH BYTE: FILE holds LENGTH bytes of BYTE
# (e.g. 0xab) at OFFSET.
assert_bytes() {
    local f=$1 off=$2 len=$3 got want
    want=$(printf '%02x' "$4")
    got=$(od -An -v -tx1 -j "$off" -N "$len" "$f" | tr ' ' '\n' | sed '/^$/d' | sort -u | tr '\n' ' ')
    [ "$got" = "$want " ] || fail "$(basename "$f") at [$off, +$len) is not all 0x$want (holds: ${got:0:60})"
    [ "$(($(stat -c %s "$f") - off))" -ge "$len" ] || fail "$(basename "$f") is shorter than $off + $len"
}

assert_contains() {
    grep -qF -- "$2" <<<"$1" || fail "${3:-missing text}: '$2' not in: $(head -c 2000 <<<"$1")"
}

# assert_refused WANT ARGS...: a shoald with ARGS (its own socket, no API)
# exits non-zero within 10 s with WANT in its one "shoald: " error line on
# stderr (log lines of volumes opened before may come first).
assert_refused() {
    local want=$1 rc=0
    shift
    rm -f "$T/r.sock"
    timeout -k 1 10 "$SHOALD" -f -l "unix:$T/r.sock" --http off "$@" >"$T/out" 2>"$T/err" \
        </dev/null || rc=$?
    case $rc in
    0 | 124 | 137) fail "shoald $*: exit status $rc, want a refusal" ;;
    esac
    assert_eq "$(grep -c '^shoald: ' "$T/err")" 1 "error lines on stderr from shoald $*"
    assert_contains "$(grep '^shoald: ' "$T/err")" "$want" "shoald $*"
    log "refused: $(grep '^shoald: ' "$T/err")"
}

# --- images -------------------------------------------------------------

# make_image FILE MIB: a raw image mixing random data, sparse holes and
# written zeros, in eighths of its size (nbdinfo.sh relies on this layout):
#   [0, 1/4)      random
#   [1/4, 3/8)    hole (sparse)
#   [3/8, 5/8)    random
#   [5/8, 3/4)    zeros written to disk (allocated)
#   [3/4, end)    random, with 4 KiB holes every 1 MiB
make_image() {
    local f=$1 mib=$2 q
    rm -f "$f"
    truncate -s "${mib}M" "$f"
    local blocks=$((mib * 256)) # 4 KiB blocks in total
    q=$((blocks / 8))           # one eighth, in 4 KiB blocks
    dd if=/dev/urandom of="$f" bs=4k seek=0 count=$((2 * q)) conv=notrunc status=none
    dd if=/dev/urandom of="$f" bs=4k seek=$((3 * q)) count=$((2 * q)) conv=notrunc status=none
    dd if=/dev/zero of="$f" bs=4k seek=$((5 * q)) count=$q conv=notrunc status=none
    dd if=/dev/urandom of="$f" bs=4k seek=$((6 * q)) count=$((2 * q)) conv=notrunc status=none
    local m
    for ((m = 6 * q / 256 + 1; m < mib; m++)); do
        fallocate -p -o $((m * 1048576)) -l 4096 "$f"
    done
}

# random_file FILE BYTES
random_file() { head -c "$2" /dev/urandom >"$1"; }

# file_size FILE
file_size() { stat -c %s "$1"; }

# bg CMD...: start a helper in the background, killed at exit. Sets BG_PID.
bg() {
    "$@" &
    BG_PID=$!
    _HELPER_PIDS+=("$BG_PID")
}
