"""shoald speaks the sd_notify protocol as shoald.service (Type=notify)
expects, checked without systemd: the test is the service manager, a unix
datagram socket named by $NOTIFY_SOCKET.

- READY=1 (with a STATUS= naming the volumes) arrives only once the NBD
  socket and the API answer: both are tried the moment it arrives;
- with $WATCHDOG_USEC, WATCHDOG=1 arrives at about half the interval, and
  keeps arriving; without it, or with $WATCHDOG_PID naming another
  process, none does;
- SIGHUP brings RELOADING=1, then READY=1 whose STATUS= says whether the
  reload was refused;
- SIGTERM brings STOPPING=1 (with a STATUS=) before shoald exits 0;
- with --user (as root), READY=1 comes from the process that dropped root.
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from shoaltest import (TestFailure, check, free_port, log, print_log_tail,  # noqa: E402
                       stop_daemon)

SHOALD = os.environ["SHOALD"]
TMP = tempfile.mkdtemp(prefix="shoal-pkg-notify.", dir=os.environ.get("SHOAL_IT_TMP", "/tmp"))


class Manager:
    """The service manager's end: a datagram socket, messages with times."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        # Like systemd's: any process may send (shoald after --user too).
        os.chmod(path, 0o666)
        self.msgs = []  # (monotonic time, {key: value})

    def poll(self, timeout):
        """Collect messages for up to timeout seconds; the new ones."""
        new = []
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return new
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return new
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.msgs.append((time.monotonic(), fields))
            new.append(fields)

    def wait_for(self, key, timeout, proc=None):
        """The first new message holding key within timeout, else None
        (at once if proc, the sender, has exited)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if proc is not None and proc.poll() is not None:
                self.poll(0.1)
                return next((m for _, m in self.msgs if key in m), None)
            for m in self.poll(min(0.1, max(0.0, end - time.monotonic()))):
                if key in m:
                    return m
        return None


def start(n, env_extra, images, extra_args=()):
    sock = os.path.join(TMP, f"nbd{n}.sock")
    logpath = os.path.join(TMP, f"shoald{n}.log")
    mgr = Manager(os.path.join(TMP, f"notify{n}"))
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env["NOTIFY_SOCKET"] = mgr.path
    env.update(env_extra)
    with open(logpath, "wb") as lf:
        proc = subprocess.Popen([SHOALD, "-f", "--state-dir", "off", "-m", "16M", "-l", f"unix:{sock}",
                                 "--http", f"127.0.0.1:{port}",
                                 "--http-token-file", os.path.join(TMP, "token"),
                                 *extra_args, f"a={images[0]}", f"b={images[1]}"],
                                stdout=lf, stderr=subprocess.STDOUT, env=env)
    return proc, mgr, sock, port, logpath


def nbd_greeting(sock):
    """The first 8 bytes an NBD server sends ("NBDMAGIC")."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock)
        data = b""
        while len(data) < 8:
            chunk = s.recv(8 - len(data))
            if not chunk:
                break
            data += chunk
        return data


def check_ready(proc, mgr, sock, port):
    m = mgr.wait_for("READY", 30, proc)
    check(proc.poll() is None, f"shoald exited {proc.returncode} before READY=1")
    check(m is not None, f"no READY=1 within 30 s (messages: {mgr.msgs})")
    check(m["READY"] == "1", f"READY={m['READY']}")
    # Checked at once: READY=1 means every listener already answers.
    check(nbd_greeting(sock) == b"NBDMAGIC", "NBD socket not serving at READY=1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/stats", timeout=5) as r:
        check(r.status == 200, f"API answered {r.status} at READY=1")
    check("STATUS" in m, f"READY=1 without STATUS= ({m})")
    check("2 volume" in m["STATUS"], f"STATUS does not count the volumes: {m['STATUS']!r}")
    log(f"READY=1, STATUS={m['STATUS']}")
    return m


def check_stop(proc, mgr, logpath):
    stop_daemon(proc, logpath)
    m = None
    for _, f in mgr.msgs:
        if "STOPPING" in f:
            m = f
    if m is None:
        mgr.poll(0.5)
        for _, f in mgr.msgs:
            if "STOPPING" in f:
                m = f
    check(m is not None, f"no STOPPING=1 on SIGTERM (messages: {[f for _, f in mgr.msgs]})")
    check(m["STOPPING"] == "1" and "STATUS" in m, f"bad STOPPING message {m}")
    log(f"STOPPING=1, STATUS={m['STATUS']}")


def watchdog_times(mgr):
    return [t for t, f in mgr.msgs if f.get("WATCHDOG") == "1"]


def main():
    # One image per volume: shoald exports a file read-write only once.
    images = []
    for name in ("a.img", "b.img"):
        images.append(os.path.join(TMP, name))
        with open(images[-1], "wb") as f:
            f.write(os.urandom(1 << 20))

    # 1. No watchdog asked for: ready, status, stopping, no pings. SIGHUP
    # without a config file: RELOADING=1, then READY=1 whose STATUS= says
    # the reload was refused (systemctl status shows it), not "reloaded".
    proc, mgr, sock, port, logpath = start(0, {}, images)
    try:
        check_ready(proc, mgr, sock, port)
        mgr.poll(1.0)
        check(not watchdog_times(mgr), "WATCHDOG=1 sent without $WATCHDOG_USEC")
        first = len(mgr.msgs)
        proc.send_signal(signal.SIGHUP)
        end = time.monotonic() + 10
        while time.monotonic() < end and not any("READY" in f for _, f in mgr.msgs[first:]):
            mgr.poll(0.1)
        after = [f for _, f in mgr.msgs[first:]]
        keys = [("RELOADING" if "RELOADING" in f else "READY") for f in after
                if "RELOADING" in f or "READY" in f]
        check(keys[:2] == ["RELOADING", "READY"], f"on SIGHUP, want RELOADING=1 then READY=1: {after}")
        m = next(f for f in after if "READY" in f)
        check("STATUS" in m, f"READY=1 after SIGHUP without STATUS= ({m})")
        check("reload refused" in m["STATUS"] and "without a config file" in m["STATUS"],
              f"STATUS after a refused reload: {m['STATUS']!r}")
        log(f"after a refused reload: STATUS={m['STATUS']}")
        check_stop(proc, mgr, logpath)
    except BaseException:
        print_log_tail(logpath, 30)
        proc.kill()
        raise

    # 2. WATCHDOG_USEC=400000: pings every ~0.2 s until it stops.
    usec = 400000
    proc, mgr, sock, port, logpath = start(1, {"WATCHDOG_USEC": str(usec)}, images)
    try:
        check_ready(proc, mgr, sock, port)
        mgr.poll(2.0)
        times = watchdog_times(mgr)
        check(len(times) >= 6, f"only {len(times)} WATCHDOG=1 in 2 s with a 0.4 s watchdog")
        gaps = [b - a for a, b in zip(times, times[1:])]
        worst = max(gaps)
        # Half the interval is 0.2 s; a ping later than the interval
        # itself would have got shoald killed.
        check(worst < usec / 1e6, f"a watchdog gap of {worst:.3f} s (interval {usec / 1e6} s)")
        check(min(gaps) > 0.05, f"pings {min(gaps):.3f} s apart: not paced at half the interval")
        log(f"{len(times)} WATCHDOG=1 pings, gaps {min(gaps):.3f}..{worst:.3f} s")
        check_stop(proc, mgr, logpath)
    except BaseException:
        print_log_tail(logpath, 30)
        proc.kill()
        raise

    # 3. $WATCHDOG_PID names another process: the watchdog is not ours.
    env = {"WATCHDOG_USEC": str(usec), "WATCHDOG_PID": str(os.getpid())}
    proc, mgr, sock, port, logpath = start(2, env, images)
    try:
        check_ready(proc, mgr, sock, port)
        mgr.poll(1.0)
        check(not watchdog_times(mgr), "WATCHDOG=1 sent though $WATCHDOG_PID is another pid")
        check_stop(proc, mgr, logpath)
    except BaseException:
        print_log_tail(logpath, 30)
        proc.kill()
        raise

    # 4. Started as root with --user (root start, then the drop): READY=1
    # comes after the drop, from the unprivileged process, which still
    # reaches the manager's socket (systemd's is world-writable, as here).
    if os.geteuid() != 0:
        log("not root: the --user case is skipped")
    else:
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            nobody = None
        if nobody is None:
            log("no user nobody: the --user case is skipped")
        else:
            os.chmod(TMP, 0o711)
            # LeakSanitizer cannot trace a process that changed its uids.
            asan = os.environ.get("ASAN_OPTIONS", "")
            env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "detect_leaks=0"}
            proc, mgr, sock, port, logpath = start(3, env, images, ("--user", "nobody"))
            try:
                check_ready(proc, mgr, sock, port)
                with open(f"/proc/{proc.pid}/status") as f:
                    uids = next(line.split()[1:] for line in f if line.startswith("Uid:"))
                check(uids == [str(nobody.pw_uid)] * 4, f"uids at READY=1: {uids}")
                check_stop(proc, mgr, logpath)
            except BaseException:
                print_log_tail(logpath, 30)
                proc.kill()
                raise
    log("PASS")


if __name__ == "__main__":
    rc = 0
    try:
        main()
    except TestFailure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        rc = 1
    finally:
        if rc == 0 or os.environ.get("SHOAL_IT_KEEP") != "1":
            shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(rc)
