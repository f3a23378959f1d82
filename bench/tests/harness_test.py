#!/usr/bin/python3
"""Tests for bench/run's harness code that needs no servers (about 1 s):

  - the storm's "share of read bytes kept off the arrays" is signed:
    1 - array bytes / client bytes, negative when the arrays served more
    than the clients read, None when the clients read nothing;
  - the load average is read with its 1, 5 and 15 minute figures, and the
    report prints it for the run and for each scenario;
  - a schema 1 results file (clamped shares, 1-minute load only) is read
    with today's definitions: the shares recomputed signed from its raw
    byte counts, the ratios replaced, a note saying so;
  - the committed results files in bench/results/ all render;
  - nbdkit's delay filter is only given delays it can express (whole
    milliseconds): "200us" is refused, not turned into no delay;
  - the README's results block is written with and without a chart;
  - scenario 8's byte figures (metadata per block) are marked met / not
    met against their byte targets, printed with their unit, left off the
    chart's ratio scale, and a figure with no value is "not measured";
  - scenario 4's eviction of the image from the page cache (its passes
    from disk) leaves no page of a file on a disk behind, and says so
    where it cannot (tmpfs); their row prints in the raw table.

Standard library only.
"""
import copy
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
# No __pycache__ next to the sources (it was once committed by mistake).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(BENCH, "harness"))

import common  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402
import scenarios  # noqa: E402
from procs import BenchError  # noqa: E402

FAILS = []


def check(cond, what):
    print("%s: %s" % ("ok" if cond else "FAIL", what))
    if not cond:
        FAILS.append(what)


def schema1_doc():
    """A minimal schema 1 results file with a boot storm (the shape of
    2026-11-24-bfcfab0-storm.json): the shares clamped at 0."""
    def storm(array, client, wall):
        return {"wall": wall, "client_bytes": client, "array_bytes": array,
                "offload": max(0.0, 1 - array / client)}
    raw = {
        "shoal": [{"first": storm(2_800_000_000, 2_500_000_000, 8.0),
                   "second": storm(0, 2_500_000_000, 1.0)} for _ in range(3)],
        "nbdkit-cache": [{"first": storm(2_600_000_000, 2_500_000_000, 5.6),
                          "second": storm(2_590_000_000, 2_500_000_000, 6.1)}
                         for _ in range(3)],
    }
    med = {s: {"first_wall": raw[s][0]["first"]["wall"],
               "second_wall": raw[s][0]["second"]["wall"],
               "first_offload": raw[s][0]["first"]["offload"],
               "second_offload": raw[s][0]["second"]["offload"]} for s in raw}
    med["shoal"].update(first_hit_ratio=0.285, second_hit_ratio=1.0, dedup_ratio=12.0)
    return {
        "schema": 1, "date": "2026-11-24 20:45 UTC", "commit": "abc1234", "dirty": False,
        "mode": "full", "scenarios_run": [5], "runtime_seconds": 174.4,
        "machine": {"cpu": "test", "cores": 2, "mem_gib": 4.0, "load_start": 7.26,
                    "load_end": 13.6},
        "config": {"reps": 3},
        "ratios": [{"id": "s5.second_storm_offload_cache", "scenario": 5,
                    "what": "nbdkit cache: share of read bytes kept off the arrays, second storm",
                    "value": 0.0, "better": "higher", "target": None, "pass": None,
                    "peer": None, "note": None}],
        "targets": {"met": 0, "total": 0},
        "results": {"s5_boot_storm": {
            "config": {"clones": 16, "gold_image_bytes": 331350016,
                       "gold_used_bytes": 286236672, "reads_per_boot": 3618,
                       "bytes_per_boot": 156569600, "queue_depth": 4, "ram_bytes": 497025024},
            "raw": raw, "median": med}},
        "errors": [],
    }


def test_share():
    check(common.share_kept_off(0, 100) == 1.0, "nothing from the array: share 1")
    check(abs(common.share_kept_off(112, 100) + 0.12) < 1e-12,
          "array served more than the clients read: negative share, not clamped")
    check(common.share_kept_off(100, 0) is None, "no client bytes: no share")


def test_load():
    la = common.loadavg()
    check(all(isinstance(la[k], float) for k in ("1m", "5m", "15m")),
          "loadavg() has the 1, 5 and 15 minute figures")
    check(report.fmt_load({"1m": 1.25, "5m": 3.5, "15m": 12.0}) == "1.2 / 3.5 / 12.0",
          "load printed as 1 / 5 / 15 min")
    check(report.fmt_load(7.26) == "7.3 (1 min)", "a schema 1 load is said to be 1 minute")
    doc = report.upgrade(schema1_doc())
    doc.update(schema=2, load=[{"step": "scenario 5", "start": la, "end": la, "seconds": 12.3}])
    doc["machine"].update(loadavg_start=la, loadavg_end=la)
    t = report.load_table(doc)
    check("| scenario 5 | %s | %s | 12 s |" % (report.fmt_load(la), report.fmt_load(la)) in t,
          "load table has a row per scenario")
    check(report.fmt_load(la) in report.summary_md(doc), "summary states the run's load")


def test_upgrade():
    old = schema1_doc()
    doc = report.upgrade(copy.deepcopy(old))
    check(old["results"]["s5_boot_storm"]["median"]["shoal"]["first_offload"] == 0.0,
          "the schema 1 fixture is clamped")
    m = doc["results"]["s5_boot_storm"]["median"]
    check(abs(m["shoal"]["first_offload"] - (1 - 2.8 / 2.5)) < 1e-9,
          "shoal's first-storm share recomputed signed (-0.12)")
    check(abs(m["nbdkit-cache"]["second_offload"] - (1 - 2.59 / 2.5)) < 1e-9,
          "nbdkit cache's second-storm share recomputed signed (-0.036)")
    ids = {r["id"]: r for r in doc["ratios"]}
    check(ids["s5.second_storm_offload_cache"]["value"] < 0, "the ratio row is signed too")
    check(all(k in ids for k in ("s5.first_storm_offload_shoal", "s5.second_storm_offload_shoal",
                                 "s5.first_storm_offload_cache")),
          "both systems' shares for both storms are listed")
    check("recomputed signed" in report.summary_md(doc), "the summary says it was recomputed")
    check("-0.120" in report.ratio_table(doc), "the ratio table prints the negative share")
    check("-0.120 / -0.040" in report.raw_table(doc), "the raw table prints both shares")
    check(report.upgrade(doc) is doc, "a current file is left alone")


def test_committed():
    d = os.path.join(BENCH, "results")
    files = sorted(f for f in os.listdir(d) if f.endswith(".json")) if os.path.isdir(d) else []
    for f in files:
        try:
            with open(os.path.join(d, f)) as fh:
                doc = report.upgrade(json.load(fh))
            text = "\n".join([report.summary_md(doc), report.ratio_table(doc),
                              report.raw_table(doc), report.load_table(doc)])
            ok = "load average" in text
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            ok = False
            print("   %s: %s: %s" % (f, type(e).__name__, e))
        check(ok, "results/%s renders" % f)


def test_delay():
    check(peers._delay_arg("1ms") == "1ms" and peers._delay_arg("2") == "2",
          "whole milliseconds and seconds pass")
    for bad in ("200us", "0.2ms", "1.5ms"):
        try:
            peers._delay_arg(bad)
            check(False, "%s refused" % bad)
        except BenchError:
            check(True, "%s refused (nbdkit 1.32 would read it as no delay)" % bad)


def test_readme():
    doc = report.upgrade(schema1_doc())
    with tempfile.TemporaryDirectory() as t:
        p = os.path.join(t, "README.md")
        for png in ("results/x.png", None):
            with open(p, "w") as f:
                f.write("head\n%s\nold\n%s\ntail\n" % (report.BEGIN, report.END))
            check(report.update_readme(p, doc, png, "results/x.json"),
                  "README block written (chart %s)" % png)
            text = open(p).read()
            check("old" not in text and "results/x.json" in text and "tail" in text
                  and ("![" in text) == (png is not None),
                  "README block replaced, chart link only with a chart (%s)" % png)


def s8_doc():
    """A minimal schema 2 results file with scenario 8 (directory memory)."""
    def cache(unique, logical, meta, rem, rem_bytes, fill, evictions):
        local = meta - rem_bytes
        return {"capacity_bytes": 0, "unique_blocks": unique, "logical_blocks": logical,
                "metadata_bytes": meta, "metadata_bytes_per_block": local / unique,
                "directory_remembered_blocks": rem, "remembered_limit_blocks": 65536,
                "remembered_metadata_bytes": rem_bytes,
                "remembered_bytes_per_block": rem_bytes / rem if rem else 0,
                "evictions": evictions, "fill_ratio": fill, "dedup_ratio": logical / unique}
    cases = {
        "full": cache(16384, 16384, 16384 * 60 + 7000 * 30, 7000, 7000 * 30, 1.0, 49152),
        "partial": cache(17920, 17920, 17920 * 70, 0, 0, 0.27, 0),
    }
    la = common.loadavg()
    doc = {"schema": 2, "date": "2026-12-05 00:00 UTC", "commit": "abc1234", "dirty": True,
           "mode": "quick", "scenarios_run": [8], "runtime_seconds": 14.0,
           "machine": {"cpu": "test", "cores": 2, "mem_gib": 4.0, "loadavg_start": la,
                       "loadavg_end": la},
           "config": {"reps": 3}, "load": [], "errors": [],
           "results": {"s8_directory_memory": {"cases": {
               k: {"cache_size": 64 * common.MiB, "volumes": 1, "read_bytes": 256 * common.MiB,
                   "cache": c} for k, c in cases.items()}}}}
    r = common.Ratios()
    r.add("s8.full_metadata_per_block", 8, "full: per cached block",
          cases["full"]["metadata_bytes_per_block"], "lower", "<=", 64, unit="bytes")
    r.add("s8.full_remembered_per_block", 8, "full: per remembered block",
          cases["full"]["remembered_bytes_per_block"], "lower", "<=", 32, unit="bytes")
    r.add("s8.partial_metadata_per_block", 8, "partial: per cached block",
          cases["partial"]["metadata_bytes_per_block"], "lower", "<=", 64, unit="bytes")
    r.add("s8.partial_remembered_per_block", 8, "partial: per remembered block", None,
          "lower", "<=", 32, unit="bytes", note="not measured: no block was remembered")
    r.add("s8.dedup_ratio", 8, "dedup ratio", 4.0, "higher")
    doc["ratios"] = r.items
    doc["targets"] = {"met": sum(1 for x in r.targets() if x["pass"]),
                      "total": len(r.targets())}
    return doc


def test_bytes():
    doc = s8_doc()
    ids = {r["id"]: r for r in doc["ratios"]}
    check(ids["s8.full_metadata_per_block"]["pass"] is True
          and ids["s8.full_remembered_per_block"]["pass"] is True,
          "60 B <= 64 B and 30 B <= 32 B are met")
    check(ids["s8.partial_metadata_per_block"]["pass"] is False, "70 B > 64 B is not met")
    t = report.ratio_table(doc)
    check("| 8 | full: per cached block | 60.0 B | ≤ 64.0 B | **met** |" in t,
          "a byte figure is printed with its unit and its byte target")
    check("| 8 | partial: per cached block | 70.0 B | ≤ 64.0 B | **NOT met** |" in t,
          "a byte figure over its target is NOT met")
    check("| **not measured** |" in t, "a figure with no value is not measured")
    sm = report.summary_md(doc)
    check("Targets met: **2 of 4**" in sm and "partial: per cached block (70.0 B" in sm
          and "Not measured (counted as not met): partial: per remembered block" in sm,
          "the summary counts and names them")
    raw = report.raw_table(doc)
    check("7000 at 30.0 B each" in raw and "60.0 B per cached block" in raw,
          "the raw table has each case's blocks and bytes per block")
    if not shutil.which("gnuplot"):
        print("skip: no gnuplot, the chart is not checked")
        return
    with tempfile.TemporaryDirectory() as d:
        err = report.chart(doc, os.path.join(d, "x.png"), d)
        with open(os.path.join(d, "chart-ratios.dat")) as f:
            bars = f.read()
        check("dedup ratio" in bars and "per cached block" not in bars,
              "byte figures are left off the chart's ratio scale")
        check(err is None, "the chart renders with only ratios >= 1 and no target on the "
                           "scale (gnuplot crashed on an empty labels plot): %s" % err)


def test_evict():
    size = 8 * common.MiB
    for where in ("/var/tmp", "/dev/shm"):
        if not os.path.isdir(where):
            continue
        with tempfile.TemporaryDirectory(dir=where) as t:
            p = os.path.join(t, "img")
            with open(p, "wb") as f:
                f.write(os.urandom(size))
            with open(p, "rb") as f:
                f.read()  # in the page cache now
            fs = (os.popen("findmnt -n -o FSTYPE --target %s" % t).read().split() or [""])[0]
            left = scenarios._evict_file(p)
            if fs == "tmpfs":
                check(left is not None and left > size // 2,
                      "%s (tmpfs): the file stays in memory and that is seen (%s)" % (where, left))
            elif fs:
                check(left is not None and left <= size // 10,
                      "%s (%s): evicted, %s bytes left" % (where, fs, left))
    doc = report.upgrade(s8_doc())
    doc["results"]["s4_miss_path"] = {"median": {"shoal": 1900.0, "nbdkit-file": 5000.0},
                                      "from_disk": {"median": {"shoal": 1750.0,
                                                               "nbdkit-file": 2500.0}}}
    text = report.raw_table(doc)
    check("from disk" in text and "1750 / 2500 MB/s" in text,
          "the passes from disk print in the raw table")


def main():
    for t in (test_share, test_load, test_upgrade, test_committed, test_delay, test_readme,
              test_bytes, test_evict):
        t()
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
