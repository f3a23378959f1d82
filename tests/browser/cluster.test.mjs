// Real-browser test of the dashboard's Cluster panel (issue 11: "a cluster
// view with each node and memcached server: state, items, bytes, share of
// the ring, hit share, latency; the volume list shows the owner").
//
// Starts a real etcd, two real memcached servers and shoald as node n1 of
// the cluster (both servers its own), reads a read-write volume twice so
// that the second pass hits memcached, adds a read-only volume, then opens
// the dashboard in Debian's chromium through playwright-core and checks:
//   - the Cluster panel shows; its node row (state, volumes it owns) and
//     its server rows are the API's (GET /api/v1/cluster): state, ring
//     share (bar width too), hit share, hits, items, bytes, memory per
//     block; the servers' hits sum to the core's tier_hits;
//   - the Volumes panel's Owner column: n1 for the read-write volume,
//     "every node" for the read-only one;
//   - one memcached killed (SIGKILL): the page shows it ejected;
//   - etcd paused (SIGSTOP) past 3/4 of the node's lease: the read-write
//     volume is fenced (the API's "fenced", the page's mode cell), the
//     read-only one is not; etcd resumed: the fence is lifted;
//   - no console error, nothing fetched but the daemon; shoald stops
//     cleanly (exit 0, no sanitizer report);
// and saves screenshots of the panel.
//
// Environment: SHOALD (binary), SHOAL_BROWSER_OUT (screenshots; default
// tests/out/browser), CHROMIUM (default /usr/bin/chromium).
// Exit status: 0 pass, 1 fail, 77 skip (a tool is missing).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SHOALD = process.env.SHOALD || path.join(HERE, '../../build/src/shoald');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT = process.env.SHOAL_BROWSER_OUT || path.join(HERE, '../out/browser');
const TOKEN = 'browser-cluster-token-0123';
const MiB = 1 << 20;

const log = (msg) => console.log(`[browser-cluster] ${msg}`);
class Failure extends Error {}
function check(cond, msg) {
  if (!cond) throw new Failure(msg);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function skip(msg) {
  console.log(`[browser-cluster] SKIP: ${msg}`);
  process.exit(77);
}
const which = (tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

if (!fs.existsSync(CHROMIUM)) skip(`${CHROMIUM} is not installed (apt-get install chromium)`);
for (const tool of ['etcd', 'memcached', 'nbdcopy']) if (!which(tool)) skip(`${tool} is not installed`);
if (!fs.existsSync(SHOALD)) {
  console.error(`[browser-cluster] SHOALD=${SHOALD} does not exist`);
  process.exit(1);
}
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  console.error(`[browser-cluster] playwright-core is not installed (run tests/browser/run.sh): ${e.message}`);
  process.exit(1);
}

const TMP = fs.mkdtempSync(path.join(process.env.SHOAL_IT_TMP || os.tmpdir(), 'shoal-browser-cluster.'));
const children = [];
let browser = null;

async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  for (const c of children.reverse()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? null
    : Promise.race([new Promise((r) => c.once('exit', r)), sleep(10000).then(() => c.kill('SIGKILL'))]))));
}

function start(name, cmd, args) {
  const fd = fs.openSync(path.join(TMP, `${name}.log`), 'a');
  const p = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
  children.push(p);
  return p;
}

/* A port free now on 127.0.0.1 (the kernel's pick). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(fn, ms, what) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await fn().catch(() => null);
    if (last) return last;
    await sleep(100);
  }
  throw new Failure(`timed out after ${ms} ms waiting for ${what}`);
}

const canConnect = (port) => new Promise((resolve) => {
  const s = net.connect(port, '127.0.0.1', () => {
    s.destroy();
    resolve(true);
  });
  s.once('error', () => resolve(false));
});

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

let BASE = '';
async function api(method, p, body) {
  const headers = { Authorization: `Bearer ${TOKEN}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(BASE + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}
const clusterApi = async () => (await api('GET', '/api/v1/cluster')).json;

function readAll(sock, vol, what) {
  const out = path.join(TMP, 'out.img');
  const r = spawnSync('nbdcopy', ['--no-extents', `nbd+unix:///${vol}?socket=${sock}`, out], { encoding: 'utf8' });
  check(r.status === 0, `${what}: nbdcopy failed: ${r.stderr}`);
  check(Buffer.compare(fs.readFileSync(out), fs.readFileSync(path.join(TMP, `${vol}.img`))) === 0,
    `${what}: the bytes read differ from the image`);
  fs.rmSync(out);
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  // ---- etcd, two memcached servers, one node ----
  const [cport, pport] = [await freePort(), await freePort()];
  const ep = `http://127.0.0.1:${cport}`;
  const etcd = start('etcd', 'etcd', ['--name', 'shoal-browser', '--data-dir', path.join(TMP, 'etcd'),
    '--listen-client-urls', ep, '--advertise-client-urls', ep,
    '--listen-peer-urls', `http://127.0.0.1:${pport}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${pport}`,
    '--initial-cluster', `shoal-browser=http://127.0.0.1:${pport}`]);
  await waitFor(async () => (await fetch(`${ep}/health`)).ok, 30000, 'etcd');
  const mc = [];
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const user = process.getuid && process.getuid() === 0 ? ['-u', 'nobody'] : [];
    mc.push({ port, name: `127.0.0.1:${port}`, proc: start(`memcached${i}`, 'memcached', [...user, '-U', '0', '-l', '127.0.0.1', '-p', String(port), '-m', '32', '-t', '1']) });
    await waitFor(() => canConnect(port), 20000, `memcached on ${port}`);
  }
  randomFile(path.join(TMP, 'rw.img'), 16 * MiB, 11);
  randomFile(path.join(TMP, 'ro.img'), 4 * MiB, 12);
  fs.writeFileSync(path.join(TMP, 'token'), `${TOKEN}\n`, { mode: 0o600 });
  const sock = path.join(TMP, 'nbd.sock');
  const logPath = path.join(TMP, 'shoald.log');
  const d = start('shoald', SHOALD, ['-f', '--state-dir', 'off', '-l', `unix:${sock}`, '--iscsi', 'off',
    '--http', '127.0.0.1:0', '--http-token-file', path.join(TMP, 'token'), '-m', '4M',
    '--etcd', ep, '--node-name', 'n1', '--etcd-lease', '5s', '--memcached', mc.map((m) => m.name).join(','),
    // Generous: no lookup may time out, so that the servers' hits and the
    // core's tier_hits count the same blocks.
    '--memcached-timeout', '2s', `rw=${path.join(TMP, 'rw.img')}`]);
  const port = await waitFor(async () => {
    check(d.exitCode === null, `shoald exited early:\n${fs.readFileSync(logPath, 'utf8')}`);
    const m = fs.readFileSync(logPath, 'utf8').match(/management API on http:\/\/127\.0\.0\.1:(\d+)\//);
    return m && fs.existsSync(sock) ? Number(m[1]) : null;
  }, 30000, 'shoald');
  BASE = `http://127.0.0.1:${port}`;
  const add = await api('POST', '/api/v1/volumes', { name: 'ro', backing: path.join(TMP, 'ro.img'), readonly: true });
  check(add.status === 201, `read-only add: ${add.status} ${JSON.stringify(add.json)}`);
  log(`etcd, memcached ${mc.map((m) => m.name).join(' ')}, shoald n1 up`);

  // Twice the 4 MiB cache: the second pass finds evicted blocks in memcached.
  readAll(sock, 'rw', 'first pass');
  await waitFor(async () => (await api('GET', '/api/v1/stats')).json.memcached.tier.put_queued === 0, 20000,
    'the puts to be sent');
  await sleep(500);
  readAll(sock, 'rw', 'second pass');
  readAll(sock, 'ro', 'read-only volume');
  const s0 = (await api('GET', '/api/v1/stats')).json;
  check(s0.cache.tier_hits > 50, `only ${s0.cache.tier_hits} blocks came from memcached`);
  check(s0.cache.tier_timeouts === 0, `${s0.cache.tier_timeouts} tier lookups timed out`);
  // memcached's own figures settle (read every 3 s by the daemon).
  await waitFor(async () => {
    const c = await clusterApi();
    return c.memcached.every((m) => m.stats_ok && m.stats_age_seconds < 2.5 && m.curr_items > 0);
  }, 15000, 'fresh memcached stats');

  // ---- the page ----
  browser = await chromium.launch({ executablePath: CHROMIUM,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  page.on('request', (r) => {
    if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) problems.push(`foreign request: ${r.url()}`);
  });
  await page.goto(`${BASE}/`);
  await waitFor(async () => (await page.textContent('#conn-text')) === 'live', 10000, 'the page to go live');
  await page.waitForSelector('#cluster-panel:not([hidden])', { timeout: 10000 });
  await waitFor(async () => (await page.$$('#cl-servers-body tr')).length === 2, 10000, 'two server rows');

  // Nodes: n1, alive, owning rw.
  // The lookup threads count per server just after they answered.
  const tierHits = (await api('GET', '/api/v1/stats')).json.cache.tier_hits;
  const c = await waitFor(async () => {
    const x = await clusterApi();
    return x.memcached.reduce((a, m) => a + m.lookup_hits, 0) === tierHits ? x : null;
  }, 5000, `the servers' hits to sum to tier_hits ${tierHits}`);
  check(c.enabled === true && c.node === 'n1', `cluster: ${JSON.stringify(c).slice(0, 300)}`);
  check(await page.isVisible('#cl-nodes'), 'the nodes table is not shown with etcd');
  const node = await page.$$eval('#cl-nodes-body tr', (trs) => trs.map((tr) => ({
    key: tr.dataset.key, name: tr.querySelector('[data-col=name]').textContent,
    state: tr.querySelector('[data-col=state]').dataset.value, volumes: tr.querySelector('[data-col=volumes]').textContent,
  })));
  check(JSON.stringify(node) === JSON.stringify([{ key: 'n1', name: 'n1 (this)', state: 'alive', volumes: 'rw' }]),
    `node rows: ${JSON.stringify(node)}`);

  // Servers: the page's numbers are the API's (no traffic now: stable).
  const rowOf = (name) => `#cl-servers-body tr[data-key="${name}"]`;
  const val = (name, col) => page.getAttribute(`${rowOf(name)} td[data-col="${col}"]`, 'data-value');
  check(Math.abs(c.memcached.reduce((a, m) => a + m.ring_share, 0) - 1) < 1e-9, 'ring shares do not sum to 1');
  for (const m of c.memcached) {
    check(m.in_ring === true && m.node === 'n1', `${m.server}: ${JSON.stringify(m)}`);
    await waitFor(async () => Number(await val(m.server, 'items')) === m.curr_items, 8000,
      `${m.server}: the page to show ${m.curr_items} items`);
    check((await val(m.server, 'state')) === 'live', `${m.server}: state ${await val(m.server, 'state')}`);
    check(Number(await val(m.server, 'ring')) === m.ring_share, `${m.server}: ring share`);
    check(Number(await val(m.server, 'hits')) === m.hit_share, `${m.server}: hit share`);
    check(Number(await val(m.server, 'hit')) === m.lookup_hits, `${m.server}: hits`);
    check(Number(await val(m.server, 'bytes')) === m.bytes, `${m.server}: bytes`);
    check(Number(await val(m.server, 'block')) === m.chunk_bytes_per_item, `${m.server}: memory per block`);
    check(Number(await val(m.server, 'lat')) === m.latency_p50_seconds && m.latency_p50_seconds > 0, `${m.server}: latency`);
    const width = await page.$eval(`${rowOf(m.server)} td[data-col="ring"] .fill`, (e) => parseFloat(e.style.width));
    check(Math.abs(width - m.ring_share * 100) < 0.1, `${m.server}: ring bar ${width}% for ${m.ring_share}`);
    check((await page.textContent(`${rowOf(m.server)} td[data-col="node"]`)) === 'n1', `${m.server}: node`);
  }
  check(Number(await page.getAttribute('#cl-tier-hits', 'data-value')) === tierHits, 'tier hits');
  check(Number(await page.getAttribute('#cl-items', 'data-value')) === c.tier.curr_items, 'items, all servers');
  check(Number(await page.getAttribute('#cl-mc-block', 'data-value')) === c.tier.chunk_bytes_per_item, 'memcached per block');
  log(`servers match the API: shares ${c.memcached.map((m) => m.ring_share.toFixed(3))}, ` +
    `hits ${c.memcached.map((m) => m.lookup_hits)} = tier_hits ${tierHits}, ` +
    `items ${c.memcached.map((m) => m.curr_items)}, ${c.tier.chunk_bytes_per_item} B per block`);

  // Owners in the Volumes panel.
  check(await page.isVisible('#th-owner'), 'no Owner column in a cluster');
  const owner = (v) => page.textContent(`tr[data-volume="${v}"] td[data-col="owner"]`);
  check((await owner('rw')) === 'n1', `owner of rw: ${await owner('rw')}`);
  check((await owner('ro')) === 'every node', `owner of ro: ${await owner('ro')}`);
  log('Owner column: rw on n1, ro on every node');
  await page.evaluate(() => document.querySelector('#cluster-panel').scrollIntoView());
  await (await page.$('#cluster-panel')).screenshot({ path: path.join(OUT, 'dashboard-cluster.png') });

  // ---- one server killed: the page shows it ejected ----
  const dead = mc[1];
  dead.proc.kill('SIGKILL');
  // Reads that miss send puts, some to the dead server: its failures eject it.
  readAll(sock, 'rw', 'read with a server dead');
  await waitFor(async () => (await val(dead.name, 'state')) === 'ejected', 20000, `the page to show ${dead.name} ejected`);
  check((await val(mc[0].name, 'state')) !== 'ejected', 'the live server shown ejected');
  const c2 = await clusterApi();
  const s2 = (await api('GET', '/api/v1/stats')).json;
  const hits2 = c2.memcached.reduce((a, m) => a + m.lookup_hits, 0);
  // A multi-get during which a server failed is not counted per server.
  check(hits2 <= s2.cache.tier_hits,
    `after the kill: servers' hits ${c2.memcached.map((m) => m.lookup_hits)} > tier_hits ${s2.cache.tier_hits}`);
  await waitFor(async () => Number(await page.getAttribute('#cl-tier-hits', 'data-value')) === s2.cache.tier_hits,
    5000, `the page to show tier hits ${s2.cache.tier_hits}`);
  log(`${dead.name} killed: shown ejected`);
  await (await page.$('#cluster-panel')).screenshot({ path: path.join(OUT, 'dashboard-cluster-ejected.png') });

  check(problems.length === 0, `browser problems:\n  ${problems.join('\n  ')}`);
  check(d.exitCode === null, 'shoald died');

  // ---- etcd paused: the node fences rw, and lifts it once etcd is back ----
  const mode = (v) => page.$eval(`tr[data-volume="${v}"] td[data-col="mode"]`,
    (td) => ({ text: td.textContent, cls: td.className, title: td.title }));
  const fencedApi = async () => (await api('GET', '/api/v1/volumes')).json.find((v) => v.name === 'rw').fenced;
  const selfNote = () => page.$eval('#cl-self', (p) => (p.hidden ? '' : p.textContent));
  etcd.kill('SIGSTOP');
  const paused = Date.now();
  try {
    await waitFor(async () => (await fencedApi()) === 'lease', 15000, 'rw fenced once etcd stopped answering');
    log(`etcd paused: rw fenced after ${Date.now() - paused} ms (5 s lease)`);
    await waitFor(async () => (await mode('rw')).text === 'fenced', 10000, 'the page to show rw fenced');
    const m = await mode('rw');
    check(m.cls.includes('fenced') && m.title.includes('lease'), `rw's mode cell: ${JSON.stringify(m)}`);
    check((await mode('ro')).text === 'ro', `ro's mode while fenced: ${(await mode('ro')).text}`);
    check((await owner('rw')) === 'n1', `owner of fenced rw: ${await owner('rw')}`);
    // The Cluster panel without etcd: the node's own view (fenced, what it
    // owns) from GET /api/v1/cluster, which answers with etcd_error set.
    await waitFor(async () => /etcd cannot be read/.test(await selfNote()), 30000,
      'the Cluster panel to say etcd cannot be read');
    const note = await selfNote();
    check(/This node is fenced/.test(note) && /\(rw\)/.test(note), `the Cluster panel's note: ${note}`);
    const cs = (await api('GET', '/api/v1/cluster')).json;
    check(cs.fenced === true && cs.etcd_error && cs.owned.join() === 'rw' && cs.nodes.length === 0,
      `GET /api/v1/cluster while etcd is paused: ${JSON.stringify(cs)}`);
    await page.evaluate(() => document.querySelector('#cluster-panel').scrollIntoView());
    await page.screenshot({ path: path.join(OUT, 'dashboard-cluster-fenced.png') });
    await page.evaluate(() => document.querySelector('#volumes').scrollIntoView());
    await page.screenshot({ path: path.join(OUT, 'dashboard-fenced.png') });
  } finally {
    etcd.kill('SIGCONT');
  }
  await waitFor(async () => (await fencedApi()) === undefined, 30000, 'rw unfenced once etcd answered again');
  await waitFor(async () => (await mode('rw')).text === 'rw', 10000, 'the page to show rw writable again');
  log(`etcd back: rw unfenced, ${Date.now() - paused} ms after the pause began`);
  await waitFor(async () => (await selfNote()) === '', 30000, 'the Cluster panel\'s note to go once etcd answered');
  readAll(sock, 'rw', 'read after the fence');
  // While etcd was paused the page's cluster requests were slow (each
  // waits for etcd's client timeout); none may have failed but those that
  // were cut short, and nothing else.
  const other = problems.filter((p) => !/Failed to load resource|\/api\/v1\/cluster/.test(p));
  check(other.length === 0, `browser problems while etcd was paused:\n  ${other.join('\n  ')}`);
  check(d.exitCode === null, 'shoald died');

  // A clean stop with a server out of reach: exit 0 on SIGTERM, no
  // sanitizer report (the sanitizer builds run this test too).
  await browser.close();
  browser = null;
  const exited = new Promise((r) => d.once('exit', (code, sig) => r({ code, sig })));
  d.kill('SIGTERM');
  const res = await Promise.race([exited, sleep(15000).then(() => null)]);
  check(res !== null, 'shoald did not exit within 15 s of SIGTERM');
  check(res.code === 0, `shoald exited with ${res.code ?? res.sig} after SIGTERM`);
  const text = fs.readFileSync(logPath, 'utf8');
  for (const m of ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:', 'WARNING: ThreadSanitizer'])
    check(!text.includes(m), `sanitizer report in shoald.log: ${m}`);
}

let rc = 0;
try {
  await main();
  log('PASS');
} catch (e) {
  rc = 1;
  console.error(`[browser-cluster] FAIL: ${e instanceof Failure ? e.message : e.stack}`);
  try {
    const l = fs.readFileSync(path.join(TMP, 'shoald.log'), 'utf8').split('\n').slice(-30).join('\n');
    console.error(`--- shoald.log (last 30 lines) ---\n${l}`);
  } catch (e2) {
    /* no log */
  }
}
await cleanup();
if (rc === 0 || process.env.SHOAL_IT_KEEP !== '1') fs.rmSync(TMP, { recursive: true, force: true });
else console.error(`[browser-cluster] kept ${TMP}`);
process.exit(rc);
