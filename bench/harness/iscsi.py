"""Scenario 9: the iSCSI front end (issue 12). 4 KiB random-read hits
through shoal's iSCSI target against Debian's tgt serving the same file
(QD32 IOPS) and against shoal's own NBD front end on the same volume (QD1
latency), in one run, each warm (shoal read the whole image first).

QD1 latency: shoal-blkbench (bench/blkbench/), one client for both
protocols (libiscsi and libnbd, the same loop, offsets and timer), on
shoal's iSCSI target, shoal's NBD front end over TCP (the same transport as
iSCSI) and over its unix socket, and tgt, interleaved in slices within each
run. The target ratio is iSCSI / NBD over TCP, on the median latency.

QD32 IOPS: libiscsi's iscsi-perf on both iSCSI targets (random 8 x 512-byte
reads, -m requests in flight), fio's nbd engine for NBD. The earlier QD1
figures of those two programs (1 / iscsi-perf's IOPS against fio's mean)
are kept as an informational ratio: their clients differ.

EXTENDED COPY against reading and writing is in xcopy.py."""
import json
import os
import re
import subprocess
import time

import clients
from common import median, rotate, say
from procs import BenchError, free_port

IQN_TGT = "iqn.2026-12.org.shoal.bench:tgt"


class Tgtd:
    """tgtd in the foreground on 127.0.0.1 with the image as LUN 1."""

    def __init__(self, procs, image):
        self.port = free_port()
        self.ctl = self.port % 32000 + 700
        while os.path.exists("/var/run/tgtd/socket.%d" % self.ctl):
            self.ctl += 1
        self.p = procs.start("tgtd", ["tgtd", "-f", "-C", str(self.ctl), "--iscsi",
                                      "portal=127.0.0.1:%d" % self.port])
        for _ in range(100):
            if self._adm("--mode", "target", "--op", "show", check=False) == 0:
                break
            time.sleep(0.1)
        else:
            raise BenchError("tgtd did not start")
        self._adm("--mode", "target", "--op", "new", "--tid", "1", "--targetname", IQN_TGT)
        self._adm("--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1",
                  "--backing-store", image)
        self._adm("--mode", "target", "--op", "bind", "--tid", "1", "--initiator-address", "ALL")
        self.procs = procs

    def _adm(self, *args, check=True):
        r = subprocess.run(["tgtadm", "-C", str(self.ctl), "--lld", "iscsi"] + list(args),
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise BenchError("tgtadm %s: %s" % (" ".join(args), r.stderr.strip()))
        return r.returncode

    def url(self):
        return "iscsi://127.0.0.1:%d/%s/1" % (self.port, IQN_TGT)

    def close(self):
        self.p.kill()  # tgtd ignores SIGTERM while sessions are open
        self.p.wait()
        for suffix in ("", ".lock"):
            try:
                os.unlink("/var/run/tgtd/socket.%d%s" % (self.ctl, suffix))
            except FileNotFoundError:
                pass


def iscsi_perf(url, depth, seconds):
    """Average IOPS of iscsi-perf's random 4 KiB reads."""
    r = subprocess.run(["iscsi-perf", "-r", "-b", "8", "-m", str(depth), "-t", str(seconds), url],
                       capture_output=True, text=True, timeout=seconds + 60)
    found = re.findall(r"iops average (\d+)", r.stdout + r.stderr)
    if r.returncode != 0 or not found:
        raise BenchError("iscsi-perf %s: exit %d: %s" % (url, r.returncode,
                                                          (r.stdout + r.stderr)[-300:]))
    return float(found[-1])


def blkbench_lat(ctx, urls, rep):
    """shoal-blkbench lat on the URLs (their order rotated by rep): {url:
    its figures (mean_us, p50_us, p99_us, ...)}."""
    order = rotate(list(urls), rep)
    argv = [ctx.blkbench, "lat", "--ops", str(ctx.cfg["iscsi_lat_ops"]), "--warmup", "1000",
            "--rounds", "20", "--seed", str(rep + 1)] + order
    _, out = ctx.procs.run("blkbench-lat", argv, timeout=300)
    try:
        devs = json.loads(out)["devices"]
    except (ValueError, KeyError) as e:
        raise BenchError("shoal-blkbench lat: unreadable output (%s): %r" % (e, out[:300]))
    return {d["url"]: d for d in devs}


def scenario9_iscsi(ctx):
    cfg, procs = ctx.cfg, ctx.procs
    import peers
    size = cfg["iscsi_image"]
    image = procs.path("iscsi.img")
    with open(image, "wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))
    say("s9: iSCSI front end vs tgt and vs shoal's NBD front end, %d MiB image, warm" % (size >> 20))
    port, nbd_port = free_port(), free_port()
    shoal = peers.Shoald(procs, "shoal-iscsi", ctx.shoald, {"vol": image}, 2 * size,
                         extra=["--iscsi", "127.0.0.1:%d" % port, "-l", "127.0.0.1:%d" % nbd_port])
    tgt = Tgtd(procs, image)
    try:
        clients.nbdcopy_seconds(procs, shoal.uri("vol"), name="s9-warm")
        shoal_url = "iscsi://127.0.0.1:%d/iqn.2026-12.org.shoal:vol/0" % port
        seconds = max(1, int(round(cfg["runtime"])))
        raw = {k: [] for k in ("shoal_iscsi_qd1", "shoal_iscsi_qd32", "tgt_qd1", "tgt_qd32")}
        fio = {"qd1": [], "qd32": []}
        lat_urls = {"shoal_iscsi": shoal_url, "shoal_nbd_tcp": "nbd://127.0.0.1:%d/vol" % nbd_port,
                    "shoal_nbd_unix": shoal.uri("vol"), "tgt": tgt.url()}
        lat = {k: [] for k in lat_urls}
        for rep in range(cfg["reps"]):
            for who in rotate(["shoal", "tgt", "nbd", "blkbench"], rep):
                if who == "blkbench":
                    res = blkbench_lat(ctx, lat_urls.values(), rep)
                    for k, u in lat_urls.items():
                        lat[k].append(res[u])
                    continue
                if who == "nbd":
                    jobs = [clients.FioJob(("qd1", rep), shoal.uri("vol"), "randread", "4k", 1),
                            clients.FioJob(("qd32", rep), shoal.uri("vol"), "randread", "4k", 32)]
                    res = clients.fio_batch(procs, jobs, cfg["runtime"], cfg["ramp"], name="fio-s9")
                    for (t, _), v in res.items():
                        fio[t].append(v["read"])
                    continue
                url = shoal_url if who == "shoal" else tgt.url()
                key = "shoal_iscsi" if who == "shoal" else "tgt"
                raw[key + "_qd1"].append(iscsi_perf(url, 1, seconds))
                raw[key + "_qd32"].append(iscsi_perf(url, 32, seconds))
        st = shoal.stats()
        vol = next(v for v in st["volumes"] if v["name"] == "vol")
    finally:
        tgt.close()
        procs.stop(shoal.proc)
    med = {k: median(v) for k, v in raw.items()}
    nbd_qd1_lat = median([r["lat_mean_us"] for r in fio["qd1"]])
    nbd_qd32_iops = median([r["iops"] for r in fio["qd32"]])
    iscsi_qd1_lat = 1e6 / med["shoal_iscsi_qd1"]
    p50 = {k: median([x["p50_us"] for x in v]) for k, v in lat.items()}
    mean = {k: median([x["mean_us"] for x in v]) for k, v in lat.items()}
    ctx.results["s9_iscsi"] = {
        "metric": "4 KiB random reads, warm: QD1 latency with shoal-blkbench on every target; "
                  "QD32 IOPS with iscsi-perf (iSCSI) and fio nbd (NBD)",
        "qd1_blkbench": {"urls": lat_urls, "ops_per_run": cfg["iscsi_lat_ops"], "raw": lat,
                         "median_p50_us": p50, "median_mean_us": mean},
        "raw_iops": raw, "median_iops": med, "nbd_qd1_lat_us": nbd_qd1_lat,
        "nbd_qd32_iops": nbd_qd32_iops, "iscsi_qd1_lat_us": iscsi_qd1_lat,
        "tgt_qd1_lat_us": 1e6 / med["tgt_qd1"], "shoal_hit_ratio": vol["hit_ratio"],
        "note": "qd1_blkbench: per run the median (p50) and mean of every read's latency, the "
                "runs' medians here; iscsi_qd1_lat_us / nbd_qd1_lat_us: iscsi-perf's 1 / IOPS at "
                "one request in flight and fio nbd's mean (different clients)",
    }
    r = ctx.ratios
    r.add("s9.iscsi_qd1_lat_vs_nbd", 9,
          "iSCSI QD1 hit latency / shoal NBD front end's over TCP (median, same client)",
          p50["shoal_iscsi"] / p50["shoal_nbd_tcp"], "lower", "<=", 1.15, "shoal NBD",
          note="shoal-blkbench on both; NBD on 127.0.0.1 like iSCSI")
    r.add("s9.iscsi_qd1_lat_vs_nbd_unix", 9,
          "iSCSI QD1 hit latency / shoal NBD front end's on its unix socket (median, same client)",
          p50["shoal_iscsi"] / p50["shoal_nbd_unix"], "lower", peer="shoal NBD (unix)",
          note="includes TCP loopback against a unix socket, which iSCSI cannot use")
    r.add("s9.iscsi_qd1_mean_lat_vs_nbd", 9,
          "iSCSI QD1 mean hit latency / shoal NBD front end's over TCP (same client)",
          mean["shoal_iscsi"] / mean["shoal_nbd_tcp"], "lower", peer="shoal NBD",
          note="means carry the shared machine's scheduling delays")
    r.add("s9.iscsi_qd1_lat_vs_nbd_mixed", 9,
          "iSCSI QD1 latency / shoal NBD's, earlier method (iscsi-perf 1/IOPS vs fio nbd mean, "
          "unix socket)", iscsi_qd1_lat / nbd_qd1_lat, "lower", peer="shoal NBD",
          note="different clients and transports; kept for comparison with earlier runs")
    r.add("s9.iscsi_qd32_iops_vs_tgt", 9, "iSCSI QD32 IOPS / tgt on the same file",
          med["shoal_iscsi_qd32"] / med["tgt_qd32"], "higher", ">=", 2.0, "tgt")
    r.add("s9.iscsi_qd1_lat_vs_tgt", 9, "iSCSI QD1 latency / tgt on the same file (median, same "
          "client)", p50["shoal_iscsi"] / p50["tgt"], "lower", peer="tgt")
    r.add("s9.iscsi_qd32_iops_vs_nbd", 9, "iSCSI QD32 IOPS / shoal NBD front end's",
          med["shoal_iscsi_qd32"] / nbd_qd32_iops, "higher", peer="shoal NBD")
