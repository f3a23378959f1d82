"""Scenario 10: the global tier (issue 11). A remote hit (a read that
misses the node's RAM and is found in memcached) against the memcached get
it is made of, in one run against one memcached on 127.0.0.1:

- bench/remote-hit (C, linked with shoal): tier_lookup of 1 key (the
  block's SHA-256 checked, as the daemon does) vs memcached_get of the
  same 4 KiB value on a plain libmemcached handle, alternating, median
  latency (target <= 1.2x); tier_lookup of 32 keys vs memcached_mget of the
  same 32 keys, blocks per second (target >= 0.8x). Both through the same
  libmemcached, binary protocol, TCP_NODELAY.
- Memory per cached block on each tier: shoald (-m 64M over memcached)
  reads a random volume once, so every block is in its RAM and offered to
  memcached: the local tier's block + metadata (GET /api/v1/cache), and
  memcached's RSS growth per item and slab waste (`stats slabs`: the chunk
  of the class in use against the stored item's size), with Debian's
  default slab classes.

Not measured here: the same read end to end through NBD (the directory
remembers only part of the evicted blocks' keys, so a fio run mixes local
hits, remote hits and back-end reads)."""
import json
import os
import shutil
import socket
import time

import clients
import peers
from common import MiB, median, say
from procs import BenchError, free_port


def mc_stats(port, what=""):
    """memcached's `stats [what]` as a dict of strings."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")
    s.sendall(("stats %s\r\n" % what).strip().encode() + b"\r\n")
    out = {}
    for line in f:
        line = line.decode().strip()
        if line == "END":
            break
        parts = line.split()
        if len(parts) == 3 and parts[0] == "STAT":
            out[parts[1]] = parts[2]
    s.close()
    return out


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def slab_in_use(port):
    """(chunk_size, used_chunks) of the slab class holding the most items."""
    sl = mc_stats(port, "slabs")
    best = (0, 0)
    for k, v in sl.items():
        cls, _, field = k.partition(":")
        if field == "used_chunks" and cls.isdigit() and int(v) > best[1]:
            best = (int(sl[cls + ":chunk_size"]), int(v))
    return best


def start_memcached(procs, name, extra=()):
    port = free_port()
    mc = procs.start(name, ["memcached", "-U", "0", "-l", "127.0.0.1", "-p", str(port),
                            "-m", "512", "-t", "1"] + list(extra) +
                     (["-u", "nobody"] if os.geteuid() == 0 else []))
    procs.wait_tcp(mc, port)
    return mc, port


def memory_per_block(ctx, image, size, slab_args):
    """shoald reads the volume once over a fresh memcached started with
    slab_args: each tier's bytes per cached block."""
    procs = ctx.procs
    mc, port = start_memcached(procs, "memcached-mem", slab_args)
    try:
        rss0 = rss(mc.pid)
        server = "127.0.0.1:%d" % port
        shoal = peers.Shoald(procs, "shoal-s10", ctx.shoald, {"vol": image}, size + 8 * MiB,
                             extra=["--memcached", server, "--memcached-timeout", "100ms"])
        try:
            clients.nbdcopy_seconds(procs, shoal.uri("vol"), name="s10-read")
            cache = shoal.cache_stats()
            puts = shoal.stats()["cache"].get("tier_puts", 0)
            for _ in range(100):  # puts are sent after the replies
                if int(mc_stats(port)["curr_items"]) >= puts * 0.99:
                    break
                time.sleep(0.1)
        finally:
            procs.stop(shoal.proc)
        ms = mc_stats(port)
        items = int(ms["curr_items"])
        if items <= 0:
            raise BenchError("memcached stored none of the volume's blocks")
        chunk, _ = slab_in_use(port)
        item_size = int(ms["bytes"]) / items
        return {
            "memcached_args": " ".join(slab_args) or "(Debian's defaults)",
            "local_bytes_per_block": 4096 + cache["metadata_bytes_per_block"],
            "local_metadata_bytes_per_block": cache["metadata_bytes_per_block"],
            "memcached_rss_bytes_per_block": (rss(mc.pid) - rss0) / items,
            "memcached_item_bytes": item_size,
            "memcached_chunk_bytes": chunk,
            "memcached_slab_waste": (chunk - item_size) / chunk if chunk else None,
            "memcached_items": items,
            "tier_puts": puts,
        }
    finally:
        procs.stop(mc)


def scenario10_remote_hit(ctx):
    cfg, procs = ctx.cfg, ctx.procs
    if not shutil.which("memcached"):
        raise BenchError("memcached is not installed (Debian package memcached)")
    mc, port = start_memcached(procs, "memcached")
    server = "127.0.0.1:%d" % port
    try:
        say("s10: remote hits against one memcached (%s)" % server)
        runs = []
        rounds = 2000 if cfg["reps"] <= 3 else 5000
        for rep in range(cfg["reps"]):
            _, out = procs.run("remote-hit", [ctx.remote_hit, "--server", server, "--rounds",
                                              str(rounds)], timeout=300)
            runs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        procs.stop(mc)
    size = 64 * MiB
    image = procs.path("s10.img")
    with open(image, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    say("s10: memory per cached block on each tier (a %d MiB volume read once)" % (size // MiB))
    mem = [memory_per_block(ctx, image, size, []),
           memory_per_block(ctx, image, size, ["-C", "-o", "slab_sizes=4192"])]
    med = {k: median([r[k] for r in runs]) for k in runs[0]}
    ctx.results["s10_remote_hit"] = {
        "metric": "tier_lookup (1 key; 32 keys) vs memcached_get / 32-key memcached_mget of "
                  "the same 4 KiB values, one memcached on 127.0.0.1, medians over rounds",
        "runs": runs, "median": med, "memory": mem,
    }
    r = ctx.ratios
    r.add("s10.remote_hit_qd1", 10, "remote hit QD1 latency / one libmemcached get",
          med["qd1_ratio"], "lower", "<=", 1.2, "libmemcached get")
    r.add("s10.remote_hit_32", 10, "remote hits, 32 keys: blocks/s / a 32-key multi-get's",
          med["batch_ratio"], "higher", ">=", 0.8, "libmemcached mget",
          note="the core's SHA-256 check of 32 blocks is %.0f us of %.0f" %
               (med["batch_verify_us"], med["batch_tier_us"]))
    r.add("s10.memcached_slab_waste", 10, "memcached slab waste per 4 KiB block (default classes)",
          mem[0]["memcached_slab_waste"], "lower")
