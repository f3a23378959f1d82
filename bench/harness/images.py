"""Disk images of a run: random-data images for the peer comparisons, and
for the boot storm a gold ext4 image built from real files, its clones with
private writes, and the boot trace each clone is read with."""
import os
import random
import shutil
import subprocess

from procs import BenchError

KiB = 1024
MiB = 1024 * 1024


def random_image(path, size, seed):
    """size bytes of incompressible, never-repeating data (no block dedups
    and none is all zero, so every system does the full work): an AES-CTR
    keystream keyed by the seed, which is deterministic and far faster than
    /dev/urandom or Python's generator."""
    p = subprocess.Popen(["openssl", "enc", "-aes-128-ctr", "-nosalt", "-pbkdf2",
                          "-pass", "pass:shoal-bench-%d" % seed, "-in", "/dev/zero"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        with open(path, "wb") as f:
            left = size
            while left > 0:
                b = p.stdout.read(min(4 * MiB, left))
                if not b:
                    raise BenchError("openssl enc stopped early writing %s" % path)
                f.write(b)
                left -= len(b)
    finally:
        p.kill()
        p.wait()


# ---- the gold image ----

# Where the gold image's files come from, and the share of its data each
# tree gives: shared libraries (what a boot maps and pages in), then
# /usr/share (configuration, locale and data files, many small files).
TREES = [("/usr/lib/x86_64-linux-gnu", 0.6), ("/usr/share", 0.4)]
MAX_FILE = 4 * MiB  # leave out the few huge libraries so no file dominates


def stage_tree(dst, data_bytes):
    """Hard-link (or copy) real files from TREES into dst, walking each tree
    in sorted order until its share of data_bytes is reached. Returns
    (files, bytes)."""
    files = total = 0
    for root, share in TREES:
        if not os.path.isdir(root):
            continue
        budget = data_bytes * share
        got = 0
        for dp, dns, fns in os.walk(root):
            dns.sort()
            for fn in sorted(fns):
                src = os.path.join(dp, fn)
                try:
                    if os.path.islink(src) or not os.path.isfile(src):
                        continue
                    sz = os.path.getsize(src)
                    if sz == 0 or sz > MAX_FILE or not os.access(src, os.R_OK):
                        continue
                    out = os.path.join(dst, src.lstrip("/"))
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    try:
                        os.link(src, out)
                    except OSError:
                        shutil.copyfile(src, out)
                except OSError:
                    continue
                files += 1
                got += sz
                if got >= budget:
                    break
            if got >= budget:
                break
        total += got
    if total == 0:
        raise BenchError("no files found under %s for the gold image" % [t for t, _ in TREES])
    return files, total


def data_extents(path):
    """The file's data extents [(offset, length)] via SEEK_DATA/SEEK_HOLE:
    the blocks mke2fs wrote (metadata, journal, file data), i.e. the image's
    used blocks."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        ext, off = [], 0
        while off < size:
            try:
                d = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            h = os.lseek(fd, d, os.SEEK_HOLE)
            ext.append((d, h - d))
            off = h
        return ext
    finally:
        os.close(fd)


def build_gold(procs, path, data_bytes):
    """An ext4 image holding about data_bytes of real files (mke2fs -d)."""
    stage = procs.path("gold-tree")
    os.makedirs(stage, exist_ok=True)
    files, total = stage_tree(stage, data_bytes)
    # Room for the files, their metadata and the journal.
    size = ((int(total * 1.25) + 16 * MiB) // MiB) * MiB
    r = subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", stage, path,
                        "%dM" % (size // MiB)], capture_output=True, text=True)
    shutil.rmtree(stage, ignore_errors=True)
    if r.returncode != 0:
        raise BenchError("mke2fs -d failed: %s" % r.stderr.strip())
    ext = data_extents(path)
    used = sum(l for _, l in ext)
    return {"path": path, "size": size, "files": files, "file_bytes": total,
            "used_bytes": used, "extents": ext}


def make_clone(gold, path, seed, regions, region_bytes):
    """Copy the gold image (keeping its holes) and overwrite `regions`
    places of region_bytes each, inside its used blocks, with data private
    to this clone. Returns the private regions [(offset, length)]."""
    subprocess.run(["cp", "--sparse=always", gold["path"], path], check=True)
    rng = random.Random(seed)
    big = [(o, l) for o, l in gold["extents"] if l >= region_bytes]
    if not big:
        raise BenchError("the gold image has no extent of %d bytes for private writes"
                         % region_bytes)
    out = []
    with open(path, "r+b") as f:
        for _ in range(regions):
            o, l = rng.choice(big)
            start = o + rng.randrange(0, (l - region_bytes) // 4096 + 1) * 4096
            f.seek(start)
            f.write(rng.randbytes(region_bytes))
            out.append((start, region_bytes))
    return out


# ---- the boot trace ----

CHUNK = 512 * KiB       # a file, or a group of small files read together
SEQ_REQ = 128 * KiB     # sequential reads: the guest's readahead size
RAND_SIZES = [4 * KiB, 8 * KiB, 16 * KiB, 32 * KiB, 64 * KiB]


def boot_ops(gold, private, boot_share, seed=7):
    """The reads of one clone's boot, in order: [(offset, length)].

    The boot set is a fixed share (boot_share) of the gold image's used
    blocks, cut into 512 KiB chunks and chosen with a fixed seed, so every
    clone boots the same files. Half of the chunks (chosen with the same
    seed) are read sequentially in 128 KiB requests, like whole files
    read with readahead; the others by random 4-64 KiB requests at 4 KiB
    aligned offsets inside the chunk until as many bytes as the chunk holds
    were read (so some blocks are read twice and some not at all), like
    pages faulted in from binaries and libraries. The chunks come in a
    shuffled (fixed) order. The clone's private regions are read
    sequentially too, spread through the boot (its own configuration, logs,
    registry)."""
    rng = random.Random(seed)
    chunks = []
    for o, l in gold["extents"]:
        for c in range(o, o + l, CHUNK):
            chunks.append((c, min(CHUNK, o + l - c)))
    chosen = [c for c in chunks if rng.random() < boot_share]
    rng.shuffle(chosen)
    tasks = []
    for (o, l) in chosen:
        ops = []
        if rng.random() < 0.5:
            for s in range(o, o + l, SEQ_REQ):
                ops.append((s, min(SEQ_REQ, o + l - s)))
        else:
            done = 0
            while done < l:
                n = rng.choice(RAND_SIZES)
                n = min(n, l)
                s = o + rng.randrange(0, (l - n) // 4096 + 1) * 4096
                ops.append((s, n))
                done += n
        tasks.append(ops)
    # Spread the private regions through the boot.
    for i, (o, l) in enumerate(private):
        at = (i + 1) * len(tasks) // (len(private) + 1)
        tasks.insert(at, [(s, min(SEQ_REQ, o + l - s)) for s in range(o, o + l, SEQ_REQ)])
    return [op for t in tasks for op in t]


def write_msr_trace(path, ops, disk=0):
    """The ops as an MSR Cambridge CSV trace (reads, 1 us apart; the storm
    replays them as fast as the queue depth allows)."""
    base = 116444736000000000  # 1970-01-01 in Windows filetime
    with open(path, "w") as f:
        for i, (o, l) in enumerate(ops):
            f.write("%d,vdi,%d,Read,%d,%d,0\n" % (base + 10 * i, disk, o, l))
