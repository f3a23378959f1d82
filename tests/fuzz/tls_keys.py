#!/usr/bin/python3
"""Write the TLS test keys embedded in tls_keys.h as files, for real clients
and a real shoald that record seeds for fuzz_tls (make_corpus.sh):

    tls_keys.py OUTDIR

OUTDIR/pki         server side: ca-cert.pem, server-cert.pem, server-key.pem
OUTDIR/pki-client  client side: ca-cert.pem, client-cert.pem, client-key.pem
OUTDIR/psk         keys.psk ("user:hexkey", as psktool writes it)
"""
import os
import re
import sys


def main():
    out = sys.argv[1]
    text = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls_keys.h")).read()

    def pem(name):
        body = re.search(r"static const char tls_%s_pem\[\] =\n(.*?);" % name, text, re.S)
        return "".join(line + "\n" for line in re.findall(r'"(.*?)\\n"', body.group(1)))

    files = {
        "pki": ("ca_cert", "server_cert", "server_key"),
        "pki-client": ("ca_cert", "client_cert", "client_key"),
    }
    for d, names in files.items():
        os.makedirs(os.path.join(out, d), exist_ok=True)
        for n in names:
            with open(os.path.join(out, d, n.replace("_", "-") + ".pem"), "w") as f:
                f.write(pem(n))
    user = re.search(r'#define TLS_PSK_USER "(.*?)"', text).group(1)
    key = re.search(r'#define TLS_PSK_HEX +"(.*?)"', text).group(1)
    os.makedirs(os.path.join(out, "psk"), exist_ok=True)
    with open(os.path.join(out, "psk", "keys.psk"), "w") as f:
        f.write(f"{user}:{key}\n")


if __name__ == "__main__":
    main()
