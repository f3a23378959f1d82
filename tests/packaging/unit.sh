#!/usr/bin/env bash
# shoald.service as meson configured it (BUILDDIR/dist/shoald.service):
# `systemd-analyze verify` reports nothing about it (ExecStart pointed at
# the shoald under test, since the unit's own path is not installed here,
# and --man=no since its man pages are not either; tests/packaging/deb.sh
# verifies the installed unit with both), it has the settings shoald
# relies on (the shoal user, the kvm group for the sockets, no
# capability; the groups it names are created by sysusers.d), and
# `systemd-analyze security` rates it 3.0 or better.
# shellcheck source-path=SCRIPTDIR source=../integration/lib.sh
source "$(dirname "$0")/../integration/lib.sh"
need systemd-analyze
: "${BUILDDIR:?BUILDDIR must name the build directory}"
UNIT="$BUILDDIR/dist/shoald.service"
[ -s "$UNIT" ] || fail "$UNIT was not generated"

grep -qE '^ExecStart=/[^ ]+/shoald -f -c /[^ ]*/shoal/shoald\.conf$' "$UNIT" ||
    fail "unexpected ExecStart: $(grep ExecStart= "$UNIT")"
for line in Type=notify NotifyAccess=main RuntimeDirectory=shoal StateDirectory=shoal \
    ConfigurationDirectory=shoal User=shoal Group=shoal SupplementaryGroups=kvm \
    CapabilityBoundingSet= Environment=XDG_RUNTIME_DIR=/run NoNewPrivileges=yes \
    ProtectSystem=strict ProtectHome=yes PrivateTmp=yes 'SystemCallFilter=@system-service' \
    SyslogLevel=err \
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' WantedBy=multi-user.target; do
    grep -qxF "$line" "$UNIT" || fail "$line is not in the unit"
done
# Not root, and nothing of root's: no capability kept or granted.
! grep -qE '^(AmbientCapabilities|CapabilityBoundingSet=.+|User=root|PrivateUsers=yes)' "$UNIT" ||
    fail "the unit gives shoald root's powers: $(grep -E '^(Ambient|Capab|User|PrivateUsers)' "$UNIT")"
# Every group the unit names is created by the sysusers.d file, unless the
# base system always has it.
# shellcheck disable=SC2013 # words: these settings are space-separated lists
for g in $(sed -nE 's/^(Group|SupplementaryGroups)=//p' "$UNIT"); do
    grep -qE "^[ug] $g " "$SRCDIR/dist/sysusers.d/shoal.conf" ||
        fail "group $g of the unit is not in dist/sysusers.d/shoal.conf"
done
# SIGHUP reloads the config (systemctl reload shoald).
grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$UNIT" || fail "no ExecReload= sending SIGHUP"

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
