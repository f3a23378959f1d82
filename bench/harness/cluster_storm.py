"""Scenario 11: the cluster boot storm (issue 11).

Hosts are network namespaces on one machine (as tests/integration/
netns_lib.sh makes them): a hub with a bridge and etcd (10.78.0.1), and
`cs_nodes` hosts (10.78.0.1I), each with its memcached and `shoald --etcd`.
The addresses exist only inside the namespaces this scenario makes.

Topology (why): the gold image lives on one slow array, `nbdkit --filter=log
--filter=delay file gold.img rdelay=1ms` on a unix socket. Unix sockets are
file system objects, so every namespace reaches it, as every host reaches a
shared array. Each node serves the gold read-only (`-r gold=nbd+unix://...`,
the same URI everywhere, hence one identity in the cluster's shared map).
A clone is a qcow2 overlay whose backing file is its node's gold export;
the private writes live in the overlay (qemu-io `write -s`, at the places
storm.py's clones get them), so the array holds only the gold, as a real
VDI pool does. Each overlay is exported by `qemu-nbd --read-only` in its
node's namespace and replayed by shoal-replay with the clone's boot trace
(images.boot_ops, the same traces as scenario 5).

Peer: per clone an nbdkit cache filter (`cache-on-read`, its cache on
tmpfs, RAM/clones each, as scenario 5's peer) over the same kind of 1 ms
array (`nbdkit nbd socket=ARRAY`, a twin array process with its own log),
and the clone's own overlay on top, exported by qemu-nbd the same way. So
both stacks are qemu-nbd + qcow2 overlay + cache + one 1 ms array; only
the cache differs.

RAM: total = 1.5x the gold image. A third is the nodes' L1 (`shoald -m`,
split evenly), two thirds the memcached servers (`memcached -m`, split
evenly, whole MiB): the global tier holds the union of the clones' boot
sets, the L1 keeps each node's hottest part. memcached runs with
`-C -o slab_sizes=1480-4192` (docs/cluster.md: a 4 KiB block in a 4192 B
chunk, the map's 1.4 KB chunks in their own class).

Storms: the first (cold) storm starts node I's clones `cs_stagger` *
(I - 1) seconds after node 1's, so "the nodes after the first" exist: their
share of blocks from the global tier is tier_hit_blocks / (tier_hit_blocks
+ backend_read_bytes / 4096), per node, from the stats deltas (map_hits
with it). The second storm starts every clone at once. Wall time: start of
the first replay to the end of the last, for both systems, with the same
start times. Array bytes from the arrays' logs, signed offload as in
scenario 5. Without root, `ip`, network namespaces, etcd, memcached, curl
or qemu-nbd the scenario records "skipped: why" and the run goes on.
"""
import json
import os
import random
import shutil
import subprocess
import time

import clients
import images
import peers
from common import MiB, machine_cpu_ticks, median, rotate, say, share_kept_off
from procs import BenchError
from storm import _parse_array_log

NET = "10.78.0"
BLOCK = 4096


def _why_skip():
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool, pkg in (("ip", "iproute2"), ("etcd", "etcd-server"), ("memcached", "memcached"),
                      ("curl", "curl"), ("memcstat", "libmemcached-tools"),
                      ("qemu-nbd", "qemu-utils"), ("qemu-io", "qemu-utils"),
                      ("qemu-img", "qemu-utils")):
        if not shutil.which(tool):
            return "%s is not installed (Debian package %s)" % (tool, pkg)
    return None


def _ip(*args):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError("ip %s: %s" % (" ".join(args), r.stderr.strip()))


class Net:
    """The hub (bridge + etcd's address) and the hosts, deleted by close()."""

    def __init__(self, n):
        self.base = "shoal-b11-%d" % os.getpid()
        self.hub = self.base + "-hub"
        self.made = []
        r = subprocess.run(["ip", "netns", "add", self.hub], capture_output=True, text=True)
        if r.returncode != 0:
            raise OSError("cannot make a network namespace: " + r.stderr.strip())
        self.made.append(self.hub)
        _ip("-n", self.hub, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", NET + ".1/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for i in range(1, n + 1):
            ns = self.host(i)
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("-n", self.hub, "link", "add", "v%d" % i, "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            _ip("-n", self.hub, "link", "set", "v%d" % i, "master", "br0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", self.addr(i) + "/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def host(self, i):
        return "%s-n%d" % (self.base, i)

    @staticmethod
    def addr(i):
        return "%s.1%d" % (NET, i)

    def exec_argv(self, i, argv):
        return ["ip", "netns", "exec", self.hub if i == 0 else self.host(i)] + list(argv)

    def close(self):
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made = []


class Node:
    """One host's memcached and shoald; the API through curl in its namespace."""

    def __init__(self, ctx, net, i, ep, l1_bytes, mc_mib, array_sock):
        procs = ctx.procs
        self.net, self.i, self.procs = net, i, procs
        addr = net.addr(i)
        self.mc = procs.start("s11-memcached%d" % i, net.exec_argv(i, [
            "memcached", "-u", "nobody", "-U", "0", "-l", addr, "-p", "11211", "-m", str(mc_mib),
            "-t", "1", "-C", "-o", "slab_sizes=1480-4192"]))
        self.token_file = procs.path("s11-token")
        if not os.path.exists(self.token_file):
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(32).hex() + "\n")
        with open(self.token_file) as f:
            self.token = f.read().strip()
        self.sock = procs.sock_path("s11-n%d" % i)
        self.api = "http://%s:10810" % addr
        argv = [ctx.shoald, "-f", "-l", "unix:" + self.sock, "--http", addr + ":10810",
                "--http-token-file", self.token_file, "--state-dir", "off", "-m", str(l1_bytes),
                "--etcd", ep, "--node-name", "n%d" % i, "--memcached", addr + ":11211",
                "--memcached-timeout", ctx.cfg["cs_mc_timeout"], "-r",
                "gold=nbd+unix:///?socket=" + array_sock]
        if ctx.cfg["shoald_threads"]:
            argv += ["--threads", str(ctx.cfg["shoald_threads"])]
        time.sleep(0.2)  # memcached listening before the node registers it
        self.proc = procs.start("s11-shoald%d" % i, net.exec_argv(i, argv))
        procs.wait_unix(self.proc, self.sock, timeout=60)
        self.gold_uri = "nbd+unix:///gold?socket=" + self.sock

    def mc_items(self):
        """curr_items of this host's memcached (memcstat in its namespace;
        the node's tier figures lag by up to 3 s)."""
        r = subprocess.run(self.net.exec_argv(self.i, [
            "memcstat", "--servers=%s:11211" % self.net.addr(self.i)]),
            capture_output=True, text=True)
        for line in r.stdout.splitlines():
            p = line.split()
            if len(p) == 2 and p[0] == "curr_items:":
                return int(p[1])
        raise BenchError("node %d: memcstat gave no curr_items" % self.i)

    def get(self, path):
        r = subprocess.run(self.net.exec_argv(self.i, [
            "curl", "-sf", "--max-time", "10", "-H", "Authorization: Bearer " + self.token,
            self.api + path]), capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError("node %d: GET %s failed (curl %d)" % (self.i, path, r.returncode))
        return json.loads(r.stdout)

    def stats(self):
        """The gold volume's counters and the cache section (map, tier)."""
        s = self.get("/api/v1/stats")
        vol = next(v for v in s["volumes"] if v["name"] == "gold")
        out = {k: vol.get(k, 0) for k in ("read_ops", "read_bytes", "read_hit_bytes",
                                          "backend_read_ops", "backend_read_bytes",
                                          "tier_hit_blocks")}
        c = s.get("cache", {})
        for k in ("map_hits", "map_lookups", "map_puts", "tier_lookups", "tier_hits",
                  "tier_timeouts", "tier_puts", "unique_blocks"):
            out[k] = c.get(k, 0)
        tier = s.get("memcached", {}).get("tier", {})
        out["put_queued"] = tier.get("put_queued", 0)
        out["put_drops"] = tier.get("put_drops", 0)
        return out


def _wait(what, fn, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if fn():
                return
        except BenchError:
            pass
        time.sleep(0.2)
    raise BenchError("s11: %s within %ds" % (what, timeout))


def _private_regions(gold, seed, regions, region_bytes):
    """The places and data of a clone's private writes, chosen exactly as
    images.make_clone chooses them (same generator, same order)."""
    rng = random.Random(seed)
    big = [(o, l) for o, l in gold["extents"] if l >= region_bytes]
    if not big:
        raise BenchError("the gold image has no extent of %d bytes for private writes"
                         % region_bytes)
    out = []
    for _ in range(regions):
        o, l = rng.choice(big)
        start = o + rng.randrange(0, (l - region_bytes) // 4096 + 1) * 4096
        out.append((start, rng.randbytes(region_bytes)))
    return out


def _overlay(procs, gold, path, regions):
    """A qcow2 overlay of the gold file holding the private writes."""
    def run(argv):
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError("%s: %s" % (" ".join(argv[:3]), (r.stderr or r.stdout).strip()))
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", gold["path"], path])
    cmds = []
    for k, (off, data) in enumerate(regions):
        src = "%s.priv%d" % (path, k)
        with open(src, "wb") as f:
            f.write(data)
        cmds += ["-c", "write -q -s %s %d %d" % (src, off, len(data))]
    run(["qemu-io", "-f", "qcow2"] + cmds + [path])
    for k in range(len(regions)):
        os.unlink("%s.priv%d" % (path, k))


def _rebase(path, backing_uri):
    """Point the overlay at an NBD export of the same gold (-u: the bytes
    are the same, nothing to copy)."""
    r = subprocess.run(["qemu-img", "rebase", "-u", "-F", "raw", "-b", backing_uri, path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError("qemu-img rebase %s: %s" % (path, r.stderr.strip()))


def _qemu_nbd(procs, name, path, argv_wrap=None):
    sock = procs.sock_path(name)
    argv = ["qemu-nbd", "--persistent", "--shared=4", "--read-only", "--socket=" + sock,
            "--format=qcow2", "--export-name=", path]
    p = procs.start(name, argv_wrap(argv) if argv_wrap else argv)
    procs.wait_unix(p, sock, timeout=60)
    return peers.Server(name, p, sock)


class ClusterStorm:
    def __init__(self, ctx):
        self.ctx = ctx
        cfg, procs = ctx.cfg, ctx.procs
        self.nodes_n = cfg["cs_nodes"]
        self.per = cfg["cs_clones_per_node"]
        self.n = self.nodes_n * self.per
        say("s11: building the gold image from real files (%d MiB of files)"
            % (cfg["cs_gold_data"] // MiB))
        self.gold = images.build_gold(procs, procs.path("s11-gold.img"), cfg["cs_gold_data"])
        # "qcow2": clones as above; "direct": each replayer reads its
        # node's gold export (or its nbdkit cache) itself, no qemu-nbd and
        # no private writes: the same storm without the ~0.3 ms of CPU a
        # qemu-nbd + qcow2 layer costs per read (bench/README.md)
        self.direct = cfg["cs_clients"] == "direct"
        if cfg["cs_clients"] not in ("qcow2", "direct"):
            raise BenchError("cs_clients must be qcow2 or direct, not %r" % cfg["cs_clients"])
        self.regions, self.traces, self.ops = [], [], []
        for k in range(self.n):
            reg = [] if self.direct else _private_regions(
                self.gold, 100 + k, cfg["private_regions"], cfg["private_bytes"])
            ops = images.boot_ops(self.gold, [(o, len(d)) for o, d in reg], cfg["boot_share"])
            tr = procs.path("s11-boot%02d.csv" % k)
            images.write_msr_trace(tr, ops, disk=k)
            self.regions.append(reg)
            self.traces.append(tr)
            self.ops.append(ops)
        self.ram = int(1.5 * self.gold["size"])
        self.l1 = (self.ram // 3) // self.nodes_n
        self.mc_mib = (self.ram - self.l1 * self.nodes_n) // self.nodes_n // MiB
        self.kit_each = self.ram // self.n
        self.qd = cfg["storm_qd"]
        self.stagger = cfg["cs_stagger"]
        say("s11: gold %d MiB (%d MiB used), %d nodes x %d clones, %d reads / %.1f MiB per boot; "
            "RAM %d MiB: L1 %d MiB x %d + memcached %d MiB x %d; nbdkit cache %d MiB x %d"
            % (self.gold["size"] // MiB, self.gold["used_bytes"] // MiB, self.nodes_n, self.per,
               len(self.ops[0]), sum(l for _, l in self.ops[0]) / MiB, self.ram // MiB,
               self.l1 // MiB, self.nodes_n, self.mc_mib, self.nodes_n, self.kit_each // MiB,
               self.n))

    def node_of(self, k):
        return 1 + k // self.per

    def _overlays(self, tag, backing):
        """One overlay per clone, its backing the given NBD URI (per clone)."""
        out = []
        for k in range(self.n):
            path = self.ctx.procs.path("s11-%s-clone%02d.qcow2" % (tag, k))
            if os.path.exists(path):
                os.unlink(path)
            _overlay(self.ctx.procs, self.gold, path, self.regions[k])
            _rebase(path, backing[k])
            out.append(path)
        return out

    def _storm(self, tag, uris, nodes, stagger):
        procs = self.ctx.procs
        before = [nd.stats() for nd in nodes] if nodes else None
        base = time.time() + 0.5 + 0.1 * self.n
        starts = [base + stagger * (self.node_of(k) - 1) for k in range(self.n)]
        cpu0 = machine_cpu_ticks()
        ps = [clients.replay_start(procs, self.ctx.replay, "%s-replay%02d" % (tag, k),
                                   self.traces[k], uris[k], self.qd,
                                   extra=["--start-at", "%.6f" % starts[k]])
              for k in range(self.n)]
        results = [clients.replay_finish(procs, p) for p in ps]
        cpu1 = machine_cpu_ticks()
        t1 = max(r["replay"]["end_unix_us"] for r in results) / 1e6
        late = max(r["replay"]["start_unix_us"] / 1e6 - s for r, s in zip(results, starts))
        if late > 0.05:
            say("s11: warning: a replayer started %.2fs late" % late)
        client = sum(r["replay"]["read_bytes"] for r in results)
        expect = sum(sum(l for _, l in ops) for ops in self.ops)
        errors = sum(r["replay"]["errors"] for r in results)
        out = {"t0": base, "t1": t1, "wall": t1 - base, "late_start": late,
               "client_bytes": client, "errors": errors,
               "complete": client == expect and errors == 0,
               # the machine's CPU busy share over the storm (every process,
               # ours and others'): near 1, the storm is bound by CPU, not by
               # the array
               "cpu_busy": ((cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1])
                            if cpu1[1] > cpu0[1] else None)}
        if nodes:
            after = [nd.stats() for nd in nodes]
            per = []
            for i, (a, b) in enumerate(zip(before, after)):
                d = {k: b[k] - a[k] for k in a if k not in ("put_queued", "unique_blocks")}
                be_blocks = d["backend_read_bytes"] / BLOCK
                fetched = d["tier_hit_blocks"] + be_blocks
                d["global_share"] = d["tier_hit_blocks"] / fetched if fetched else None
                d["node"] = i + 1
                per.append(d)
            rb = sum(d["read_bytes"] for d in per)
            out["hit_ratio"] = sum(d["read_hit_bytes"] for d in per) / rb if rb else None
            out["nodes"] = per
            later = per[1:]
            th = sum(d["tier_hit_blocks"] for d in later)
            be = sum(d["backend_read_bytes"] for d in later) / BLOCK
            out["later_nodes_global_share"] = th / (th + be) if th + be else None
        return out

    def _settle(self, nodes):
        """Let the puts of a storm reach memcached before the next storm."""
        def idle():
            return all(nd.stats()["put_queued"] == 0 for nd in nodes)
        _wait("the nodes' puts drained", idle, timeout=60)
        time.sleep(1.0)

    def run_rep(self, rep, order):
        ctx, procs, cfg = self.ctx, self.ctx.procs, self.ctx.cfg
        logs = {s: procs.path("s11-%s-r%d-array.log" % (s, rep)) for s in order}
        for p in logs.values():
            if os.path.exists(p):
                os.unlink(p)
        started, net = [], None
        try:
            net = Net(self.nodes_n)
            ep = "http://%s.1:2379" % NET
            etcd_dir = procs.path("s11-etcd-r%d" % rep)
            started.append(procs.start("s11-etcd", net.exec_argv(0, [
                "etcd", "--name", "hub", "--data-dir", etcd_dir, "--listen-client-urls", ep,
                "--advertise-client-urls", ep, "--listen-peer-urls", "http://%s.1:2380" % NET,
                "--initial-advertise-peer-urls", "http://%s.1:2380" % NET,
                "--initial-cluster", "hub=http://%s.1:2380" % NET])))

            def etcd_up():
                return subprocess.run(net.exec_argv(1, ["curl", "-sf", "--max-time", "1",
                                                        ep + "/health"]),
                                      capture_output=True).returncode == 0
            _wait("etcd answered", etcd_up)
            arrays = {s: peers.nbdkit_array(procs, "s11-array-%s" % s, self.gold["path"], "1ms",
                                            log_file=logs[s]) for s in order}
            started += [a.proc for a in arrays.values()]
            nodes = []
            for i in range(1, self.nodes_n + 1):
                nd = Node(ctx, net, i, ep, self.l1, self.mc_mib, arrays["shoal"].sock)
                started += [nd.mc, nd.proc]
                nodes.append(nd)
            want = sorted("%s:11211" % net.addr(i) for i in range(1, self.nodes_n + 1))
            _wait("every node's ring lists every memcached",
                  lambda: all(sorted(nd.get("/api/v1/cluster").get("ring", [])) == want
                              for nd in nodes))
            kits = []
            for k in range(self.n):
                kit = peers.nbdkit(procs, "s11-cache%02d" % k,
                                   ["nbd", "socket=" + arrays["nbdkit-cache"].sock],
                                   filters=["cache"],
                                   params=["cache-on-read=true", "cache=writethrough",
                                           "cache-max-size=%d" % self.kit_each],
                                   env={"TMPDIR": procs.shm})
                started.append(kit.proc)
                kits.append(kit)
            backing = {"shoal": [nodes[self.node_of(k) - 1].gold_uri for k in range(self.n)],
                       "nbdkit-cache": [kits[k].uri("") for k in range(self.n)]}
            uris = dict(backing) if self.direct else {}
            for s in ([] if self.direct else order):
                ovl = self._overlays(s, backing[s])
                srv = []
                for k in range(self.n):
                    wrap = ((lambda a, i=self.node_of(k): net.exec_argv(i, a)) if s == "shoal"
                            else None)
                    q = _qemu_nbd(procs, "s11-%s-qnbd%02d" % (s, k), ovl[k], wrap)
                    started.append(q.proc)
                    srv.append(q.uri(""))
                uris[s] = srv
            storms = {s: [] for s in order}
            for k, stagger in ((1, self.stagger), (2, 0.0)):
                for s in order:
                    sh = nodes if s == "shoal" else None
                    storms[s].append(self._storm("s11-%s-r%d-storm%d" % (s, rep, k), uris[s],
                                                 sh, stagger))
                    if sh and k == 1:
                        self._settle(nodes)
            final = [nd.stats() for nd in nodes]
            items = [nd.mc_items() for nd in nodes]
        finally:
            for p in reversed(started):
                procs.stop(p)
            if net:
                net.close()
        reads = {s: _parse_array_log(logs[s]) for s in order}
        out = {}
        for s in order:
            for st in storms[s]:
                ab = sum(b for t, b in reads[s] if st["t0"] <= t <= st["t1"] + 0.05)
                st["array_bytes"] = ab
                # requests that reached the array: x 1 ms / (clones x QD) is
                # the least time the storm waits for it
                st["array_reads"] = sum(1 for t, b in reads[s]
                                        if st["t0"] <= t <= st["t1"] + 0.05)
                st["offload"] = share_kept_off(ab, st["client_bytes"])
                del st["t0"], st["t1"]
            out[s] = {"storms": storms[s]}
            os.unlink(logs[s])
        out["shoal"]["memcached_items"] = items
        out["shoal"]["l1_blocks"] = sum(f["unique_blocks"] for f in final)
        out["shoal"]["put_drops"] = sum(f["put_drops"] for f in final)
        return out


def scenario11_cluster_storm(ctx):
    cfg = ctx.cfg
    why = _why_skip()
    if why is None:
        try:
            Net(0).close()
        except OSError as e:
            why = str(e)
    if why:
        say("s11: skipped: " + why)
        ctx.results["s11_cluster_storm"] = {"skipped": why}
        return
    cs = ClusterStorm(ctx)
    runs = {"shoal": [], "nbdkit-cache": []}
    for rep in range(cfg["cs_reps"]):
        order = rotate(list(runs), rep)
        say("s11: cluster storm rep %d/%d (%s first)" % (rep + 1, cfg["cs_reps"], order[0]))
        out = cs.run_rep(rep, order)
        for s in order:
            runs[s].append(out[s])
            r = out[s]["storms"]
            say("s11:   %s: first storm %.2fs, second %.2fs, offload %s / %s%s"
                % (s, r[0]["wall"], r[1]["wall"], _fmt(r[0]["offload"]), _fmt(r[1]["offload"]),
                   ", hit ratio %s / %s, nodes 2-%d from the global tier %s (first storm)"
                   % (_fmt(r[0]["hit_ratio"]), _fmt(r[1]["hit_ratio"]), cs.nodes_n,
                      _fmt(r[0]["later_nodes_global_share"])) if s == "shoal" else ""))

    def col(system, k, key):
        return [run["storms"][k][key] for run in runs[system]]

    med = {s: {"first_wall": median(col(s, 0, "wall")), "second_wall": median(col(s, 1, "wall")),
               "first_offload": median(col(s, 0, "offload")),
               "second_offload": median(col(s, 1, "offload")),
               "first_array_bytes": median(col(s, 0, "array_bytes")),
               "second_array_bytes": median(col(s, 1, "array_bytes")),
               "first_array_reads": median(col(s, 0, "array_reads")),
               "second_array_reads": median(col(s, 1, "array_reads")),
               "first_cpu_busy": median(col(s, 0, "cpu_busy")),
               "second_cpu_busy": median(col(s, 1, "cpu_busy")),
               "client_bytes": median(col(s, 0, "client_bytes"))} for s in runs}
    sm = med["shoal"]
    sm["first_hit_ratio"] = median(col("shoal", 0, "hit_ratio"))
    sm["second_hit_ratio"] = median(col("shoal", 1, "hit_ratio"))
    sm["first_later_nodes_global_share"] = median(col("shoal", 0, "later_nodes_global_share"))
    sm["first_global_share_per_node"] = [
        median([run["storms"][0]["nodes"][i]["global_share"] for run in runs["shoal"]])
        for i in range(cs.nodes_n)]
    sm["memcached_items"] = median([sum(r["memcached_items"]) for r in runs["shoal"]])
    sm["l1_blocks"] = median([r["l1_blocks"] for r in runs["shoal"]])
    sm["put_drops"] = median([r["put_drops"] for r in runs["shoal"]])
    complete = all(s["complete"] for v in runs.values() for r in v for s in r["storms"])
    ctx.results["s11_cluster_storm"] = {
        "config": {"nodes": cs.nodes_n, "clones_per_node": cs.per, "clones": cs.n,
                   "gold_image_bytes": cs.gold["size"], "gold_used_bytes": cs.gold["used_bytes"],
                   "gold_files": cs.gold["files"], "reads_per_boot": len(cs.ops[0]),
                   "bytes_per_boot": sum(l for _, l in cs.ops[0]), "queue_depth": cs.qd,
                   "ram_bytes": cs.ram, "l1_bytes_each": cs.l1,
                   "memcached_mib_each": cs.mc_mib, "nbdkit_cache_bytes_each": cs.kit_each,
                   "first_storm_stagger_s": cs.stagger, "clients": cfg["cs_clients"],
                   "memcached_timeout": cfg["cs_mc_timeout"], "array_delay": "1ms",
                   "reps": cfg["cs_reps"]},
        "all_reads_done": complete,
        "raw": runs,
        "median": med,
    }
    r = ctx.ratios
    r.add("s11.second_storm_hit_ratio", 11, "cluster: shoal's hit ratio in the second storm",
          sm["second_hit_ratio"], "higher", ">=", 0.9, None)
    r.add("s11.second_storm_speedup_vs_cache", 11,
          "cluster second storm: nbdkit cache wall time / shoal's",
          med["nbdkit-cache"]["second_wall"] / med["shoal"]["second_wall"], "higher", ">=", 8.0,
          "nbdkit cache", note="same total RAM (1.5x one image)")
    r.add("s11.first_storm_speedup_vs_cache", 11,
          "cluster first storm: nbdkit cache wall time / shoal's",
          med["nbdkit-cache"]["first_wall"] / med["shoal"]["first_wall"], "higher",
          peer="nbdkit cache")
    r.add("s11.first_storm_global_share", 11,
          "cluster first storm: share of the blocks nodes 2-%d fetched that came from the "
          "global tier" % cs.nodes_n, sm["first_later_nodes_global_share"], "higher", peer=None)
    for k in ("first", "second"):
        for s, label in (("shoal", "shoal"), ("nbdkit-cache", "cache")):
            r.add("s11.%s_storm_offload_%s" % (k, label), 11,
                  "cluster %s storm, %s: share of read bytes kept off the array" % (k, s),
                  med[s][k + "_offload"], "higher", peer=None)
    if not complete:
        r.add("s11.all_reads_done", 11, "every boot read completed without error", 0.0,
              "higher", ">=", 1.0, None)


def _fmt(x):
    return "-" if x is None else "%.3f" % x
