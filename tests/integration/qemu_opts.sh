#!/usr/bin/env bash
# README.md's QEMU command lines, run for real: every -drive, -blockdev,
# -object tls-creds-*, --image-opts and json: overlay string of "Pointing
# QEMU at it" and the qcow2 section is taken here exactly as the README
# prints it (the test fails if the README no longer holds it), its
# placeholders swapped for this test's socket, port and credentials, and
# run against a real shoald: qemu-img and qemu-io, and qemu-system-x86_64
# with "..." replaced by a machine that never starts its CPU (-S) and is
# driven over QMP (HMP qemu-io on the device's own block backend). Every
# write is checked byte for byte on the backing file, over the unix socket
# and TCP, plain and with TLS (x509 and PSK); a plain client must be
# refused when TLS is required. The README's libvirt XML is validated with
# virt-xml-validate, and its sockets must be the one the README's
# --socket-group setup creates.
#
# Skips (77) only without qemu-img / qemu-io / certtool; without
# qemu-system-x86_64 or virt-xml-validate it runs the rest, then exits 77.
# SC2154: doc() assigns the README strings with printf -v, unseen by shellcheck.
# shellcheck source-path=SCRIPTDIR source=lib.sh disable=SC2154
source "$(dirname "$0")/lib.sh"
need qemu-img qemu-io certtool psktool jq cmp od
README=$SRCDIR/README.md
[ -r "$README" ] || fail "$README is not readable"
SKIPPED=()

# --- the README's placeholders and their values here ------------------------
R_SOCK=/run/shoal/nbd.sock
R_HOST=host1.example
R_PORT=10809
R_PKI=/etc/pki/qemu
R_PSK=/etc/shoal/psk
R_OVL=/var/lib/libvirt/images/vm1.qcow2
PORT=$(free_port)
PKI=$T/pki

sub() {
    local s=$1
    s=${s//"$R_SOCK"/"$SOCK"}
    s=${s//"$R_HOST"/127.0.0.1}
    s=${s//"$R_PORT"/"$PORT"}
    s=${s//"$R_PKI"/"$PKI"}
    s=${s//"$R_PSK"/"$T/psk"}
    s=${s//"$R_OVL"/"$T/vm1.qcow2"}
    printf '%s' "$s"
}

# doc VAR STRING: STRING must be in README.md verbatim; VAR gets it with
# this test's values.
doc() {
    grep -qF -- "$2" "$README" || fail "README.md no longer holds: $2"
    printf -v "$1" '%s' "$(sub "$2")"
}

# --- credentials (as tls.sh: a CA, a server certificate for localhost and
# 127.0.0.1; a psktool file for user alice) ----------------------------------
mkdir -p "$PKI" "$T/psk"
certtool --generate-privkey --outfile "$PKI/ca-key.pem" >/dev/null 2>&1
printf 'cn = qemu_opts test CA\nca\ncert_signing_key\nexpiration_days = 2\n' >"$T/ca.info"
certtool --generate-self-signed --load-privkey "$PKI/ca-key.pem" --template "$T/ca.info" \
    --outfile "$PKI/ca-cert.pem" >/dev/null 2>&1
certtool --generate-privkey --outfile "$PKI/server-key.pem" >/dev/null 2>&1
printf '%s\n' 'cn = localhost' 'dns_name = localhost' 'ip_address = 127.0.0.1' tls_www_server \
    encryption_key signing_key 'expiration_days = 2' >"$T/server.info"
certtool --generate-certificate --load-ca-certificate "$PKI/ca-cert.pem" \
    --load-ca-privkey "$PKI/ca-key.pem" --load-privkey "$PKI/server-key.pem" \
    --template "$T/server.info" --outfile "$PKI/server-cert.pem" >/dev/null 2>&1
psktool -u alice -p "$T/psk/keys.psk" >/dev/null 2>&1
if [ ! -s "$PKI/server-cert.pem" ] || [ ! -s "$T/psk/keys.psk" ]; then
    fail "certtool/psktool wrote nothing"
fi

# --- the image and what it must hold ----------------------------------------
make_image "$T/gold.raw" 16
cp --sparse=always "$T/gold.raw" "$T/expect.raw"
cp --sparse=always "$T/gold.raw" "$T/orig.raw"

# wrote MIB BYTE: a client wrote 64 KiB of BYTE at MIB MiB; the backing file
# must hold it now (write-through), and the expected image follows.
wrote() {
    assert_bytes "$T/gold.raw" $(($1 << 20)) 65536 "$2"
    head -c 65536 /dev/zero | tr '\0' "\\$(printf '%03o' "$2")" |
        dd of="$T/expect.raw" bs=64k seek=$(($1 * 16)) conv=notrunc status=none
    assert_same_file "$T/gold.raw" "$T/expect.raw" "backing file after the write at ${1}M"
}

# qio WHAT ARGS...: qemu-io; fails on an error or a pattern mismatch.
qio() {
    local what=$1 out
    shift
    out=$(qemu-io "$@" 2>&1) || fail "$what: qemu-io failed: $out"
    if grep -qiE 'verification failed|error|failed' <<<"$out"; then
        fail "$what: $out"
    fi
    printf '%s\n' "$out"
}

# --- qemu-system: "..." is a machine that does not start, driven by QMP -------
HAVE_QSYS=1
command -v qemu-system-x86_64 >/dev/null 2>&1 || {
    HAVE_QSYS=0
    SKIPPED+=("qemu-system-x86_64 is not installed")
}
DOTS=(-nodefaults -display none -machine pc -accel tcg -m 64 -S -qmp stdio)
hmp() { jq -nc --arg c "$1" '{execute: "human-monitor-command", arguments: {"command-line": $c}}'; }
# qsys OUT QMP-COMMAND... -- ARGS...: run qemu-system-x86_64 ... ARGS with
# the QMP commands on stdin, then quit; its stdout (QMP answers and the HMP
# qemu-io output) goes to OUT.
qsys() {
    local out=$1 cmds=() rc=0
    shift
    while [ "$1" != -- ]; do
        cmds+=("$1")
        shift
    done
    shift
    printf '%s\n' '{"execute":"qmp_capabilities"}' "${cmds[@]}" '{"execute":"quit"}' |
        timeout -k 5 60 qemu-system-x86_64 "${DOTS[@]}" "$@" >"$out" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || fail "qemu-system-x86_64 ... $* exited $rc: $(tail -5 "$out")"
    grep -q '"reason": "host-qmp-quit"' "$out" || fail "qemu-system-x86_64 ... $*: no clean quit: $(tail -5 "$out")"
}
# The HMP qemu-io of a -device's own block backend (the node is held by
# the device, which shares no write permission with a second user).
VBLK='/machine/peripheral-anon/device[0]/virtio-backend'
# q_write DEV MIB BYTE: QMP commands, one a line: HMP qemu-io on DEV reads
# the range (warming the cache with the old data), writes BYTE over it and
# reads it back.
q_io() { hmp "qemu-io $1 \"$2\""; }
q_write() {
    local dev=$1 mib=$2 byte=$3
    q_io "$dev" "read ${mib}M 64k"
    q_io "$dev" "write -P $byte ${mib}M 64k"
    q_io "$dev" "read -P $byte ${mib}M 64k"
}
check_qsys_out() {
    grep -q 'wrote 65536/65536 bytes' "$1" || fail "$2: qemu-io wrote nothing: $(tail -8 "$1")"
    if grep -qiE 'verification failed|error|permission|failed' "$1"; then
        fail "$2: $(grep -iE 'verification failed|error|permission|failed' "$1" | head -3)"
    fi
}

# ============================================================================
# Plain NBD: unix socket and TCP on 127.0.0.1.
start_shoald -m 64M -l "127.0.0.1:$PORT" "gold=$T/gold.raw"

# qemu-img info, exactly as printed.
doc info_unix 'qemu-img info --image-opts driver=nbd,server.type=unix,server.path=/run/shoal/nbd.sock,export=gold'
read -ra cmd <<<"$info_unix"
out=$("${cmd[@]}" 2>&1) || fail "$info_unix: $out"
assert_contains "$out" "virtual size: 16 MiB (16777216 bytes)" "$info_unix"
log "qemu-img info --image-opts over the unix socket: 16 MiB"

# qemu-io over TCP, exactly as printed: its hex dump is the file's bytes.
doc o_tcp 'driver=nbd,server.type=inet,server.host=host1.example,server.port=10809,export=gold'
doc o_unix 'driver=nbd,server.type=unix,server.path=/run/shoal/nbd.sock,export=gold'
grep -qF -- "qemu-io --image-opts driver=nbd,server.type=inet,server.host=host1.example,server.port=10809,export=gold \\" "$README" ||
    fail "README.md no longer holds the qemu-io --image-opts line"
doc c_read "-c 'read -v 0 512'"
out=$(qio "qemu-io --image-opts (TCP)" --image-opts "$o_tcp" -c 'read -v 0 512')
got=$(awk '/^[0-9a-f]+:/ { for (i = 2; i <= 17; i++) printf "%s", $i }' <<<"$out")
want=$(od -An -v -tx1 -N512 "$T/gold.raw" | tr -d ' \n')
assert_eq "$got" "$want" "qemu-io read -v 0 512 over TCP against the backing file"
log "qemu-io --image-opts over TCP: read -v 0 512 matches the backing file"

# Writes with the same option strings.
qio "qemu-io --image-opts (unix)" --image-opts "$o_unix" -c 'read 1M 64k' -c 'write -P 0x11 1M 64k' \
    -c 'read -P 0x11 1M 64k' >/dev/null
wrote 1 0x11
qio "qemu-io --image-opts (TCP)" --image-opts "$o_tcp" -c 'read 2M 64k' -c 'write -P 0x12 2M 64k' \
    -c 'read -P 0x12 2M 64k' >/dev/null
wrote 2 0x12
log "qemu-io --image-opts writes over unix and TCP are on disk"

# The overlay of the qcow2 section, backing by URI over the unix socket.
doc ovl_unix "    -b 'nbd+unix:///gold?socket=/run/shoal/nbd.sock' $R_OVL"
backing=$(sed -n "s/^ *-b '\([^']*\)'.*/\1/p" <<<"$ovl_unix")
[ -n "$backing" ] || fail "could not take the backing out of: $ovl_unix"
qemu-img create -q -f qcow2 -F raw -b "$backing" "$T/vm0.qcow2" || fail "qemu-img create -b $backing"
qio "qemu-io on the URI overlay" -c 'write -P 0x71 12M 64k' -c 'read -P 0x71 12M 64k' "$T/vm0.qcow2" >/dev/null
qemu-img convert -O raw "$T/vm0.qcow2" "$T/vm0.out" || fail "qemu-img convert of the URI overlay"
cp --sparse=always "$T/gold.raw" "$T/vm0.want"
head -c 65536 /dev/zero | tr '\0' '\161' | dd of="$T/vm0.want" bs=64k seek=192 conv=notrunc status=none
assert_same_file "$T/vm0.out" "$T/vm0.want" "the URI overlay's disk (gold + its write)"
assert_same_file "$T/gold.raw" "$T/expect.raw" "gold after a write through its URI overlay"
log "URI overlay over the unix socket: write in the overlay, gold unchanged"

if [ "$HAVE_QSYS" = 1 ]; then
    # -drive: the disk is the board's IDE disk, ide0-hd0.
    doc d_unix '-drive file=nbd+unix:///gold?socket=/run/shoal/nbd.sock,format=raw,cache=none'
    doc d_tcp '-drive file=nbd://host1.example:10809/gold,format=raw,cache=none'
    read -ra a <<<"$d_unix"
    mapfile -t c < <(q_write ide0-hd0 3 0x21)
    qsys "$T/q.out" "${c[@]}" -- "${a[@]}"
    check_qsys_out "$T/q.out" "-drive (unix)"
    wrote 3 0x21
    read -ra a <<<"$d_tcp"
    mapfile -t c < <(q_write ide0-hd0 4 0x22)
    qsys "$T/q.out" "${c[@]}" -- "${a[@]}"
    check_qsys_out "$T/q.out" "-drive (TCP)"
    wrote 4 0x22
    log "qemu-system -drive over unix and TCP: writes on disk"

    # -blockdev + -device: the node is there as an nbd node attached to the
    # virtio-blk device; writes go through the device's backend.
    doc dev '-device virtio-blk-pci,drive=gold0'
    for t in unix tcp; do
        if [ $t = unix ]; then
            doc bd '-blockdev driver=nbd,server.type=unix,server.path=/run/shoal/nbd.sock,export=gold,node-name=gold0'
            mib=5 byte=0x31
        else
            doc bd '-blockdev driver=nbd,server.type=inet,server.host=host1.example,server.port=10809,export=gold,node-name=gold0'
            mib=6 byte=0x32
        fi
        read -ra a <<<"$bd $dev"
        mapfile -t c < <(q_write "-d $VBLK" $mib $byte)
        qsys "$T/q.out" '{"execute":"query-named-block-nodes","arguments":{"flat":true}}' \
            '{"execute":"query-block"}' "${c[@]}" -- "${a[@]}"
        jq -se '.[2].return | any(."node-name" == "gold0" and .drv == "nbd" and .image."virtual-size" == 16777216)' \
            <(grep '^{' "$T/q.out") >/dev/null || fail "-blockdev ($t): no nbd node gold0: $(head -c 600 "$T/q.out")"
        jq -se --arg q "$VBLK" '.[3].return | any(.qdev == $q and .inserted."node-name" == "gold0")' \
            <(grep '^{' "$T/q.out") >/dev/null || fail "-blockdev ($t): gold0 is not the virtio-blk disk"
        check_qsys_out "$T/q.out" "-blockdev ($t)"
        wrote $mib $byte
    done
    log "qemu-system -blockdev + -device virtio-blk-pci over unix and TCP: node gold0, writes on disk"
fi
stop_shoald

# ============================================================================
# TLS required: x509 and PSK, over TCP (and the unix socket with
# tls-hostname). The same socket path, so the strings resolve alike.
NEXT_SOCK=$SOCK
start_shoald -m 64M -l "127.0.0.1:$PORT" --tls require --tls-certificates "$PKI" \
    --tls-psk "$T/psk/keys.psk" "gold=$T/gold.raw"

# A plain client is refused now: the test can tell TLS from no TLS.
if qemu-img info --image-opts "$o_tcp" >"$T/plain.out" 2>&1; then
    fail "a plain qemu-img info got through --tls require"
fi
log "plain client refused under --tls require: $(head -1 "$T/plain.out")"

doc x509 '--object tls-creds-x509,id=tls0,dir=/etc/pki/qemu,endpoint=client'
doc o_tls 'driver=nbd,server.type=inet,server.host=host1.example,server.port=10809,export=gold,tls-creds=tls0'
doc dummy "qemu-img info --object tls-creds-x509,id=tls0,dir=/etc/pki/qemu,endpoint=client \\"
doc dummy "    --image-opts driver=nbd,server.type=inet,server.host=host1.example,server.port=10809,export=gold,tls-creds=tls0"
read -ra a <<<"$x509"
out=$(qemu-img info "${a[@]}" --image-opts "$o_tls" 2>&1) || fail "qemu-img info over x509 TLS: $out"
assert_contains "$out" "virtual size: 16 MiB (16777216 bytes)" "qemu-img info over x509 TLS"
qio "qemu-io x509" "${a[@]}" --image-opts "$o_tls" -c 'read 7M 64k' -c 'write -P 0x41 7M 64k' \
    -c 'read -P 0x41 7M 64k' >/dev/null
wrote 7 0x41
# Over the unix socket with tls-hostname, the name in the certificate.
qio "qemu-io x509 unix" "${a[@]}" --image-opts "$o_unix,tls-creds=tls0,tls-hostname=localhost" \
    -c 'write -P 0x42 8M 64k' -c 'read -P 0x42 8M 64k' >/dev/null
wrote 8 0x42
log "qemu-img info / qemu-io with tls-creds-x509 over TCP and unix: writes on disk"

if [ "$HAVE_QSYS" = 1 ]; then
    doc x509_sys '-object tls-creds-x509,id=tls0,dir=/etc/pki/qemu,endpoint=client'
    doc psk_sys '-object tls-creds-psk,id=tls0,dir=/etc/shoal/psk,endpoint=client,username=alice'
    doc bd_tls '-blockdev driver=nbd,server.type=inet,server.host=host1.example,server.port=10809,export=gold,tls-creds=tls0,node-name=gold0'
    mib=9 byte=0x51
    for obj in "$x509_sys" "$psk_sys"; do
        read -ra a <<<"$obj $bd_tls $dev"
        mapfile -t c < <(q_write "-d $VBLK" $mib $byte)
        qsys "$T/q.out" "${c[@]}" -- "${a[@]}"
        check_qsys_out "$T/q.out" "-blockdev with ${obj%%,*}"
        wrote $mib $byte
        mib=$((mib + 1)) byte=0x52
    done
    log "qemu-system -object tls-creds-x509 / tls-creds-psk + -blockdev tls-creds=tls0: writes on disk"
fi

# The qcow2 overlay whose backing is json: over TCP with TLS.
doc dummy "qemu-img create -f qcow2 -F raw --object tls-creds-x509,id=tls0,dir=/etc/pki/qemu,endpoint=client \\"
doc ovl_b "-b 'json:{\"file\":{\"driver\":\"nbd\",\"server\":{\"type\":\"inet\",\"host\":\"host1.example\",\"port\":\"10809\"},\"export\":\"gold\",\"tls-creds\":\"tls0\"}}' \\"
doc dummy "    $R_OVL"
read -ra a <<<"$x509"
backing=$(sed -n "s/^-b '\(.*\)' \\\\$/\1/p" <<<"$ovl_b")
[ -n "$backing" ] || fail "could not take the json: backing out of: $ovl_b"
qemu-img create -q -f qcow2 -F raw "${a[@]}" -b "$backing" "$T/vm1.qcow2" ||
    fail "qemu-img create of the json: overlay"
cp --sparse=always "$T/gold.raw" "$T/gold.before"
qio "qemu-io on the overlay" "${a[@]}" -c 'write -P 0x61 11M 64k' -c 'read -P 0x61 11M 64k' \
    "$T/vm1.qcow2" >/dev/null
qemu-img convert "${a[@]}" -O raw "$T/vm1.qcow2" "$T/vm1.out" || fail "qemu-img convert of the overlay"
cp --sparse=always "$T/gold.before" "$T/vm1.want"
head -c 65536 /dev/zero | tr '\0' '\141' | dd of="$T/vm1.want" bs=64k seek=176 conv=notrunc status=none
assert_same_file "$T/vm1.out" "$T/vm1.want" "the json: overlay's disk (gold + its write)"
assert_same_file "$T/gold.raw" "$T/gold.before" "gold after a write through its overlay"
# Without the object the overlay cannot be opened: the credentials are
# not in its header.
if qemu-img info --backing-chain "$T/vm1.qcow2" >"$T/noobj.out" 2>&1; then
    fail "the json: overlay opened without its tls-creds object"
fi
log "json: overlay over x509 TLS: write in the overlay, gold unchanged"
if [ "$HAVE_QSYS" = 1 ]; then
    # qemu-system opens the same overlay given the same object (-object).
    read -ra a <<<"$x509_sys"
    mapfile -t c < <(q_io ide0-hd0 "read -P 0x61 11M 64k"; q_write ide0-hd0 13 0x62)
    qsys "$T/q.out" "${c[@]}" -- "${a[@]}" -drive "file=$T/vm1.qcow2,format=qcow2"
    check_qsys_out "$T/q.out" "-object tls-creds-x509 -drive file=vm1.qcow2"
    assert_same_file "$T/gold.raw" "$T/gold.before" "gold after a write through qemu-system's overlay"
    log "qemu-system -object tls-creds-x509 opens the json: overlay; its write stays in the overlay"
fi
stop_shoald

# ============================================================================
# libvirt XML: every ```xml block of the README is a valid <disk>, and its
# unix sockets are the one the README's group setup creates.
setup=$(grep -oE 'shoald -l unix:[^ ]+ --socket-group kvm --socket-mode 0660' "$README") ||
    fail "README.md has no shoald line with --socket-group kvm --socket-mode 0660"
want_sock=$(sed -E 's/^shoald -l unix:([^ ]+) .*/\1/' <<<"$setup")
assert_eq "$want_sock" "$R_SOCK" "the README's socket path"
awk -v dir="$T" '/^```xml$/ { n++; f = dir "/disk" n ".xml"; next }
    /^```$/ && f { f = ""; next } f { print > f }' "$README"
ls "$T"/disk*.xml >/dev/null 2>&1 || fail "no xml block in README.md"
tcp_src=$(grep -oE "<source protocol='nbd' name='gold'><host name='$R_HOST' port='$R_PORT'/></source>" "$README") ||
    fail "README.md lacks the TCP <source> line"
sed "/<source/,/<\/source>/c\\  $tcp_src" "$T/disk1.xml" >"$T/disk-tcp.xml"
grep -q "port='$R_PORT'" "$T/disk-tcp.xml" || fail "could not build the TCP disk"
for f in "$T"/disk*.xml; do
    while read -r s; do
        assert_eq "$s" "socket='$R_SOCK'" "socket of $(basename "$f")"
    done < <(grep -oE "socket='[^']*'" "$f")
done
# domain DISK-FILE OUT: a minimal domain around the disk.
domain() {
    {
        printf "<domain type='kvm'>\n  <name>t</name>\n  <memory unit='MiB'>64</memory>\n"
        printf "  <os><type arch='x86_64'>hvm</type></os>\n  <devices>\n"
        cat "$1"
        printf "  </devices>\n</domain>\n"
    } >"$2"
}
if command -v virt-xml-validate >/dev/null 2>&1; then
    n=0
    for f in "$T"/disk*.xml; do
        domain "$f" "$T/dom.xml"
        virt-xml-validate "$T/dom.xml" domain >"$T/v.out" 2>&1 ||
            fail "virt-xml-validate: $(basename "$f") from README.md: $(cat "$T/v.out") $(cat "$f")"
        n=$((n + 1))
    done
    # The validator does reject a bad disk.
    sed "s/protocol='nbd'/protocol='nbdx'/" "$T/disk1.xml" >"$T/bad.xml"
    domain "$T/bad.xml" "$T/dom.xml"
    if virt-xml-validate "$T/dom.xml" domain >/dev/null 2>&1; then
        fail "virt-xml-validate accepted protocol='nbdx'"
    fi
    log "libvirt XML: $n disks valid (virt-xml-validate), sockets are $R_SOCK"
else
    SKIPPED+=("virt-xml-validate is not installed (libvirt-clients)")
fi

if [ "${#SKIPPED[@]}" -gt 0 ]; then
    skip "the rest passed; not run: $(printf '%s; ' "${SKIPPED[@]}")"
fi
log PASS
