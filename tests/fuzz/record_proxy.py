#!/usr/bin/python3
"""Recording NBD proxy for the fuzz seed corpus.

    record_proxy.py LISTEN_SOCKET UPSTREAM_SOCKET OUTDIR PREFIX

Listens on a unix socket, relays every connection to the real server's unix
socket, and writes what each client sent (client -> server bytes only) to
OUTDIR/PREFIX-N.raw. make_corpus.sh turns those into seeds for the
fuzz_nbd (whole client stream) and fuzz_nbd_transmit (requests after the
handshake) targets. Runs until killed.
"""
import os
import selectors
import socket
import sys
import threading


def relay(client, upstream_path, out_path):
    up = socket.socket(socket.AF_UNIX)
    up.connect(upstream_path)
    sel = selectors.DefaultSelector()
    sel.register(client, selectors.EVENT_READ, up)
    sel.register(up, selectors.EVENT_READ, client)
    open_ends = 2
    with open(out_path, "wb") as rec:
        while open_ends:
            for key, _ in sel.select():
                src, dst = key.fileobj, key.data
                try:
                    data = src.recv(1 << 16)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(src)
                    open_ends -= 1
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    continue
                if src is client:
                    rec.write(data)
                try:
                    dst.sendall(data)
                except OSError:
                    open_ends = 0
                    break
    client.close()
    up.close()


def main():
    listen_path, upstream, outdir, prefix = sys.argv[1:5]
    os.makedirs(outdir, exist_ok=True)
    if os.path.exists(listen_path):
        os.unlink(listen_path)
    ls = socket.socket(socket.AF_UNIX)
    ls.bind(listen_path)
    ls.listen(64)
    n = 0
    while True:
        c, _ = ls.accept()
        out = os.path.join(outdir, f"{prefix}-{n}.raw")
        n += 1
        threading.Thread(target=relay, args=(c, upstream, out), daemon=True).start()


if __name__ == "__main__":
    main()
