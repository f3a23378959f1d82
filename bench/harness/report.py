"""Results of a run: the JSON file, the PNG chart (gnuplot) and the Markdown
tables that go into bench/README.md.

Schema 2 (this harness): the machine's load average (1, 5 and 15 minutes)
at the start and end of the run (machine.loadavg_start / loadavg_end) and
of every scenario (load[]), and the boot storm's "share of read bytes kept
off the arrays" signed (1 - array bytes / client bytes; schema 1 clamped it
at 0). upgrade() reads a schema 1 file with today's definitions."""
import json
import os
import re
import subprocess

from common import MiB, median, share_kept_off

SCHEMA = 2

# Short labels for the chart's x axis.
LABELS = {
    "s1.qd1_lat_vs_memory": "1: QD1 lat / memory",
    "s1.qd32_iops_vs_memory": "1: QD32 IOPS / memory",
    "s1.qd32_iops_vs_cache": "1: QD32 IOPS / nbdkit cache",
    "s1.qd1_lat_vs_cache": "1: QD1 lat / nbdkit cache",
    "s1.qd1_lat_vs_nbdkit_file": "1: QD1 lat / nbdkit file",
    "s1.qd32_iops_vs_nbdkit_file": "1: QD32 IOPS / nbdkit file",
    "s1.qd1_lat_vs_qemu_nbd": "1: QD1 lat / qemu-nbd",
    "s1.qd32_iops_vs_qemu_nbd": "1: QD32 IOPS / qemu-nbd",
    "s2.seq_bw_vs_memory": "2: 1M seq / memory",
    "s2.seq_bw_vs_cache": "2: 1M seq / nbdkit cache",
    "s3.hit_lat_vs_array_1ms": "3: hit lat / 1ms array",
    "s3.hit_lat_vs_array_200us": "3: hit lat / 200us array",
    "s3.cold_pass_vs_array_1ms": "3: cold pass / 1ms array",
    "s3.cold_pass_vs_array_200us": "3: cold pass / 200us array",
    "s4.cold_throughput_vs_nbdkit_file": "4: cold MB/s / nbdkit file",
    "s4.cold_throughput_vs_qemu_nbd": "4: cold MB/s / qemu-nbd",
    "s4.cold_disk_vs_nbdkit_file": "4: cold from disk / nbdkit file",
    "s4.cold_disk_vs_qemu_nbd": "4: cold from disk / qemu-nbd",
    "s5.second_storm_hit_ratio": "5: storm-2 hit ratio",
    "s5.second_storm_speedup_vs_cache": "5: storm-2 speed-up vs cache",
    "s5.first_storm_speedup_vs_cache": "5: storm-1 speed-up vs cache",
    "s5.second_storm_speedup_vs_cache_nbd": "5: storm-2 speed-up vs cache over NBD",
    "s5.first_storm_speedup_vs_cache_nbd": "5: storm-1 speed-up vs cache over NBD",
    "s5.second_storm_offload_cache": "5: nbdkit cache storm-2 offload",
    "s5.first_storm_offload_cache": "5: nbdkit cache storm-1 offload",
    "s5.first_storm_offload_shoal": "5: shoal storm-1 offload",
    "s5.second_storm_offload_shoal": "5: shoal storm-2 offload",
    "s5.dedup_ratio": "5: dedup ratio",
    "s6.write_lat_vs_array": "6: write lat / array",
    "s6.read_hit_ratio": "6: read hit ratio",
    "s6.read_lat_vs_array": "6: read lat / array",
    "s7.fingerprint_vs_openssl": "7: SHA-256 / openssl speed",
    "s7.memcpy_vs_fingerprint": "7: memcpy / SHA-256",
    "s7.rss_vs_cache_size": "7: RSS / cache size",
    "s8.dedup_ratio": "8: dedup ratio (copies)",
    "s11.second_storm_hit_ratio": "11: cluster storm-2 hit ratio",
    "s11.second_storm_speedup_vs_cache": "11: cluster storm-2 speed-up vs cache",
    "s11.first_storm_speedup_vs_cache": "11: cluster storm-1 speed-up vs cache",
    "s11.first_storm_global_share": "11: storm-1 nodes 2-N from global tier",
    "s11.first_storm_offload_shoal": "11: shoal storm-1 offload",
    "s11.second_storm_offload_shoal": "11: shoal storm-2 offload",
    "s11.first_storm_offload_cache": "11: nbdkit cache storm-1 offload",
    "s11.second_storm_offload_cache": "11: nbdkit cache storm-2 offload",
}


def is_bytes(r):
    """An absolute byte figure (metadata per block), not a ratio: printed
    with its unit, never on the chart's ratio scale. Files before the unit
    field have one, scenario 7's metadata per block."""
    return r.get("unit") == "bytes" or r["id"] == "s7.metadata_bytes_per_block"


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.3f" % v


def verdict(r):
    if r["target"] is None:
        return "info"
    if r["value"] is None:
        return "**not measured**"
    return "**met**" if r["pass"] else "**NOT met**"


def target_text(r):
    t = r["target"]
    if t is None:
        return ("lower is better" if r["better"] == "lower" else "higher is better")
    v = t["value"]
    vs = "1/15 (%.4f)" % v if abs(v - 1 / 15) < 1e-9 else fmt(v)
    if is_bytes(r):
        vs += " B"
    return "%s %s" % ("≤" if t["op"] == "<=" else "≥", vs)


def fmt_value(r):
    v = fmt(r["value"])
    return v + " B" if is_bytes(r) and r["value"] is not None else v


def ratio_table(doc):
    lines = ["| # | ratio | measured | target | |", "|---|---|---|---|---|"]
    for r in doc["ratios"]:
        lines.append("| %d | %s | %s | %s | %s |" % (r["scenario"], r["what"], fmt_value(r),
                                                   target_text(r), verdict(r)))
    return "\n".join(lines)


# The boot storm's systems, as the tables name them.
STORM_PEERS = {"shoal": "shoal", "nbdkit-cache": "nbdkit cache",
               "nbdkit-cache-nbd": "nbdkit cache over NBD"}


def raw_table(doc):
    """A few raw medians, for scale (absolute numbers of this machine and this
    run; only the ratios are meant to be compared between runs)."""
    res = doc["results"]
    rows = []
    s1 = res.get("s1_hit_path", {}).get("median")
    if s1:
        for s, v in s1["qd1"].items():
            rows.append(("1", "%s QD1 4K random read, mean latency" % s,
                         "%.1f us" % v["lat_mean_us"]))
        for s, v in s1["qd32"].items():
            rows.append(("1", "%s QD32 4K random read" % s, "%.0f IOPS" % v["iops"]))
    s2 = res.get("s2_sequential", {}).get("median")
    if s2:
        for s, v in s2.items():
            rows.append(("2", "%s 1 MiB sequential read QD4" % s, "%.0f MB/s" % (v["bw_bytes"] / 1e6)))
    s3 = res.get("s3_slow_array")
    if s3:
        for d, v in s3.items():
            m, c = v["qd1_lat_median"], v["cold_pass_median"]
            rows.append(("3", "%s array QD1 4K read, mean latency: shoal hit / array" % d,
                         "%.1f us / %.1f us" % (m["shoal"], m["array"])))
            rows.append(("3", "%s array whole-image pass: shoal cold / array" % d,
                         "%.2f s / %.2f s" % (c["shoal-cold"], c["array"])))
    s4 = res.get("s4_miss_path", {}).get("median")
    if s4:
        rows.append(("4", "cold whole-image pass: " + ", ".join(s4),
                     " / ".join("%.0f" % v for v in s4.values()) + " MB/s"))
    s4d = (res.get("s4_miss_path", {}).get("from_disk") or {}).get("median")
    if s4d:
        rows.append(("4", "cold whole-image pass from disk (page cache dropped): " + ", ".join(s4d),
                     " / ".join("%.0f" % v for v in s4d.values()) + " MB/s"))
    s5 = res.get("s5_boot_storm")
    if s5:
        m, c = s5["median"], s5["config"]
        rows.append(("5", "storm: %d clones of a %d MiB image (%d MiB used), %d reads / %.1f MiB "
                     "per boot, QD%d, RAM %d MiB" % (
                         c["clones"], c["gold_image_bytes"] // MiB, c["gold_used_bytes"] // MiB,
                         c["reads_per_boot"], c["bytes_per_boot"] / MiB, c["queue_depth"],
                         c["ram_bytes"] // MiB), ""))
        # Runs before 2026-12-05 have no nbdkit cache over NBD.
        systems = [s for s in ("shoal", "nbdkit-cache", "nbdkit-cache-nbd") if s in m]
        names = " / ".join(STORM_PEERS[s] for s in systems)
        for k in ("first", "second"):
            rows.append(("5", "%s storm wall time: %s" % (k, names),
                         " / ".join("%.2f s" % m[s][k + "_wall"] for s in systems)))
        rows.append(("5", "shoal hit ratio, first / second storm",
                     "%s / %s" % (fmt(m["shoal"]["first_hit_ratio"]),
                                  fmt(m["shoal"]["second_hit_ratio"]))))
        for k in ("first", "second"):
            rows.append(("5", "share of read bytes kept off the arrays (1 - array bytes / client "
                         "bytes, signed), %s storm: %s" % (k, names),
                         " / ".join(fmt(m[s][k + "_offload"]) for s in systems)))
        arr = _storm_bytes(s5)
        if arr:
            for k in ("first", "second"):
                rows.append(("5", "bytes read from the arrays / by the clients, %s storm" % k,
                             "; ".join("%s %.2f / %.2f GB" % (
                                 STORM_PEERS[s], arr[s][k][0] / 1e9, arr[s][k][1] / 1e9)
                                 for s in systems if s in arr)))
    s6 = res.get("s6_write_mix", {}).get("median")
    if s6:
        rows.append(("6", "70/30 mix write latency: shoal / array",
                     "%.0f us / %.0f us" % (s6["shoal"]["write_lat_mean_us"],
                                            s6["array"]["write_lat_mean_us"])))
        rows.append(("6", "70/30 mix read latency: shoal / array",
                     "%.0f us / %.0f us" % (s6["shoal"]["read_lat_mean_us"],
                                            s6["array"]["read_lat_mean_us"])))
    s7 = res.get("s7_costs")
    if s7:
        m = s7["median"]
        if "fp-pairs" in m:
            rows.append(("7", "SHA-256 of 4 KiB blocks per core: shoal fp_compute / two at a time"
                         " (fp_compute2) / openssl speed",
                         "%.0f / %.0f / %.0f MB/s" % (m["fp-speed"], m["fp-pairs"],
                                                      m["openssl"] or 0)))
        else:
            rows.append(("7", "SHA-256 of 4 KiB blocks per core: shoal fp_compute / openssl speed",
                         "%.0f / %.0f MB/s" % (m["fp-speed"], m["openssl"] or 0)))
        rows.append(("7", "memcpy of 4 KiB blocks per core", "%.0f MB/s" % m["memcpy"]))
        md = s7["metadata"]
        rows.append(("7", "metadata per cached block (%d blocks held)" % md["unique_blocks"],
                     "%.1f bytes" % md["metadata_bytes_per_block"]))
        for x in s7["rss"]:
            rows.append(("7", "shoald RSS with --cache-size %d MiB: idle / filled (%d MiB held)"
                         % (x["cache_size"] // MiB, x["used_bytes"] // MiB),
                         "%.1f / %.1f MiB" % (x["rss_idle"] / MiB, x["rss_filled"] / MiB)))
    s8 = res.get("s8_directory_memory")
    if s8:
        for k, c in s8["cases"].items():
            x = c["cache"]
            rows.append(("8", "%s: --cache-size %d MiB, %d volume(s), %d MiB read: %d blocks "
                         "held (fill %.2f, dedup %.2f), %d evicted"
                         % (k, c["cache_size"] // MiB, c["volumes"], c["read_bytes"] // MiB,
                            x["unique_blocks"], x["fill_ratio"] or 0, x["dedup_ratio"] or 0,
                            x["evictions"]),
                         "%.1f B per cached block (%.2f MiB of metadata)"
                         % (x["metadata_bytes_per_block"] or 0,
                            (x["metadata_bytes"] - x["remembered_metadata_bytes"]) / MiB)))
            if x["directory_remembered_blocks"]:
                rows.append(("8", "%s: remembered-only blocks (limit %d)"
                             % (k, x["remembered_limit_blocks"]),
                             "%d at %.1f B each (%.2f MiB)"
                             % (x["directory_remembered_blocks"], x["remembered_bytes_per_block"],
                                x["remembered_metadata_bytes"] / MiB)))
    s10 = res.get("s10_remote_hit")
    if s10:
        m = s10["median"]
        rows.append(("10", "remote hit, 1 key: tier_lookup / memcached_get / 1-key mget",
                     "%.1f / %.1f / %.1f us" % (m["qd1_tier_us"], m["qd1_get_us"],
                                                m["qd1_mget1_us"])))
        rows.append(("10", "remote hits, 32 keys: tier_lookup / memcached_mget (of which SHA-256 "
                     "checks)", "%.0f / %.0f us (%.0f us)" % (m["batch_tier_us"],
                                                             m["batch_mget_us"],
                                                             m["batch_verify_us"])))
        for x in s10["memory"]:
            rows.append(("10", "bytes per cached block: local tier / memcached RSS (memcached %s; "
                         "item %.0f B in a %d B chunk, waste %.1f%%)"
                         % (x["memcached_args"], x["memcached_item_bytes"],
                            x["memcached_chunk_bytes"], 100 * (x["memcached_slab_waste"] or 0)),
                         "%.0f / %.0f B" % (x["local_bytes_per_block"],
                                            x["memcached_rss_bytes_per_block"])))
    s9 = res.get("s9_iscsi", {}).get("qd1_blkbench")
    if s9:
        p50, mean = s9["median_p50_us"], s9["median_mean_us"]
        rows.append(("9", "QD1 4K random read hits, shoal-blkbench, median / mean latency: "
                     "shoal iSCSI, NBD over TCP, NBD unix socket, tgt",
                     ", ".join("%.1f / %.1f us" % (p50[k], mean[k]) for k in
                               ("shoal_iscsi", "shoal_nbd_tcp", "shoal_nbd_unix", "tgt"))))
    s9 = res.get("s9_iscsi", {}).get("median_iops")
    if s9:
        rows.append(("9", "QD32 4K random read hits (iscsi-perf): shoal iSCSI / tgt",
                     "%.0f / %.0f IOPS" % (s9["shoal_iscsi_qd32"], s9["tgt_qd32"])))
    xc = res.get("s9_xcopy")
    if xc:
        m = xc["median"]
        rows.append(("9", "copy of a cached %d MiB volume: EXTENDED COPY / READ + WRITE (%d KiB)"
                     % (xc["bytes"] // MiB, xc["rw_chunk_bytes"] // 1024),
                     "%.2f s / %.2f s" % (m["xcopy"]["seconds"], m["rw"]["seconds"])))
        rows.append(("9", "the copy's back end bytes, source read / destination written: "
                     "EXTENDED COPY; READ + WRITE",
                     "%.1f / %.1f MiB; %.1f / %.1f MiB" % (
                         m["xcopy"]["src_backend_read_bytes"] / MiB,
                         m["xcopy"]["dst_written_bytes"] / MiB,
                         m["rw"]["src_backend_read_bytes"] / MiB,
                         m["rw"]["dst_written_bytes"] / MiB)))
        first = {how: v[0] for how, v in xc["raw"].items()}
        rows.append(("9", "cache content before / after the first copy (blocks shared by "
                     "EXTENDED COPY: %d): EXTENDED COPY; READ + WRITE"
                     % first["xcopy"]["copy_shared_blocks"],
                     "; ".join("%.1f / %.1f MiB" % (first[h]["used_bytes"][0] / MiB,
                                                    first[h]["used_bytes"][1] / MiB)
                               for h in ("xcopy", "rw"))))
    rows += _s11_rows(res.get("s11_cluster_storm"))
    lines = ["| # | measurement (medians) | value |", "|---|---|---|"]
    lines += ["| %s | %s | %s |" % r for r in rows]
    return "\n".join(lines)


def _s11_rows(s11):
    """Scenario 11's raw rows; a skipped run says why."""
    if not s11:
        return []
    if "skipped" in s11:
        return [("11", "cluster boot storm", "skipped: %s" % s11["skipped"])]
    m, c = s11["median"], s11["config"]
    sm, km = m["shoal"], m["nbdkit-cache"]
    rows = [("11", "cluster storm: %d nodes x %d clones of a %d MiB image (%d MiB used), %d reads "
             "/ %.1f MiB per boot, QD%d; RAM %d MiB = L1 %d MiB x %d + memcached %d MiB x %d; "
             "nbdkit cache %.1f MiB x %d" % (
                 c["nodes"], c["clones_per_node"], c["gold_image_bytes"] // MiB,
                 c["gold_used_bytes"] // MiB, c["reads_per_boot"], c["bytes_per_boot"] / MiB,
                 c["queue_depth"], c["ram_bytes"] // MiB, c["l1_bytes_each"] // MiB, c["nodes"],
                 c["memcached_mib_each"], c["nodes"], c["nbdkit_cache_bytes_each"] / MiB,
                 c["clones"]), "")]
    rows.append(("11", "first storm wall time (node I starts (I-1) x %.1f s late): shoal / "
                 "nbdkit cache" % c["first_storm_stagger_s"],
                 "%.2f s / %.2f s" % (sm["first_wall"], km["first_wall"])))
    rows.append(("11", "second storm wall time (all at once): shoal / nbdkit cache",
                 "%.2f s / %.2f s" % (sm["second_wall"], km["second_wall"])))
    rows.append(("11", "shoal hit ratio, first / second storm",
                 "%s / %s" % (fmt(sm["first_hit_ratio"]), fmt(sm["second_hit_ratio"]))))
    rows.append(("11", "first storm: share of fetched blocks from the global tier, node 1 .. %d"
                 % c["nodes"], " / ".join(fmt(x) for x in sm["first_global_share_per_node"])))
    for k in ("first", "second"):
        rows.append(("11", "%s storm: array bytes / client bytes (signed offload): shoal; "
                     "nbdkit cache" % k, "%.0f / %.0f MiB (%s); %.0f / %.0f MiB (%s)" % (
                         sm[k + "_array_bytes"] / MiB, sm["client_bytes"] / MiB,
                         fmt(sm[k + "_offload"]), km[k + "_array_bytes"] / MiB,
                         km["client_bytes"] / MiB, fmt(km[k + "_offload"]))))
    if "second_cpu_busy" in sm:
        q = c["clones"] * c["queue_depth"]
        for k in ("first", "second"):
            rows.append(("11", "%s storm: machine CPU busy; array requests x 1 ms / (clones x "
                         "QD), the least array wait: shoal / nbdkit cache" % k,
                         "%s, %.2f s / %s, %.2f s" % (
                             fmt(sm[k + "_cpu_busy"]), sm[k + "_array_reads"] * 1e-3 / q,
                             fmt(km[k + "_cpu_busy"]), km[k + "_array_reads"] * 1e-3 / q)))
    if "l1_blocks" in sm:
        rows.append(("11", "after the storms: memcached items (all servers) / L1 blocks (all "
                     "nodes)", "%d / %d" % (sm["memcached_items"], sm["l1_blocks"])))
    return rows


def fmt_load(la):
    """"1.2 / 3.4 / 5.6" (1, 5, 15 minutes) from a loadavg() dict; a bare
    number (schema 1 recorded only the 1-minute figure) as "1.2 (1 min)"."""
    if la is None:
        return "not recorded"
    if isinstance(la, (int, float)):
        return "%.1f (1 min)" % la
    return "%.1f / %.1f / %.1f" % (la["1m"], la["5m"], la["15m"])


def _run_load(m, which):
    return m.get("loadavg_" + which, m.get("load_" + which))


def summary_md(doc):
    t = [r for r in doc["ratios"] if r["target"] is not None]
    met = [r for r in t if r["pass"]]
    m = doc["machine"]
    la0, la1 = _run_load(m, "start"), _run_load(m, "end")
    if isinstance(la0, dict):
        load = "load average (1 / 5 / 15 min) %s at start, %s at end" % (fmt_load(la0),
                                                                          fmt_load(la1))
    else:
        load = "load average (1 min only) %.1f at start, %.1f at end" % (la0, la1)
    head = ("Run of %s (commit `%s`%s), %s mode, %s, %s cores, %.1f GiB RAM; %s; %d repetitions "
            "per measurement, medians; took %.0f s."
            % (doc["date"], doc["commit"], ", with uncommitted changes" if doc["dirty"] else "",
               doc["mode"], m["cpu"], m["cores"], m["mem_gib"], load, doc["config"]["reps"],
               doc["runtime_seconds"]))
    lines = [head, "", "Targets met: **%d of %d**." % (len(met), len(t))]
    notmet = [r for r in t if not r["pass"] and r["value"] is not None]
    if notmet:
        lines.append("Not met: " + "; ".join("%s (%s, target %s)" % (r["what"], fmt_value(r),
                                                                     target_text(r))
                                             for r in notmet) + ".")
    unmeasured = [r for r in t if r["value"] is None]
    if unmeasured:
        lines.append("Not measured (counted as not met): " + "; ".join(
            "%s (%s)" % (r["what"], r.get("note") or "no value") for r in unmeasured) + ".")
    if doc.get("errors"):
        lines.append("Errors: " + "; ".join(doc["errors"]))
    if doc.get("upgraded"):
        lines.append("Read with today's definitions: " + doc["upgraded"])
    return "\n".join(lines)


def load_table(doc):
    """The load average at the start and end of each scenario (the run's own
    servers and clients count too; a high start means other work)."""
    lines = ["| scenario | load average at start (1 / 5 / 15 min) | at end | took |",
             "|---|---|---|---|"]
    for e in doc.get("load") or []:
        lines.append("| %s | %s | %s | %.0f s |" % (e["step"], fmt_load(e["start"]),
                                                   fmt_load(e["end"]), e["seconds"]))
    if len(lines) == 2:
        m = doc["machine"]
        lines.append("| (whole run; per-scenario load not recorded by this harness version) "
                     "| %s | %s | %.0f s |" % (fmt_load(_run_load(m, "start")),
                                              fmt_load(_run_load(m, "end")),
                                              doc["runtime_seconds"]))
    return "\n".join(lines)


def _storm_bytes(s5):
    """Median (array bytes, client bytes) per system and storm, from the raw
    repetitions."""
    out = {}
    for system, runs in s5.get("raw", {}).items():
        out[system] = {}
        for k in ("first", "second"):
            ab = [r[k].get("array_bytes") for r in runs]
            cb = [r[k].get("client_bytes") for r in runs]
            if None in ab or None in cb or not ab:
                return None
            out[system][k] = (median(ab), median(cb))
    return out if out else None


def upgrade(doc):
    """Read a results file of an older schema with today's definitions. Schema
    1 clamped the storm's "share of read bytes kept off the arrays" at 0; its
    raw repetitions keep array_bytes and client_bytes, so the signed shares
    (and their medians and ratios) are recomputed from them. Schema 1 has
    the load average only as two 1-minute figures; nothing can add the rest.
    The file itself is not changed."""
    if doc.get("schema", 1) >= SCHEMA:
        return doc
    notes = []
    s5 = doc.get("results", {}).get("s5_boot_storm")
    if s5 and s5.get("raw"):
        for system, runs in s5["raw"].items():
            for r in runs:
                for k in ("first", "second"):
                    st = r[k]
                    if "array_bytes" in st and "client_bytes" in st:
                        st["offload"] = share_kept_off(st["array_bytes"], st["client_bytes"])
            med = s5["median"][system]
            for k in ("first", "second"):
                med[k + "_offload"] = median([r[k]["offload"] for r in runs])
        m = s5["median"]
        doc["ratios"] = [r for r in doc["ratios"] if not r["id"].startswith(
            ("s5.second_storm_offload", "s5.first_storm_offload"))]
        for rid, system, k in (("s5.second_storm_offload_cache", "nbdkit-cache", "second"),
                               ("s5.first_storm_offload_cache", "nbdkit-cache", "first"),
                               ("s5.first_storm_offload_shoal", "shoal", "first"),
                               ("s5.second_storm_offload_shoal", "shoal", "second")):
            who = "nbdkit cache" if system == "nbdkit-cache" else "shoal"
            doc["ratios"].append({
                "id": rid, "scenario": 5,
                "what": "%s: share of read bytes kept off the arrays, %s storm" % (who, k),
                "value": m[system][k + "_offload"], "better": "higher", "target": None,
                "pass": None, "peer": None, "note": None})
        doc["ratios"].sort(key=lambda r: r["scenario"])
        notes.append("the boot storm's shares of read bytes kept off the arrays are recomputed "
                     "signed from the file's raw array_bytes and client_bytes (the file, "
                     "schema 1, stores them clamped at 0)")
    notes.append("the load average is the file's two 1-minute figures (schema 1 has no "
                 "5- and 15-minute figures and no per-scenario load)")
    doc["upgraded"] = "; ".join(notes) + "."
    return doc


def write_json(doc, path):
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")


def chart(doc, png, workdir):
    """Bar chart of the ratios (log scale, bars from parity 1.0 to the value;
    green = target met, red = not met, grey = informational; black dash =
    target), and the boot storm's hit ratio over time. Returns None or an
    error string."""
    bars = os.path.join(workdir, "chart-ratios.dat")
    n = 0
    above = below = ntargets = 0  # bars >= 1 and < 1, target points
    # A log scale cannot show a value <= 0 (a share of read bytes kept off
    # the arrays can be 0 or negative): those are named under the bars.
    off_scale = []
    with open(bars, "w") as f:
        for r in doc["ratios"]:
            v = r["value"]
            if is_bytes(r):
                continue
            if v is None or v <= 0:
                if v is not None:
                    off_scale.append("%s = %s" % (LABELS.get(r["id"], r["id"]), fmt(v)))
                continue
            color = 0x9e9e9e if r["target"] is None else (0x2e7d32 if r["pass"] else 0xc62828)
            arrow = "↓" if r["better"] == "lower" else "↑"
            label = LABELS.get(r["id"], r["id"]) + " " + arrow
            f.write('%d "%s" %g %g %g %d\n' % (n, label, v, min(v, 1.0), max(v, 1.0), color))
            n += 1
            if v >= 1:
                above += 1
            else:
                below += 1
    targets = os.path.join(workdir, "chart-targets.dat")
    with open(targets, "w") as f:
        i = 0
        for r in doc["ratios"]:
            v = r["value"]
            if v is None or v <= 0 or is_bytes(r):
                continue
            if r["target"]:
                f.write("%d %g\n" % (i, r["target"]["value"]))
                ntargets += 1
            i += 1
    if n == 0:
        return "no ratios to chart (byte figures are not charted)"
    ts = doc["results"].get("s5_boot_storm", {}).get("timeseries")
    series = {}
    if ts:
        for k in ("shoal_hit_ratio", "shoal_array_offload", "nbdkit_cache_array_offload"):
            p = os.path.join(workdir, "chart-%s.dat" % k)
            with open(p, "w") as f:
                for storm in ts[k]:  # a blank line breaks the line between storms
                    for t, v in storm:
                        f.write("%g %g\n" % (t, v))
                    if not storm:  # keep the block: a point outside the plot
                        f.write("-1 -1\n")
                    f.write("\n\n")
            series[k] = p
    title = "shoal %s (%s mode, %s): ratios against peers measured in the same run" % (
        doc["commit"], doc["mode"], doc["date"])
    gp = ["set terminal pngcairo size 1500,1150 font 'DejaVu Sans,10'",
          "set output '%s'" % png,
          "set multiplot layout 2,1 title \"%s\"" % title.replace('"', "'"),
          "set size 1,0.62", "set origin 0,0.36",
          "set logscale y", "set grid ytics",
          "set ylabel 'ratio (log scale; bars start at parity 1.0)'",
          "set xtics rotate by -40 left font ',8' nomirror",
          "set xrange [-0.7:%g]" % (n - 0.3),
          "set bmargin 9",
          ("set label 1 \"not on the log scale (<= 0): %s\" at screen 0.01, screen 0.375 "
           "font ',9'" % "; ".join(off_scale).replace('"', "'")) if off_scale else "unset label 1",
          "set key outside top center horizontal",
          # gnuplot 5.4 crashes on a labels plot none of whose points is
          # valid: the value labels above / below the bars and the target
          # points are only plotted when there are some.
          "plot " + ", ".join(
              ["'%s' using 1:3:($1-0.35):($1+0.35):4:5:6:xtic(2) with boxxyerror fs solid 0.8 "
               "lc rgb variable notitle" % bars]
              + (["'' using 1:($3>=1?$3:1/0):(sprintf('%.3g',$3)) with labels offset 0,0.7 "
                  "font ',8' notitle"] if above else [])
              + (["'' using 1:($3<1?$3:1/0):(sprintf('%.3g',$3)) with labels offset 0,-0.7 "
                  "font ',8' notitle"] if below else [])
              + (["'%s' using 1:2 with points pt 7 ps 1.3 lc rgb 'black' title 'target'"
                  % targets] if ntargets else [])
              + ["keyentry with boxes fs solid 0.8 lc rgb '#2e7d32' title 'target met'",
                 "keyentry with boxes fs solid 0.8 lc rgb '#c62828' title 'target not met'",
                 "keyentry with boxes fs solid 0.8 lc rgb '#9e9e9e' "
                 "title 'no target (for information); arrow: which way is better'",
                 "1 with lines lc rgb '#555555' dt 2 notitle"])]
    if series:
        # Shares are signed (below 0: the arrays served more than the
        # clients read in that half second), so the axis reaches down to the
        # lowest value; the grey line is 0.
        lowest = min([0.0] + [v for k in series for storm in ts[k] for _, v in storm])
        gp += ["unset logscale y", "unset label 1", "set size 1,0.36", "set origin 0,0",
               "set xtics norotate font ',9'", "set bmargin 4", "set xrange [0:*]",
               "set yrange [%g:1.05]" % (lowest - 0.05 if lowest < 0 else 0),
               "set xlabel 'seconds since that storm started'",
               "set ylabel 'share of read bytes'", "set key outside right center vertical font ',8'",
               "set title 'VDI boot storm (last repetition): storm 1 dashed, storm 2 solid'"]
        plots = []
        for k, title, color, pt in (
                ("shoal_hit_ratio", "shoal: hit ratio (daemon stats)", "#1565c0", 7),
                ("shoal_array_offload",
                 "shoal: 1 - array bytes / client bytes", "#7c5cc4", 9),
                ("nbdkit_cache_array_offload",
                 "nbdkit cache: 1 - array bytes / client bytes", "#ef6c00", 5)):
            if k not in series:
                continue
            for i, (dt, lw) in enumerate(((2, 1.5), (1, 3))):
                plots.append("'%s' index %d using 1:2 with linespoints pt %d ps 0.8 lw %g dt %d "
                             "lc rgb '%s' title '%s, storm %d'"
                             % (series[k], i, pt, lw, dt, color, title, i + 1))
        plots.append("0 with lines lc rgb '#9e9e9e' notitle")
        gp.append("plot " + ", ".join(plots))
    gp.append("unset multiplot")
    script = os.path.join(workdir, "chart.gp")
    with open(script, "w") as f:
        f.write("\n".join(gp) + "\n")
    r = subprocess.run(["gnuplot", script], capture_output=True, text=True)
    if r.returncode != 0:
        return "gnuplot failed: " + r.stderr.strip()[-500:]
    return None


BEGIN = "<!-- BEGIN RESULTS (written by bench/run) -->"
END = "<!-- END RESULTS -->"


def update_readme(readme, doc, png_rel, json_rel):
    """Write the run's tables between the BEGIN/END markers of bench/README.md.
    png_rel may be None (no chart)."""
    with open(readme) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        return False
    files = "Results file: [`%s`](%s)" % (json_rel, json_rel)
    files += ("; chart: [`%s`](%s)." % (png_rel, png_rel)) if png_rel else "; no chart."
    parts = [summary_md(doc), files]
    if png_rel:
        parts.append("![ratios and boot storm](%s)" % png_rel)
    parts += [
        "### Ratios\n\n" + ratio_table(doc),
        "### Raw medians (this machine, this run; for scale only)\n\n" + raw_table(doc),
        "### Load average per scenario\n\n" + load_table(doc),
    ]
    body = "\n\n".join(parts)
    new = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END),
                 lambda m: BEGIN + "\n\n" + body + "\n\n" + END, text, flags=re.S)
    with open(readme, "w") as f:
        f.write(new)
    return True
