// The dashboard's "Cache sizing" panel against GET /api/v1/mrc (part of
// dashboard.test.mjs, which passes its page, daemon and helpers in `t`).
//
// The page's figures are compared exactly with the answer the page itself
// received (caught with waitForResponse), and that answer within a
// tolerance with one the test fetches at the same moment (the curves move
// under the steady fio load).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const MIN_SAMPLES = 1000; // the page's threshold for a prediction
const ROUGH_SAMPLES = 100; // a volume's rough figure ("~90%") from here
const FACTORS = [0.125, 0.25, 0.5, 0.75, 1, 1.5, 2, 4];
const pct = (r) => `${(r * 100).toFixed(1)}%`;

/* What the panel shows, with the raw values it carries. */
function pageSizing(page) {
  return page.evaluate(() => {
    const $ = (id) => document.getElementById(id);
    const val = (el) => (el && el.dataset.value !== '' ? Number(el.dataset.value) : null);
    const fig = $('mrc-chart');
    const circles = (cls) =>
      [...fig.querySelectorAll(`g.series.${cls} circle`)].map((c) => ({
        factor: Number(c.dataset.factor),
        bytes: Number(c.dataset.bytes),
        hit: Number(c.dataset.hit),
        cx: Number(c.getAttribute('cx')),
        cy: Number(c.getAttribute('cy')),
      }));
    const today = fig.querySelector('g.today line');
    const vols = {};
    for (const td of document.querySelectorAll('#volumes-body td[data-col="hit"] .mrc2'))
      vols[td.closest('tr').dataset.volume] = {
        value: val(td), text: td.textContent, title: td.title, samples: td.dataset.samples,
      };
    return {
      state: $('mrc-panel').dataset.state,
      sentenceShown: !$('mrc-sentence').hidden,
      sentence: $('mrc-sentence').innerText.replace(/\s+/g, ' ').trim(),
      collectingShown: !$('mrc-collecting').hidden,
      collecting: $('mrc-collecting').innerText.replace(/\s+/g, ' ').trim(),
      sampled: val($('mrc-sampled')),
      size2: val($('mrc-2x-size')),
      sizeHalf: val($('mrc-half-size')),
      hit2: val($('mrc-2x')),
      hit1: val($('mrc-1x')),
      hitHalf: val($('mrc-half')),
      text2: $('mrc-2x').textContent,
      text1: $('mrc-1x').textContent,
      textHalf: $('mrc-half').textContent,
      table: [...document.querySelectorAll('#mrc-points tbody td')].map((td) => ({
        factor: Number(td.dataset.factor), hit: val(td), text: td.textContent,
      })),
      tableBytes: [...document.querySelectorAll('#mrc-points thead th')].slice(1).map(val),
      cache: circles('cache'),
      vol: circles('vol'),
      todayX: today ? Number(today.getAttribute('x1')) : null,
      volSentenceShown: !$('mrc-vol-sentence').hidden,
      volSentence: $('mrc-vol-sentence').textContent,
      vols,
      data: window.shoal.mrc.data,
    };
  });
}

/* The page's state agrees with its own sample count. */
function checkState(t, s, where) {
  if (s.sampled >= MIN_SAMPLES) {
    t.check(s.state === 'ready' && s.sentenceShown && !s.collectingShown, `${where}: ${s.sampled} sampled reads ` +
      `but the panel is ${s.state} (sentence ${s.sentenceShown}, collecting ${s.collectingShown})`);
  } else {
    t.check(s.state === 'collecting' && !s.sentenceShown && s.collectingShown, `${where}: ${s.sampled} sampled ` +
      `reads but the panel is ${s.state} (sentence ${s.sentenceShown}, collecting ${s.collectingShown})`);
    const n = s.sampled ? s.sampled.toLocaleString('en-US') : 'no';
    t.check(s.collecting.startsWith(`Collecting samples: ${n} sampled reads so far`),
      `${where}: collecting text "${s.collecting}" for ${s.sampled} sampled reads`);
  }
}

/* The curve drawn is the curve received: 8 points at increasing x, y
 * ordered as the hit ratios, today's mark on the factor-1 point. */
function checkChart(t, circles, curve, what, todayX) {
  t.check(circles.length === FACTORS.length, `${what}: ${circles.length} points drawn`);
  circles.forEach((c, i) => {
    const p = curve.points[i];
    t.check(c.factor === p.factor && c.bytes === p.cache_bytes && c.hit === p.hit_ratio,
      `${what}: point ${i} is ${JSON.stringify(c)}, the API's ${JSON.stringify(p)}`);
    if (i) t.check(c.cx > circles[i - 1].cx, `${what}: x does not grow with the cache size at point ${i}`);
  });
  for (const a of circles)
    for (const b of circles)
      if (a.hit > b.hit + 0.01) t.check(a.cy < b.cy, `${what}: ${a.hit} drawn at or below ${b.hit}`);
  if (todayX != null) {
    const one = circles.find((c) => c.factor === 1);
    t.check(Math.abs(one.cx - todayX) <= 1, `${what}: today's mark at x ${todayX}, the 1× point at ${one.cx}`);
  }
}

/* The bytes shown as the page formats them (its fmtBytes). */
function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2)} ${units[u]}`;
}

function checkFigures(t, s, seen) {
  const at = (curve, f) => curve.points.find((p) => p.factor === f);
  const c = seen.cache;
  t.check(s.sampled === c.sampled_reads, `sampled reads ${s.sampled}, the page received ${c.sampled_reads}`);
  t.check(s.size2 === at(c, 2).cache_bytes && s.size2 === 2 * seen.capacity_bytes,
    `2x size ${s.size2} for a ${seen.capacity_bytes}-byte cache`);
  t.check(s.sizeHalf === at(c, 0.5).cache_bytes && s.sizeHalf === seen.capacity_bytes / 2,
    `half size ${s.sizeHalf} for a ${seen.capacity_bytes}-byte cache`);
  for (const [shown, text, f] of [[s.hit2, s.text2, 2], [s.hit1, s.text1, 1], [s.hitHalf, s.textHalf, 0.5]]) {
    t.check(shown === at(c, f).hit_ratio, `hit ratio at ${f}x: page ${shown}, received ${at(c, f).hit_ratio}`);
    t.check(text === pct(shown), `hit ratio at ${f}x shown as "${text}", not ${pct(shown)}`);
  }
  const want = `With 2× the RAM (${fmtBytes(s.size2)}): hit ratio ${pct(s.hit2)} (today ${pct(s.hit1)}). ` +
    `With half (${fmtBytes(s.sizeHalf)}): ${pct(s.hitHalf)}.`;
  t.check(s.sentence === want, `sentence "${s.sentence}", expected "${want}"`);
  t.check(JSON.stringify(s.tableBytes) === JSON.stringify(c.points.map((p) => p.cache_bytes)),
    `table sizes ${s.tableBytes}`);
  s.table.forEach((cell, i) =>
    t.check(cell.factor === c.points[i].factor && cell.hit === c.points[i].hit_ratio && cell.text === pct(cell.hit),
      `table cell ${i}: ${JSON.stringify(cell)}`));
}

/* Each volume's "2x RAM" figure is its curve's: exact once settled, "~"
 * and whole percents from ROUGH_SAMPLES, nothing before. */
function checkVolumes(t, s, curves) {
  for (const v of curves.volumes) {
    const cell = s.vols[v.name];
    t.check(cell, `no 2x RAM figure for ${v.name}`);
    const p2 = v.mrc.points.find((p) => p.factor === 2);
    const n = v.mrc.sampled_reads;
    t.check(cell.samples === String(n), `${v.name}: samples ${cell.samples}, the curve has ${n}`);
    const want = n >= MIN_SAMPLES ? `2× RAM: ${pct(p2.hit_ratio)}`
      : n >= ROUGH_SAMPLES ? `2× RAM: ~${Math.round(p2.hit_ratio * 100)}%` : '';
    t.check(cell.text === want && cell.value === (want ? p2.hit_ratio : null),
      `${v.name}: ${n} sampled reads, 2x hit ratio ${p2.hit_ratio}: the page shows "${cell.text}" (${cell.value})`);
    if (!want) t.check(cell.title.startsWith('collecting samples'), `${v.name}: title "${cell.title}"`);
  }
}

/* Reads fast enough to give the curves thousands of samples: fio, zipf
 * (so smaller caches lose hits), until io_size is read. */
function burst(t, vol, ioSize) {
  return new Promise((resolve, reject) => {
    const p = spawn('fio', [
      `--name=${vol}-burst`, '--ioengine=nbd', `--uri=nbd+unix:///${vol}?socket=${t.sock}`,
      '--rw=randread', '--bs=64k', '--iodepth=8', `--io_size=${ioSize}`, '--random_distribution=zipf:1.1',
    ], { stdio: ['ignore', 'ignore', fs.openSync(path.join(t.tmp, `fio-burst-${vol}.log`), 'a')] });
    t.children.push(p);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`fio burst on ${vol} exited ${code}`))));
  });
}

export async function checkSizing(t) {
  const { page, check, near, waitFor, api, sleep, log } = t;
  const first = await pageSizing(page);
  checkState(t, first, 'before the burst');
  log(`cache sizing before the burst: ${first.state} (${first.sampled} sampled reads)`);

  await Promise.all([burst(t, 'gold', '192M'), burst(t, 'clone', '192M')]);
  const after = (await api('GET', '/api/v1/mrc')).json;
  const volCurve = (m, name) => m.volumes.find((v) => v.name === name).mrc;
  for (const c of [after.cache, volCurve(after, 'gold'), volCurve(after, 'clone')])
    check(c.sampled_reads >= MIN_SAMPLES, `only ${c.sampled_reads} sampled reads after the burst`);

  // Two consecutive answers: the page polls the curve every 10 s, not at
  // every stats tick (1 s), and shows exactly what it received.
  const isMrc = (r) => new URL(r.url()).pathname === '/api/v1/mrc';
  const isStats = (r) => new URL(r.url()).pathname === '/api/v1/stats';
  let statsCount = 0;
  const countStats = (r) => (isStats(r) ? statsCount++ : 0);
  await page.waitForResponse(isMrc, { timeout: 15000 });
  const t0 = Date.now();
  page.on('request', countStats);
  const resp = await page.waitForResponse(isMrc, { timeout: 15000 });
  const gap = (Date.now() - t0) / 1000;
  page.off('request', countStats);
  const seen = await resp.json();
  const mine = (await api('GET', '/api/v1/mrc')).json;
  check(gap >= 8 && gap <= 13, `the page asked for the curve again after ${gap.toFixed(1)} s (every 10 s expected)`);
  check(statsCount >= 5, `only ${statsCount} stats polls between two curve polls`);
  await waitFor(async () => (await pageSizing(page)).sampled === seen.cache.sampled_reads, 3000,
    'the page to show the curve it received');

  const s = await pageSizing(page);
  checkState(t, s, 'after the burst');
  check(s.state === 'ready', `the panel is ${s.state} after ${s.sampled} sampled reads`);
  checkFigures(t, s, seen);
  checkChart(t, s.cache, seen.cache, 'cache curve', s.todayX);
  // The zipf burst leaves a curve that rises (else the order check above
  // proves nothing): a 1/8 cache predicts fewer hits than today's.
  check(seen.cache.points[0].hit_ratio < seen.cache.points[4].hit_ratio - 0.02,
    `a flat curve: ${seen.cache.points.map((p) => p.hit_ratio)}`);
  // What the page received is the API's curve (moving a little under load).
  check(mine.capacity_bytes === seen.capacity_bytes, 'capacity changed under the test');
  check(mine.cache.sampled_reads >= seen.cache.sampled_reads, 'sampled reads went back');
  mine.cache.points.forEach((p, i) => {
    check(p.cache_bytes === seen.cache.points[i].cache_bytes, `cache size of point ${i}`);
    near(seen.cache.points[i].hit_ratio, p.hit_ratio, 0, 0.03, `predicted hit ratio at ${p.factor}x`);
  });

  const wrap = await page.$eval('#mrc-panel .points-wrap', (w) => [w.scrollWidth, w.clientWidth]);
  check(wrap[0] <= wrap[1], `the sizing table does not fit (${wrap[0]} > ${wrap[1]})`);

  // Each volume's own "2x RAM" figure in the table.
  checkVolumes(t, s, seen);
  for (const v of ['gold', 'clone']) {
    check(s.vols[v].text === `2× RAM: ${pct(s.vols[v].value)}`, `${v}: 2x RAM shows "${s.vols[v].text}"`);
    near(s.vols[v].value, volCurve(mine, v).points.find((p) => p.factor === 2).hit_ratio, 0, 0.03,
      `${v}: 2x RAM against the API`);
  }
  check(s.vols.scratch.value === null, 'scratch (never read) has a 2x RAM figure');
  const vw = await page.$eval('#volumes', (tb) => [tb.parentElement.scrollWidth, tb.parentElement.clientWidth]);
  check(vw[0] <= vw[1], `the volumes table with its 2x RAM figures does not fit (${vw[0]} > ${vw[1]})`);

  // A volume in scope: its own curve and sentence beside the cache's.
  await page.selectOption('#scope-select', 'gold');
  await waitFor(async () => (await pageSizing(page)).vol.length > 0, 3000, "gold's curve in the chart");
  const g = await pageSizing(page);
  await page.locator('#mrc-panel').screenshot({ path: path.join(t.out, 'sizing-gold.png') });
  const held = g.data.volumes.find((v) => v.name === 'gold').mrc;
  checkChart(t, g.vol, held, "gold's curve", g.todayX);
  check(g.volSentenceShown && g.volSentence.startsWith('gold alone: with 2× the RAM ' +
    `${pct(held.points.find((p) => p.factor === 2).hit_ratio)}, today `), `gold's sentence: "${g.volSentence}"`);
  const at2 = (curve) => curve.points.find((p) => p.factor === 2).hit_ratio;
  near(at2(held), at2(volCurve(mine, 'gold')), 0, 0.03, "gold's 2x RAM against the API");
  await page.selectOption('#scope-select', '');
  await waitFor(async () => (await pageSizing(page)).vol.length === 0, 3000, "gold's curve to go");
  log(`cache sizing matches the API: ${s.sentence} (${s.sampled} sampled reads; polled every ${gap.toFixed(1)} s; ` +
    `gold ${s.vols.gold.text}, clone ${s.vols.clone.text})`);
}

/* After a resize the curves start over: the page asks again at once (not
 * 10 s later) and shows sizes around the new capacity. Then a short burst
 * gives gold a few hundred samples: its figure shows, marked rough. */
export async function checkSizingAfterResize(t, capacity) {
  const { page, check, waitFor, log } = t;
  const s = await waitFor(async () => {
    const x = await pageSizing(page);
    return x.size2 === 2 * capacity ? x : null;
  }, 5000, 'the sizing panel to follow the new capacity');
  checkState(t, s, 'after the resize');
  checkVolumes(t, s, s.data);
  check(s.tableBytes.length === FACTORS.length && s.tableBytes.every((b, i) => b === capacity * FACTORS[i]),
    `sizes after the resize: ${s.tableBytes}`);
  log(`cache sizing after the resize: ${s.state} (${s.sampled} sampled reads), 2x = ${fmtBytes(s.size2)}`);

  await burst(t, 'gold', '24M');
  await page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/mrc', { timeout: 15000 });
  const r = await waitFor(async () => {
    const x = await pageSizing(page);
    return x.data.cache.sampled_reads > s.sampled ? x : null;
  }, 3000, 'the page to show the new curve');
  checkState(t, r, 'after the resize and a burst');
  checkVolumes(t, r, r.data);
  check(r.vols.gold.text.startsWith('2× RAM: ~'), `gold after a short burst: "${r.vols.gold.text}" ` +
    `(${r.vols.gold.samples} sampled reads; rough expected from ${ROUGH_SAMPLES} to ${MIN_SAMPLES})`);
  log(`cache sizing after a short burst: gold ${r.vols.gold.text} (${r.vols.gold.samples} sampled reads)`);
}
