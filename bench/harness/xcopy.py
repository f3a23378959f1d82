"""Scenario 9, second part: EXTENDED COPY of a cached volume (issue 12).

A volume of random data (xcopy_size: 64 MiB quick, 1 GiB full), read once
through NBD so all of it is cached, is copied to a second volume of the same
shoald two ways, by the same client (shoal-blkbench) over iSCSI, one command
at a time each:

  xcopy   EXTENDED COPY (LID1), 16 segment descriptors of 16 MiB a command:
          shoald moves the data itself, and a copied block whose source is
          cached shares that content (copy_shared_blocks);
  rw      READ(16) of xcopy_rw_chunk bytes, then WRITE(16) of them.

The three volumes are files on tmpfs (the harness's RAM scratch dir), so the
figures are shoal's own costs: on a disk both copies write the same bytes
and the disk's writeback (which made 1 GiB copies to /tmp vary 1.5-5.8 s
for XCOPY and 3.6-22 s for READ + WRITE in one run) hides the rest.
Each has its own destination volume, a file written full of zeros first: every
repetition then writes over allocated blocks (a first write into a sparse
file pays the file system's allocation, which would fall on one repetition
of each method and not the others). Per copy: the seconds, the bytes the source's back end
read, the bytes written to the destination (write-through: every one goes to
its back end), the blocks shared, and the cache's memory before and after
(content bytes, distinct blocks, metadata; shoald's RSS). Afterwards each
destination is compared with the source byte for byte, through NBD and as
files: counters are not data."""
import json
import os
import subprocess

import clients
from common import median, rotate, say
from procs import BenchError, free_port

MiB = 1 << 20
SEGMENT = 16 * MiB
SEGMENTS = 16
DEST = {"xcopy": "dx", "rw": "drw"}


def snapshot(shoal):
    """The counters and gauges one copy is judged by."""
    vols = {v["name"]: v for v in shoal.stats()["volumes"]}
    cache = shoal.cache_stats()
    return {
        "src_backend_read_bytes": vols["src"]["backend_read_bytes"],
        "src_read_bytes": vols["src"]["read_bytes"],
        "dst": {n: {k: vols[n][k] for k in ("write_bytes", "backend_read_bytes",
                                            "copy_shared_blocks")} for n in DEST.values()},
        "used_bytes": cache["used_bytes"], "unique_blocks": cache["unique_blocks"],
        "logical_blocks": cache["logical_blocks"], "metadata_bytes": cache["metadata_bytes"],
        "rss_bytes": shoal.rss_bytes(),
    }


def one_copy(ctx, how, url, size):
    argv = [ctx.blkbench, "xcopy" if how == "xcopy" else "rwcopy", "--bytes", str(size)]
    if how == "xcopy":
        argv += ["--segment", str(SEGMENT), "--segments", str(SEGMENTS)]
    else:
        argv += ["--chunk", str(ctx.cfg["xcopy_rw_chunk"])]
    _, out = ctx.procs.run("blkbench-" + how, argv + [url("src"), url(DEST[how])], timeout=900)
    try:
        return json.loads(out)
    except ValueError:
        raise BenchError("shoal-blkbench %s: unreadable output %r" % (how, out[:300]))


def same_bytes(procs, a, b, name):
    """cmp of two NBD exports, each streamed by nbdcopy: True when equal."""
    script = 'cmp <(nbdcopy "$1" -) <(nbdcopy "$2" -)'
    r = subprocess.run(["bash", "-c", script, name, a, b], capture_output=True, text=True,
                       timeout=900)
    if r.returncode not in (0, 1):
        raise BenchError("%s: cmp through NBD failed: %s" % (name, r.stderr.strip()[-300:]))
    return r.returncode == 0


def same_files(a, b):
    return subprocess.run(["cmp", "-s", a, b], timeout=900).returncode == 0


def scenario9_xcopy(ctx):
    cfg, procs = ctx.cfg, ctx.procs
    import peers
    size = cfg["xcopy_size"]
    if size % SEGMENT and size > SEGMENT:
        raise BenchError("xcopy_size %d: a multiple of 16 MiB, or less" % size)
    files = {"src": os.path.join(procs.shm, "xcopy-src.img")}
    with open(files["src"], "wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(MiB))
    zeros = bytes(MiB)
    for vol in DEST.values():
        files[vol] = os.path.join(procs.shm, "xcopy-%s.img" % vol)
        with open(files[vol], "wb") as f:
            for _ in range(size >> 20):
                f.write(zeros)
    say("s9: EXTENDED COPY of a cached %d MiB volume vs READ(16) + WRITE(16) of %d KiB"
        % (size >> 20, cfg["xcopy_rw_chunk"] >> 10))
    port = free_port()
    # Room for the source and a private copy of each destination, so
    # nothing is evicted whatever the copies share.
    shoal = peers.Shoald(procs, "shoal-xcopy", ctx.shoald, files, 3 * size + 64 * MiB,
                         extra=["--iscsi", "127.0.0.1:%d" % port])

    def url(vol):
        return "iscsi://127.0.0.1:%d/iqn.2026-12.org.shoal:%s/0" % (port, vol)

    try:
        warm = clients.nbdcopy_seconds(procs, shoal.uri("src"), name="s9-xcopy-warm")
        start = snapshot(shoal)
        runs = {how: [] for how in DEST}
        for rep in range(cfg["reps"]):
            for how in rotate(list(DEST), rep):
                before = snapshot(shoal)
                res = one_copy(ctx, how, url, size)
                after = snapshot(shoal)
                d0, d1 = before["dst"][DEST[how]], after["dst"][DEST[how]]
                runs[how].append({
                    "seconds": res["seconds"], "commands": res["commands"],
                    "src_backend_read_bytes":
                        after["src_backend_read_bytes"] - before["src_backend_read_bytes"],
                    "dst_written_bytes": d1["write_bytes"] - d0["write_bytes"],
                    "dst_backend_read_bytes": d1["backend_read_bytes"] - d0["backend_read_bytes"],
                    "copy_shared_blocks": d1["copy_shared_blocks"] - d0["copy_shared_blocks"],
                    "used_bytes": [before["used_bytes"], after["used_bytes"]],
                    "unique_blocks": [before["unique_blocks"], after["unique_blocks"]],
                    "metadata_bytes": [before["metadata_bytes"], after["metadata_bytes"]],
                    "rss_bytes": [before["rss_bytes"], after["rss_bytes"]],
                })
        end = snapshot(shoal)
        equal = {}
        for how, vol in DEST.items():
            equal[how] = {"nbd": same_bytes(procs, shoal.uri("src"), shoal.uri(vol),
                                            "s9-cmp-" + how),
                          "file": same_files(files["src"], files[vol])}
    finally:
        procs.stop(shoal.proc)
    bad = [how for how, e in equal.items() if not all(e.values())]
    if bad:
        raise BenchError("the copy by %s differs from the source (%s)"
                         % (" and ".join(bad), equal))
    med = {how: {k: median([x[k] for x in v]) for k in ("seconds", "src_backend_read_bytes",
                                                         "dst_written_bytes", "copy_shared_blocks")}
           for how, v in runs.items()}
    ctx.results["s9_xcopy"] = {
        "metric": "copy of a cached volume to another volume of the same shoald over iSCSI, one "
                  "command at a time: EXTENDED COPY vs READ(16) + WRITE(16)",
        "bytes": size, "segment_bytes": SEGMENT, "segments_per_command": SEGMENTS,
        "rw_chunk_bytes": cfg["xcopy_rw_chunk"], "warm_read_seconds": warm,
        "raw": runs, "median": med, "cache_start": start, "cache_end": end,
        "equal_to_source": equal,
    }
    r = ctx.ratios
    r.add("s9.xcopy_time_vs_rw", 9, "EXTENDED COPY of a cached volume: time / READ + WRITE's",
          med["xcopy"]["seconds"] / med["rw"]["seconds"], "lower", peer="READ + WRITE")
    r.add("s9.xcopy_shared_share", 9,
          "EXTENDED COPY: blocks that share the cached source's content / blocks copied",
          med["xcopy"]["copy_shared_blocks"] * 4096.0 / size, "higher",
          note="each shared block costs no content memory and no hashing")
