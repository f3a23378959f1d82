#!/usr/bin/python3
"""Every endpoint of the management API against the real daemon.

Good and bad input for each route (stats, volumes, add, remove, enable,
disable, invalidate, prefetch with progress, cache resize), the generic
404/405/413 answers, bearer-token auth (--http-token-file: every change
needs the token, loopback included; the token file is created when missing
and refused when others could read or change it), backing paths hidden from
reads without the token, a non-loopback address (served, with a warning that
the token travels in clear), and GET /metrics checked with `promtool check
metrics`. Effects are checked through the data path
(python3-libnbd) and the stats, not only through status codes.

Exits 77 after everything else passed when promtool (Debian package
prometheus) or nbdkit (for the slow prefetch) is missing.
"""
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import itlib  # noqa: E402
from itlib import TMP, Shoald, TestFailure, check, log, make_file  # noqa: E402

import nbd  # noqa: E402

MiB = 1 << 20
BLOCK = 4096
HIST_BUCKETS = 26
GOLD = bytearray()  # what the gold volume holds (the test writes to it)
skipped = []


# ---- HTTP ----------------------------------------------------------------

class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.ctype = headers.get("Content-Type", "")
        self.json = None
        if body and self.ctype.startswith("application/json"):
            self.json = json.loads(body)

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


def call(d, method, path, body=None, token=True, raw=None, headers=None):
    """One request; never raises on HTTP errors. body: JSON-encodable;
    raw: bytes sent as is. token: True for the daemon's own, None for none,
    or the string to send."""
    if token is True:
        token = d.token
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(d.url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return Resp(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Resp(e.code, e.headers, e.read())


def expect(r, status, what):
    check(r.status == status, f"{what}: status {r.status}, expected {status}: {r.body[:300]!r}")
    if status >= 400:
        check(r.ctype.startswith("application/json"), f"{what}: error body is {r.ctype}, not JSON")
        check(isinstance(r.json, dict) and isinstance(r.json.get("error"), str) and r.json["error"],
              f"{what}: error body has no \"error\" string: {r.body!r}")
    return r


def get_json(d, path, what=None):
    r = expect(call(d, "GET", path), 200, what or f"GET {path}")
    check(r.ctype.startswith("application/json"), f"GET {path}: content type {r.ctype}")
    return r.json


def get_json_as(d, path, token):
    r = expect(call(d, "GET", path, token=token), 200, f"GET {path} (token {token})")
    return r.json


def vol_stats(d, name):
    return get_json(d, f"/api/v1/stats/volumes/{name}")


def wait_until(fn, secs, what):
    deadline = time.time() + secs
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise TestFailure(f"timed out after {secs} s waiting for {what}")


def wait_cached(d, name, blocks):
    """Blocks are installed after the reply went out: wait until a read's
    blocks are in the directory before counting on hits."""
    return wait_until(lambda: vol_stats(d, name)["cached_blocks"] >= blocks, 10,
                      f"{name} to have {blocks} cached blocks")


def pattern(size, seed):
    """Deterministic, non-repeating content (no two 4 KiB blocks alike)."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += (f"{seed}:{i:012d}:".encode() * 256)[:BLOCK]
        i += 1
    return bytes(out[:size])


# ---- stats ---------------------------------------------------------------

CACHE_INT_KEYS = ["capacity_bytes", "used_bytes", "unique_blocks", "logical_blocks", "zero_blocks",
                  "logical_bytes", "metadata_bytes", "evictions", "inserts", "dedup_hits",
                  "insert_failures"]
CACHE_NUM_KEYS = ["dedup_ratio", "metadata_bytes_per_block", "fill_ratio"]
VOL_INT_KEYS = ["read_ops", "read_bytes", "read_hit_bytes", "read_miss_bytes", "write_ops",
                "write_bytes", "trim_ops", "trim_bytes", "zero_ops", "zero_bytes", "flush_ops",
                "cache_ops", "block_status_ops", "errors", "backend_read_ops",
                "backend_read_bytes", "backend_errors", "insert_races", "size_bytes",
                "connections", "cached_blocks", "zero_blocks"]
VOL_NUM_KEYS = ["hit_ratio", "offload_ratio"]
# Booleans in every JSON record (0/1 only in /metrics, which has no booleans).
VOL_BOOL_KEYS = ["enabled"]


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_volume_stats(v):
    name = v.get("name")
    check(isinstance(name, str) and name, f"volume without a name: {v}")
    check(isinstance(v.get("backend"), str) and v["backend"], f"{name}: backend")
    check(v.get("state") in ("enabled", "disabled"), f"{name}: state {v.get('state')!r}")
    check(isinstance(v.get("readonly"), bool), f"{name}: readonly is not a boolean")
    for k in VOL_INT_KEYS:
        check(is_int(v.get(k)) and v[k] >= 0, f"{name}: {k} missing or not a count: {v.get(k)!r}")
    for k in VOL_NUM_KEYS:
        check(is_num(v.get(k)) and 0 <= v[k] <= 1, f"{name}: {k} missing or outside [0,1]")
    for k in VOL_BOOL_KEYS:
        check(isinstance(v.get(k), bool), f"{name}: {k} missing or not a boolean: {v.get(k)!r}")
    check(v["enabled"] is (v["state"] == "enabled"), f"{name}: enabled vs state")
    check(v["read_hit_bytes"] + v["read_miss_bytes"] == v["read_bytes"],
          f"{name}: read_hit_bytes + read_miss_bytes != read_bytes")
    if v["read_bytes"]:
        check(abs(v["hit_ratio"] - v["read_hit_bytes"] / v["read_bytes"]) < 1e-6,
              f"{name}: hit_ratio is not read_hit_bytes / read_bytes")
    lat = v.get("latency_us")
    check(isinstance(lat, dict), f"{name}: latency_us")
    for op in ("read_hit", "read_miss", "write"):
        o = lat.get(op)
        check(isinstance(o, dict), f"{name}: latency_us.{op}")
        for k in ("p50", "p90", "p99", "mean"):
            check(is_num(o.get(k)) and o[k] >= 0, f"{name}: latency_us.{op}.{k}")
        check(is_int(o.get("count")), f"{name}: latency_us.{op}.count")
        check(o["p50"] <= o["p90"] <= o["p99"], f"{name}: latency_us.{op}: p50 <= p90 <= p99")
        b = o.get("buckets")
        check(isinstance(b, list) and len(b) == HIST_BUCKETS and all(is_int(x) for x in b),
              f"{name}: latency_us.{op}.buckets")
        check(sum(b) == o["count"], f"{name}: latency_us.{op}: buckets do not add up to count")


def check_stats_doc(s):
    check(set(s) >= {"cache", "volumes", "uptime_seconds", "version"}, f"stats keys: {sorted(s)}")
    check(is_int(s["uptime_seconds"]) and isinstance(s["version"], str), "uptime/version types")
    c = s["cache"]
    for k in CACHE_INT_KEYS:
        check(is_int(c.get(k)) and c[k] >= 0, f"cache.{k} missing or not a count: {c.get(k)!r}")
    for k in CACHE_NUM_KEYS:
        check(is_num(c.get(k)) and c[k] >= 0, f"cache.{k} missing or not a number")
    check(c["used_bytes"] == c["unique_blocks"] * BLOCK, "cache.used_bytes != unique_blocks * 4096")
    check(c["used_bytes"] <= c["capacity_bytes"], "cache.used_bytes > capacity_bytes")
    if c["unique_blocks"]:
        check(abs(c["dedup_ratio"] - c["logical_blocks"] / c["unique_blocks"]) < 1e-6,
              "cache.dedup_ratio != logical_blocks / unique_blocks")
        check(abs(c["metadata_bytes_per_block"] - c["metadata_bytes"] / c["unique_blocks"]) < 1e-3,
              "cache.metadata_bytes_per_block")
    check(isinstance(s["volumes"], list), "volumes is not a list")
    for v in s["volumes"]:
        check_volume_stats(v)


def test_stats(d, vols):
    s = get_json(d, "/api/v1/stats")
    check_stats_doc(s)
    check(s["cache"]["capacity_bytes"] == 64 * MiB, "capacity_bytes != -m 64M")
    check(sorted(v["name"] for v in s["volumes"]) == sorted(vols), "volume names in stats")

    # Reads through NBD move the counters: a cold read misses, the same
    # read again hits; the twin volume (same bytes) is served by dedup.
    h = d.open("gold")
    data = h.pread(MiB, 0)
    check(data == pattern(MiB, "gold"), "gold: first read differs from the file")
    wait_cached(d, "gold", MiB // BLOCK)
    data = h.pread(MiB, 0)
    check(data == pattern(MiB, "gold"), "gold: second read differs from the file")
    h.pwrite(b"w" * 8192, 2 * MiB)
    GOLD[2 * MiB:2 * MiB + 8192] = b"w" * 8192
    h.flush()
    h.shutdown()
    v = vol_stats(d, "gold")
    check_volume_stats(v)
    check(v["read_ops"] >= 2 and v["read_bytes"] == 2 * MiB, f"gold: read counters {v['read_ops']} {v['read_bytes']}")
    check(v["read_miss_bytes"] == MiB and v["read_hit_bytes"] == MiB,
          f"gold: hit/miss bytes {v['read_hit_bytes']}/{v['read_miss_bytes']}, expected 1 MiB each")
    check(abs(v["hit_ratio"] - 0.5) < 1e-9, f"gold: hit_ratio {v['hit_ratio']}, expected 0.5")
    check(abs(v["offload_ratio"] - 0.5) < 1e-9, f"gold: offload_ratio {v['offload_ratio']}")
    check(v["write_ops"] >= 1 and v["write_bytes"] == 8192 and v["flush_ops"] >= 1, "gold: write counters")
    check(v["latency_us"]["read_hit"]["count"] >= 1 and v["latency_us"]["read_miss"]["count"] >= 1
          and v["latency_us"]["write"]["count"] >= 1, "gold: latency counts")
    check(v["latency_us"]["read_hit"]["p50"] > 0, "gold: read_hit p50 is 0 after hits")
    check(v["cached_blocks"] >= MiB // BLOCK, f"gold: cached_blocks {v['cached_blocks']}")

    h = d.open("twin")
    check(h.pread(MiB, 0) == pattern(MiB, "gold"), "twin: read differs from the file")
    h.shutdown()
    c = get_json(d, "/api/v1/cache")
    for k in CACHE_INT_KEYS:
        check(is_int(c.get(k)), f"/api/v1/cache: {k}")
    check(c["dedup_hits"] >= MiB // BLOCK, f"cache.dedup_hits {c['dedup_hits']} after reading a twin")
    check(c["dedup_ratio"] >= 1.5, f"cache.dedup_ratio {c['dedup_ratio']} after reading a twin")
    check(c["logical_bytes"] >= 2 * MiB and c["logical_bytes"] > c["used_bytes"],
          "cache.logical_bytes (effective size) does not exceed used_bytes with dedup")
    check(c["metadata_bytes"] > 0 and c["metadata_bytes_per_block"] > 0, "cache metadata figures")
    check(c["inserts"] >= MiB // BLOCK, "cache.inserts")

    # One volume's stats: the same record as in the list.
    r = call(d, "GET", "/api/v1/stats/volumes/nope")
    expect(r, 404, "stats of an unknown volume")
    r = call(d, "GET", "/api/v1/stats/volumes/..")
    check(r.status == 404, f"stats of '..': {r.status}")
    log("stats: keys, types and counters OK")


# ---- volumes ---------------------------------------------------------------

VOL_KEYS = {"name", "backend", "state", "readonly", "size_bytes", "enabled", "connections"}


def check_volume_record(v, name, size=None, readonly=None, state=None):
    check(VOL_KEYS <= set(v), f"volume record keys: {sorted(v)}")
    check(v["name"] == name, f"volume record name {v['name']!r}")
    check(is_int(v["size_bytes"]) and is_int(v["connections"]), f"{name}: size/connections types")
    check(isinstance(v["readonly"], bool) and isinstance(v["enabled"], bool), f"{name}: bool types")
    check(v["enabled"] is (v["state"] == "enabled"), f"{name}: enabled vs state")
    if size is not None:
        check(v["size_bytes"] == size, f"{name}: size_bytes {v['size_bytes']} != {size}")
    if readonly is not None:
        check(v["readonly"] == readonly, f"{name}: readonly {v['readonly']}")
    if state is not None:
        check(v["state"] == state, f"{name}: state {v['state']} != {state}")


def test_volumes_get(d):
    lst = get_json(d, "/api/v1/volumes")
    check(isinstance(lst, list) and {v["name"] for v in lst} == {"gold", "twin", "ro"}, f"volumes list {lst}")
    for v in lst:
        check_volume_record(v, v["name"])
    v = get_json(d, "/api/v1/volumes/ro")
    check_volume_record(v, "ro", size=4 * MiB, readonly=True, state="enabled")
    check("ro.img" in v["backend"], f"backend of ro: {v['backend']}")
    check(v["backend_hidden"] is False, "backend_hidden with the token")
    # Without the token (or with a wrong one) no backing path is shown
    # anywhere; the record says so.
    for tok in (None, "not-the-token"):
        for path in ("/api/v1/volumes", "/api/v1/volumes/ro", "/api/v1/stats", "/api/v1/stats/volumes/ro",
                     "/metrics"):
            r = expect(call(d, "GET", path, token=tok), 200, f"GET {path} with token {tok}")
            check(TMP.encode() not in r.body and b".img" not in r.body,
                  f"GET {path} without the token shows a backing path: {r.body[:300]!r}")
        lst = get_json_as(d, "/api/v1/volumes", tok)
        check(all(v.get("backend_hidden") is True and "backend" not in v for v in lst),
              f"volumes without the token: {lst}")
        s = get_json_as(d, "/api/v1/stats", tok)
        check(all(v.get("backend_hidden") is True and "backend" not in v for v in s["volumes"]),
              "stats without the token")
    expect(call(d, "GET", "/api/v1/volumes/nope"), 404, "GET unknown volume")
    expect(call(d, "GET", "/api/v1/volumes/.hidden"), 404, "GET invalid volume name")
    # HEAD is answered like GET, without a body.
    r = call(d, "HEAD", "/api/v1/volumes/ro")
    check(r.status == 200 and r.body == b"", f"HEAD /api/v1/volumes/ro: {r.status} {r.body[:50]!r}")
    log("GET volumes OK")


def test_volume_add(d):
    path = make_file(os.path.join(TMP, "new.img"), 2 * MiB, pattern(2 * MiB, "new"))
    r = expect(call(d, "POST", "/api/v1/volumes", {"name": "new-1", "backing": path}), 201, "add new-1")
    check_volume_record(r.json, "new-1", size=2 * MiB, readonly=False, state="enabled")
    check(r.headers.get("Location") == "/api/v1/volumes/new-1", f"Location: {r.headers.get('Location')}")
    h = d.open("new-1")
    check(h.pread(MiB, MiB) == pattern(2 * MiB, "new")[MiB:], "new-1 does not serve its backing file")
    h.shutdown()

    ro = make_file(os.path.join(TMP, "new-ro.img"), MiB, pattern(MiB, "nro"))
    os.chmod(ro, 0o444)
    r = expect(call(d, "POST", "/api/v1/volumes",
                    {"name": "new.ro_2", "backing": ro, "readonly": True, "enabled": False}),
               201, "add read-only, disabled")
    check_volume_record(r.json, "new.ro_2", size=MiB, readonly=True, state="disabled")
    h = d.open("new.ro_2")
    check(h.is_read_only(), "new.ro_2 is not read-only over NBD")
    check(h.pread(4096, 0) == pattern(MiB, "nro")[:4096], "new.ro_2 content")
    itlib.expect_error(lambda: h.pwrite(b"x" * 512, 0), {1, 30}, "write to a read-only volume")
    h.shutdown()

    bad_bodies = [
        (b"", "empty body"),
        (b"{", "truncated JSON"),
        (b"{\"name\": \"x\", \"backing\": \"/x\",}", "trailing comma"),
        (b"[]", "an array"),
        (b"\"name\"", "a string"),
        (b"{\"name\": \"a\", \"name\": \"b\", \"backing\": \"/x\"}", "duplicate keys"),
        (json.dumps({"backing": path}).encode(), "missing name"),
        (json.dumps({"name": "x1"}).encode(), "missing backing"),
        (json.dumps({"name": "", "backing": path}).encode(), "empty name"),
        (json.dumps({"name": 7, "backing": path}).encode(), "name not a string"),
        (json.dumps({"name": "x2", "backing": path, "readonly": "yes"}).encode(), "readonly not a bool"),
        (json.dumps({"name": "x3", "backing": path, "read_only": True}).encode(), "unknown field"),
        (json.dumps({"name": "x4", "backing": path, "conns": 1000}).encode(), "conns out of range"),
        (b"{\"name\": \"x\\u0000y\", \"backing\": \"/x\"}", "NUL in name"),
        (b"\xff\xfe{}", "not UTF-8"),
    ]
    for raw, what in bad_bodies:
        expect(call(d, "POST", "/api/v1/volumes", raw=raw), 400, f"add with {what}")
    for name in ["a/b", ".hidden", "a b", "x" * 256, "é", "a;b", ".."]:
        expect(call(d, "POST", "/api/v1/volumes", {"name": name, "backing": path}), 400,
               f"add with invalid name {name[:20]!r}")
    expect(call(d, "POST", "/api/v1/volumes", {"name": "new-1", "backing": path}), 409, "duplicate add")
    expect(call(d, "POST", "/api/v1/volumes", {"name": "gold", "backing": path}), 409, "add over a running volume")
    expect(call(d, "POST", "/api/v1/volumes", {"name": "missing", "backing": os.path.join(TMP, "nope.img")}),
           400, "unopenable backing (no such file)")
    expect(call(d, "POST", "/api/v1/volumes", {"name": "dir", "backing": TMP}), 400, "backing is a directory")
    expect(call(d, "POST", "/api/v1/volumes", {"name": "nbdx", "backing": "nbd+unix:///x?socket=" +
                                                os.path.join(TMP, "no.sock")}), 400,
           "unreachable NBD backing")
    names = {v["name"] for v in get_json(d, "/api/v1/volumes")}
    check(names == {"gold", "twin", "ro", "new-1", "new.ro_2"}, f"volumes after bad adds: {names}")
    log("POST volumes OK (good, bad JSON, missing fields, invalid names, 409, unopenable)")


def test_volume_remove(d):
    expect(call(d, "DELETE", "/api/v1/volumes/nope"), 404, "remove unknown")
    expect(call(d, "DELETE", "/api/v1/volumes/..."), 404, "remove invalid name")
    r = call(d, "DELETE", "/api/v1/volumes/new.ro_2")
    check(r.status == 204 and r.body == b"", f"remove new.ro_2: {r}")
    expect(call(d, "GET", "/api/v1/volumes/new.ro_2"), 404, "GET after remove")
    expect(call(d, "DELETE", "/api/v1/volumes/new.ro_2"), 404, "remove twice")

    # A connected client blocks a plain remove; force drops it.
    h = d.open("new-1")
    idle = d.open("new-1")  # sends nothing across the forced remove
    check(h.pread(4096, 0) == pattern(2 * MiB, "new")[:4096], "new-1 read before remove")
    wait_until(lambda: get_json(d, "/api/v1/volumes/new-1")["connections"] == 2, 5, "connections == 2")
    expect(call(d, "DELETE", "/api/v1/volumes/new-1"), 409, "remove with a client connected")
    expect(call(d, "DELETE", "/api/v1/volumes/new-1?force=maybe"), 400, "remove with force=maybe")
    expect(call(d, "DELETE", "/api/v1/volumes/new-1?force=0"), 409, "remove with force=0")
    check(h.pread(4096, 4096) == pattern(2 * MiB, "new")[4096:8192], "client still served after the 409")
    r = call(d, "DELETE", "/api/v1/volumes/new-1?force=1")
    check(r.status == 204, f"forced remove: {r}")
    expect(call(d, "GET", "/api/v1/volumes/new-1"), 404, "GET after forced remove")
    # The name and the image are free again at once, while the dropped
    # clients have sent nothing since (an idle client used to keep the image
    # open and locked until its next request: 409 "already exported"); the
    # remove waits for them to let go (NBD's readers look once a second).
    path = os.path.join(TMP, "new.img")
    expect(call(d, "POST", "/api/v1/volumes", {"name": "new-1", "backing": path}), 201, "re-add new-1")
    check(get_json(d, "/api/v1/volumes/new-1")["connections"] == 0, "the dropped client counts on the new volume")
    try:
        h.pread(4096, 0)
        raise TestFailure("a client of a force-removed volume is still served")
    except nbd.Error:
        pass
    # The connection stays, and is answered without the volume: a flush
    # fails too (a plain removal flushed nothing; a move's does).
    try:
        h.flush()
        raise TestFailure("a flush after a forced remove (no move) succeeded")
    except nbd.Error as e:
        check(e.errnum == errno.ESHUTDOWN, f"flush after a forced remove: {e}")
    try:
        h.shutdown()
    except nbd.Error:
        pass
    # The client that sent nothing since stays connected too, answered
    # without the volume.
    try:
        idle.pread(4096, 0)
        raise TestFailure("the idle client of a force-removed volume is served")
    except nbd.Error as e:
        check(e.errnum == errno.ESHUTDOWN, f"idle client's read after a forced remove: {e}")
    idle.shutdown()
    expect(call(d, "DELETE", "/api/v1/volumes/new-1?force"), 204, "remove with a bare ?force")
    log("DELETE volumes OK (204, 404, 409 with a client, force)")


def test_add_remove_race(d):
    """Adds and removes of one name at once: an add logged its new volume
    after publishing it, when a remove could free it already (a
    heap-use-after-free under ASan, within seconds). The daemon must live
    and, at its stop, have no sanitizer report."""
    path = make_file(os.path.join(TMP, "race.img"), MiB, pattern(MiB, "race"))
    stop = time.monotonic() + 4
    seen = set()
    body = json.dumps({"name": "race", "backing": path})
    # Raw requests, a connection each (every answer closes its
    # connection): urllib's overhead made the window too rare to hit.
    reqs = {"add": (f"POST /api/v1/volumes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {d.token}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n{body}").encode(),
            "rm": (f"DELETE /api/v1/volumes/race HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {d.token}\r\n\r\n").encode()}

    def loop(kind):
        try:
            while time.monotonic() < stop:
                with socket.create_connection(("127.0.0.1", d.port), timeout=30) as s:
                    f = s.makefile("rb")
                    s.sendall(reqs[kind])
                    status = int(f.readline().split()[1])
                    length = 0
                    for line in iter(f.readline, b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    f.read(length)
                    seen.add(status)
        except (OSError, ValueError, IndexError) as e:
            seen.add(f"{kind}: {e!r}")  # the daemon died: said below

    ts = [threading.Thread(target=loop, args=(k,)) for k in ("add", "rm", "rm")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(d.alive(), "shoald died in the add/remove race")
    check(seen <= {201, 204, 404, 409}, f"statuses in the add/remove race: {seen}")
    call(d, "DELETE", "/api/v1/volumes/race")
    log(f"add/remove race OK ({sorted(seen)})")


# ---- control -----------------------------------------------------------------

def test_enable_disable(d):
    h = d.open("gold")
    h.pread(MiB, 0)
    wait_cached(d, "gold", MiB // BLOCK)
    r = expect(call(d, "POST", "/api/v1/volumes/gold/disable"), 200, "disable")
    check_volume_record(r.json, "gold", state="disabled")
    v = vol_stats(d, "gold")
    check(v["state"] == "disabled" and v["enabled"] is False, "stats after disable")
    check(v["cached_blocks"] == 0, f"disable kept {v['cached_blocks']} cached blocks")
    # Pass-through caches nothing, so a prefetch would do nothing and say
    # "done": refused instead, with nothing started.
    r = expect(call(d, "POST", "/api/v1/volumes/gold/prefetch"), 409, "prefetch while disabled")
    check(r.json == {"error": "volume gold: acceleration is off (pass-through): enable it before prefetching"},
          f"prefetch while disabled answered {r.json}")
    check(not get_json(d, "/api/v1/volumes/gold/prefetch")["running"], "a refused prefetch is running")
    hits = v["read_hit_bytes"]
    check(h.pread(MiB, 0) == pattern(MiB, "gold"), "read while disabled")
    check(h.pread(MiB, 0) == pattern(MiB, "gold"), "read while disabled")
    v = vol_stats(d, "gold")
    check(v["read_hit_bytes"] == hits, "hit bytes grew while disabled (not pass-through)")
    check(v["cached_blocks"] == 0, "blocks cached while disabled")
    # Idempotent.
    expect(call(d, "POST", "/api/v1/volumes/gold/disable"), 200, "disable twice")
    r = expect(call(d, "POST", "/api/v1/volumes/gold/enable"), 200, "enable")
    check_volume_record(r.json, "gold", state="enabled")
    h.pread(MiB, 0)
    wait_cached(d, "gold", MiB // BLOCK)
    h.pread(MiB, 0)
    check(vol_stats(d, "gold")["read_hit_bytes"] > hits, "no hits after enable")
    expect(call(d, "POST", "/api/v1/volumes/gold/enable"), 200, "enable twice")
    check(get_json(d, "/api/v1/volumes/gold")["connections"] == 1, "client disconnected by disable/enable")
    h.shutdown()
    for op in ("enable", "disable"):
        expect(call(d, "POST", f"/api/v1/volumes/nope/{op}"), 404, f"{op} unknown volume")
        r = expect(call(d, "GET", f"/api/v1/volumes/gold/{op}"), 405, f"GET {op}")
        check("POST" in r.headers.get("Allow", ""), f"Allow header of {op}: {r.headers.get('Allow')}")
    log("enable/disable OK")


def test_invalidate(d):
    h = d.open("gold")
    h.pread(2 * MiB, 0)
    wait_cached(d, "gold", 2 * MiB // BLOCK)
    before = vol_stats(d, "gold")["cached_blocks"]
    check(before >= 2 * MiB // BLOCK, f"gold cached blocks before invalidate: {before}")
    r = expect(call(d, "POST", "/api/v1/volumes/gold/invalidate", {"offset": 4096, "length": "8K"}), 200,
               "invalidate a range")
    check(r.json == {"invalidated": True, "volume": "gold", "offset": 4096, "length": 8192},
          f"invalidate answer {r.json}")
    after = vol_stats(d, "gold")["cached_blocks"]
    check(after == before - 2, f"range invalidate: cached blocks {before} -> {after}, expected -2")
    r = expect(call(d, "POST", "/api/v1/volumes/gold/invalidate"), 200, "invalidate everything")
    check(r.json["offset"] == 0 and r.json["length"] == 8 * MiB, f"whole-volume invalidate answer {r.json}")
    check(vol_stats(d, "gold")["cached_blocks"] == 0, "cached blocks after a whole invalidate")
    check(h.pread(MiB, 0) == pattern(MiB, "gold"), "read after invalidate")
    h.shutdown()
    bad = [
        ({"offset": 9 * MiB}, "offset past the end"),
        ({"offset": 4 * MiB, "length": 5 * MiB}, "range past the end"),
        ({"offset": -1}, "negative offset"),
        ({"offset": "lots"}, "offset not a size"),
        ({"start": 0}, "unknown field"),
    ]
    for body, what in bad:
        expect(call(d, "POST", "/api/v1/volumes/gold/invalidate", body), 400, f"invalidate with {what}")
    expect(call(d, "POST", "/api/v1/volumes/gold/invalidate", raw=b"{nope"), 400, "invalidate with bad JSON")
    expect(call(d, "POST", "/api/v1/volumes/nope/invalidate"), 404, "invalidate unknown volume")
    log("invalidate OK")


def test_prefetch(d):
    st = get_json(d, "/api/v1/volumes/gold/prefetch")
    check(set(st) >= {"running", "offset", "length", "done_bytes", "error"}, f"prefetch status keys {st}")
    expect(call(d, "POST", "/api/v1/volumes/gold/invalidate"), 200, "invalidate before prefetch")
    r = expect(call(d, "POST", "/api/v1/volumes/gold/prefetch", {"offset": "1M", "length": "4M"}), 202,
               "prefetch start")
    check(r.json == {"started": True, "volume": "gold", "offset": MiB, "length": 4 * MiB}, f"prefetch answer {r.json}")
    st = wait_until(lambda: (lambda s: s if not s["running"] else None)(
        get_json(d, "/api/v1/volumes/gold/prefetch")), 30, "prefetch to finish")
    check(st["done_bytes"] == 4 * MiB and st["error"] is None and st["offset"] == MiB and st["length"] == 4 * MiB,
          f"prefetch final status {st}")
    v = vol_stats(d, "gold")
    check(v["cached_blocks"] == 4 * MiB // BLOCK, f"cached blocks after prefetching 4 MiB: {v['cached_blocks']}")
    h = d.open("gold")
    hits = v["read_hit_bytes"]
    check(h.pread(4 * MiB, MiB) == GOLD[MiB:5 * MiB], "read of the prefetched range")
    check(vol_stats(d, "gold")["read_hit_bytes"] - hits == 4 * MiB, "prefetched range was not all hits")
    h.shutdown()
    # Whole volume (no body).
    r = expect(call(d, "POST", "/api/v1/volumes/gold/prefetch"), 202, "prefetch the whole volume")
    check(r.json["offset"] == 0 and r.json["length"] == 8 * MiB, f"whole prefetch answer {r.json}")
    wait_until(lambda: not get_json(d, "/api/v1/volumes/gold/prefetch")["running"], 30, "whole prefetch")
    expect(call(d, "POST", "/api/v1/volumes/gold/prefetch", {"offset": 8 * MiB + 1}), 400, "prefetch past the end")
    expect(call(d, "POST", "/api/v1/volumes/gold/prefetch", {"length": "x"}), 400, "prefetch bad length")
    expect(call(d, "POST", "/api/v1/volumes/gold/prefetch", raw=b"[1]"), 400, "prefetch body not an object")
    expect(call(d, "POST", "/api/v1/volumes/nope/prefetch"), 404, "prefetch unknown volume")
    expect(call(d, "GET", "/api/v1/volumes/nope/prefetch"), 404, "prefetch status of unknown volume")
    log("prefetch OK (progress to done, range, errors)")


def test_prefetch_busy(d):
    """409 while a prefetch runs, on a back end slowed by nbdkit's delay
    filter; progress is watched while it runs."""
    if not shutil.which("nbdkit"):
        skipped.append("prefetch 409 (nbdkit is not installed)")
        return
    sock = os.path.join(TMP, "slow.sock")
    pidfile = os.path.join(TMP, "nbdkit.pid")
    nk = subprocess.Popen(["nbdkit", "--exit-with-parent", "-f", "-U", sock, "-P", pidfile,
                           "--filter=delay", "memory", "64M", "rdelay=40ms"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(pidfile), 10, "nbdkit to start")
        r = expect(call(d, "POST", "/api/v1/volumes", {"name": "slow", "backing": f"nbd+unix:///?socket={sock}"}),
                   201, "add the slow volume")
        check_volume_record(r.json, "slow", size=64 * MiB)
        expect(call(d, "POST", "/api/v1/volumes/slow/prefetch"), 202, "slow prefetch start")
        st = get_json(d, "/api/v1/volumes/slow/prefetch")
        check(st["running"], f"slow prefetch is not running right after the start: {st}")
        expect(call(d, "POST", "/api/v1/volumes/slow/prefetch"), 409, "second prefetch while one runs")
        expect(call(d, "POST", "/api/v1/volumes/slow/prefetch", {"offset": 0, "length": 4096}), 409,
               "small prefetch while one runs")
        # Progress only grows, and reaches the end.
        last = -1
        deadline = time.time() + 120
        seen = set()
        while True:
            st = get_json(d, "/api/v1/volumes/slow/prefetch")
            check(st["done_bytes"] >= last, f"prefetch progress went back: {last} -> {st['done_bytes']}")
            check(st["done_bytes"] <= st["length"] == 64 * MiB, f"prefetch progress {st}")
            last = st["done_bytes"]
            seen.add(last)
            if not st["running"]:
                break
            check(time.time() < deadline, "slow prefetch did not finish in 120 s")
            time.sleep(0.1)
        check(st["done_bytes"] == 64 * MiB and st["error"] is None, f"slow prefetch final status {st}")
        check(len(seen) >= 3, f"progress was not visible while running (values seen: {sorted(seen)})")
        expect(call(d, "DELETE", "/api/v1/volumes/slow"), 204, "remove the slow volume")
        log(f"prefetch 409 while running OK ({len(seen)} progress values seen)")
    finally:
        nk.terminate()
        nk.wait(10)


def test_resize(d):
    r = expect(call(d, "POST", "/api/v1/cache/resize", {"size": "32M"}), 200, "resize to 32M")
    check(r.json["capacity_bytes"] == 32 * MiB, f"resize answer {r.json}")
    check(get_json(d, "/api/v1/stats")["cache"]["capacity_bytes"] == 32 * MiB, "capacity after resize")
    r = expect(call(d, "POST", "/api/v1/cache/resize", {"size": 48 * MiB}), 200, "resize with an integer")
    check(r.json["capacity_bytes"] == 48 * MiB, f"resize answer {r.json}")
    # Shrinking below what is held evicts.
    h = d.open("gold")
    h.pread(8 * MiB, 0)
    h.shutdown()
    ev = get_json(d, "/api/v1/cache")["evictions"]
    r = expect(call(d, "POST", "/api/v1/cache/resize", {"size": "1M"}), 200, "shrink to 1M")
    c = get_json(d, "/api/v1/cache")
    check(c["capacity_bytes"] == MiB and c["used_bytes"] <= MiB, f"after shrinking: {c['used_bytes']} used")
    check(c["evictions"] > ev, "shrinking the cache evicted nothing")
    for body, what in [({"size": "big"}, "a word"), ({"size": -5}, "negative"), ({"size": True}, "a boolean"),
                       ({}, "no size"), ({"size": "1M", "x": 1}, "an unknown field"), ({"size": 1.5}, "a fraction")]:
        expect(call(d, "POST", "/api/v1/cache/resize", body), 400, f"resize with {what}")
    expect(call(d, "POST", "/api/v1/cache/resize", raw=b"size=1M"), 400, "resize with a form body")
    r = call(d, "POST", "/api/v1/cache/resize", {"size": 0})
    check(r.status in (400, 409), f"resize to 0: {r.status}")
    expect(call(d, "POST", "/api/v1/cache/resize", {"size": "64M"}), 200, "resize back to 64M")
    r = expect(call(d, "GET", "/api/v1/cache/resize"), 405, "GET resize")
    check(r.headers.get("Allow") == "POST", f"Allow of resize: {r.headers.get('Allow')}")
    log("cache resize OK")


def test_generic(d):
    for path in ["/api", "/api/v1", "/api/v2/stats", "/api/v1/nope", "/api/v1/volumes/gold/nope",
                 "/api/v1/volumes//enable", "/metricsx", "/dashboard/nope.js", "/favicon.ico"]:
        expect(call(d, "GET", path), 404, f"GET {path}")
    for method, path, allow in [("PUT", "/api/v1/stats", "GET"), ("DELETE", "/api/v1/volumes", "GET, HEAD, POST"),
                                ("PATCH", "/api/v1/volumes/gold", "GET, HEAD, DELETE"),
                                ("POST", "/metrics", "GET, HEAD"), ("POST", "/", "GET, HEAD"),
                                ("DELETE", "/api/v1/volumes/gold/prefetch", "GET, HEAD, POST")]:
        r = expect(call(d, method, path, raw=b"{}"), 405, f"{method} {path}")
        check(r.headers.get("Allow", "").startswith(allow.split(",")[0]), f"{method} {path}: Allow {r.headers.get('Allow')}")
    # An encoded NUL must not cut a name short: "gold%00x" is not "gold"
    # (MHD decodes the path into a C string; it once removed gold).
    for method, path in [("DELETE", "/api/v1/volumes/gold%00x"), ("GET", "/api/v1/volumes/gold%00"),
                         ("POST", "/api/v1/volumes/gold%00x/disable"),
                         ("GET", "/api/v1/stats/volumes/gold%00")]:
        expect(call(d, method, path), 404, f"{method} {path}")
    expect(call(d, "DELETE", "/api/v1/volumes/twin?force=1%00"), 400, "force=1%00")
    check(get_json(d, "/api/v1/volumes/gold")["state"] == "enabled", "gold%00x changed gold")
    expect(call(d, "GET", "/dashboard/app.js%00.html"), 404, "GET app.js%00.html")
    big = b"{\"name\": \"" + b"x" * (100 * 1024) + b"\", \"backing\": \"/x\"}"
    expect(call(d, "POST", "/api/v1/volumes", raw=big), 413, "100 KiB body")
    # A body of exactly the limit is read, then judged on its content.
    r = call(d, "POST", "/api/v1/volumes", raw=b" " * (64 * 1024 - 2) + b"{}")
    check(r.status == 400, f"body at the limit: {r.status}")
    # Garbage request line: the server answers 4xx or closes, and lives.
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x00garbage\r\n\r\n")
        try:
            s.recv(4096)
        except OSError:
            pass
    get_json(d, "/api/v1/stats", "stats after garbage")
    # Changes through someone else's web page are refused (CSRF, DNS
    # rebinding); reads stay open; non-browser clients send neither header.
    for hdrs, what in [({"Origin": "http://evil.example"}, "a foreign Origin"),
                       ({"Origin": "null"}, "Origin null"),
                       ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site cross-site"),
                       ({"Origin": "http://rebound.example", "Host": f"127.0.0.1:{d.port}"},
                        "a rebound name's Origin")]:
        expect(call(d, "POST", "/api/v1/volumes/gold/disable", headers=hdrs), 403, f"change with {what}")
        check(call(d, "GET", "/api/v1/volumes/gold", headers=hdrs).status == 200, f"read with {what}")
    check(get_json(d, "/api/v1/volumes/gold")["state"] == "enabled", "a refused cross-site change happened")
    own = {"Origin": d.url, "Sec-Fetch-Site": "same-origin"}
    expect(call(d, "POST", "/api/v1/volumes/gold/enable", headers=own), 200, "change from the own page")
    expect(call(d, "POST", "/api/v1/volumes/gold/enable", headers={"Host": f"localhost:{d.port}"}), 200,
           "change to localhost")
    # Loopback is no credential: without the token the same change is refused.
    expect(call(d, "POST", "/api/v1/volumes/gold/disable", token=None, headers=own), 401,
           "change from the own page without the token")
    # The dashboard.
    r = call(d, "GET", "/")
    check(r.status == 200 and r.ctype == "text/html; charset=utf-8", f"GET /: {r.status} {r.ctype}")
    for asset, ctype in [("app.js", "text/javascript; charset=utf-8"), ("style.css", "text/css; charset=utf-8")]:
        check(f"/dashboard/{asset}".encode() in r.body, f"index.html does not load {asset}")
        a = call(d, "GET", f"/dashboard/{asset}")
        check(a.status == 200 and a.ctype == ctype and len(a.body) > 1000, f"GET /dashboard/{asset}: {a.status} {a.ctype}")
    check("default-src 'self'" in r.headers.get("Content-Security-Policy", ""), "dashboard without a CSP")
    log("404/405/413, garbage, cross-site refusals, dashboard files OK")


# ---- Prometheus --------------------------------------------------------------

def parse_prom(text):
    samples = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, fam, typ = line.split(" ", 3)
            types[fam] = typ
        elif line and not line.startswith("#"):
            key, _, val = line.rpartition(" ")
            samples[key] = float(val)
    return types, samples


def test_metrics(d):
    r = call(d, "GET", "/metrics")
    check(r.status == 200, f"GET /metrics: {r.status}")
    check(r.ctype.startswith("text/plain; version=0.0.4"), f"/metrics content type {r.ctype}")
    text = r.body.decode()
    types, samples = parse_prom(text)
    s = get_json(d, "/api/v1/stats")
    c = s["cache"]
    check(samples.get("shoal_cache_capacity_bytes") == c["capacity_bytes"], "shoal_cache_capacity_bytes vs JSON")
    check(types.get("shoal_cache_evictions_total") == "counter", "evictions is not a counter")
    check(types.get("shoal_volume_latency_seconds") == "histogram", "latency is not a histogram")
    for k in VOL_INT_KEYS + VOL_NUM_KEYS + VOL_BOOL_KEYS:
        fam = f"shoal_volume_{k}"
        check(fam in types or fam + "_total" in types, f"no metric family for volume stat {k}")
    for k in CACHE_INT_KEYS + CACHE_NUM_KEYS:
        fam = f"shoal_cache_{k}"
        check(fam in types or fam + "_total" in types, f"no metric family for cache stat {k}")
    for v in s["volumes"]:
        n = v["name"]
        check(samples.get(f'shoal_volume_size_bytes{{volume="{n}"}}') == v["size_bytes"], f"size of {n} in /metrics")
        # The JSON boolean is a 0/1 gauge for Prometheus.
        check(samples.get(f'shoal_volume_enabled{{volume="{n}"}}') == int(v["enabled"]), f"enabled of {n} in /metrics")
        for op in ("read_hit", "read_miss", "write"):
            key = f'shoal_volume_latency_seconds_bucket{{volume="{n}",op="{op}",le="+Inf"}}'
            check(key in samples, f"no +Inf bucket for {n}/{op}")
    check('backend="file ' in text and '\\"' in text, "backend label with a quote not escaped")
    # A scrape without the token gets no backend label (nor any path).
    r2 = call(d, "GET", "/metrics", token=None)
    check(r2.status == 200 and b"backend=" not in r2.body and TMP.encode() not in r2.body,
          "/metrics without the token shows backing paths")
    check(b'shoal_volume_info{volume="gold",state=' in r2.body, "shoal_volume_info without the token")
    promtool = shutil.which("promtool")
    if not promtool:
        skipped.append("promtool check metrics (promtool is not installed: Debian package prometheus)")
        return
    p = subprocess.run([promtool, "check", "metrics"], input=r.body, capture_output=True, timeout=60)
    out = (p.stdout + p.stderr).decode(errors="replace")
    check(p.returncode == 0, f"promtool check metrics failed ({p.returncode}):\n{out}")
    log("GET /metrics OK; promtool check metrics passed")


# ---- auth and listen rules ---------------------------------------------------

def test_auth():
    token = "s3cr3t-token-for-tests"
    tf = os.path.join(TMP, "token")
    with open(tf, "w") as f:
        f.write(token + "\n")
    os.chmod(tf, 0o600)
    img = make_file(os.path.join(TMP, "auth.img"), MiB, pattern(MiB, "auth"))
    # b's own file: a serves img read-write, and a file takes one such export.
    img_b = make_file(os.path.join(TMP, "auth-b.img"), MiB, pattern(MiB, "authb"))
    d = Shoald([f"a={img}"], extra=["-m", "16M", "--http-token-file", tf])
    check(d.token == token, "the daemon did not use the token file it was given")
    # Reads are open.
    for path in ["/api/v1/stats", "/api/v1/volumes", "/api/v1/volumes/a", "/api/v1/volumes/a/prefetch", "/metrics", "/"]:
        check(call(d, "GET", path, token=None).status == 200, f"GET {path} without the token")
    muts = [("POST", "/api/v1/volumes/a/disable", None), ("POST", "/api/v1/volumes/a/enable", None),
            ("POST", "/api/v1/volumes/a/invalidate", None), ("POST", "/api/v1/volumes/a/prefetch", None),
            ("POST", "/api/v1/cache/resize", {"size": "8M"}),
            ("POST", "/api/v1/volumes", {"name": "b", "backing": img_b}), ("DELETE", "/api/v1/volumes/a", None)]
    for method, path, body in muts:
        for tok, what in [(None, "no token"), ("wrong", "a wrong token"), (token + "x", "a longer token"),
                          (token[:-1], "a prefix of the token")]:
            r = expect(call(d, method, path, body, token=tok), 401, f"{method} {path} with {what}")
            check(r.headers.get("WWW-Authenticate", "").startswith("Bearer"), "401 without WWW-Authenticate")
        r = call(d, method, path, body, token=None, headers={"Authorization": f"Basic {token}"})
        check(r.status == 401, f"{method} {path} with a Basic header: {r.status}")
    check(get_json(d, "/api/v1/volumes/a")["state"] == "enabled", "a refused disable changed the state")
    check(get_json(d, "/api/v1/cache")["capacity_bytes"] == 16 * MiB, "a refused resize changed the cache")
    # With the token, the same calls work.
    for method, path, body in muts:
        if method == "DELETE":
            # A prefetch must not outlive its volume (see control.py
            # prefetch-lifetime, a known engine bug): let it finish first.
            wait_until(lambda: not get_json(d, "/api/v1/volumes/a/prefetch")["running"], 30, "prefetch of a")
        r = call(d, method, path, body, token=token)
        check(200 <= r.status < 300, f"{method} {path} with the token: {r}")
    # A 401 body is still JSON and the server keeps serving.
    get_json(d, "/api/v1/stats", "stats after auth checks")
    d.stop()
    log("auth OK (GETs open; 401 without, with wrong tokens; changes with the token)")


def start_raw(args, log_name):
    """shoald with exactly these arguments (after -f); (proc, log path)."""
    log_path = os.path.join(TMP, log_name)
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen([itlib.SHOALD, "-f", *args], stdout=logf, stderr=logf,
                                stdin=subprocess.DEVNULL)
    return proc, log_path


def test_token_file():
    """--http-token-file: created (0600, 256 random bits) when missing,
    reused when present, refused when others could read or change it."""
    img = make_file(os.path.join(TMP, "t.img"), MiB)
    sock = os.path.join(TMP, "t.sock")
    tdir = os.path.join(TMP, "tok", "sub")
    tf = os.path.join(tdir, "api-token")
    old = os.umask(0)  # must not leak into the file's mode
    try:
        d = Shoald([f"a={img}"], extra=["-m", "16M", "--http-token-file", tf])
    finally:
        os.umask(old)
    st = os.stat(tf)
    check(st.st_mode & 0o7777 == 0o600, f"created token file mode {oct(st.st_mode)}")
    check(os.stat(tdir).st_mode & 0o7777 == 0o700, f"created token dir mode {oct(os.stat(tdir).st_mode)}")
    tok = d.token
    check(len(tok) == 64 and all(c in "0123456789abcdef" for c in tok), f"generated token {tok!r}")
    check(tf in open(d.logpath).read(), "the token file's path is not in the log")
    expect(call(d, "POST", "/api/v1/volumes/a/disable", token=None), 401, "change without the generated token")
    expect(call(d, "POST", "/api/v1/volumes/a/disable"), 200, "change with the generated token")
    d.stop()
    # Restarted, the same token.
    d = Shoald([f"a={img}"], extra=["-m", "16M", "--http-token-file", tf])
    check(d.token == tok, "a restart changed the token")
    d.stop()
    # Refused: world-readable, group-writable, world-writable; one line each,
    # nothing started (and, under ASan, nothing leaked: a report would break
    # the one-line rule).
    for mode, why in [(0o644, "world-readable"), (0o620, "group- or world-writable"),
                      (0o602, "group- or world-writable")]:
        os.chmod(tf, mode)
        port = itlib.free_port()
        p = subprocess.run([itlib.SHOALD, "-f", "-l", f"unix:{sock}", "--http", f"127.0.0.1:{port}",
                            "--http-token-file", tf, f"a={img}"], capture_output=True, timeout=30)
        err = p.stderr.decode(errors="replace").strip()
        check(p.returncode != 0, f"shoald started with a token file of mode {oct(mode)}")
        check(why in err and tf in err and len(err.splitlines()) == 1,
              f"refusal of mode {oct(mode)}: {err!r}")
        check(not os.path.exists(sock), "a refused start left a socket")
    os.chmod(tf, 0o600)
    # A token too short to be one is refused too.
    tf2 = os.path.join(TMP, "token2")
    with open(tf2, "w") as f:
        f.write("tok\n")
    os.chmod(tf2, 0o600)
    p = subprocess.run([itlib.SHOALD, "-f", "-l", f"unix:{sock}", "--http", f"127.0.0.1:{itlib.free_port()}",
                        "--http-token-file", tf2, f"a={img}"], capture_output=True, timeout=30)
    check(p.returncode != 0 and b"too short" in p.stderr, f"a 3-character token: {p.stderr!r}")
    # --http off: no token, no file.
    tf3 = os.path.join(TMP, "never", "api-token")
    proc, log_path = start_raw(["-l", f"unix:{sock}", "--http", "off", "--http-token-file", tf3, f"a={img}"],
                               "off.log")
    try:
        wait_until(lambda: os.path.exists(sock) or proc.poll() is not None, 20, "shoald --http off")
        check(proc.poll() is None, f"shoald --http off exited: {open(log_path).read()}")
        check(not os.path.exists(tf3), "--http off created a token file")
    finally:
        proc.terminate()
        check(proc.wait(10) == 0, "shoald --http off did not exit cleanly")
    log("token file OK (created 0600 in a 0700 dir, reused, loose modes and short tokens refused)")


def test_listen_rules():
    """A non-loopback address is served (the token is required anyway),
    with one warning that the token travels in clear without TLS."""
    img = make_file(os.path.join(TMP, "l.img"), MiB)
    port = itlib.free_port()
    sock = os.path.join(TMP, "l.sock")
    tf = os.path.join(TMP, "token-wild")
    proc, log_path = start_raw(["-l", f"unix:{sock}", "--http", f"0.0.0.0:{port}", "--http-token-file", tf,
                                f"a={img}"], "wild.log")
    try:
        url = f"http://127.0.0.1:{port}/api/v1/volumes"

        def up():
            check(proc.poll() is None, f"shoald on 0.0.0.0 exited: {open(log_path).read()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return json.load(r)
            except OSError:
                return None
        vols = wait_until(up, 20, "shoald on 0.0.0.0")
        check(vols[0]["name"] == "a" and "backend" not in vols[0], f"volume a on the 0.0.0.0 server: {vols}")
        # Logged right after the API starts: it may answer first.
        warn = wait_until(lambda: [ln for ln in open(log_path).read().splitlines() if "in clear" in ln],
                          10, "the plain-HTTP warning in the log")
        check(len(warn) == 1 and "0.0.0.0" in warn[0], f"the plain-HTTP warning: {warn}")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/volumes/a/disable", method="POST")
        try:
            urllib.request.urlopen(req, timeout=5)
            raise TestFailure("a change without the token was accepted on 0.0.0.0")
        except urllib.error.HTTPError as e:
            check(e.code == 401, f"change without a token on 0.0.0.0: {e.code}")
    finally:
        proc.terminate()
        check(proc.wait(10) == 0, "shoald on 0.0.0.0 did not exit cleanly")
    # On loopback there is no such warning.
    d = Shoald([f"a={img}"], extra=["-m", "16M"])
    check("in clear" not in open(d.logpath).read(), "the plain-HTTP warning on loopback")
    d.stop()
    log("listen rules OK (0.0.0.0 served with a warning, changes need the token)")


def main():
    GOLD[:] = pattern(8 * MiB, "gold")
    gold = make_file(os.path.join(TMP, "gold.img"), 8 * MiB, bytes(GOLD))
    twin = os.path.join(TMP, "twin.img")
    shutil.copyfile(gold, twin)
    ro = make_file(os.path.join(TMP, "ro.img"), 4 * MiB, pattern(4 * MiB, "ro"))
    # A backing path with a quote and a backslash: label escaping in /metrics.
    odd_dir = os.path.join(TMP, 'we"ird\\dir')
    os.mkdir(odd_dir)
    odd = os.path.join(odd_dir, "ro.img")
    os.link(ro, odd)
    d = Shoald([f"gold={gold}", f"twin={twin}"], extra=["-m", "64M"])
    expect(call(d, "POST", "/api/v1/volumes", {"name": "ro", "backing": odd, "readonly": True}), 201, "add ro")

    test_stats(d, ["gold", "twin", "ro"])
    test_volumes_get(d)
    test_volume_add(d)
    test_volume_remove(d)
    test_add_remove_race(d)
    test_enable_disable(d)
    test_invalidate(d)
    test_prefetch(d)
    test_prefetch_busy(d)
    test_resize(d)
    test_metrics(d)
    test_generic(d)
    check(d.alive(), "shoald died during the API tests")
    d.stop()
    test_auth()
    test_token_file()
    test_listen_rules()
    if skipped:
        for s in skipped:
            log(f"SKIPPED: {s}")
        sys.exit(itlib.SKIP)


itlib.run(main)
