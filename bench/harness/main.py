"""bench/run: shoal against its peers, the VDI boot storm, the costs and the
directory memory, in one run; writes bench/results/<date>-<commit>[-quick].json and .png and, for
full runs, the tables in bench/README.md. See bench/README.md."""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback

# No __pycache__ next to the sources (it was once committed by mistake).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import costs  # noqa: E402
import dirmem  # noqa: E402
import report  # noqa: E402
import scenarios  # noqa: E402
import iscsi  # noqa: E402
import remote  # noqa: E402
import storm  # noqa: E402
import cluster_storm  # noqa: E402
import xcopy  # noqa: E402
from common import MODES, Ratios, loadavg, say  # noqa: E402
from procs import BenchError, Procs, install_signal_handlers  # noqa: E402

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCH)
TOOLS = ["nbdkit", "qemu-nbd", "fio", "nbdcopy", "mke2fs", "openssl", "meson", "ninja"]


class Ctx:
    pass


def sh(argv, cwd=None):
    try:
        return subprocess.run(argv, capture_output=True, text=True, cwd=cwd).stdout.strip()
    except OSError:
        return ""


def build(builddir):
    if not os.path.exists(os.path.join(builddir, "build.ninja")):
        say("build: meson setup %s" % builddir)
        subprocess.run(["meson", "setup", builddir], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
    say("build: ninja -C %s" % builddir)
    r = subprocess.run(["ninja", "-C", builddir, "src/shoald", "bench/shoal-replay",
                        "bench/fp-speed", "bench/remote-hit", "bench/shoal-blkbench"],
                       cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError("build failed:\n" + r.stdout[-3000:] + r.stderr[-2000:])
    return (os.path.join(builddir, "src", "shoald"),
            os.path.join(builddir, "bench", "shoal-replay"),
            os.path.join(builddir, "bench", "fp-speed"),
            os.path.join(builddir, "bench", "shoal-blkbench"))


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        mem = 0
    la = loadavg()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "mem_gib": mem / 2**30,
        "kernel": platform.release(), "load_start": la["1m"], "loadavg_start": la,
        "versions": {
            "nbdkit": sh(["nbdkit", "--version"]),
            "qemu-nbd": sh(["qemu-nbd", "--version"]).splitlines()[0:1],
            "fio": sh(["fio", "--version"]),
            "libnbd": sh(["nbdcopy", "--version"]).splitlines()[0:1],
            "openssl": sh(["openssl", "version"]),
        },
    }


def convert(old, v):
    """A --set value in the type of the setting it replaces (sizes may
    carry K/M/G)."""
    if isinstance(old, bool):
        return v.lower() in ("1", "true", "yes", "on")
    if isinstance(old, list):
        return [convert(old[0], x) if old else x for x in v.split(",")]
    if isinstance(old, int):
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        if v and v[-1].upper() in units:
            return int(float(v[:-1]) * units[v[-1].upper()])
        return int(v)
    if isinstance(old, float):
        return float(v)
    return v


def main():
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller, fewer repetitions (< 3 min)")
    ap.add_argument("--out", default=os.path.join(BENCH, "results"),
                    help="directory for the results (default bench/results)")
    ap.add_argument("--build", default=os.path.join(REPO, "build-bench"),
                    help="meson build directory (default build-bench; built if needed)")
    ap.add_argument("--only", default="", help="comma-separated scenario numbers (e.g. 1,5)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the mode (see harness/common.py), "
                         "e.g. --set storm_qd=1 --set clones=8")
    ap.add_argument("--keep", action="store_true", help="keep the work dirs (logs, images)")
    ap.add_argument("--update-readme", dest="readme", action="store_true", default=None,
                    help="write the tables into bench/README.md (default: full runs only)")
    ap.add_argument("--no-update-readme", dest="readme", action="store_false")
    ap.add_argument("--render", metavar="RESULTS.json",
                    help="run nothing: print the report of an earlier results file (older "
                         "files are read with today's definitions, e.g. signed offload "
                         "recomputed from their raw byte counts); with --update-readme, "
                         "also write its tables into bench/README.md")
    args = ap.parse_args()
    if args.render:
        return render(args.render, bool(args.readme))

    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        print("bench/run: missing tools: %s (apt-get install nbdkit qemu-utils fio libnbd-bin "
              "e2fsprogs openssl meson ninja-build)" % " ".join(missing), file=sys.stderr)
        return 2
    mode = "quick" if args.quick else "full"
    only = {int(x) for x in args.only.split(",") if x.strip()} or set(range(1, 12))
    install_signal_handlers()

    t_start = time.monotonic()
    ctx = Ctx()
    ctx.cfg = dict(MODES[mode])
    for kv in args.set:
        k, _, v = kv.partition("=")
        if k not in ctx.cfg:
            print("bench/run: unknown setting %r" % k, file=sys.stderr)
            return 2
        try:
            ctx.cfg[k] = convert(ctx.cfg[k], v)
        except ValueError:
            print("bench/run: bad value for %s: %r" % (k, v), file=sys.stderr)
            return 2
    ctx.results = {}
    ctx.ratios = Ratios()
    errors = []
    procs = None
    try:
        ctx.shoald, ctx.replay, ctx.fp_speed, ctx.blkbench = build(os.path.abspath(args.build))
        ctx.remote_hit = os.path.join(os.path.abspath(args.build), "bench", "remote-hit")
        commit = sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]) or "unknown"
        dirty = bool(sh(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"]))
        mach = machine()
        procs = Procs(keep=args.keep)
        ctx.procs = procs
        say("bench: %s mode, commit %s%s, work dir %s" % (mode, commit, " (dirty)" if dirty else "",
                                                          procs.dir))

        load = []

        def step(name, fn, *a):
            """Run one scenario; a failure is recorded and the run goes on.
            The load average at its start and end goes into the results."""
            entry = {"step": name, "start": loadavg()}
            t = time.monotonic()
            say("bench: %s: load average %s" % (name, report.fmt_load(entry["start"])))
            try:
                fn(*a)
            except BenchError as e:
                say("bench: %s failed: %s" % (name, e))
                errors.append("%s: %s" % (name, str(e).splitlines()[0]))
            except Exception as e:  # a bug in the harness: say where, go on
                traceback.print_exc()
                errors.append("%s: %s: %s" % (name, type(e).__name__, e))
            finally:
                entry["end"] = loadavg()
                entry["seconds"] = round(time.monotonic() - t, 1)
                load.append(entry)

        if only & {1, 2, 3, 4, 6, 7}:
            rig = scenarios.Rig(ctx)
            try:
                if only & {1, 2, 4}:
                    step("scenario 4", scenarios.scenario4_miss_path, ctx, rig)
                if only & {1, 2}:
                    step("scenarios 1-2", scenarios.scenarios12_hit_path, ctx, rig)
                if only & {3, 6}:
                    step("scenario 3", scenarios.scenario3_slow_array, ctx, rig)
                if 6 in only:
                    step("scenario 6", scenarios.scenario6_write_mix, ctx, rig)
            finally:
                rig.close()
        if 5 in only:
            step("scenario 5", storm.scenario5_storm, ctx)
        if 7 in only:
            step("scenario 7", costs.scenario7_costs, ctx, procs.path("data.img"),
                 ctx.cfg["data_size"])
        if 8 in only:
            step("scenario 8", dirmem.scenario8_directory_memory, ctx)
        if 9 in only:
            step("scenario 9", iscsi.scenario9_iscsi, ctx)
            step("scenario 9 (XCOPY)", xcopy.scenario9_xcopy, ctx)
        if 10 in only:
            step("scenario 10", remote.scenario10_remote_hit, ctx)
        if 11 in only:
            step("scenario 11", cluster_storm.scenario11_cluster_storm, ctx)

        la = loadavg()
        mach["load_end"], mach["loadavg_end"] = la["1m"], la
        now = datetime.datetime.now(datetime.timezone.utc)
        doc = {
            "schema": report.SCHEMA, "date": now.strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
            "dirty": dirty, "mode": mode, "scenarios_run": sorted(only),
            "runtime_seconds": round(time.monotonic() - t_start, 1), "machine": mach,
            "config": ctx.cfg,
            "ratios": sorted(ctx.ratios.items, key=lambda r: r["scenario"]),
            "targets": {"met": sum(1 for r in ctx.ratios.targets() if r["pass"]),
                        "total": len(ctx.ratios.targets())},
            "results": ctx.results, "load": load, "errors": errors,
        }
        os.makedirs(args.out, exist_ok=True)
        stem = "%s-%s%s" % (now.strftime("%Y-%m-%d"), commit, "" if mode == "full" else "-quick")
        jpath = os.path.join(args.out, stem + ".json")
        ppath = os.path.join(args.out, stem + ".png")
        report.write_json(doc, jpath)
        err = report.chart(doc, ppath, procs.dir) if shutil.which("gnuplot") else "no gnuplot"
        if err:
            say("bench: no chart: %s" % err)
        print_report(doc)
        print("\nresults: %s%s" % (jpath, "" if err else "\nchart:   " + ppath))
        readme = args.readme if args.readme is not None else (mode == "full" and only ==
                                                              set(range(1, 12)))
        if readme:
            rel = os.path.relpath(args.out, BENCH)
            if report.update_readme(os.path.join(BENCH, "README.md"), doc,
                                    os.path.join(rel, stem + ".png"),
                                    os.path.join(rel, stem + ".json")):
                say("bench: updated bench/README.md")
        return 1 if errors else 0
    except KeyboardInterrupt:
        say("bench: interrupted; stopping everything")
        return 130
    except BenchError as e:
        say("bench: %s" % e)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        if procs:
            procs.close()
        say("bench: done in %.0f s" % (time.monotonic() - t_start))


def print_report(doc):
    """The summary and the ratio, raw and load tables of a results doc."""
    print("\n\n".join([report.summary_md(doc), report.ratio_table(doc),
                       report.raw_table(doc), report.load_table(doc)]))


def render(path, readme):
    """bench/run --render FILE: the report of an earlier run, read with
    today's definitions (report.upgrade)."""
    try:
        with open(path) as f:
            doc = report.upgrade(json.load(f))
    except (OSError, ValueError) as e:
        print("bench/run: cannot read %s: %s" % (path, e), file=sys.stderr)
        return 2
    print_report(doc)
    if readme:
        rel_dir = os.path.relpath(os.path.dirname(os.path.abspath(path)), BENCH)
        stem = os.path.splitext(os.path.basename(path))[0]
        png = os.path.join(rel_dir, stem + ".png")
        if not os.path.exists(os.path.join(BENCH, png)):
            png = None
        if report.update_readme(os.path.join(BENCH, "README.md"), doc, png,
                                os.path.join(rel_dir, stem + ".json")):
            say("bench: updated bench/README.md from %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
