#!/usr/bin/env bash
# Two caches of one disk are refused (issue 14, item 3):
#  - shoald takes QEMU's own image locks: qemu-io cannot write an image
#    shoald serves, qemu-img convert cannot read it without -U, and shoald
#    refuses an image a running qemu-io holds for writing (read-write or
#    read-only export), on the command line and through the API;
#  - one file (device + inode, so a hard link too) gets one read-write
#    export per daemon, or any number of read-only ones: refused at start
#    and through the API (HTTP 409, shoalctl exit 2), allowed again once
#    the first is removed;
#  - a second shoald on a socket where the first answers exits non-zero and
#    leaves the socket alone; a stale socket (nothing listening) is replaced.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need qemu-io qemu-img nbdinfo nbdcopy jq curl
# Leak checking stays on (under ASan): a refused start frees what it took.

random_file "$T/a.img" $((4 << 20))
random_file "$T/g.img" $((4 << 20))
random_file "$T/q.img" $((4 << 20))
cp "$T/a.img" "$T/a.orig"
ln "$T/a.img" "$T/a-link.img"


# ---- the same file twice in one daemon, at start -------------------------
assert_refused "shoald: volume b: $T/a.img is already exported read-write by this shoald (as $T/a.img)" \
    a="$T/a.img" b="$T/a.img"
assert_refused "is already exported read-write by this shoald" a="$T/a.img" b="$T/a-link.img"
assert_refused "is already exported read-only by this shoald" \
    -c <(printf '[volume a]\nbacking = %s\nreadonly = true\n[volume b]\nbacking = %s\n' \
        "$T/a.img" "$T/a.img")

# ---- shoald serving read-write: QEMU keeps off ---------------------------
start_shoald a="$T/a.img" -c <(printf '[volume g]\nbacking = %s\nreadonly = true\n' "$T/g.img")
FIRST_SOCK=$SOCK
FIRST_PID=$SHOALD_PID

out=$(qemu-io -f raw -c 'write -P 0x11 0 64k' "$T/a.img" 2>&1) && fail "qemu-io wrote an image shoald serves: $out"
assert_contains "$out" 'Failed to get "write" lock' "qemu-io on an image shoald serves"
assert_contains "$out" "Is another process using the image" "qemu-io on an image shoald serves"
out=$(qemu-img convert -f raw -O raw "$T/a.img" "$T/conv.out" 2>&1) &&
    fail "qemu-img convert read an image shoald writes, without -U: $out"
assert_contains "$out" 'Failed to get shared "write" lock' "qemu-img convert without -U"
# -U (force share) is QEMU's documented way around the locks: the refusal
# above was the lock, not anything else about the file.
qemu-img convert -U -f raw -O raw "$T/a.img" "$T/conv.out" || fail "qemu-img convert -U"
assert_same_file "$T/conv.out" "$T/a.orig" "qemu-img convert -U"
assert_same_file "$T/a.img" "$T/a.orig" "a.img after the refused qemu-io write"

# Read-only export: readers share it, writers are kept off.
qemu-img convert -f raw -O raw "$T/g.img" "$T/g.out" || fail "qemu-img convert of a read-only export's image"
out=$(qemu-io -f raw -c 'write -P 0x11 0 64k' "$T/g.img" 2>&1) && fail "qemu-io wrote an image shoald serves read-only: $out"
assert_contains "$out" 'Failed to get "write" lock' "qemu-io on an image shoald serves read-only"

# ---- the same file twice through the API ----------------------------------
status() { # METHOD PATH JSON -> HTTP status, body in $T/body
    _curl -s -o "$T/body" -w '%{http_code}' --max-time 30 -X "$1" -H @"$(auth_header)" \
        -H 'Content-Type: application/json' --data-binary "$3" "$URL$2"
}
assert_eq "$(status POST /api/v1/volumes "{\"name\":\"a2\",\"backing\":\"$T/a-link.img\"}")" 409 \
    "API: a second read-write export of a.img (hard link)"
assert_contains "$(jq -r .error "$T/body")" "volume a2: $T/a-link.img is already exported read-write by this shoald (as $T/a.img)" \
    "API refusal"
assert_eq "$(status POST /api/v1/volumes "{\"name\":\"a3\",\"backing\":\"$T/a.img\",\"readonly\":true}")" 409 \
    "API: a read-only export beside a read-write one"
rc=0
ctl volume add a4 "$T/a.img" >"$T/out" 2>&1 || rc=$?
assert_eq "$rc" 2 "shoalctl volume add of an exported file: exit status"
assert_contains "$(cat "$T/out")" "already exported read-write by this shoald" "shoalctl volume add"
# Read-only twice is fine; a writer beside them is not.
ctl volume add g2 "$T/g.img" --readonly >/dev/null || fail "a second read-only export of g.img"
assert_eq "$(status POST /api/v1/volumes "{\"name\":\"g3\",\"backing\":\"$T/g.img\"}")" 409 \
    "API: a read-write export beside read-only ones"
assert_contains "$(jq -r .error "$T/body")" "is already exported read-only by this shoald" "API refusal"
nbdcopy "$(uri g2)" "$T/g2.out" && assert_same_file "$T/g2.out" "$T/g.img" "read of g2"
# Removed, the file can be exported read-write again.
ctl volume remove a >/dev/null || fail "shoalctl volume remove a"
ctl volume add a2 "$T/a-link.img" >/dev/null || fail "read-write export after the first was removed"
qemu-io -f raw -c 'write -P 0x22 64k 64k' "$(uri a2)" >/dev/null || fail "write through a2"
qemu-io -f raw -c 'read -P 0x22 64k 64k' "$(uri a2)" | grep -q 'read 65536/65536' || fail "read back a2"

# ---- a second shoald ------------------------------------------------------
assert_refused "$T/a.img is in use by another process that does not share \"write\"" b="$T/a.img"
assert_refused "$T/a.img is open for \"write\" by another process" -r b="$T/a.img"

# ---- the socket of a live daemon is left alone -----------------------------
rc=0
timeout -k 1 10 "$SHOALD" -f -l "unix:$FIRST_SOCK" --http off q="$T/q.img" >"$T/out" 2>"$T/err" \
    </dev/null || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "a second shoald on a live socket: exit status $rc"
assert_contains "$(cat "$T/err")" "cannot listen on unix:$FIRST_SOCK: a server answers on it" \
    "second shoald on a live socket"
[ -S "$FIRST_SOCK" ] || fail "the live daemon's socket was removed"
assert_eq "$(nbdinfo --size "$(uri a2 "$FIRST_SOCK")")" $((4 << 20)) "first daemon after the refusal"
stop_daemon "$FIRST_PID" TERM
[ ! -e "$FIRST_SOCK" ] || fail "socket left after a clean stop"

# A stale socket (its server gone) is replaced.
"$PY" -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$T/stale.sock"
[ -S "$T/stale.sock" ] || fail "no stale socket made"
NEXT_SOCK="$T/stale.sock" start_shoald q="$T/q.img"
assert_eq "$(nbdinfo --size "$(uri q)")" $((4 << 20)) "daemon on a replaced stale socket"
stop_shoald

# ---- QEMU holds the image: shoald keeps off --------------------------------
# qemu-io opens q.img read-write and sleeps (its sleep is in ms); the lock
# bytes show in /proc/locks once it is up.
bg qemu-io -f raw -c 'sleep 60000' "$T/q.img"
ino=$(stat -c %i "$T/q.img")
wait_for 20 grep -q ":$ino 100 101\$" /proc/locks || fail "qemu-io did not lock q.img: $(cat /proc/locks)"
assert_refused "shoald: volume q: $T/q.img is open for \"write\" by another process" q="$T/q.img"
assert_refused "shoald: volume q: $T/q.img is open for \"write\" by another process" -r q="$T/q.img"
start_shoald g="$T/g.img"
assert_eq "$(status POST /api/v1/volumes "{\"name\":\"q\",\"backing\":\"$T/q.img\"}")" 409 \
    "API: an image qemu-io writes"
assert_contains "$(jq -r .error "$T/body")" "$T/q.img is open for \"write\" by another process" \
    "API refusal of an image qemu-io writes"
_kill_tree "$BG_PID"
wait "$BG_PID" 2>/dev/null || true
wait_for 10 sh -c "! grep -q ':$ino ' /proc/locks" || fail "qemu-io's locks outlived it"
ctl volume add q "$T/q.img" >/dev/null || fail "volume add once qemu-io is gone"
stop_shoald
log "ok"
