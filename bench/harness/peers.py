"""The servers of a run: shoald and its peers, each on its own unix socket.

  nbdkit memory                 the cost of the NBD protocol alone
  nbdkit file                   a page-cached file, no cache of its own
  qemu-nbd                      the same file through QEMU's server
  nbdkit delay (the "array")    a slow array: file + rdelay/wdelay
  nbdkit nbd (a "proxy")        a bare NBD hop in front of the array
  nbdkit cache + delay          nbdkit's cache filter over the array, its
                                cache file on tmpfs (RAM) and capped by
                                cache-max-size
  shoald                        volumes over files or upstream NBD exports
"""
import json
import os
import re
import urllib.request

from procs import BenchError, free_port


class Server:
    def __init__(self, name, proc, sock, export=""):
        self.name = name
        self.proc = proc
        self.sock = sock
        self.export = export

    def uri(self, export=None):
        e = self.export if export is None else export
        return "nbd+unix:///%s?socket=%s" % (e, self.sock)


def nbdkit(procs, name, plugin_args, filters=(), params=(), env=None, log_file=None):
    """nbdkit -U SOCK [--filter=F ...] PLUGIN ARGS... [k=v ...]"""
    sock = procs.sock_path(name)
    argv = ["nbdkit", "-f", "--exit-with-parent", "-U", sock]
    argv += ["--filter=%s" % f for f in filters]
    argv += list(plugin_args) + list(params)
    if log_file:
        argv.append("logfile=" + log_file)
    p = procs.start(name, argv, env=env)
    procs.wait_unix(p, sock)
    return Server(name, p, sock)


def nbdkit_memory(procs, name, size):
    return nbdkit(procs, name, ["memory", str(size)])


def nbdkit_file(procs, name, path):
    return nbdkit(procs, name, ["file", path])


def _delay_arg(delay):
    """The delay filter's argument for "1ms", "2ms", "1s" ... nbdkit 1.32's
    delay filter (Debian 12) takes whole seconds or whole milliseconds: it
    reads "NNms" with %d, so "0.2ms" silently means no delay at all (the
    "200us array" of the runs before this check was an undelayed nbdkit
    file). A delay it cannot express is refused instead."""
    m = re.fullmatch(r"(\d+)(ms|s)?", delay)
    if not m:
        raise BenchError("array delay %r: nbdkit's delay filter takes whole seconds or whole "
                         "milliseconds (e.g. 1ms, 2ms, 1s)" % delay)
    return delay


def nbdkit_array(procs, name, path, delay, log_file=None):
    """The slow array: every read and write waits `delay` ("1ms", "200us")."""
    filters = (["log"] if log_file else []) + ["delay"]
    d = _delay_arg(delay)
    return nbdkit(procs, name, ["file", path], filters=filters,
                  params=["rdelay=" + d, "wdelay=" + d], log_file=log_file)


def _cache_params(cache_bytes):
    """nbdkit's cache filter as both cache peers run it: read caching on,
    write-through, cache_bytes of cache."""
    return ["cache-on-read=true", "cache=writethrough", "cache-max-size=%d" % cache_bytes]


def nbdkit_cache(procs, name, path, delay, cache_bytes, log_file=None):
    """nbdkit's cache filter (read caching on, write-through) over the array.
    With log_file, a log filter between the cache and the array records what
    reaches the array (the cache's misses)."""
    filters = ["cache"] + (["log"] if log_file else []) + ["delay"]
    params = _cache_params(cache_bytes) + ["rdelay=" + _delay_arg(delay),
                                           "wdelay=" + _delay_arg(delay)]
    return nbdkit(procs, name, ["file", path], filters=filters, params=params,
                  env={"TMPDIR": procs.shm}, log_file=log_file)


def nbdkit_cache_nbd(procs, name, array, cache_bytes):
    """nbdkit's cache filter (as nbdkit_cache) in front of an array served by
    another process, reached over NBD (nbdkit's nbd plugin): the stack an
    admin builds to cache a remote array, and the one shoal is in (shoald ->
    NBD -> array). What reaches the array is in the array's own log."""
    return nbdkit(procs, name, ["nbd", "socket=" + array.sock], filters=["cache"],
                  params=_cache_params(cache_bytes), env={"TMPDIR": procs.shm})


def nbdkit_proxy(procs, name, server):
    """A bare NBD hop: nbdkit's nbd plugin in front of another server, no
    filter. What any proxy between a client and an NBD array costs (a
    process more, two socket hops, two wake-ups a request)."""
    return nbdkit(procs, name, ["nbd", "socket=" + server.sock])


def qemu_nbd(procs, name, path):
    sock = procs.sock_path(name)
    # --shared: qemu-nbd serves one client at a time by default.
    # --read-only: the rig's shoald serves the same file read-write, and
    # each takes QEMU's image locks (a writer keeps every other user off).
    argv = ["qemu-nbd", "--persistent", "--shared=16", "--read-only", "--socket=" + sock,
            "--format=raw", "--export-name=", path]
    p = procs.start(name, argv)
    procs.wait_unix(p, sock)
    return Server(name, p, sock)


class Shoald(Server):
    """shoald with named volumes; the management API on a free port, with a
    bearer token of our own (API changes need one: invalidate, resize)."""

    def __init__(self, procs, name, shoald_bin, volumes, cache_size, extra=(), threads=0):
        sock = procs.sock_path(name)
        self.token = os.urandom(32).hex()
        self.token_file = procs.path(name + "-api-token")
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token + "\n")
        last = None
        for _ in range(3):  # the picked port can be taken before shoald binds it
            self.port = free_port()
            argv = [shoald_bin, "-f", "-l", "unix:" + sock, "--http", "127.0.0.1:%d" % self.port,
                    "--http-token-file", self.token_file, "-m", str(cache_size), "--state-dir", "off"] + list(extra)
            if threads:
                argv += ["--threads", str(threads)]
            argv += ["%s=%s" % (v, b) for v, b in volumes.items()]
            p = procs.start(name, argv)
            try:
                procs.wait_unix(p, sock)
                procs.wait_tcp(p, self.port)
                break
            except BenchError as e:
                last = e
                procs.stop(p)
                p = None
        if p is None:
            raise last
        Server.__init__(self, name, p, sock, export=next(iter(volumes)))
        self.volumes = list(volumes)
        self.api = "http://127.0.0.1:%d" % self.port

    def _req(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def stats(self):
        return self._req("GET", "/api/v1/stats")

    def cache_stats(self):
        """GET /api/v1/cache: the content store's figures (capacity_bytes,
        unique_blocks, metadata_bytes, metadata_bytes_per_block,
        directory_remembered_blocks, remembered_bytes_per_block, ...)."""
        return self._req("GET", "/api/v1/cache")

    def volume_stats(self, vol):
        return self._req("GET", "/api/v1/stats/volumes/" + vol)

    def invalidate(self, vol):
        return self._req("POST", "/api/v1/volumes/%s/invalidate" % vol, {})

    def set_enabled(self, vol, on):
        """Enable or disable acceleration (disabled: reads pass through to
        the back end, nothing is cached)."""
        return self._req("POST", "/api/v1/volumes/%s/%s" % (vol, "enable" if on else "disable"),
                         {})

    def rss_bytes(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0
