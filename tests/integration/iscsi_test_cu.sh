#!/usr/bin/env bash
# libiscsi's conformance suite, iscsi-test-cu, against shoal's iSCSI target:
# every suite of the ALL family with destructive tests (-d) on a scratch
# volume, the volume given twice so the multipath tests run (two sessions,
# one LU). Suite by suite, each bounded in time, so one hung test costs its
# suite, not the run. Prints the pass/fail counts, the "[SKIPPED] ... not
# implemented" notes and the failing tests' names, and fails if a test fails
# (or a suite hangs) that is not in iscsi_known_failures.txt: that list holds
# the failures still to fix, so a NEW one fails CI, and one that passes again
# is reported so the list can shrink.
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
log "iscsi-test-cu -d, $(wc -l <<<"$suites") suites of ALL (at most ${SUITE_TIMEOUT}s each)"
: >"$T/results.txt"
: >"$T/out.txt"
for s in $suites; do
    d="$T/cu/$s"
    mkdir -p "$d"
    rc=0
    (cd "$d" && timeout "$SUITE_TIMEOUT" iscsi-test-cu -d -x -t "$s" "$URL" "$URL" >out.txt 2>&1) || rc=$?
    cat "$d/out.txt" >>"$T/out.txt"
    kill -0 "$SHOALD_PID" 2>/dev/null || fail "shoald died during $s"
    if [ "$rc" -eq 124 ] || [ ! -s "$d/CUnitAutomated-Results.xml" ]; then
        # Hung (or no results): every test of the suite that did not report counts as failed.
        log "$s: no result in ${SUITE_TIMEOUT}s (exit $rc)"
        echo "HUNG $s" >>"$T/results.txt"
    fi
    [ -s "$d/CUnitAutomated-Results.xml" ] || continue
    # SUITE.TEST and its outcome (a failure record per failed assertion:
    # a test fails once).
    "$PY" - "$d/CUnitAutomated-Results.xml" >>"$T/results.txt" <<'PYEOF'
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

total=$(grep -c '^\(PASS\|FAIL\) ' "$T/results.txt" || true)
passed=$(grep -c '^PASS ' "$T/results.txt" || true)
failed=$(grep -c '^FAIL ' "$T/results.txt" || true)
hung=$(grep -c '^HUNG ' "$T/results.txt" || true)
skipped=$(grep -c '\[SKIPPED\]' "$T/out.txt" || true)
[ "$total" -gt 100 ] || fail "only $total tests reported: $(tail -5 "$T/out.txt")"
log "iscsi-test-cu: $total tests, $passed passed, $failed failed, $hung suites hung; $skipped [SKIPPED] notes:"
grep -o '\[SKIPPED\].*' "$T/out.txt" | sort | uniq -c | sort -rn | sed 's/^/    /' || true
grep -E '^(FAIL|HUNG) ' "$T/results.txt" | sed -E 's/^FAIL /    failed: /; s/^HUNG /    hung:   /' || true

# Known failures: SUITE.TEST names, or ALL.SUITE for a suite that hangs.
known=$(grep -vE '^[[:space:]]*(#|$)' "$KNOWN" 2>/dev/null | sort -u || true)
bad=$(grep -E '^(FAIL|HUNG) ' "$T/results.txt" | cut -d' ' -f2 | sort -u)
new=$(comm -23 <(printf '%s\n' "$bad" | sed '/^$/d') <(printf '%s\n' "$known" | sed '/^$/d'))
fixed=$(comm -12 <(grep '^PASS ' "$T/results.txt" | cut -d' ' -f2 | sort -u) <(printf '%s\n' "$known" | sed '/^$/d'))
[ -z "$fixed" ] || log "passing now, remove from $(basename "$KNOWN"): $(tr '\n' ' ' <<<"$fixed")"
[ -z "$new" ] || fail "new failures (not in $(basename "$KNOWN")): $(tr '\n' ' ' <<<"$new")"
log "no failure outside the known list ($(grep -c . <<<"$known" || true) known)"
