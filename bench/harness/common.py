"""Shared bits: the run's configuration, medians, the ratio table."""
import os
import resource
import statistics
import sys
import time

MiB = 1024 * 1024

# Everything that differs between --quick and the full run.
MODES = {
    "quick": {
        "reps": 3,
        "runtime": 1.0,            # seconds per fio measurement
        "ramp": 0.25,              # fio warm-up not counted
        "data_size": 128 * MiB,    # random-data image of scenarios 1, 2, 4
        "iscsi_image": 64 * MiB,   # scenario 9's image (shoal's iSCSI target and tgt)
        "iscsi_lat_ops": 20000,    # scenario 9: timed QD1 reads per target and repetition
        "xcopy_size": 64 * MiB,    # scenario 9: the cached volume EXTENDED COPY copies
        "xcopy_rw_chunk": 1 * MiB,  # scenario 9: bytes per READ(16) / WRITE(16) of the copy by hand
        "slow_size": 64 * MiB,     # the slow array's image (scenarios 3, 6)
        "delays": ["1ms"],
        "extra_peers": False,      # nbdkit file / qemu-nbd in scenarios 1 and 2
        "clones": 4,
        "gold_data": 40 * MiB,     # bytes of real files in the gold image
        "private_regions": 4,
        "private_bytes": 512 * 1024,
        "boot_share": 0.5,
        "storm_qd": 4,
        "rss_sizes": [64 * MiB, 128 * MiB],
        "shoald_threads": 0,       # --threads for shoald; 0 = the daemon's default
        # scenario 8 (directory memory); the same in both modes, about 10 s
        "dirmem_volume": 256 * MiB,        # the random volume of the full and partial cases
        "dirmem_full_cache": 64 * MiB,     # full: --cache-size (the volume is read whole)
        "dirmem_partial_cache": 256 * MiB,  # partial: --cache-size
        "dirmem_partial_read": 70 * MiB,   # partial: bytes read (about 27% of the cache)
        "dirmem_clone_image": 64 * MiB,    # dedup: the image every volume is a copy of
        "dirmem_clones": 4,                # dedup: volumes (the image and its copies)
        "dirmem_dedup_cache": 256 * MiB,   # dedup: --cache-size
        "dirmem_settle": 2.5,              # seconds for the maintenance pass before the stats
        # scenario 11 (cluster boot storm; cluster_storm.py)
        "cs_nodes": 4,                     # hosts (network namespaces)
        "cs_clones_per_node": 2,
        "cs_gold_data": 24 * MiB,          # bytes of real files in its gold image
        "cs_reps": 1,
        "cs_stagger": 1.0,                 # first storm: node I starts (I-1) x this later
        # shoald --memcached-timeout: the default 5 ms ejected every server in
        # the storm on the shared 2-core machine (see bench/README.md)
        "cs_mc_timeout": "50ms",
        "cs_clients": "qcow2",             # or "direct": no qemu-nbd (cluster_storm.py)
    },
    "full": {
        "reps": 5,
        "runtime": 3.0,
        "ramp": 0.5,
        "data_size": 512 * MiB,
        "iscsi_image": 256 * MiB,
        "iscsi_lat_ops": 40000,
        "xcopy_size": 1024 * MiB,
        "xcopy_rw_chunk": 1 * MiB,
        "slow_size": 256 * MiB,
        # nbdkit 1.32's delay filter has whole-millisecond resolution (see
        # peers._delay_arg): a sub-millisecond array cannot be made with it.
        "delays": ["1ms"],
        "extra_peers": True,
        "clones": 16,
        "gold_data": 240 * MiB,
        "private_regions": 4,
        "private_bytes": 1 * MiB,
        "boot_share": 0.5,
        "storm_qd": 4,
        "rss_sizes": [64 * MiB, 256 * MiB, 512 * MiB],
        "shoald_threads": 0,
        "dirmem_volume": 256 * MiB,
        "dirmem_full_cache": 64 * MiB,
        "dirmem_partial_cache": 256 * MiB,
        "dirmem_partial_read": 70 * MiB,
        "dirmem_clone_image": 64 * MiB,
        "dirmem_clones": 4,
        "dirmem_dedup_cache": 256 * MiB,
        "dirmem_settle": 2.5,
        "cs_nodes": 4,
        "cs_clones_per_node": 4,
        "cs_gold_data": 240 * MiB,
        "cs_reps": 3,
        "cs_stagger": 2.0,
        "cs_mc_timeout": "50ms",
        "cs_clients": "qcow2",             # or "direct": no qemu-nbd (cluster_storm.py)
    },
}

_T0 = time.monotonic()


def say(msg):
    print("[%6.1fs] %s" % (time.monotonic() - _T0, msg), file=sys.stderr, flush=True)


def loadavg():
    """The machine's load average now: {"1m", "5m", "15m"} from /proc/loadavg
    (os.getloadavg elsewhere), and "running" ("R/T": runnable / all
    scheduling entities) when the kernel says. Every run records it at the
    start and end of each scenario, so a result states the load it was
    measured under."""
    try:
        with open("/proc/loadavg") as f:
            p = f.read().split()
        return {"1m": float(p[0]), "5m": float(p[1]), "15m": float(p[2]), "running": p[3]}
    except (OSError, IndexError, ValueError):
        a = os.getloadavg()
        return {"1m": a[0], "5m": a[1], "15m": a[2]}


def share_kept_off(backend_bytes, client_bytes):
    """1 - backend bytes / client bytes: the share of the clients' reads that
    did not reach the array. Signed: negative when the array served more
    than the clients read (read-ahead, a cache that reads whole blocks); never
    clamped. None when the clients read nothing."""
    if not client_bytes:
        return None
    return 1 - backend_bytes / client_bytes


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rotate(items, k):
    """Interleave repetitions without always running the same peer first."""
    k %= len(items)
    return items[k:] + items[:k]


class Ratios:
    """The run's ratios: each one value, the peer it is against, which way
    is better, and the target it must meet (None for the informational
    ones). A few are absolute figures rather than ratios (unit "bytes":
    metadata per block); they have no peer and are not on the chart."""

    def __init__(self):
        self.items = []

    def add(self, rid, scenario, what, value, better, op=None, target=None, peer=None, note=None,
            unit=None):
        passed = None
        if op is not None and value is not None:
            passed = value <= target if op == "<=" else value >= target
        self.items.append({
            "id": rid, "scenario": scenario, "what": what, "value": value, "better": better,
            "target": None if op is None else {"op": op, "value": target},
            "pass": passed, "peer": peer, "note": note, "unit": unit,
        })

    def targets(self):
        return [r for r in self.items if r["target"] is not None]


def machine_cpu_ticks():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def proc_cpu_seconds(pid):
    """User + system CPU seconds of a running process (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    """User + system CPU seconds of the harness's finished children."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
