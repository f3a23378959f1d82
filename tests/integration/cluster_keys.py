#!/usr/bin/env python3
"""Where a volume's blocks are in the cluster's memcached servers, for
cluster_netns.sh. memcached cannot list its keys, but shoal's keys follow
from the content: "s1:" + the first 40 hex digits of each 4 KiB block's
SHA-256 (docs/cluster.md), so the test computes them from the image and
asks every server for each (meta get without flags: HD hit, EN miss; no
value is sent).

  cluster_keys.py where IMAGE OUT.json HOST:PORT...   key -> servers holding it
      (asked again for up to 20 s until every key is on some server: puts
      are sent after the replies, from a queue)
  cluster_keys.py flush HOST:PORT...                   flush_all on each
  cluster_keys.py moves BEFORE.json AFTER.json         one JSON line (below)

Exit 0, or 1 with a one-line error."""
import hashlib
import json
import socket
import sys
import time

BLOCK = 4096
CHUNK = 512  # requests sent before their replies are read


def keys_of(image):
    keys = []
    seen = set()
    with open(image, "rb") as f:
        while True:
            b = f.read(BLOCK)
            if not b:
                break
            k = "s1:" + hashlib.sha256(b).hexdigest()[:40]
            if k not in seen:
                seen.add(k)
                keys.append(k)
    return keys


def connect(server):
    host, _, port = server.rpartition(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    return s, s.makefile("rb")


def held(server, keys):
    s, rf = connect(server)
    out = set()
    for i in range(0, len(keys), CHUNK):
        part = keys[i:i + CHUNK]
        s.sendall("".join("mg %s\r\n" % k for k in part).encode())
        for k in part:
            line = rf.readline()
            if line == b"HD\r\n":
                out.add(k)
            elif line != b"EN\r\n":
                raise RuntimeError("%s answered %r to mg" % (server, line[:40]))
    s.close()
    return out


def where(image, out, servers):
    keys = keys_of(image)
    deadline = time.monotonic() + 20
    while True:
        sets = [held(srv, keys) for srv in servers]
        if len(set().union(*sets)) == len(keys) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    doc = {k: [srv for srv, got in zip(servers, sets) if k in got] for k in keys}
    with open(out, "w") as f:
        json.dump(doc, f)


def flush(servers):
    for srv in servers:
        s, rf = connect(srv)
        s.sendall(b"flush_all\r\n")
        if rf.readline() != b"OK\r\n":
            raise RuntimeError("%s did not flush" % srv)
        s.close()


def moves(before_path, after_path):
    """Over the keys held by exactly one server in both maps: how many,
    how many changed server, and where they went and came from."""
    with open(before_path) as f:
        before = json.load(f)
    with open(after_path) as f:
        after = json.load(f)
    both = [k for k in before if len(before[k]) == 1 and len(after.get(k, [])) == 1]
    moved = [k for k in both if before[k] != after[k]]
    to, frm = {}, {}
    for k in moved:
        to[after[k][0]] = to.get(after[k][0], 0) + 1
        frm[before[k][0]] = frm.get(before[k][0], 0) + 1
    print(json.dumps({"keys": len(before), "compared": len(both), "moved": len(moved),
                      "to": to, "from": frm}))


def main(argv):
    try:
        if len(argv) >= 4 and argv[1] == "where":
            where(argv[2], argv[3], argv[4:])
        elif len(argv) >= 3 and argv[1] == "flush":
            flush(argv[2:])
        elif len(argv) == 4 and argv[1] == "moves":
            moves(argv[2], argv[3])
        else:
            print("usage: see cluster_keys.py's docstring", file=sys.stderr)
            return 1
    except (OSError, RuntimeError, ValueError) as e:
        print("cluster_keys.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
