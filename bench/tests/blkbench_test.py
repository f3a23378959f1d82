#!/usr/bin/python3
"""Tests for shoal-blkbench against a real shoald (about 5 s):

  - lat: every URL (iSCSI, NBD over TCP and on a unix socket) gets exactly
    the timed reads asked for, each a hit (the daemon counts warm-up plus
    timed reads of 4 KiB, all from RAM), with ordered percentiles;
  - xcopy: the destination volume equals the source afterwards, as a file
    and through NBD; every copied block shares the source's cached content
    (copy_shared_blocks) and the source's back end reads nothing;
  - rwcopy: the same bytes by READ(16) + WRITE(16), no block shared;
  - refusals: a URL of another scheme, an unknown mode, a bad size, a copy
    with an NBD end, a copy longer than the volume (exit 2 for usage, 1 for
    the rest, one line on stderr each).

Environment: SHOALD, SHOAL_BLKBENCH (set by bench/meson.build). Standard
library only. Exit 77 only when a binary is missing.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SHOALD = os.environ.get("SHOALD", "")
BLKBENCH = os.environ.get("SHOAL_BLKBENCH", "")
MiB = 1 << 20
SIZE = 8 * MiB
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def blkbench(*args, timeout=60):
    return subprocess.run([BLKBENCH] + list(args), capture_output=True, text=True,
                          timeout=timeout)


class Daemon:
    def __init__(self, d, volumes):
        self.sock = os.path.join(d, "nbd.sock")
        self.log = open(os.path.join(d, "shoald.log"), "w")
        for _ in range(3):
            self.http, self.nbd, self.iscsi = free_port(), free_port(), free_port()
            argv = [SHOALD, "-f", "--state-dir", "off", "-l", "unix:" + self.sock,
                    "-l", "127.0.0.1:%d" % self.nbd, "--iscsi", "127.0.0.1:%d" % self.iscsi,
                    "--http", "127.0.0.1:%d" % self.http, "-m", "64M"]
            argv += ["%s=%s" % kv for kv in volumes.items()]
            self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
            if self.wait_ready():
                return
            self.stop()
        raise RuntimeError("shoald did not start; see %s" % self.log.name)

    def wait_ready(self):
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.p.poll() is not None:
                return False
            try:
                for port in (self.http, self.nbd, self.iscsi):
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
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

    def iscsi_url(self, vol):
        return "iscsi://127.0.0.1:%d/iqn.2026-12.org.shoal:%s/0" % (self.iscsi, vol)

    def unix_uri(self, vol):
        return "nbd+unix:///%s?socket=%s" % (vol, self.sock)

    def vstats(self, vol):
        url = "http://127.0.0.1:%d/api/v1/stats/volumes/%s" % (self.http, vol)
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())


def read_all(uri):
    return subprocess.run(["nbdcopy", uri, "-"], capture_output=True, timeout=60).stdout


def test_lat(dm):
    urls = [dm.iscsi_url("src"), "nbd://127.0.0.1:%d/src" % dm.nbd, dm.unix_uri("src")]
    subprocess.run(["nbdcopy", dm.unix_uri("src"), "null:"], check=True, timeout=60)
    s0 = dm.vstats("src")
    r = blkbench("lat", "--ops", "500", "--warmup", "20", "--rounds", "3", "--range", "4M", *urls)
    check(r.returncode == 0, "lat on iSCSI, NBD over TCP and NBD unix: exit 0 (%s)"
          % r.stderr.strip())
    try:
        devs = json.loads(r.stdout)["devices"]
    except (ValueError, KeyError):
        check(False, "lat prints JSON: %r" % r.stdout[:200])
        return
    check([d["url"] for d in devs] == urls, "one result per URL, in order")
    check([d["protocol"] for d in devs] == ["iscsi", "nbd", "nbd"], "protocols named")
    for d in devs:
        check(d["ops"] == 500 and d["range_bytes"] == 4 * MiB, "%s: 500 timed reads in 4 MiB"
              % d["protocol"])
        check(0 < d["min_us"] <= d["p50_us"] <= d["p90_us"] <= d["p99_us"] <= d["max_us"],
              "%s: percentiles ordered" % d["url"])
    s1 = dm.vstats("src")
    reads = 3 * 520 * 4096
    check(s1["read_bytes"] - s0["read_bytes"] == reads,
          "the daemon read %d bytes for 3 x 520 reads of 4 KiB (got %d)"
          % (reads, s1["read_bytes"] - s0["read_bytes"]))
    check(s1["read_hit_bytes"] - s0["read_hit_bytes"] == reads, "every read a hit")


def test_copies(dm, files):
    src = read_all(dm.unix_uri("src"))
    check(len(src) == SIZE, "the source reads back whole through NBD")
    for mode, vol, shared in (("xcopy", "dx", True), ("rwcopy", "drw", False)):
        s0, d0 = dm.vstats("src"), dm.vstats(vol)
        args = [mode, "--bytes", str(SIZE)]
        if mode == "xcopy":
            args += ["--segment", "1M", "--segments", "3"]  # 3 commands, the last short
        else:
            args += ["--chunk", "768K"]  # a short last command
        r = blkbench(*args, dm.iscsi_url("src"), dm.iscsi_url(vol))
        check(r.returncode == 0, "%s: exit 0 (%s)" % (mode, r.stderr.strip()))
        try:
            out = json.loads(r.stdout)
        except ValueError:
            out = {}
        want = 3 if mode == "xcopy" else 2 * 11
        check(out.get("bytes") == SIZE and out.get("commands") == want,
              "%s: %d bytes in %d commands (%s)" % (mode, SIZE, want, r.stdout.strip()))
        with open(files[vol], "rb") as f:
            check(f.read() == src, "%s: the destination's file equals the source" % mode)
        check(read_all(dm.unix_uri(vol)) == src, "%s: the destination reads back equal" % mode)
        s1, d1 = dm.vstats("src"), dm.vstats(vol)
        check(d1["write_bytes"] - d0["write_bytes"] == SIZE, "%s: %d bytes written" % (mode, SIZE))
        check(s1["backend_read_bytes"] == s0["backend_read_bytes"],
              "%s: the cached source's back end read nothing" % mode)
        blocks = d1["copy_shared_blocks"] - d0["copy_shared_blocks"]
        check(blocks == (SIZE // 4096 if shared else 0),
              "%s: %s blocks shared (%d)" % (mode, "all" if shared else "no", blocks))


def test_refusals(dm):
    cases = [
        (["lat", "http://127.0.0.1/x"], 1, "not an nbd://"),
        (["copy", dm.iscsi_url("src"), dm.iscsi_url("dx")], 2, "unknown mode"),
        (["lat", "--ops", "12Q", dm.iscsi_url("src")], 2, "bad value '12Q' for --ops"),
        (["xcopy", dm.unix_uri("src"), dm.iscsi_url("dx")], 1, "between iscsi://"),
        (["rwcopy", "--bytes", "16M", dm.iscsi_url("src"), dm.iscsi_url("drw")], 1,
         "not whole blocks within both"),
    ]
    for args, code, msg in cases:
        r = blkbench(*args)
        check(r.returncode == code and msg in r.stderr,
              "%s: exit %d with '%s' (got %d: %s)" % (args[0], code, msg, r.returncode,
                                                      r.stderr.strip()))


def main():
    for b, what in ((SHOALD, "SHOALD"), (BLKBENCH, "SHOAL_BLKBENCH")):
        if not b or not os.access(b, os.X_OK):
            print("SKIP: %s not set or not executable" % what)
            return 77
    if not shutil.which("nbdcopy"):
        print("SKIP: nbdcopy is not installed (libnbd-bin)")
        return 77
    d = tempfile.mkdtemp(prefix="shoal-blkbench-test.")
    dm = None
    try:
        files = {"src": os.path.join(d, "src.img"), "dx": os.path.join(d, "dx.img"),
                 "drw": os.path.join(d, "drw.img")}
        with open(files["src"], "wb") as f:
            f.write(os.urandom(SIZE))
        for v in ("dx", "drw"):
            with open(files[v], "wb") as f:
                f.truncate(SIZE)
        dm = Daemon(d, files)
        test_lat(dm)
        test_copies(dm, files)
        test_refusals(dm)
    finally:
        if dm:
            dm.stop()
            if FAILS:
                with open(dm.log.name) as f:
                    print("shoald log tail:\n" + f.read()[-2000:])
        shutil.rmtree(d, ignore_errors=True)
    print("%d failed" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
