#!/usr/bin/env bash
# Real-browser test of the dashboard (meson suite 'browser').
#
# Installs the test's node dependency (playwright-core, pinned by
# package-lock.json; it drives Debian's chromium and downloads no browser)
# into tests/browser/node_modules when missing or out of date, then runs
# TEST (default dashboard.test.mjs; cluster.test.mjs: the Cluster panel).
# Exits 77 (skip) only when node, npm or chromium is not installed.
#
#   SHOALD=build/src/shoald tests/browser/run.sh [TEST]
#
# Environment: SHOALD (required), SHOAL_BROWSER_OUT (screenshots; meson sets
# BUILDDIR/meson-logs/browser), CHROMIUM (default /usr/bin/chromium).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

skip() {
    echo "[browser] SKIP: $*"
    exit 77
}
command -v node >/dev/null 2>&1 || skip "node is not installed (apt-get install nodejs)"
command -v npm >/dev/null 2>&1 || skip "npm is not installed (apt-get install npm)"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || skip "${CHROMIUM:-/usr/bin/chromium} is not installed (apt-get install chromium)"
: "${SHOALD:?SHOALD must point at the shoald binary}"

# playwright-core would otherwise look for (and offer to download) its own
# browser builds.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

stamp="$here/node_modules/.shoal-lock.sha256"
want=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[browser] installing node dependencies (npm ci)"
    # Two runs at once must not both rewrite node_modules.
    exec 9>"${TMPDIR:-/tmp}/shoal-browser-npm.lock"
    flock 9
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
        echo "$want" >"$stamp"
    fi
    flock -u 9
fi

exec node "$here/${1:-dashboard.test.mjs}"
