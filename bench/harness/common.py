"""Shared bits: the run's configuration, medians, the ratio table."""
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
    },
    "full": {
        "reps": 5,
        "runtime": 3.0,
        "ramp": 0.5,
        "data_size": 512 * MiB,
        "slow_size": 256 * MiB,
        "delays": ["1ms", "200us"],
        "extra_peers": True,
        "clones": 16,
        "gold_data": 240 * MiB,
        "private_regions": 4,
        "private_bytes": 1 * MiB,
        "boot_share": 0.5,
        "storm_qd": 4,
        "rss_sizes": [64 * MiB, 256 * MiB, 512 * MiB],
        "shoald_threads": 0,
    },
}

_T0 = time.monotonic()


def say(msg):
    print("[%6.1fs] %s" % (time.monotonic() - _T0, msg), file=sys.stderr, flush=True)


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
    ones)."""

    def __init__(self):
        self.items = []

    def add(self, rid, scenario, what, value, better, op=None, target=None, peer=None, note=None):
        passed = None
        if op is not None and value is not None:
            passed = value <= target if op == "<=" else value >= target
        self.items.append({
            "id": rid, "scenario": scenario, "what": what, "value": value, "better": better,
            "target": None if op is None else {"op": op, "value": target},
            "pass": passed, "peer": peer, "note": note,
        })

    def targets(self):
        return [r for r in self.items if r["target"] is not None]
