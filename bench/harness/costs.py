"""Scenario 7: what shoal costs.

  fingerprinting  fp-speed (shoal's fp_compute on 4 KiB blocks, and
                  fp_compute2 two at a time, per CPU second of one
                  thread) against `openssl speed -evp sha256
                  -bytes 4096` (same units), interleaved, medians; memcpy
                  of the same blocks for scale
  metadata        cache.metadata_bytes_per_block from the stats once the
                  cache is full (a shoald whose cache is smaller than the
                  image it serves, after a whole-image pass)
  RSS             VmRSS of shoald right after start and after filling the
                  cache, for several --cache-size values
"""
import json
import re

import clients
import peers
from common import MiB, median, rotate, say


def _openssl_mb_s(procs):
    _, out = procs.run("openssl-speed", ["openssl", "speed", "-evp", "sha256", "-bytes", "4096",
                                         "-seconds", "1"], timeout=60)
    for line in out.splitlines():
        m = re.match(r"^sha256\s+([\d.]+)k\s*$", line.strip())
        if m:
            return float(m.group(1)) * 1000 / 1e6
    return None


def scenario7_costs(ctx, data_path, data_size):
    cfg, procs = ctx.cfg, ctx.procs
    say("s7: fingerprinting speed vs openssl speed")
    raw = {"fp-speed": [], "fp-pairs": [], "openssl": [], "memcpy": []}
    for rep in range(cfg["reps"]):
        for s in rotate(["fp-speed", "openssl"], rep):
            if s == "fp-speed":
                _, out = procs.run("fp-speed", [ctx.fp_speed, "--seconds", "1"], timeout=60)
                j = json.loads(out)
                raw["fp-speed"].append(j["fingerprint_mb_s"])
                raw["fp-pairs"].append(j["fingerprint_pairs_mb_s"])
                raw["memcpy"].append(j["memcpy_mb_s"])
            else:
                raw["openssl"].append(_openssl_mb_s(procs))
    med = {k: median(v) for k, v in raw.items()}

    say("s7: metadata per cached block and RSS vs --cache-size")
    rss = []
    meta = None
    for size in cfg["rss_sizes"]:
        sh = peers.Shoald(procs, "s7-shoald", ctx.shoald, {"img": data_path}, size,
                          threads=cfg["shoald_threads"])
        try:
            idle = sh.rss_bytes()
            clients.nbdcopy_seconds(procs, sh.uri("img"), name="s7-fill")
            cache = sh.stats()["cache"]
            filled = sh.rss_bytes()
        finally:
            procs.stop(sh.proc)
        rss.append({"cache_size": size, "rss_idle": idle, "rss_filled": filled,
                    "used_bytes": cache["used_bytes"], "unique_blocks": cache["unique_blocks"],
                    "metadata_bytes": cache["metadata_bytes"],
                    "metadata_bytes_per_block": cache["metadata_bytes_per_block"],
                    "fill_ratio": cache["fill_ratio"]})
        if size < data_size and meta is None:
            meta = rss[-1]
    if meta is None:
        meta = rss[-1]
    ctx.results["s7_costs"] = {"sha256_mb_s_per_core": raw, "median": med, "rss": rss,
                               "metadata": meta}
    r = ctx.ratios
    if med["openssl"]:
        r.add("s7.fingerprint_vs_openssl", 7,
              "fingerprint MB/s per core / openssl speed sha256 (4 KiB)",
              med["fp-speed"] / med["openssl"], "higher", peer="openssl speed")
    if med["openssl"]:
        r.add("s7.fingerprint_pairs_vs_openssl", 7,
              "fingerprint MB/s per core, two blocks at a time (fp_compute2: the miss and write"
              " paths, tier checks) / openssl speed sha256 (4 KiB)",
              med["fp-pairs"] / med["openssl"], "higher", peer="openssl speed")
    r.add("s7.memcpy_vs_fingerprint", 7, "memcpy MB/s / fingerprint MB/s (4 KiB blocks)",
          med["memcpy"] / med["fp-speed"], "lower", peer=None,
          note="how much dearer a miss's hashing is than copying the block")
    r.add("s7.metadata_bytes_per_block", 7,
          "metadata bytes per cached 4 KiB block (cache full)", meta["metadata_bytes_per_block"],
          "lower", peer=None, note="bytes, not a ratio; %.1f%% of the 4 KiB"
          % (100 * meta["metadata_bytes_per_block"] / 4096), unit="bytes")
    big = rss[-1]
    r.add("s7.rss_vs_cache_size", 7,
          "shoald RSS / --cache-size, cache filled (%d MiB)" % (big["cache_size"] // MiB),
          big["rss_filled"] / big["cache_size"], "lower", peer=None)
