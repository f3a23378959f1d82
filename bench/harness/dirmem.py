"""Scenario 8: directory memory, the cache's bookkeeping per block.

The issue "One engine, many doors" sets two memory figures as benchmark
figures, read here from the real daemon's stats (GET /api/v1/cache):

  metadata_bytes_per_block    (metadata_bytes - remembered_metadata_bytes)
                              / unique_blocks: the bookkeeping (store entries
                              and tables, every volume's directory) per
                              locally cached 4 KiB block; target <= 64 B
  remembered_bytes_per_block  remembered_metadata_bytes /
                              directory_remembered_blocks: per block whose
                              content left RAM but whose key a directory
                              remembers; target <= 32 B

Three cases, each a fresh shoald over raw files (no peers: these are byte
counts, not timings, so there is nothing to take a ratio against):

  full      --cache-size 64 MiB, one volume of 256 MiB of never-repeating
            data read whole: the cache fills, evicts three quarters of what
            was read, and the maintenance pass turns evicted blocks into
            remembered ones
  partial   --cache-size 256 MiB, the first 70 MiB of that volume read
            (the cache about 27% full)
  dedup     --cache-size 256 MiB, 4 volumes that are byte-for-byte copies
            of one 64 MiB random image (like scripts/demo's gold image and
            clones), each read whole: 64 MiB held for 256 MiB of volume
            blocks, so every cached block has 4 directory entries

Reads are 1 MiB sequential requests at queue depth 4 (shoal-replay over an
MSR trace, so a case can read part of a volume). After the reads the
harness waits (dirmem_settle, 2.5 s: the maintenance thread checks every
100 ms) and reads the stats; the stats right after the reads are kept too.
Each case is measured once: the figures are byte counts, and the same reads
give the same counts up to the timing of the maintenance pass.
"""
import json
import os
import shutil
import time

import images
import peers
from common import MiB, say
from procs import BenchError

REQ = 1 * MiB
QD = 4
MAX_PER_BLOCK = 64    # bytes of metadata per locally cached block
MAX_REMEMBERED = 32   # bytes per remembered-only block


def _read(ctx, sh, vol, nbytes, name):
    """Read the first nbytes of volume vol in 1 MiB sequential requests;
    returns the seconds it took."""
    procs = ctx.procs
    trace = procs.path(name + ".csv")
    images.write_msr_trace(trace, [(o, min(REQ, nbytes - o)) for o in range(0, nbytes, REQ)])
    t0 = time.monotonic()
    _, out = procs.run(name, [ctx.replay, "--json", "-q", str(QD), "--format", "msr",
                              trace, sh.uri(vol)], timeout=300)
    secs = time.monotonic() - t0
    os.unlink(trace)
    rep = json.loads(out)["replay"]
    if rep["read_bytes"] != nbytes or rep["errors"]:
        raise BenchError("%s: read %d of %d bytes, %d errors"
                         % (name, rep["read_bytes"], nbytes, rep["errors"]))
    return secs


def _case(ctx, key, volumes, cache_size, reads):
    """One shoald with volumes {name: path}; reads [(volume, bytes)] in
    order; the cache stats after the reads and after the settle time."""
    cfg, procs = ctx.cfg, ctx.procs
    sh = peers.Shoald(procs, "s8-" + key, ctx.shoald, volumes, cache_size,
                      threads=cfg["shoald_threads"])
    try:
        secs = 0.0
        for vol, nbytes in reads:
            secs += _read(ctx, sh, vol, nbytes, "s8-%s-read-%s" % (key, vol))
        after_read = sh.cache_stats()
        time.sleep(cfg["dirmem_settle"])
        settled = sh.cache_stats()
    finally:
        procs.stop(sh.proc)
    return {"cache_size": cache_size, "volumes": len(volumes),
            "read_bytes": sum(n for _, n in reads), "read_seconds": round(secs, 3),
            "settle_seconds": cfg["dirmem_settle"], "cache": settled,
            "cache_after_read": after_read}


def scenario8_directory_memory(ctx):
    cfg, procs = ctx.cfg, ctx.procs
    vol_size = cfg["dirmem_volume"]
    part = min(cfg["dirmem_partial_read"], vol_size)
    clone_size, nclones = cfg["dirmem_clone_image"], cfg["dirmem_clones"]
    say("s8: writing images (%d MiB volume, %d copies of a %d MiB image)"
        % (vol_size // MiB, nclones, clone_size // MiB))
    vol = procs.path("s8-volume.img")
    gold = procs.path("s8-gold.img")
    clones = [procs.path("s8-clone%d.img" % i) for i in range(1, nclones)]
    out = {}
    try:
        images.random_image(vol, vol_size, seed=80)
        images.random_image(gold, clone_size, seed=81)
        for c in clones:
            shutil.copyfile(gold, c)

        say("s8: full: --cache-size %d MiB, %d MiB volume read whole"
            % (cfg["dirmem_full_cache"] // MiB, vol_size // MiB))
        out["full"] = _case(ctx, "full", {"vol": vol}, cfg["dirmem_full_cache"],
                            [("vol", vol_size)])
        say("s8: partial: --cache-size %d MiB, first %d MiB of the volume read"
            % (cfg["dirmem_partial_cache"] // MiB, part // MiB))
        out["partial"] = _case(ctx, "partial", {"vol": vol}, cfg["dirmem_partial_cache"],
                               [("vol", part)])
        say("s8: dedup: --cache-size %d MiB, %d copies of a %d MiB image read whole"
            % (cfg["dirmem_dedup_cache"] // MiB, nclones, clone_size // MiB))
        vols = {"gold": gold}
        vols.update({"clone%d" % i: c for i, c in enumerate(clones, 1)})
        out["dedup"] = _case(ctx, "dedup", vols, cfg["dirmem_dedup_cache"],
                             [(v, clone_size) for v in vols])
    finally:
        for p in [vol, gold] + clones:
            if os.path.exists(p):
                os.unlink(p)

    ctx.results["s8_directory_memory"] = {
        "metric": "bytes of cache metadata per block, from GET /api/v1/cache after the reads "
                  "and %.1f s for the maintenance pass" % cfg["dirmem_settle"],
        "cases": out}
    r = ctx.ratios
    note = "bytes, not a ratio: an absolute figure of shoald, no peer"
    f, p, d = out["full"]["cache"], out["partial"]["cache"], out["dedup"]["cache"]
    r.add("s8.full_metadata_per_block", 8,
          "cache full (%d MiB, %d MiB volume read): metadata bytes per cached block"
          % (cfg["dirmem_full_cache"] // MiB, vol_size // MiB),
          f["metadata_bytes_per_block"] if f["unique_blocks"] else None, "lower", "<=",
          MAX_PER_BLOCK, unit="bytes", note=note)
    r.add("s8.full_remembered_per_block", 8,
          "cache full: metadata bytes per remembered-only block",
          f["remembered_bytes_per_block"] if f["directory_remembered_blocks"] else None,
          "lower", "<=", MAX_REMEMBERED, unit="bytes",
          note=note + ("" if f["directory_remembered_blocks"] else
                       "; not measured: no block was remembered"))
    r.add("s8.partial_metadata_per_block", 8,
          "cache partly filled (%d of %d MiB read): metadata bytes per cached block"
          % (part // MiB, cfg["dirmem_partial_cache"] // MiB),
          p["metadata_bytes_per_block"] if p["unique_blocks"] else None, "lower", "<=",
          MAX_PER_BLOCK, unit="bytes", note=note)
    r.add("s8.dedup_metadata_per_block", 8,
          "%d copies of one %d MiB image (cache %d MiB): metadata bytes per cached block"
          % (nclones, clone_size // MiB, cfg["dirmem_dedup_cache"] // MiB),
          d["metadata_bytes_per_block"] if d["unique_blocks"] else None, "lower", "<=",
          MAX_PER_BLOCK, unit="bytes", note=note)
    logical = d.get("logical_blocks")
    r.add("s8.dedup_metadata_per_logical_block", 8,
          "%d copies of one image: metadata bytes per volume block held (logical)" % nclones,
          (d["metadata_bytes"] - d["remembered_metadata_bytes"]) / logical if logical else None,
          "lower", unit="bytes", note=note)
    r.add("s8.dedup_ratio", 8, "%d copies of one image: dedup ratio (logical / unique blocks)"
          % nclones, d["dedup_ratio"], "higher", peer=None)
