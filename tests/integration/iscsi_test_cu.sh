#!/usr/bin/env bash
# libiscsi's conformance suite, iscsi-test-cu, against shoal's iSCSI target:
# every suite of the ALL family with destructive tests (-d) on a scratch
# volume, the volume given twice so the multipath tests run (two sessions,
# one LU). Suite by suite, each bounded in time, so one hung test costs its
# suite, not the run. Prints the pass/fail counts, the "[SKIPPED] ... not
# implemented" notes and the failing tests' names, and fails if a test fails
# (or a suite hangs) that is not in iscsi_known_failures.txt: that list holds
# the failures still to fix, so a NEW one fails CI, and one that passes again
# is reported so the list can shrink. As a reference, the same suites run
# against Debian's tgt on a plain file in the same run when tgtd is there
# (root, not in sanitizer builds; SHOAL_CU_TGT=0 skips it): its counts
# are printed, never judged.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
need iscsi-test-cu
KNOWN="$SRCDIR/tests/integration/iscsi_known_failures.txt"
SUITE_TIMEOUT=${SHOAL_CU_SUITE_TIMEOUT:-90}

truncate -s 128M "$T/scratch.img"
PORT=$(free_port)
start_shoald -m 256M --iscsi "127.0.0.1:$PORT" "scratch=$T/scratch.img"
URL="iscsi://127.0.0.1:$PORT/iqn.2026-12.org.shoal:scratch/0"

suites=$(iscsi-test-cu --list | grep -E '^ALL\.[A-Za-z0-9_]+$')
[ "$(wc -l <<<"$suites")" -gt 20 ] || fail "iscsi-test-cu --list: only $(wc -l <<<"$suites") suites"
# SHOAL_CU_SUITES, an extended regex of suite names (scripts/tsan sets it:
# the suites that drive the target's threads hardest, not every one): only
# those run, and the count of tests reported need only pass 10.
min_tests=100
if [ -n "${SHOAL_CU_SUITES:-}" ]; then
    suites=$(grep -E "^ALL\.(${SHOAL_CU_SUITES})\$" <<<"$suites" || true)
    [ -n "$suites" ] || fail "SHOAL_CU_SUITES '$SHOAL_CU_SUITES' names no suite of ALL"
    min_tests=10
fi

# run_suites LABEL URL: every suite against URL (twice: the multipath
# tests' second session); $T/LABEL/results.txt gets "PASS|FAIL SUITE.TEST"
# and "HUNG ALL.SUITE" lines, $T/LABEL/out.txt the tool's output.
run_suites() {
    local label=$1 url=$2 s d rc
    mkdir -p "$T/$label"
    : >"$T/$label/results.txt"
    : >"$T/$label/out.txt"
    log "$label: iscsi-test-cu -d, $(wc -l <<<"$suites") suites of ALL (at most ${SUITE_TIMEOUT}s each)"
    for s in $suites; do
        d="$T/$label/$s"
        mkdir -p "$d"
        rc=0
        (cd "$d" && timeout "$SUITE_TIMEOUT" iscsi-test-cu -d -x -t "$s" "$url" "$url" >out.txt 2>&1) || rc=$?
        cat "$d/out.txt" >>"$T/$label/out.txt"
        if [ "$rc" -eq 124 ] || [ ! -s "$d/CUnitAutomated-Results.xml" ]; then
            log "$label: $s gave no result in ${SUITE_TIMEOUT}s (exit $rc)"
            echo "HUNG $s" >>"$T/$label/results.txt"
        fi
        [ -s "$d/CUnitAutomated-Results.xml" ] || continue
        # SUITE.TEST and its outcome (a failure record per failed
        # assertion: a test fails once).
        "$PY" - "$d/CUnitAutomated-Results.xml" >>"$T/$label/results.txt" <<'PYEOF'
import sys
import xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except ET.ParseError:
    sys.exit(0)  # cut short by the timeout: the suite is HUNG
seen = {}
for suite in root.iter():
    if not suite.tag.startswith("CUNIT_RUN_SUITE_"):
        continue
    name = suite.findtext("SUITE_NAME", "").strip()
    for rec in suite.iter("CUNIT_RUN_TEST_RECORD"):
        for res in rec:
            test = f"{name}.{res.findtext('TEST_NAME', '').strip()}"
            seen[test] = seen.get(test, True) and res.tag == "CUNIT_RUN_TEST_SUCCESS"
for test, ok in seen.items():
    print("PASS" if ok else "FAIL", test)
PYEOF
    done
}

# summary LABEL: counts, skip notes and failures of a run.
summary() {
    local r="$T/$1/results.txt" o="$T/$1/out.txt" total passed failed hung skipped
    total=$(grep -c '^\(PASS\|FAIL\) ' "$r" || true)
    passed=$(grep -c '^PASS ' "$r" || true)
    failed=$(grep -c '^FAIL ' "$r" || true)
    hung=$(grep -c '^HUNG ' "$r" || true)
    skipped=$(grep -c '\[SKIPPED\]' "$o" || true)
    [ "$total" -gt "$min_tests" ] || fail "$1: only $total tests reported: $(tail -5 "$o")"
    log "$1: iscsi-test-cu: $total tests, $passed passed, $failed failed, $hung suites hung; $skipped [SKIPPED] notes:"
    grep -o '\[SKIPPED\].*' "$o" | sort | uniq -c | sort -rn | sed 's/^/    /' || true
    grep -E '^(FAIL|HUNG) ' "$r" | sed -E 's/^FAIL /    failed: /; s/^HUNG /    hung:   /' || true
}

run_suites shoal "$URL"
kill -0 "$SHOALD_PID" 2>/dev/null || fail "shoald died during iscsi-test-cu"

# The reference: Debian's tgt on a plain file, the same suites, in the same
# run (informational: its failures do not fail this test).
# Once per CI run is enough: not under the sanitizer builds, which test shoald.
sanitized=0
ldd "$SHOALD" 2>/dev/null | grep -qE 'lib(a|t|ub)san' && sanitized=1
if command -v tgtd >/dev/null && command -v tgtadm >/dev/null && [ "$(id -u)" -eq 0 ] &&
    [ "${SHOAL_CU_TGT:-1}" = 1 ] && [ "$sanitized" = 0 ]; then
    truncate -s 128M "$T/tgt.img"
    TPORT=$(free_port)
    tgtd_control "$TPORT"
    tgtd -f -C "$CTL" --iscsi "portal=127.0.0.1:$TPORT" >>"$T/tgtd.log" 2>&1 &
    TGTD_PID=$!
    if wait_for 10 tgtctl --op show --mode target &&
        tgtctl --op new --mode target --tid 1 -T iqn.2026-12.org.shoal.test:tgt &&
        tgtctl --op new --mode logicalunit --tid 1 --lun 1 -b "$T/tgt.img" &&
        tgtctl --op bind --mode target --tid 1 -I ALL; then
        run_suites tgt "iscsi://127.0.0.1:$TPORT/iqn.2026-12.org.shoal.test:tgt/1"
        summary tgt
    else
        log "tgt: tgtd did not start; no reference run"
    fi
    stop_tgtd
fi
summary shoal

# Known failures: SUITE.TEST names, or ALL.SUITE for a suite that hangs.
known=$(grep -vE '^[[:space:]]*(#|$)' "$KNOWN" 2>/dev/null | sort -u || true)
bad=$(grep -E '^(FAIL|HUNG) ' "$T/shoal/results.txt" | cut -d' ' -f2 | sort -u || true)
new=$(comm -23 <(printf '%s\n' "$bad" | sed '/^$/d') <(printf '%s\n' "$known" | sed '/^$/d'))
fixed=$(comm -12 <(grep '^PASS ' "$T/shoal/results.txt" | cut -d' ' -f2 | sort -u) <(printf '%s\n' "$known" | sed '/^$/d') || true)
[ -z "$fixed" ] || log "passing now, remove from $(basename "$KNOWN"): $(tr '\n' ' ' <<<"$fixed")"
[ -z "$new" ] || fail "new failures (not in $(basename "$KNOWN")): $(tr '\n' ' ' <<<"$new")"
log "no failure outside the known list ($(grep -c . <<<"$known" || true) known)"
