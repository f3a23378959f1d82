// Real-browser test of shoald's dashboard.
//
// Starts shoald (token required for changes) on images made here, drives
// steady I/O with fio's nbd engine, opens the dashboard in Debian's
// chromium through playwright-core, and checks that:
//   - the page loads without a console error, shows every section, and its
//     charts and numbers update every second;
//   - the numbers match the API (exactly for sizes and capacity, within a
//     tolerance for rates and ratios that move between two samples);
//   - the cache sizing panel (sizing.mjs): after a burst of reads, the
//     miss-ratio curve, its sentence and each volume's "2x RAM" figure are
//     the API's, polled every 10 s, and follow a resize at once;
//   - without the token the back ends are hidden (the page says so and no
//     backing path reaches it); once given, the token goes with every
//     request and the paths show;
//   - the controls work and the API state follows: the first change asks
//     for the token (401), then disable/enable a volume with its buttons,
//     invalidate, prefetch with progress, cache resize, add a volume, an
//     API error shown in the page, remove with the force confirmation;
// and saves screenshots (light and dark) into the output directory.
//
// Environment: SHOALD (binary), SHOAL_BROWSER_OUT (screenshots; default
// tests/out/browser), CHROMIUM (default /usr/bin/chromium).
// Exit status: 0 pass, 1 fail, 77 skip (a tool is missing).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkSizing, checkSizingAfterResize } from './sizing.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SHOALD = process.env.SHOALD || path.join(HERE, '../../build/src/shoald');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT = process.env.SHOAL_BROWSER_OUT || path.join(HERE, '../out/browser');
const TOKEN = 'browser-test-token-0123';
const MiB = 1 << 20;

const log = (msg) => console.log(`[browser] ${msg}`);
class Failure extends Error {}
function check(cond, msg) {
  if (!cond) throw new Failure(msg);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function skip(msg) {
  console.log(`[browser] SKIP: ${msg}`);
  process.exit(77);
}

function which(tool) {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

if (!fs.existsSync(CHROMIUM)) skip(`${CHROMIUM} is not installed (apt-get install chromium)`);
if (!which('fio')) skip('fio is not installed');
if (!fs.existsSync(SHOALD)) {
  console.error(`[browser] SHOALD=${SHOALD} does not exist`);
  process.exit(1);
}
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  console.error(`[browser] playwright-core is not installed (run tests/browser/run.sh): ${e.message}`);
  process.exit(1);
}

const TMP = fs.mkdtempSync(path.join(process.env.SHOAL_IT_TMP || os.tmpdir(), 'shoal-browser.'));
const children = [];
let context = null;

async function cleanup() {
  if (context) await context.close().catch(() => {});
  for (const c of children.reverse()) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  }
  await Promise.all(
    children.map((c) =>
      c.exitCode !== null || c.signalCode !== null
        ? null
        : Promise.race([new Promise((r) => c.once('exit', r)), sleep(10000).then(() => c.kill('SIGKILL'))]),
    ),
  );
}

function randomFile(file, size, seed) {
  const buf = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf.writeUInt32LE(x >>> 0, i);
  }
  fs.writeFileSync(file, buf);
}

/* shoald in the foreground with an ephemeral API port, read from its log. */
async function startShoald(args) {
  const logPath = path.join(TMP, 'shoald.log');
  const logFd = fs.openSync(logPath, 'a');
  const sock = path.join(TMP, 'nbd.sock');
  const p = spawn(SHOALD, ['-f', '--state-dir', 'off', '-l', `unix:${sock}`, '--http', '127.0.0.1:0', ...args], {
    stdio: ['ignore', logFd, logFd],
  });
  children.push(p);
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    check(p.exitCode === null, `shoald exited early:\n${fs.readFileSync(logPath, 'utf8')}`);
    const m = fs.readFileSync(logPath, 'utf8').match(/management API on http:\/\/127\.0\.0\.1:(\d+)\//);
    if (m && fs.existsSync(sock)) return { proc: p, port: Number(m[1]), sock, logPath };
    await sleep(50);
  }
  throw new Failure('shoald did not become ready');
}

let BASE = '';
async function api(method, p, body, token) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(BASE + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}
const stats = async () => (await api('GET', '/api/v1/stats')).json;
const volume = async (name) => (await api('GET', `/api/v1/volumes/${name}`)).json;

async function waitFor(fn, ms, what) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(100);
  }
  throw new Failure(`timed out after ${ms} ms waiting for ${what}`);
}

function near(a, b, rel, abs, what) {
  check(
    Number.isFinite(a) && Number.isFinite(b) && Math.abs(a - b) <= Math.max(Math.abs(b) * rel, abs),
    `${what}: page shows ${a}, API says ${b}`,
  );
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const gold = path.join(TMP, 'gold.img');
  randomFile(gold, 32 * MiB, 42);
  fs.copyFileSync(gold, path.join(TMP, 'clone.img'));
  randomFile(path.join(TMP, 'scratch.img'), 16 * MiB, 7);
  randomFile(path.join(TMP, 'extra.img'), 8 * MiB, 9);
  fs.writeFileSync(path.join(TMP, 'token'), `${TOKEN}\n`, { mode: 0o600 });

  const d = await startShoald([
    '-m', '96M', '--http-token-file', path.join(TMP, 'token'),
    `gold=${gold}`, `clone=${path.join(TMP, 'clone.img')}`, `scratch=${path.join(TMP, 'scratch.img')}`,
  ]);
  BASE = `http://127.0.0.1:${d.port}`;
  log(`shoald up, API on ${BASE}`);

  // Steady load: rate-limited so rates can be compared with the API.
  const fio = (name, vol, extra) => {
    const p = spawn('fio', [
      `--name=${name}`, '--ioengine=nbd', `--uri=nbd+unix:///${vol}?socket=${d.sock}`,
      '--time_based', '--runtime=300', '--norandommap', ...extra,
    ], { stdio: ['ignore', 'ignore', fs.openSync(path.join(TMP, `fio-${name}.log`), 'a')] });
    children.push(p);
    return p;
  };
  fio('gold', 'gold', ['--rw=randrw', '--rwmixread=80', '--bs=4k', '--iodepth=4', '--rate_iops=400,100']);
  fio('clone', 'clone', ['--rw=randread', '--bs=16k', '--iodepth=2', '--rate_iops=150']);
  await waitFor(async () => (await stats()).volumes.filter((v) => v.read_ops > 100).length === 2, 20000,
    'fio to start reading');
  log('fio load running on gold and clone');

  const profile = path.join(TMP, 'profile');
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1440, height: 1000 },
    colorScheme: 'light',
  });
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  // The 401 of the first change and the 409s provoked below are expected;
  // the browser logs any error status of a fetch on its console.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of (401|409)/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  // Nothing but the daemon: no CDN, no font service.
  page.on('request', (r) => {
    if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) problems.push(`foreign request: ${r.url()}`);
  });

  await page.goto(`${BASE}/`);
  await waitFor(async () => (await page.textContent('#conn-text')) === 'live', 10000, 'the page to go live');
  check((await page.title()).includes('shoal'), 'page title');
  for (const sel of ['#kpi-hit', '#kpi-offload', '#kpi-read', '#kpi-write', '#kpi-dedup', '#kpi-effective',
    '#lat-read_hit', '#lat-read_miss', '#lat-write', '#chart-throughput canvas', '#chart-iops canvas',
    '#chart-ratio canvas', '#chart-latency canvas', '#chart-cache canvas', '#chart-churn canvas',
    '.cache-panel', '#mrc-panel', '#mrc-chart svg', '#volumes', '#add-form', '#resize-form']) {
    check(await page.isVisible(sel), `${sel} is not visible`);
  }
  const rows = await page.$$eval('#volumes-body tr', (trs) => trs.map((t) => t.dataset.volume));
  check(JSON.stringify(rows) === JSON.stringify(['gold', 'clone', 'scratch']), `volume rows: ${rows}`);
  // No memcached tier here: no Cluster panel, no Owner column.
  check(!(await page.isVisible('#cluster-panel')), 'the Cluster panel shows without a memcached tier');
  check(!(await page.isVisible('#th-owner')), 'the Owner column shows without a cluster');
  log('page loaded: every section visible, 3 volume rows');

  // No token yet: back ends hidden, and the page says why.
  check(await page.isVisible('#backends-hidden'), 'no notice that back ends are hidden');
  check((await page.textContent(`tr[data-volume="gold"] .backend`)) === 'hidden', 'gold back end not hidden');
  check(!(await page.content()).includes(TMP), 'a backing path reached the page without the token');

  // ---- the charts and numbers update ----
  await sleep(4000);
  const chartState = () => page.$$eval('canvas', (cs) => cs.map((c) => ({
    id: c.parentElement.id, points: Number(c.dataset.points), last: JSON.parse(c.dataset.last || '{}'),
  })));
  const pixels = async () => (await page.locator('#chart-iops canvas').screenshot()).toString('base64');
  const c1 = await chartState();
  const px1 = await pixels();
  await sleep(3500);
  const c2 = await chartState();
  const px2 = await pixels();
  for (let i = 0; i < c1.length; i++) {
    check(c2[i].points >= c1[i].points + 2, `${c2[i].id}: ${c1[i].points} -> ${c2[i].points} points in 3.5 s`);
    check(c2[i].points >= 5, `${c2[i].id}: only ${c2[i].points} points`);
  }
  check(px1 !== px2, 'the IOPS chart did not change on screen in 3.5 s');
  const iops = c2.find((c) => c.id === 'chart-iops').last;
  check(iops.readIops > 0 && iops.writeIops > 0, `IOPS chart's last values: ${JSON.stringify(iops)}`);
  const lat = c2.find((c) => c.id === 'chart-latency').last;
  check(lat.read_hit_p50 > 0 || lat.read_miss_p50 > 0, `latency chart's last values: ${JSON.stringify(lat)}`);
  log(`charts update (${c1[0].points} -> ${c2[0].points} points; pixels changed)`);

  // ---- the numbers match the API ----
  const num = async (sel) => Number(await page.getAttribute(sel, 'data-value'));
  // Rates. The page shows the last interval (noisy when the machine is
  // busy); what it displays must be its newest point, and its points
  // averaged over a few seconds must match the API's rate over the same
  // seconds.
  const pageNow = () => page.evaluate(() => performance.now());
  const tp0 = await pageNow();
  const s0 = await stats();
  const t0 = Date.now();
  await sleep(4000);
  const s1 = await stats();
  const dt = (Date.now() - t0) / 1000;
  const tp1 = await pageNow();
  await sleep(1500);
  const avg = await page.evaluate(([a, b]) => {
    const pts = window.shoal.state.points.filter((p) => !p.gap && p.t > a + 300 && p.t <= b + 1200);
    const w = (f) => pts.reduce((acc, p) => acc + f(p) * p.dt, 0) / pts.reduce((acc, p) => acc + p.dt, 0);
    return {
      n: pts.length,
      readIops: w((p) => p.all.readIops),
      writeIops: w((p) => p.all.writeIops),
      readBps: w((p) => p.all.readBps),
      cloneRead: w((p) => (p.vols.clone ? p.vols.clone.readIops : 0)),
    };
  }, [tp0, tp1]);
  check(avg.n >= 3, `only ${avg.n} page samples in ${dt.toFixed(1)} s`);
  const total = (s, k) => s.volumes.reduce((a, v) => a + v[k], 0);
  const apiRead = (total(s1, 'read_ops') - total(s0, 'read_ops')) / dt;
  const apiWrite = (total(s1, 'write_ops') - total(s0, 'write_ops')) / dt;
  const apiReadBps = (total(s1, 'read_bytes') - total(s0, 'read_bytes')) / dt;
  const cloneApi = (s1.volumes.find((v) => v.name === 'clone').read_ops -
    s0.volumes.find((v) => v.name === 'clone').read_ops) / dt;
  near(avg.readIops, apiRead, 0.25, 20, 'read IOPS');
  near(avg.writeIops, apiWrite, 0.25, 10, 'write IOPS');
  near(avg.readBps, apiReadBps, 0.25, 128 * 1024, 'read bytes/s');
  near(avg.cloneRead, cloneApi, 0.25, 10, 'clone read IOPS');
  // What is displayed is the newest point.
  const shown = await page.evaluate(() => {
    const p = window.shoal.state.points[window.shoal.state.points.length - 1];
    const v = (sel) => Number(document.querySelector(sel).dataset.value);
    return {
      point: [p.all.readIops, p.all.writeIops, p.all.readBps, p.vols.clone.readIops],
      page: [v('#v-read-iops'), v('#v-write-iops'), v('#v-read-mbs'),
        v('tr[data-volume="clone"] td[data-col="read"] div')],
    };
  });
  check(JSON.stringify(shown.point) === JSON.stringify(shown.page),
    `displayed rates ${shown.page} are not the newest interval ${shown.point}`);
  // Cumulative figures.
  const s = await stats();
  const rb = total(s, 'read_bytes');
  near(await num('#v-hit'), total(s, 'read_hit_bytes') / rb, 0, 0.02, 'overall hit ratio');
  near(await num('#v-offload'), 1 - total(s, 'backend_read_bytes') / rb, 0, 0.02, 'overall offload');
  near(await num('#v-dedup'), s.cache.dedup_ratio, 0.05, 0.02, 'dedup ratio');
  near(await num('#v-used'), s.cache.used_bytes, 0.05, 64 * 1024, 'RAM used');
  near(await num('#v-logical'), s.cache.logical_bytes, 0.05, 64 * 1024, 'effective cache size');
  check((await num('#c-capacity')) === s.cache.capacity_bytes, 'capacity');
  near(await num('#c-meta'), s.cache.metadata_bytes, 0.05, 4096, 'metadata bytes');
  near(await num('#c-meta-block'), s.cache.metadata_bytes_per_block, 0.05, 1, 'metadata per block');
  near(await num('#c-evictions'), s.cache.evictions, 0.1, 200, 'evictions');
  for (const v of s.volumes) {
    const row = `tr[data-volume="${v.name}"]`;
    check((await num(`${row} td[data-col="size"]`)) === v.size_bytes, `${v.name}: size`);
    check((await num(`${row} td[data-col="conns"]`)) === v.connections, `${v.name}: connections`);
    check((await num(`${row} td[data-col="mode"]`)) === (v.readonly ? 1 : 0), `${v.name}: mode`);
    check((await page.textContent(`${row} .badge`)) === v.state, `${v.name}: state`);
    check(v.backend_hidden === true && (await page.textContent(`${row} .backend`)) === 'hidden',
      `${v.name}: back end (the test has no token yet)`);
    if (v.read_bytes) near(await num(`${row} td[data-col="hit"]`), v.hit_ratio, 0, 0.02, `${v.name}: hit ratio`);
  }
  // One volume in scope: its own latency figures.
  await page.selectOption('#scope-select', 'gold');
  await sleep(1500);
  check((await page.textContent('#scope-title')) === 'Volume gold', 'scope title');
  const g = (await stats()).volumes.find((v) => v.name === 'gold');
  near(await num('#v-hit'), g.hit_ratio, 0, 0.02, 'gold hit ratio in scope');
  near(await num('#v-lat-read_hit-p50'), g.latency_us.read_hit.p50, 0.25, 2, 'gold read hit p50');
  near(await num('#v-lat-write-p99'), g.latency_us.write.p99, 0.5, 20, 'gold write p99');
  await page.selectOption('#scope-select', '');
  log(`numbers match the API (read ${apiRead.toFixed(0)} IOPS, write ${apiWrite.toFixed(0)} IOPS, ` +
    `dedup ${s.cache.dedup_ratio.toFixed(2)})`);

  // ---- cache sizing: the miss-ratio curve ----
  const sizing = { page, check, near, waitFor, api, sleep, log, sock: d.sock, tmp: TMP, out: OUT, children };
  await checkSizing(sizing);

  // ---- controls ----
  const row = (name) => `tr[data-volume="${name}"]`;
  const click = (sel) => page.click(sel);

  // The first change meets the token requirement: the page asks for it.
  await click(`${row('gold')} button[data-action="toggle"]`);
  await page.waitForSelector('#dlg-token[open]', { timeout: 5000 });
  await page.fill('#token-input', TOKEN);
  await click('#token-save');
  await waitFor(async () => (await volume('gold')).state === 'disabled', 5000, 'gold disabled via the page');
  await waitFor(async () => (await page.getAttribute(row('gold'), 'data-state')) === 'disabled', 5000,
    'the page to show gold disabled');
  check((await page.textContent(`${row('gold')} button[data-action="toggle"]`)) === 'Enable', 'toggle label');
  check(await page.evaluate(() => sessionStorage.getItem('shoal.token')) === TOKEN, 'token kept in sessionStorage');
  // With the token every request carries it (GETs too), and the paths show.
  const polled = await page.waitForRequest((r) => r.url().endsWith('/api/v1/stats'), { timeout: 5000 });
  check(polled.headers().authorization === `Bearer ${TOKEN}`, 'the stats poll does not carry the token');
  await waitFor(async () => ((await page.textContent(`${row('gold')} .backend`)) || '').includes('gold.img'), 5000,
    'the page to show the back ends once the token is given');
  check(!(await page.isVisible('#backends-hidden')), 'the hidden notice stays with the token');
  for (const v of (await api('GET', '/api/v1/stats', undefined, TOKEN)).json.volumes) {
    check((await page.getAttribute(`${row(v.name)} .backend`, 'title')) === v.backend, `${v.name}: back end`);
  }
  // Pass-through while disabled: no new hits on gold.
  const h0 = (await stats()).volumes.find((v) => v.name === 'gold');
  await sleep(1500);
  const h1 = (await stats()).volumes.find((v) => v.name === 'gold');
  check(h1.read_ops > h0.read_ops && h1.read_hit_bytes === h0.read_hit_bytes && h1.cached_blocks === 0,
    'gold is not in pass-through while disabled');
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(OUT, 'dashboard-disabled.png'), fullPage: true });
  await click(`${row('gold')} button[data-action="toggle"]`);
  await waitFor(async () => (await volume('gold')).state === 'enabled', 5000, 'gold enabled via the page');
  await waitFor(async () => (await page.getAttribute(row('gold'), 'data-state')) === 'enabled', 5000,
    'the page to show gold enabled');
  check(!(await page.isVisible('#dlg-token[open]')), 'the token was asked for twice');
  log('disable/enable from the page: token asked once, API state followed both ways');

  // Invalidate (whole volume): the volume's cached blocks drop.
  await waitFor(async () => (await volume('clone')).connections >= 1, 2000, 'clone connected');
  const before = (await stats()).volumes.find((v) => v.name === 'scratch');
  check(before.cached_blocks === 0, 'scratch has cached blocks before its prefetch');
  // Prefetch scratch with progress, then invalidate it.
  await click(`${row('scratch')} button[data-action="prefetch"]`);
  await page.waitForSelector('#dlg-action[open]');
  await click('#action-ok');
  await waitFor(async () => {
    const st = (await api('GET', '/api/v1/volumes/scratch/prefetch')).json;
    return !st.running && st.done_bytes === 16 * MiB;
  }, 15000, 'the prefetch of scratch to finish');
  await waitFor(async () => (await stats()).volumes.find((v) => v.name === 'scratch').cached_blocks === 4096,
    5000, 'scratch fully cached');
  await waitFor(async () => (await page.getAttribute(row('scratch'), 'data-prefetch')) === 'idle', 5000,
    'the page to show the prefetch done');
  await click(`${row('scratch')} button[data-action="invalidate"]`);
  await page.waitForSelector('#dlg-action[open]');
  await page.fill('#action-offset', '1M');
  await page.fill('#action-length', '2M');
  await click('#action-ok');
  await waitFor(async () => (await stats()).volumes.find((v) => v.name === 'scratch').cached_blocks === 4096 - 512,
    5000, 'scratch to lose the 2 MiB invalidated from the page');
  log('prefetch and invalidate (range) from the page OK');

  // Cache resize.
  await page.fill('#resize-size', '40M');
  await click('#resize-form button');
  await waitFor(async () => (await stats()).cache.capacity_bytes === 40 * MiB, 5000, 'capacity 40M');
  await waitFor(async () => (await num('#c-capacity')) === 40 * MiB, 5000, 'the page to show 40M');
  log('cache resize from the page OK');
  await checkSizingAfterResize(sizing, 40 * MiB);

  // Add a volume; an API error is shown in the page.
  await page.fill('#add-name', 'extra');
  await page.fill('#add-backing', path.join(TMP, 'extra.img'));
  await page.check('#add-readonly');
  await click('#add-form button');
  const extra = await waitFor(async () => {
    const r = await api('GET', '/api/v1/volumes/extra');
    return r.status === 200 && r.json;
  }, 5000, 'extra to be added');
  check(extra.readonly === true && extra.size_bytes === 8 * MiB, `extra: ${JSON.stringify(extra)}`);
  await page.waitForSelector(row('extra'), { timeout: 5000 });
  await page.fill('#add-name', 'extra');
  await page.fill('#add-backing', path.join(TMP, 'extra.img'));
  await click('#add-form button');
  await page.waitForSelector('.msg.error', { timeout: 5000 });
  const err = await page.textContent('.msg.error');
  check(err.includes('409') && err.includes('already exists'), `error shown: ${err}`);
  log('add volume from the page OK; a 409 is shown in the page');

  // Remove: refused while a client is connected, then forced.
  await click(`${row('clone')} button[data-action="remove"]`);
  await page.waitForSelector('#dlg-action[open]');
  await click('#action-ok');
  await waitFor(async () => (await page.textContent('#action-title')).startsWith('Force'), 5000,
    'the force confirmation');
  check((await volume('clone')).name === 'clone', 'clone removed before the force confirmation');
  await click('#action-ok');
  await waitFor(async () => (await api('GET', '/api/v1/volumes/clone')).status === 404, 5000, 'clone removed');
  await waitFor(async () => !(await page.$(row('clone'))), 5000, 'the clone row to go');
  log('remove with force confirmation from the page OK');

  // ---- screenshots ----
  await sleep(3000);
  await page.evaluate(() => {
    // The messages of the steps above would cover the table.
    for (const m of document.querySelectorAll('.msg')) m.remove();
    window.scrollTo(0, 0);
    document.querySelector('.table-wrap').scrollLeft = 0;
  });
  const wrap = await page.$eval('.table-wrap', (w) => [w.scrollWidth, w.clientWidth]);
  check(wrap[0] <= wrap[1], `the volumes table does not fit 1440 px (${wrap[0]} > ${wrap[1]})`);
  await page.screenshot({ path: path.join(OUT, 'dashboard.png'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'dark' });
  await sleep(1500);
  await page.screenshot({ path: path.join(OUT, 'dashboard-dark.png'), fullPage: true });
  log(`screenshots in ${OUT}`);

  check(problems.length === 0, `browser problems:\n  ${problems.join('\n  ')}`);
  check(d.proc.exitCode === null, 'shoald died');

  // A clean stop: fio first, then shoald must exit 0 on SIGTERM with no
  // sanitizer report (the ASan build runs this test too).
  await context.close();
  context = null;
  for (const c of children) if (c !== d.proc && c.exitCode === null) c.kill('SIGTERM');
  const exited = new Promise((r) => d.proc.once('exit', (code, sig) => r({ code, sig })));
  d.proc.kill('SIGTERM');
  const res = await Promise.race([exited, sleep(15000).then(() => null)]);
  check(res !== null, 'shoald did not exit within 15 s of SIGTERM');
  check(res.code === 0, `shoald exited with ${res.code ?? res.sig} after SIGTERM`);
  const text = fs.readFileSync(d.logPath, 'utf8');
  for (const m of ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:'])
    check(!text.includes(m), `sanitizer report in shoald.log: ${m}`);
}

let rc = 0;
try {
  await main();
  log('PASS');
} catch (e) {
  rc = 1;
  console.error(`[browser] FAIL: ${e instanceof Failure ? e.message : e.stack}`);
  try {
    const l = fs.readFileSync(path.join(TMP, 'shoald.log'), 'utf8').split('\n').slice(-30).join('\n');
    console.error(`--- shoald.log (last 30 lines) ---\n${l}`);
  } catch (e2) {
    /* no log */
  }
}
await cleanup();
if (rc === 0 || process.env.SHOAL_IT_KEEP !== '1') fs.rmSync(TMP, { recursive: true, force: true });
else console.error(`[browser] kept ${TMP}`);
process.exit(rc);
