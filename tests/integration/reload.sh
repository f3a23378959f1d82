#!/usr/bin/env bash
# Reload (issue 14, item 4): SIGHUP and `shoalctl reload` re-read the config
# file and reconcile it with the running daemon while an NBD client reads a
# volume (every read compared with the image's bytes, none may fail):
#   - a new [volume] appears, one dropped from the file disappears when idle
#     and stays (reported) while a client is connected;
#   - enabled = false/true and cache-size apply live; a changed backing of an
#     idle volume is exported again (bytes of the new image read back);
#   - settings that need a restart (threads, [cluster] memcached-put-queue)
#     are reported as such;
#   - a bad file changes nothing and its error is FILE:LINE, for shoalctl
#     (exit 2) and for SIGHUP (the log);
#   - volumes from the command line and from the API are kept;
#   - without a config file, reload says so; without the token it is 401;
#   - a config given as a pipe (-c <(...)) is not read again: the reload is
#     refused, with one line, and the running configuration kept.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need jq curl
need_python_nbd

for f in a b n n2 cl x; do
    head -c 2M /dev/urandom >"$T/$f.img"
done
conf=$T/shoald.conf

# write_conf LINES...: the config file, one argument per line.
write_conf() { printf '%s\n' "$@" >"$conf.tmp" && mv "$conf.tmp" "$conf"; }
names() { api_get /api/v1/volumes | jq -r 'map(.name) | sort | join(",")'; }
names_are() { [ "$(names)" = "$1" ]; }
state_of() { api_get "/api/v1/volumes/$1" | jq -r .state; }
capacity() { api_get /api/v1/cache | jq -r .capacity_bytes; }

write_conf "[shoald]" "cache-size = 64M" \
    "[volume a]" "backing = $T/a.img" \
    "[volume b]" "backing = $T/b.img"
start_shoald -c "$conf" "cl=$T/cl.img"
assert_eq "$(names)" a,b,cl "volumes at start"
assert_eq "$(capacity)" $((64 << 20)) "cache at start"

# A client reading volume a the whole time: each pass reads all of it and
# compares with the image; any error or difference ends it with status 1.
cat >"$T/reader.py" <<'PY'
import os, sys, nbd
uri, image, stop, count = sys.argv[1:5]
want = open(image, "rb").read()
h = nbd.NBD()
h.connect_uri(uri)
n = 0
while not os.path.exists(stop):
    for off in range(0, len(want), 256 << 10):
        got = h.pread(256 << 10, off)
        if got != want[off:off + (256 << 10)]:
            print("reader: wrong bytes at", off, file=sys.stderr)
            sys.exit(1)
    n += 1
    # Atomically: the test reads it at any moment (a truncated file would
    # read as no progress).
    with open(count + ".tmp", "w") as f:
        f.write(str(n))
    os.replace(count + ".tmp", count)
h.shutdown()
PY
"$PY" "$T/reader.py" "$(uri a)" "$T/a.img" "$T/stop" "$T/passes" 2>"$T/reader.err" &
reader=$!
_HELPER_PIDS+=("$reader")
wait_for 20 test -s "$T/passes"
passes() { cat "$T/passes"; }

# Reload is a change: without the token it is refused and does nothing.
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary '' "$URL/api/v1/reload")
assert_eq "$code" 401 "POST /api/v1/reload without the token"

# 1. SIGHUP: b dropped (idle: removed), n added, a disabled live, cache
#    shrunk, threads and the memcached put queue changed (need a restart).
write_conf "[shoald]" "cache-size = 32M" "threads = 8" \
    "[cluster]" "memcached-put-queue = 32M" \
    "[volume a]" "backing = $T/a.img" "enabled = false" \
    "[volume n]" "backing = $T/n.img"
p0=$(passes)
kill -HUP "$SHOALD_PID"
wait_for 10 names_are a,cl,n
assert_eq "$(state_of a)" disabled "a after enabled = false"
assert_eq "$(capacity)" $((32 << 20)) "cache after cache-size = 32M"
wait_for 10 grep -q "threads changed: applied at the next restart" "$SHOALD_LOG"
wait_for 10 grep -q "memcached-put-queue changed: applied at the next restart" "$SHOALD_LOG"
nbdsh -u "$(uri n)" -c 'import sys; sys.stdout.buffer.write(h.pread(h.get_size(), 0))' >"$T/n.read"
assert_same_file "$T/n.read" "$T/n.img" "volume n added by SIGHUP"

# 2. shoalctl reload: a dropped from the file while the reader is on it:
#    kept and reported; a changed backing of idle n: exported again; a
#    volume added through the API is kept.
ctl volume add x "$T/x.img" >/dev/null
write_conf "[shoald]" "cache-size = 32M" "threads = 8" \
    "[volume n]" "backing = $T/n2.img"
ctl reload >"$T/r2.out" 2>&1 || fail "shoalctl reload exited $?: $(cat "$T/r2.out")"
assert_contains "$(cat "$T/r2.out")" "volume a: no longer in the file, but 1 client(s) are connected: kept"
assert_contains "$(cat "$T/r2.out")" "volume n exported again"
assert_contains "$(cat "$T/r2.out")" "threads changed"
assert_eq "$(names)" a,cl,n,x "volumes after removing busy a from the file"
nbdsh -u "$(uri n)" -c 'import sys; sys.stdout.buffer.write(h.pread(h.get_size(), 0))' >"$T/n2.read"
assert_same_file "$T/n2.read" "$T/n2.img" "volume n after its backing changed"

# 3. A bad file changes nothing: shoalctl gets FILE:LINE and exits 2;
#    SIGHUP logs it.
cp "$conf" "$T/good.conf"
write_conf "[shoald]" "cache-size = 16M" "[volume q]" "backing = $T/x.img" "bogus = 1"
rc=0
ctl reload >"$T/r3.out" 2>"$T/r3.err" || rc=$?
assert_eq "$rc" 2 "shoalctl reload of a bad file: exit status"
assert_eq "$(wc -l <"$T/r3.err")" 1 "lines on stderr for a bad file"
assert_contains "$(cat "$T/r3.err")" "$conf:5: unknown setting 'bogus' in [volume q]"
write_conf "[shoald]" "[volume q]" "backing = $T/x.img" "[volume q]" "backing = $T/x.img"
kill -HUP "$SHOALD_PID"
wait_for 10 grep -q "reload refused, nothing changed: $conf:4: \[volume q\] appears twice (first on line 2)" "$SHOALD_LOG"
write_conf "[volume q]" "backing = $T/missing.img"
rc=0
ctl reload >"$T/r4.out" 2>"$T/r4.err" || rc=$?
assert_eq "$rc" 2 "shoalctl reload of a missing backing: exit status"
assert_contains "$(cat "$T/r4.err")" "$conf:1: volume q: cannot open '$T/missing.img'"
# A value only a start used to check (the memcached list) is refused too,
# not accepted as "applied at the next restart" for that restart to fail.
write_conf "[shoald]" "cache-size = 16M" "[cluster]" "memcached = 127.0.0.1:1,127.0.0.1:1"
rc=0
ctl reload >"$T/r5.out" 2>"$T/r5.err" || rc=$?
assert_eq "$rc" 2 "shoalctl reload of a bad memcached list: exit status"
assert_contains "$(cat "$T/r5.err")" "$conf:4: invalid --memcached '127.0.0.1:1,127.0.0.1:1': server 127.0.0.1:1 listed twice"
assert_eq "$(names)" a,cl,n,x "volumes after bad files"
assert_eq "$(capacity)" $((32 << 20)) "cache after bad files"
cp "$T/good.conf" "$conf"

# 4. The reader is still reading right; once it is gone, a reload removes
#    a; a back in the file later comes back enabled.
p1=$(passes)
[ "$p1" -gt "$p0" ] || fail "the reader made no progress across the reloads ($p0 -> $p1)"
touch "$T/stop"
wait "$reader" || fail "the reader failed across reloads: $(cat "$T/reader.err")"
log "reader: $p1+ passes over volume a, all bytes equal"
ctl reload --json >"$T/r5.json" || fail "shoalctl reload --json exited $?"
jq -e '.applied | index("volume a removed")' "$T/r5.json" >/dev/null ||
    fail "idle a not removed: $(cat "$T/r5.json")"
assert_eq "$(names)" cl,n,x "volumes once a is idle"
write_conf "[shoald]" "cache-size = 32M" "threads = 8" \
    "[volume n]" "backing = $T/n2.img" "[volume a]" "backing = $T/a.img"
ctl reload >/dev/null || fail "reload adding a back exited $?"
assert_eq "$(names)" a,cl,n,x "volumes after a is back"
assert_eq "$(state_of a)" enabled "a back in the file"
# A [volume] named like an API volume: an error of that volume only.
write_conf "[shoald]" "cache-size = 32M" "threads = 8" \
    "[volume n]" "backing = $T/n2.img" "[volume a]" "backing = $T/a.img" \
    "[volume x]" "backing = $T/b.img"
rc=0
ctl reload >"$T/r6.out" 2>&1 || rc=$?
assert_eq "$rc" 2 "reload with a [volume] named like an API volume: exit status"
assert_contains "$(cat "$T/r6.out")" "volume x ($conf:8): a volume of that name was added through the API"
stop_shoald

# 5. Without a config file there is nothing to reload.
start_shoald "cl=$T/cl.img"
rc=0
ctl reload 2>"$T/r7.err" || rc=$?
assert_eq "$rc" 2 "reload without a config file: exit status"
assert_contains "$(cat "$T/r7.err")" "without a config file"
stop_shoald

# 6. A config given as a pipe (-c <(...)) cannot be read again (it would
#    read as empty): a reload is refused with one line, for shoalctl (exit
#    2) and for SIGHUP (the log), and what runs is kept: its volume serves
#    the same bytes, its cache size stays.
start_shoald -c <(printf '[shoald]\ncache-size = 48M\n[volume p]\nbacking = %s\n' "$T/a.img")
assert_eq "$(names)" p "volumes from a piped config"
rc=0
ctl reload >"$T/r8.out" 2>"$T/r8.err" || rc=$?
assert_eq "$rc" 2 "shoalctl reload of a piped config: exit status"
assert_eq "$(wc -l <"$T/r8.err")" 1 "lines on stderr for a piped config"
assert_contains "$(cat "$T/r8.err")" "is a pipe, not a regular file: it cannot be read again"
kill -HUP "$SHOALD_PID"
wait_for 10 grep -q "reload refused, nothing changed: config file '/dev/fd/[0-9]*' is a pipe" "$SHOALD_LOG"
assert_eq "$(names)" p "volumes after refused reloads of a piped config"
assert_eq "$(capacity)" $((48 << 20)) "cache after refused reloads of a piped config"
nbdsh -u "$(uri p)" -c 'import sys; sys.stdout.buffer.write(h.pread(h.get_size(), 0))' >"$T/p.read"
assert_same_file "$T/p.read" "$T/a.img" "volume p after refused reloads"
stop_shoald
log PASS
