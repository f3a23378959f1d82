#!/usr/bin/env bash
# shoald.service as meson configured it (BUILDDIR/dist/shoald.service):
# `systemd-analyze verify` reports nothing about it (ExecStart pointed at
# the shoald under test, since the unit's own path is not installed here,
# and --man=no since its man pages are not either; tests/packaging/deb.sh
# verifies the installed unit with both), it has the settings shoald
# relies on, and `systemd-analyze security` rates it 3.0 or better.
# shellcheck source-path=SCRIPTDIR source=../integration/lib.sh
source "$(dirname "$0")/../integration/lib.sh"
need systemd-analyze
: "${BUILDDIR:?BUILDDIR must name the build directory}"
UNIT="$BUILDDIR/dist/shoald.service"
[ -s "$UNIT" ] || fail "$UNIT was not generated"

grep -qE '^ExecStart=/[^ ]+/shoald -f -c /[^ ]*/shoal/shoald\.conf$' "$UNIT" ||
    fail "unexpected ExecStart: $(grep ExecStart= "$UNIT")"
for line in Type=notify NotifyAccess=main RuntimeDirectory=shoal StateDirectory=shoal \
    ConfigurationDirectory=shoal CapabilityBoundingSet=CAP_DAC_OVERRIDE NoNewPrivileges=yes \
    ProtectSystem=strict ProtectHome=yes PrivateTmp=yes 'SystemCallFilter=@system-service' \
    SyslogLevel=err \
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' WantedBy=multi-user.target; do
    grep -qxF "$line" "$UNIT" || fail "$line is not in the unit"
done
# SIGHUP does not reload yet (shoald logs "SIGHUP ignored").
! grep -q '^ExecReload=' "$UNIT" || fail "ExecReload= but shoald has no reload"

mkdir -p "$T/units"
sed -E "s|^ExecStart=[^ ]+/shoald |ExecStart=$SHOALD |" "$UNIT" >"$T/units/shoald.service"
rc=0
out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$T/units/shoald.service" 2>&1) || rc=$?
ours=$(grep -i 'shoald' <<<"$out" || true)
[ -z "$ours" ] || fail "systemd-analyze verify: $ours"
[ "$rc" -eq 0 ] || fail "systemd-analyze verify exited $rc: $out"
[ -z "$out" ] || log "verify said (about other units): $(head -3 <<<"$out")"

# A path in ExecStart that does not exist is caught (the check can fail).
sed -E "s|^ExecStart=[^ ]+/shoald |ExecStart=$T/nowhere/shoald |" "$UNIT" >"$T/units/shoald.service"
systemd-analyze verify --man=no "$T/units/shoald.service" >/dev/null 2>&1 &&
    fail "verify passed a unit whose ExecStart does not exist"

sed -E "s|^ExecStart=[^ ]+/shoald |ExecStart=$SHOALD |" "$UNIT" >"$T/units/shoald.service"
sec=$(systemd-analyze security --offline=yes --no-pager "$T/units/shoald.service" 2>&1) ||
    fail "systemd-analyze security failed: $(tail -3 <<<"$sec")"
level=$(sed -nE 's/.*Overall exposure level for shoald\.service: ([0-9.]+).*/\1/p' <<<"$sec")
[ -n "$level" ] || fail "no exposure level in: $(tail -3 <<<"$sec")"
assert_num "$level" '<=' 3.0 "systemd-analyze security exposure of shoald.service"
log "verify clean; exposure $level"
log PASS
