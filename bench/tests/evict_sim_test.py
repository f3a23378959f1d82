#!/usr/bin/env python3
"""evict-sim --trace: the daemon's semantics on small hand-made traces, LRU
and Belady's MIN against reference models written here, and clean refusals.

Run by meson (suite bench) with EVICT_SIM set to the binary."""
import json
import os
import random
import subprocess
import sys
import tempfile

SIM = os.environ.get("EVICT_SIM", "build/bench/evict-sim")
FAILS = 0


def check(cond, what):
    global FAILS
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS += 1


def sim(d, name, text, *args):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([SIM, "--trace", path, "--json", *args], capture_output=True, text=True,
                       timeout=60)
    if p.returncode != 0:
        return p.returncode, p.stderr, None
    j = json.loads(p.stdout)
    by = {(r["size"], r["policy"]): r for r in j["results"]}
    return 0, p.stderr, (j, by)


def disksim(ops):
    """ops: (op, sector, nsectors) with op 'R' or 'W'."""
    return "".join("%d 0 %d %d %d\n" % (i * 1000, s, n, 1 if op == "R" else 0)
                   for i, (op, s, n) in enumerate(ops))


def near(a, b):
    return abs(a - b) < 1e-5


def ref_lru(seq, cap):
    cache, misses = [], 0
    for b in seq:
        if b in cache:
            cache.remove(b)
        else:
            misses += 1
            if len(cache) == cap:
                cache.pop(0)
        cache.append(b)
    return misses


def ref_min(seq, cap):
    cache, misses = set(), 0
    for i, b in enumerate(seq):
        if b in cache:
            continue
        misses += 1
        if len(cache) == cap:
            def nxt(x):
                for j in range(i + 1, len(seq)):
                    if seq[j] == x:
                        return j
                return len(seq) + 1
            cache.remove(max(cache, key=nxt))
        cache.add(b)
    return misses


def main():
    with tempfile.TemporaryDirectory() as d:
        pols = "lru,s3fifo,sieve,arc,opt"
        # A whole-block write inserts: the read after it hits.
        rc, err, (j, by) = sim(d, "w.trace", disksim([("W", 0, 8), ("R", 0, 8)]), "--sizes", "4",
                               "--policies", pols)
        check(all(by[("4", p)]["miss_ratio"] == 0 for p in pols.split(",")),
              "a whole-block write inserts; the next read hits (every policy and opt)")
        # A partial write drops the block: the read after it misses.
        rc, err, (j, by) = sim(d, "p.trace",
                               disksim([("R", 0, 8), ("W", 0, 1), ("R", 0, 8), ("R", 0, 8)]),
                               "--sizes", "4", "--policies", pols)
        check(all(near(by[("4", p)]["block_miss_ratio"], 2 / 3) for p in pols.split(",")),
              "a partial write drops the block: 2 of 3 reads miss")
        # An unaligned read is two partial blocks, each a miss, read exactly
        # and not cached (core/partial.h): the whole block after it misses.
        rc, err, (j, by) = sim(d, "u.trace", disksim([("R", 4, 8), ("R", 0, 8)]),
                               "--sizes", "4", "--policies", pols)
        r = by[("4", "lru")]
        check(r["miss_ratio"] == 1.0 and near(r["block_miss_ratio"], 1.0) and j["read_bytes"] == 8192,
              "unaligned read: 2 partial blocks missed, not cached; the whole block misses")
        # Partly read again, they are fetched whole and cached: the third
        # read hits. Counted in bytes: 8192 of 12288 missed.
        rc, err, (j, by) = sim(d, "u3.trace", disksim([("R", 4, 8)] * 3),
                               "--sizes", "4", "--policies", pols)
        check(all(near(by[("4", p)]["miss_ratio"], 2 / 3) and
                  near(by[("4", p)]["block_miss_ratio"], 4 / 6) for p in pols.split(",")
                  if p != "opt"),
              "a partial block read twice is cached: 4 of 6 block reads miss")
        # Belady's optimum keeps a block from its first read: a bound below.
        check(by[("4", "opt")]["block_miss_ratio"] <= 4 / 6,
              "MIN is a lower bound with partial reads too")
        # A request's blocks are all looked up before its misses are
        # installed (volume.c): in a 2-block LRU cache holding blocks 1 and
        # 5, a read of blocks 0-1 hits block 1 and evicts block 5 to install
        # block 0 (one block at a time, block 0's install evicted block 1,
        # which then missed).
        rc, err, (j, by) = sim(d, "req.trace", disksim([("R", 8, 8), ("R", 40, 8), ("R", 0, 16)]),
                               "--sizes", "2", "--policies", "lru")
        check(near(by[("2", "lru")]["block_miss_ratio"], 3 / 4),
              "a multi-block read is looked up whole before its misses are installed")
        # Devices are separate disks.
        rc, err, (j, by) = sim(d, "dev.trace", "1 0 0 8 1\n2 1 0 8 1\n3 0 0 8 1\n",
                               "--sizes", "4", "--policies", "lru")
        check(j["distinct_blocks"] == 2 and near(by[("4", "lru")]["block_miss_ratio"], 2 / 3),
              "DiskSim devices are distinct address spaces")
        rc, err, (j, by) = sim(d, "dev.trace", "1 0 0 8 1\n2 1 0 8 1\n3 0 0 8 1\n",
                               "--sizes", "4", "--policies", "lru", "--merge-devices")
        check(j["distinct_blocks"] == 1 and near(by[("4", "lru")]["block_miss_ratio"], 1 / 3),
              "--merge-devices: one address space, as shoal-replay on one export")
        # LRU and MIN against the reference models, random reads.
        rnd = random.Random(7)
        seq = [int(rnd.paretovariate(1.2)) % 60 for _ in range(3000)]
        rc, err, (j, by) = sim(d, "r.trace", disksim([("R", b * 8, 8) for b in seq]),
                               "--sizes", "6,20", "--policies", pols)
        for cap in (6, 20):
            lru, mn = ref_lru(seq, cap), ref_min(seq, cap)
            got_lru = round(by[(str(cap), "lru")]["block_miss_ratio"] * len(seq))
            got_min = round(by[(str(cap), "opt")]["block_miss_ratio"] * len(seq))
            check(got_lru == lru, "LRU at %d blocks: %d misses (reference %d)" % (cap, got_lru, lru))
            check(got_min == mn, "MIN at %d blocks: %d misses (reference %d)" % (cap, got_min, mn))
            check(near(j["cold_miss_ratio"], len(set(seq)) / len(seq)),
                  "compulsory misses: the distinct blocks")
            check(all(by[(str(cap), p)]["miss_ratio"] >= by[(str(cap), "opt")]["miss_ratio"]
                      for p in ("s3fifo", "sieve", "arc")),
                  "no policy beats MIN at %d blocks" % cap)
        # Shares of the distinct blocks.
        rc, err, (j, by) = sim(d, "r.trace", disksim([("R", b * 8, 8) for b in seq]),
                               "--sizes", "10%", "--policies", "lru")
        check(by[("10%", "lru")]["cache_blocks"] == round(0.1 * len(set(seq))),
              "10%% is a tenth of the %d distinct blocks" % len(set(seq)))
        # By content: a second block with the same MD5 is still a miss the
        # first time (fetched, then deduplicated), then a hit; the zero block
        # costs no cache.
        md5a, md5z = "2c4787c7671c2f638777c4ab72859ce1", "620f0b67a91f7f74151bc5be745b7110"
        lines = ["%d 1 p %d 8 R 6 0 %s\n" % (i, s, m) for i, (s, m) in enumerate(
            [(0, md5a), (8, md5a), (8, md5a), (16, md5z), (16, md5z)])]
        rc, err, (j, by) = sim(d, "c.trace", "".join(lines), "--by-content", "--format", "fiu",
                               "--sizes", "1", "--policies", pols)
        check(j["distinct_blocks"] == 2 and j["identity"] == "content", "2 distinct contents")
        check(all(near(by[("1", p)]["block_miss_ratio"], 3 / 5) for p in pols.split(",")),
              "by content: 3 of 5 reads miss (first reads of each block; zero block held free)")
        # Refusals: one line each, distinct exit codes.
        rc, err, _ = sim(d, "w.trace", disksim([("R", 0, 8)]), "--by-content")
        check(rc == 1 and "--by-content needs" in err, "--by-content without MD5s refused")
        rc, err, _ = sim(d, "w.trace", disksim([("R", 0, 8)]), "--sizes", "0%")
        check(rc == 2 and "bad --sizes" in err, "--sizes 0% refused")
        rc, err, _ = sim(d, "w.trace", disksim([("R", 0, 8)]), "--policies", "lfu")
        check(rc == 2 and "unknown policy 'lfu'" in err, "unknown policy refused")
        rc, err, _ = sim(d, "wo.trace", disksim([("W", 0, 8)]))
        check(rc == 1 and "no reads" in err, "a trace without reads refused")
    print("%d failed" % FAILS)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
