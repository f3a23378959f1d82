"""Clients: fio's nbd engine for the timed measurements, nbdcopy for
whole-image passes, shoal-replay for trace-driven ones (the boot storm).

fio jobs are run as a batch in one fio process, one job after the other
(stonewall), so the repetitions of the peers can be interleaved A B C A B C
without paying fio's start-up for each measurement.
"""
import json
import os
import time

from procs import BenchError


class FioJob:
    def __init__(self, key, uri, rw, bs, qd, extra=None):
        self.key = key  # (measurement, system, rep)
        self.uri = uri
        self.rw = rw
        self.bs = bs
        self.qd = qd
        self.extra = extra or {}


def _side(j):
    pct = j.get("clat_ns", {}).get("percentile", {})

    def p(q):
        v = pct.get("%.6f" % q)
        return v / 1000.0 if v is not None else None
    return {
        "iops": j["iops"],
        "bw_bytes": j["bw_bytes"],
        "lat_mean_us": j["lat_ns"]["mean"] / 1000.0,
        "clat_p50_us": p(50),
        "clat_p99_us": p(99),
        "ios": j.get("total_ios", 0),
    }


def fio_batch(procs, jobs, runtime, ramp, name="fio"):
    """Run the jobs one after the other in one fio; returns {key: result}
    where result has "read" and/or "write" dicts (iops, bw_bytes,
    lat_mean_us, clat_p50_us, clat_p99_us)."""
    if not jobs:
        return {}
    jobfile = procs.path("%s.fio" % name)
    out = procs.path("%s.json" % name)
    with open(jobfile, "w") as f:
        f.write("[global]\nioengine=nbd\ntime_based=1\nruntime=%dms\nramp_time=%dms\n"
                "norandommap=1\nrandrepeat=0\nstonewall=1\n" % (runtime * 1000, ramp * 1000))
        for i, j in enumerate(jobs):
            f.write("\n[job%d]\nuri=%s\nrw=%s\nbs=%s\niodepth=%d\n" % (i, j.uri, j.rw, j.bs, j.qd))
            for k, v in j.extra.items():
                f.write("%s=%s\n" % (k, v))
    if os.path.exists(out):
        os.unlink(out)
    timeout = int(len(jobs) * (runtime + ramp + 10) + 60)
    procs.run(name, ["fio", "--output-format=json", "--output=" + out, jobfile], timeout=timeout)
    with open(out) as f:
        text = f.read()
    # Older fio versions may print notes before the JSON document.
    data = json.loads(text[text.index("{"):])
    res = {}
    for i, jj in enumerate(data["jobs"]):
        if jj.get("error"):
            raise BenchError("fio job %s failed: error %s" % (jobs[i].key, jj["error"]))
        r = {}
        if jj["read"]["total_ios"]:
            r["read"] = _side(jj["read"])
        if jj["write"]["total_ios"]:
            r["write"] = _side(jj["write"])
        if not r:
            raise BenchError("fio job %s did no I/O" % (jobs[i].key,))
        res[jobs[i].key] = r
    return res


def nbdcopy_seconds(procs, uri, name="nbdcopy"):
    """Wall time of reading the whole export with nbdcopy (to null:)."""
    t0 = time.monotonic()
    procs.run(name, ["nbdcopy", uri, "null:"], timeout=600)
    return time.monotonic() - t0


def nbdcopy_fill(procs, src, dst_uri, name="fill"):
    procs.run(name, ["nbdcopy", src, dst_uri], timeout=600)


def replay_start(procs, replay_bin, name, trace, uri, qd, progress=None, extra=()):
    argv = [replay_bin, "--json", "-q", str(qd), "--format", "msr"] + list(extra)
    if progress:
        argv += ["--progress", progress, "--progress-interval", "0.25"]
    argv += [trace, uri]
    out = procs.path(name + ".out")
    outf = open(out, "wb")
    try:
        p = procs.start(name, argv, stdout=outf)
    finally:
        outf.close()  # the child has its own copy
    p.bench_out = out
    return p


def replay_finish(procs, p, timeout=900):
    try:
        p.wait(timeout)
    except Exception:
        procs.stop(p)
        raise BenchError("%s timed out" % p.bench_name)
    status = p.returncode
    procs.stop(p)
    with open(p.bench_out) as f:
        text = f.read()
    if status != 0:
        raise BenchError("%s failed (status %d):\n%s" % (p.bench_name, status, procs.log_tail(p)))
    return json.loads(text)
