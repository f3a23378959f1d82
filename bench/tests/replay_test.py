#!/usr/bin/python3
"""Tests for shoal-replay on small traces generated here.

Parsing: each format (MSR CSV, blkparse text, vSCSI v1 and v2 binary) yields
the expected number of records, reads, writes and bytes; malformed records are
reported with their line (or record) number and skipped, or rejected with
--strict (exit 2).

Replay against a real shoald (file volume, unix socket, own API port):
  - a trace reading 256 distinct blocks 4 times each at QD1 gets a daemon hit
    ratio of 0.75 (band 0.70..0.80) and the daemon sees exactly the trace's
    read bytes;
  - writes reach the daemon (write_bytes delta = the trace's write bytes);
  - offsets past the export wrap (every op done) or clip (ops dropped);
  - --timing follows the trace's clock (a 1 s trace takes ~1 s, --speed 4
    a quarter of it);
  - --sizes prints a miss-ratio curve that falls as the cache grows, with
    the big cache at the expected hit ratio.

Environment: SHOALD, SHOAL_REPLAY (set by bench/meson.build). Standard library
only. Exit 77 only when a binary is missing.
"""
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

SHOALD = os.environ.get("SHOALD", "")
REPLAY = os.environ.get("SHOAL_REPLAY", "")
BLK = 4096
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def run(args, expect=None, timeout=60):
    p = subprocess.run([REPLAY] + args, capture_output=True, text=True, timeout=timeout)
    if expect is not None and p.returncode != expect:
        print("command:", " ".join(args), "\nstdout:", p.stdout, "\nstderr:", p.stderr)
    return p


def run_json(args, expect=0):
    p = run(args + ["--json"], expect)
    try:
        return p.returncode, json.loads(p.stdout), p.stderr
    except ValueError:
        return p.returncode, None, p.stderr


# ---- trace writers ----

FILETIME_1970 = 116444736000000000  # 100 ns units between 1601 and 1970


def msr_line(t_s, op, off, size, disk=0):
    ts = FILETIME_1970 + int(t_s * 1e7)
    return "%d,host,%d,%s,%d,%d,%d\n" % (ts, disk, "Read" if op == "R" else "Write", off, size, 1000)


def write_msr(path, recs, header=True, extra=""):
    with open(path, "w") as f:
        if header:
            f.write("Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime\n")
        for r in recs:
            f.write(msr_line(*r))
        f.write(extra)


def blk_line(seq, t_s, action, rwbs, off, size, dev="8,0"):
    return "%5s %3d %8d %5d.%09d %5d  %s %3s %d + %d [fio]\n" % (
        dev, 0, seq, int(t_s), int(round((t_s % 1) * 1e9)), 4242, action, rwbs, off // 512, size // 512)


def vscsi_v1(op, off, size, ts_us, ver=0x0100):
    cmd = 0x28 if op == "R" else 0x2A
    return struct.pack("<IIIHHQQ", 1, size, 1, cmd, ver, off // 512, ts_us)


def vscsi_v2(op, off, size, ts_us):
    cmd = 0x88 if op == "R" else 0x8A
    return struct.pack("<HHIIIQQQ", cmd, 0x0200, 1, size, 1, off // 512, ts_us, 50)


# ---- parsing tests ----

def test_parsing(d):
    recs = [(i * 0.001, "R" if i % 3 else "W", i * BLK, BLK * (1 + i % 4)) for i in range(30)]
    reads = sum(1 for r in recs if r[1] == "R")
    writes = len(recs) - reads
    rbytes = sum(r[3] for r in recs if r[1] == "R")

    # MSR: header, 30 records, one bad Type on line 32, one short line on 33,
    # a blank line (ignored), and one record of another disk.
    p = os.path.join(d, "t.csv")
    write_msr(p, recs, extra="1,host,0,Erase,0,4096,1\n1,host,0,Read,4096\n\n"
              + msr_line(1.0, "R", 0, BLK, disk=7))
    rc, j, err = run_json(["--parse-only", p])
    t = j["trace"] if j else {}
    check(rc == 0 and t.get("format") == "msr", "msr: detected")
    check(t.get("records") == 31 and t.get("reads") == reads + 1 and t.get("writes") == writes,
          "msr: 31 records, %d reads, %d writes (got %s)" % (reads + 1, writes, t))
    check(t.get("malformed") == 2, "msr: 2 malformed records counted")
    check(":32: malformed record skipped" in err and "Type" in err, "msr: bad Type reported at line 32")
    check(":33: malformed record skipped" in err and "7 comma-separated" in err,
          "msr: short line reported at line 33")
    rc, j, _ = run_json(["--parse-only", "--disk", "0", p])
    check(j and j["trace"]["records"] == 30 and j["trace"]["filtered"] == 1, "msr: --disk 0 filters")
    rc, j, err = run_json(["--parse-only", "--strict", p], expect=2)
    check(rc == 2 and ":32: malformed record:" in err, "msr: --strict rejects at line 32 (exit 2)")

    # blkparse: Q and C lines for each I/O, plus plug/unplug noise, a flush,
    # a discard, a summary section and one broken Q line.
    p = os.path.join(d, "t.blk")
    with open(p, "w") as f:
        seq = 0
        for (t_s, op, off, size) in recs:
            seq += 1
            f.write(blk_line(seq, t_s, "Q", op + "S" if op == "W" else op, off, size))
            seq += 1
            f.write("  8,0    0 %8d %5d.%09d  4242  P   N [fio]\n" % (seq, 0, 1))
            seq += 1
            f.write(blk_line(seq, t_s + 0.0005, "C", op, off, size).replace("[fio]", "[0]"))
        f.write("  8,0    0      999     0.100000000  4242  Q  FWS [fio]\n")    # bare flush: ignored
        f.write(blk_line(1000, 0.2, "Q", "DS", 0, 1 << 20))                    # discard: ignored
        f.write("  8,0    0     1001     0.300000000  4242  Q   R 12x + 8 [fio]\n")  # malformed
        f.write("CPU0 (8,0):\n Reads Queued:          20,       40KiB\n")
    rc, j, err = run_json(["--parse-only", p])
    t = j["trace"] if j else {}
    check(rc == 0 and t.get("format") == "blkparse", "blkparse: detected")
    check(t.get("records") == 30 and t.get("reads") == reads and t.get("read_bytes") == rbytes,
          "blkparse: Q lines give 30 records, %d reads of %d bytes (got %s)" % (reads, rbytes, t))
    check(t.get("malformed") == 1 and ":%d: malformed record skipped" % (3 * 30 + 3) in err,
          "blkparse: bad sector reported at line %d" % (3 * 30 + 3))
    rc, j, _ = run_json(["--parse-only", "--action", "C", p])
    check(j and j["trace"]["records"] == 30 and j["trace"]["writes"] == writes,
          "blkparse: --action C gives the completions")
    rc, j, err = run_json(["--parse-only", "--strict", p], expect=2)
    check(rc == 2, "blkparse: --strict rejects the bad line (exit 2)")

    # vSCSI v1 (32-byte records): 30 I/Os, one TEST UNIT READY (ignored),
    # one record with a wrong version byte, and a truncated tail.
    p = os.path.join(d, "t.vscsi")
    with open(p, "wb") as f:
        for (t_s, op, off, size) in recs:
            f.write(vscsi_v1(op, off, size, int(t_s * 1e6)))
        f.write(struct.pack("<IIIHHQQ", 1, 0, 0, 0x00, 0x0100, 0, 31000))
        f.write(vscsi_v1("R", 0, BLK, 32000, ver=0x0300))
        f.write(b"\x01" * 10)
    rc, j, err = run_json(["--parse-only", p])
    t = j["trace"] if j else {}
    check(rc == 0 and t.get("format") == "vscsi", "vscsi v1: detected")
    check(t.get("records") == 30 and t.get("writes") == writes and t.get("ignored") == 1,
          "vscsi v1: 30 records, %d writes, 1 ignored (got %s)" % (writes, t))
    check(t.get("malformed") == 2 and "record 32: malformed" in err and "record 33: malformed" in err,
          "vscsi v1: bad version (record 32) and truncated tail (record 33) reported")
    p2 = os.path.join(d, "t2.vscsi")
    with open(p2, "wb") as f:
        for (t_s, op, off, size) in recs:
            f.write(vscsi_v2(op, off, size, int(t_s * 1e6)))
    rc, j, _ = run_json(["--parse-only", p2])
    check(j and j["trace"]["records"] == 30 and j["trace"]["read_bytes"] == rbytes,
          "vscsi v2 (40-byte records): 30 records")
    # Long records are split into 8 MiB pieces.
    p3 = os.path.join(d, "big.csv")
    write_msr(p3, [(0, "R", 0, 20 << 20)])
    rc, j, _ = run_json(["--parse-only", p3])
    check(j and j["trace"]["records"] == 3 and j["trace"]["read_bytes"] == 20 << 20,
          "a 20 MiB record is split into 3 requests")


# ---- daemon ----

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Daemon:
    def __init__(self, d, image, cache="64M"):
        self.sock = os.path.join(d, "nbd.sock")
        self.log = open(os.path.join(d, "shoald.log"), "w")
        # API changes need the bearer token: our own, in a 0600 file.
        self.token = os.urandom(32).hex()
        self.token_file = os.path.join(d, "api-token")
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token + "\n")
        for _ in range(3):
            self.port = free_port()
            self.p = subprocess.Popen(
                [SHOALD, "-f", "--state-dir", "off", "-l", "unix:" + self.sock, "--http", "127.0.0.1:%d" % self.port,
                 "--http-token-file", self.token_file, "-m", cache, "vol=" + image],
                stdout=self.log, stderr=subprocess.STDOUT)
            if self.wait_ready():
                return
            self.stop()
        raise RuntimeError("shoald did not start; see %s" % self.log.name)

    def wait_ready(self):
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.p.poll() is not None:
                return False
            if os.path.exists(self.sock):
                try:
                    socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                    return True
                except OSError:
                    pass
            time.sleep(0.05)
        return False

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    @property
    def uri(self):
        return "nbd+unix:///vol?socket=" + self.sock

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port


def test_replay(d):
    size = 16 << 20
    image = os.path.join(d, "disk.img")
    with open(image, "wb") as f:
        f.write(random.Random(1).randbytes(size))
    dm = Daemon(d, image)
    try:
        api = ["--stats-url", dm.url, "--volume", "vol", "--token-file", dm.token_file]
        # 256 distinct blocks, each read 4 times: 3 of 4 reads hit at QD1.
        rng = random.Random(2)
        blocks = rng.sample(range(size // BLK), 256)
        order = [b for _ in range(4) for b in rng.sample(blocks, len(blocks))]
        p = os.path.join(d, "repeat.csv")
        write_msr(p, [(i * 1e-4, "R", b * BLK, BLK) for i, b in enumerate(order)])
        rc, j, err = run_json([p, dm.uri, "-q", "1"] + api)
        dmn = j.get("daemon", {}) if j else {}
        check(rc == 0 and j["replay"]["read_ops"] == 1024 and j["replay"]["errors"] == 0,
              "replay: 1024 reads done without errors")
        check(dmn.get("read_bytes") == 1024 * BLK, "daemon saw exactly the trace's read bytes")
        check(0.70 <= dmn.get("hit_ratio", -1) <= 0.80,
              "hit ratio of 4x-repeated blocks in 0.70..0.80 (got %s)" % dmn.get("hit_ratio"))
        check(0.70 <= dmn.get("offload_ratio", -1) <= 0.80, "offload in 0.70..0.80")
        lat = j["replay"]["latency_us"]["read"] if j else {}
        check(lat.get("count") == 1024 and 0 < lat.get("p50", 0) <= lat.get("p99", 0) <= lat.get("max", 0),
              "latency percentiles are ordered")
        # Again at QD 8: now every read hits.
        rc, j, _ = run_json([p, dm.uri, "-q", "8"] + api)
        check(j and j["daemon"]["hit_ratio"] > 0.99, "second replay: all hits (got %s)" %
              (j and j["daemon"]["hit_ratio"]))

        # Writes: the daemon sees the trace's write bytes.
        p = os.path.join(d, "mix.blk")
        with open(p, "w") as f:
            for i in range(200):
                op = "W" if i % 4 == 0 else "R"
                f.write(blk_line(i + 1, i * 1e-4, "Q", op, (i * 7919 % 4096) * BLK, 2 * BLK))
        rc, j, _ = run_json([p, dm.uri] + api)
        check(rc == 0 and j["replay"]["write_ops"] == 50 and j["daemon"]["write_bytes"] == 50 * 2 * BLK,
              "blkparse mix: 50 writes of 8 KiB reached the daemon")
        rc, j, _ = run_json([p, dm.uri, "--reads-only"] + api)
        check(j and j["replay"]["write_ops"] == 0 and j["replay"]["skipped"] == 50,
              "--reads-only skips the 50 writes")

        # Offsets past the end of the 16 MiB export.
        p = os.path.join(d, "far.vscsi")
        with open(p, "wb") as f:
            for i in range(40):
                f.write(vscsi_v1("R", (size if i % 2 else 0) + i * BLK, BLK, i))
        rc, j, _ = run_json([p, dm.uri])
        check(j and j["replay"]["read_ops"] == 40 and j["replay"]["dropped"] == 0, "wrap: all 40 reads done")
        rc, j, _ = run_json([p, dm.uri, "--offsets", "clip"])
        check(j and j["replay"]["read_ops"] == 20 and j["replay"]["dropped"] == 20,
              "clip: the 20 reads past the end are dropped")

        # Recorded timing: 51 reads over 1 s.
        p = os.path.join(d, "timed.csv")
        write_msr(p, [(i * 0.02, "R", i * BLK, BLK) for i in range(51)])
        rc, j, _ = run_json([p, dm.uri, "--timing"])
        secs = j["replay"]["seconds"] if j else 0
        check(0.95 <= secs < 3.0, "--timing: a 1 s trace takes about 1 s (took %.3f)" % secs)
        rc, j, _ = run_json([p, dm.uri, "--timing", "--speed", "4"])
        secs = j["replay"]["seconds"] if j else 0
        check(0.24 <= secs < 1.5, "--timing --speed 4: about 0.25 s (took %.3f)" % secs)

        # Miss-ratio curve: a loop over 2 MiB (512 blocks) read 3 times.
        p = os.path.join(d, "loop.csv")
        loop = [(i * 1e-4, "R", (8 << 20) + (i % 512) * BLK, BLK) for i in range(3 * 512)]
        write_msr(p, loop)
        rc, j, err = run_json([p, dm.uri, "-q", "1", "--sizes", "256K,1M,4M"] + api)
        pts = j.get("sizes", []) if j else []
        check(rc == 0 and len(pts) == 3, "--sizes: three points")
        if len(pts) == 3:
            miss = [pt["miss_ratio"] for pt in pts]
            check(miss[0] >= miss[1] - 0.02 >= miss[2] - 0.04,
                  "miss ratio falls as the cache grows (%s)" % miss)
            check(abs(pts[2]["hit_ratio"] - 2 / 3) < 0.05,
                  "4M cache holds the 2 MiB loop: hit ratio ~0.667 (got %.3f)" % pts[2]["hit_ratio"])
            check(pts[0]["hit_ratio"] < 0.5, "256K cache cannot hold it (hit ratio %.3f)" % pts[0]["hit_ratio"])
        p2 = run([p, dm.uri, "-q", "1", "--sizes", "1M,4M"] + api, expect=0)
        check("miss-ratio curve" in p2.stdout and "miss ratio" in p2.stdout, "--sizes text output")
        with socket.create_connection(("127.0.0.1", dm.port)) as s:
            s.sendall(b"GET /api/v1/cache HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n"
                      % dm.token.encode())
            body = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                body += b
        cap = json.loads(body.split(b"\r\n\r\n", 1)[1])["capacity_bytes"]
        check(cap == 64 << 20, "--sizes restored the cache size (%d)" % cap)

        # Text output and a refused connection.
        p3 = run([os.path.join(d, "repeat.csv"), dm.uri] + api, expect=0)
        check("hit ratio" in p3.stdout and "p99" in p3.stdout, "text output has latency and hit ratio")
        p4 = run([os.path.join(d, "repeat.csv"), "nbd+unix:///vol?socket=" + os.path.join(d, "none.sock")])
        check(p4.returncode == 2, "unreachable URI: exit 2")
    finally:
        dm.stop()


def main():
    for b in (SHOALD, REPLAY):
        if not b or not os.access(b, os.X_OK):
            print("SKIP: SHOALD and SHOAL_REPLAY must point at the built binaries")
            return 77
    d = tempfile.mkdtemp(prefix="shoal-bench-replay.")
    try:
        test_parsing(d)
        test_replay(d)
    finally:
        if FAILS and os.environ.get("SHOAL_TEST_KEEP"):
            print("kept", d)
        else:
            shutil.rmtree(d, ignore_errors=True)
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
