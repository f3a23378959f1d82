/* shoal dashboard: polls GET /api/v1/stats, derives rates and per-interval
 * figures from successive samples (the server keeps no per-client state),
 * draws its own charts on <canvas> and drives the control endpoints.
 * No framework, no network access beyond the daemon that served the page.
 *
 * Numbers that tests compare with the API carry their raw value in a
 * data-value attribute; each chart's canvas carries data-points (points in
 * the visible window) and data-last (the newest values, JSON). */
'use strict';

(() => {
  const API = '/api/v1';
  const TOKEN_KEY = 'shoal.token';
  const PREFS_KEY = 'shoal.dashboard';
  const HISTORY_SECONDS = 900; /* longest window offered */
  const BLOCK = 4096;
  const LAT_OPS = ['read_hit', 'read_miss', 'write'];

  const $ = (id) => document.getElementById(id);

  /* ------------------------------------------------------------------ */
  /* formatting                                                         */

  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

  function fmtBytes(n) {
    if (n == null || !isFinite(n)) return '–';
    let u = 0;
    while (Math.abs(n) >= 1024 && u < UNITS.length - 1) {
      n /= 1024;
      u++;
    }
    if (u === 0) return `${Math.round(n)} B`;
    const digits = Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 2;
    return `${n.toFixed(digits)} ${UNITS[u]}`;
  }
  const fmtRate = (n) => (n == null ? '–' : `${fmtBytes(n)}/s`);

  function fmtNum(n, maxDigits = 0) {
    if (n == null || !isFinite(n)) return '–';
    return n.toLocaleString('en-US', { maximumFractionDigits: maxDigits });
  }

  function fmtIops(n) {
    if (n == null || !isFinite(n)) return '–';
    if (n >= 100000) return `${(n / 1000).toFixed(0)}k`;
    return fmtNum(n, n < 10 ? 1 : 0);
  }

  const fmtPct = (r) => (r == null || !isFinite(r) ? '–' : `${(r * 100).toFixed(1)}%`);

  function fmtUs(us) {
    if (us == null || !isFinite(us)) return '–';
    if (us === 0) return '0';
    if (us < 10) return `${us.toFixed(1)} µs`;
    if (us < 1000) return `${us.toFixed(0)} µs`;
    if (us < 1e6) return `${(us / 1000).toFixed(us < 1e4 ? 2 : 1)} ms`;
    return `${(us / 1e6).toFixed(2)} s`;
  }

  const fmtTimes = (r) => (r == null || !isFinite(r) || r === 0 ? '–' : `${r.toFixed(2)}×`);

  function fmtDuration(s) {
    if (s == null) return '–';
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s % 60}s`;
    return `${s}s`;
  }

  /* Sizes typed by the user: "64M", "2G", "4096". Sent to the API as typed
   * (it accepts the same syntax); checked here for a quick message. */
  const SIZE_RE = /^\s*\d+(\.\d+)?\s*([kmgtpe](i?b)?|b)?\s*$/i;

  function setText(el, text, value) {
    if (typeof el === 'string') el = $(el);
    if (!el) return;
    if (el.textContent !== text) el.textContent = text;
    if (value !== undefined) el.dataset.value = value == null || !isFinite(value) ? '' : String(value);
  }

  /* ------------------------------------------------------------------ */
  /* latency histograms (same buckets and estimate as the daemon)       */

  /* Bucket i counts latencies < 2^i us; the last bucket is open-ended. */
  function quantileUs(buckets, q) {
    if (!buckets) return null;
    let total = 0;
    for (const b of buckets) total += b;
    if (total === 0) return null;
    const rank = q * total;
    let seen = 0;
    for (let i = 0; i < buckets.length; i++) {
      if (buckets[i] === 0) continue;
      if (seen + buckets[i] >= rank) {
        const lo = i === 0 ? 0 : 2 ** (i - 1);
        const hi = 2 ** i;
        if (i === buckets.length - 1) return lo;
        return lo + ((hi - lo) * (rank - seen)) / buckets[i];
      }
      seen += buckets[i];
    }
    return 2 ** (buckets.length - 2);
  }

  function addBuckets(acc, b, sign = 1) {
    if (!b) return acc;
    if (!acc) acc = new Array(b.length).fill(0);
    for (let i = 0; i < b.length && i < acc.length; i++) acc[i] += sign * b[i];
    return acc;
  }

  /* ------------------------------------------------------------------ */
  /* API                                                                */

  class ApiError extends Error {
    constructor(status, message, method, path) {
      super(message);
      this.status = status;
      this.method = method;
      this.path = path;
    }
  }

  const getToken = () => sessionStorage.getItem(TOKEN_KEY) || '';

  async function api(method, path, body) {
    const headers = {};
    const opts = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    /* Every request, GETs too: the server shows back ends only to requests
     * that carry the token. */
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (e) {
      throw new ApiError(0, `cannot reach shoald (${e.message})`, method, path);
    }
    const text = await resp.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (e) {
        data = null;
      }
    }
    if (!resp.ok) {
      const msg = (data && data.error) || resp.statusText || 'request failed';
      throw new ApiError(resp.status, msg, method, path);
    }
    return data;
  }

  /* A change requested by the user: asks for a token on 401 (and retries
   * once), reports failures in the page. Resolves to the answer's data, or
   * throws the ApiError after showing it. */
  async function mutate(method, path, body) {
    try {
      return await api(method, path, body);
    } catch (e) {
      if (e.status === 401) {
        const saved = await askToken('The server refused the change: a valid token is required.');
        if (saved) {
          try {
            return await api(method, path, body);
          } catch (e2) {
            showApiError(e2);
            throw e2;
          }
        }
      }
      if (!(e.status === 409 && path.includes('/volumes/') && method === 'DELETE')) showApiError(e);
      throw e;
    } finally {
      schedulePoll(0);
    }
  }

  const volPath = (name, suffix = '') => `${API}/volumes/${encodeURIComponent(name)}${suffix}`;

  /* ------------------------------------------------------------------ */
  /* messages                                                           */

  function message(kind, text, ttlMs) {
    const box = $('messages');
    const el = document.createElement('div');
    el.className = `msg ${kind}`;
    el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    const t = document.createElement('div');
    t.className = 'text';
    t.textContent = text;
    const close = document.createElement('button');
    close.className = 'close';
    close.type = 'button';
    close.title = 'dismiss';
    close.textContent = '×';
    close.addEventListener('click', () => el.remove());
    el.append(t, close);
    box.append(el);
    while (box.children.length > 5) box.firstChild.remove();
    if (ttlMs) setTimeout(() => el.remove(), ttlMs);
    return el;
  }

  function showApiError(e) {
    const where = e.method && e.path ? `${e.method} ${e.path}: ` : '';
    const status = e.status ? `${e.status} ` : '';
    message('error', `${where}${status}${e.message}`, 20000);
  }

  const ok = (text) => message('ok', text, 4000);

  /* ------------------------------------------------------------------ */
  /* dialogs                                                            */

  function askToken(reason) {
    const dlg = $('dlg-token');
    const input = $('token-input');
    const p = dlg.querySelector('p');
    if (!p.dataset.base) p.dataset.base = p.textContent;
    p.textContent = reason ? `${reason} ${p.dataset.base}` : p.dataset.base;
    input.value = getToken();
    return new Promise((resolve) => {
      dlg.addEventListener(
        'close',
        () => {
          if (dlg.returnValue === 'save' && input.value.trim()) {
            sessionStorage.setItem(TOKEN_KEY, input.value.trim());
            updateTokenButton();
            resolve(true);
          } else {
            if (dlg.returnValue === 'clear') {
              sessionStorage.removeItem(TOKEN_KEY);
              updateTokenButton();
            }
            resolve(false);
          }
        },
        { once: true },
      );
      if (!dlg.open) {
        dlg.returnValue = '';
        dlg.showModal();
      }
      input.focus();
    });
  }

  function updateTokenButton() {
    $('token-btn').textContent = getToken() ? 'Token ✓' : 'Token';
  }

  /* A confirmation, optionally with an OFFSET/LENGTH range. Resolves to
   * null (cancelled) or {offset, length} (strings, possibly empty). */
  function ask({ title, text, range = false, okLabel = 'OK', danger = false }) {
    const dlg = $('dlg-action');
    $('action-title').textContent = title;
    $('action-text').textContent = text;
    $('action-range').hidden = !range;
    $('action-offset').value = '';
    $('action-length').value = '';
    const okBtn = $('action-ok');
    okBtn.textContent = okLabel;
    okBtn.classList.toggle('danger', danger);
    return new Promise((resolve) => {
      dlg.addEventListener(
        'close',
        () => {
          if (dlg.returnValue !== 'ok') return resolve(null);
          resolve({ offset: $('action-offset').value.trim(), length: $('action-length').value.trim() });
        },
        { once: true },
      );
      dlg.returnValue = '';
      dlg.showModal();
      okBtn.focus();
    });
  }

  /* Body for invalidate/prefetch from the dialog's range, or an error. */
  function rangeBody(r) {
    const body = {};
    for (const key of ['offset', 'length']) {
      if (!r[key]) continue;
      if (!SIZE_RE.test(r[key])) throw new Error(`${key} "${r[key]}" is not a size (bytes, or 64K, 1M, 2G…)`);
      body[key] = /^\d+$/.test(r[key]) ? Number(r[key]) : r[key];
    }
    return body;
  }

  /* ------------------------------------------------------------------ */
  /* state: samples and the per-interval points derived from them       */

  const state = {
    last: null, /* newest {t, stats} */
    points: [], /* {t, all, vols: {name: m}, cache} */
    paused: false,
    intervalMs: 1000,
    windowSec: 300,
    scope: '', /* '' = all volumes, else a volume name */
    prefetch: new Map(), /* name -> last status, while watched */
    seenVolumes: new Set(),
    failures: 0,
  };

  function loadPrefs() {
    try {
      const p = JSON.parse(localStorage.getItem(PREFS_KEY) || '{}');
      if ([60, 300, 900].includes(p.windowSec)) state.windowSec = p.windowSec;
      if ([1000, 2000, 5000].includes(p.intervalMs)) state.intervalMs = p.intervalMs;
    } catch (e) {
      /* ignore unreadable preferences */
    }
    $('window-select').value = String(state.windowSec);
    $('interval-select').value = String(state.intervalMs);
  }

  function savePrefs() {
    try {
      localStorage.setItem(PREFS_KEY, JSON.stringify({ windowSec: state.windowSec, intervalMs: state.intervalMs }));
    } catch (e) {
      /* storage may be disabled */
    }
  }

  const COUNTERS = ['read_ops', 'write_ops', 'read_bytes', 'write_bytes', 'read_hit_bytes', 'backend_read_bytes'];

  /* Deltas of one volume between two samples, or null when unknown (the
   * volume is new, or its counters went back because it was re-added). */
  function volumeDelta(prev, cur) {
    if (!prev) return null;
    const d = {};
    for (const k of COUNTERS) {
      const x = (cur[k] || 0) - (prev[k] || 0);
      if (x < 0) return null;
      d[k] = x;
    }
    d.lat = {};
    for (const op of LAT_OPS) {
      const a = prev.latency_us && prev.latency_us[op] && prev.latency_us[op].buckets;
      const b = cur.latency_us && cur.latency_us[op] && cur.latency_us[op].buckets;
      d.lat[op] = a && b ? addBuckets(addBuckets(null, b), a, -1) : null;
    }
    return d;
  }

  function sumDeltas(list) {
    const s = { lat: {} };
    for (const k of COUNTERS) s[k] = 0;
    for (const d of list) {
      for (const k of COUNTERS) s[k] += d[k];
      for (const op of LAT_OPS) s.lat[op] = d.lat[op] ? addBuckets(s.lat[op], d.lat[op]) : s.lat[op];
    }
    return s;
  }

  /* Figures of one interval from summed deltas. */
  function metrics(d, dt) {
    const m = {
      readIops: d.read_ops / dt,
      writeIops: d.write_ops / dt,
      readBps: d.read_bytes / dt,
      writeBps: d.write_bytes / dt,
      hit: d.read_bytes ? Math.min(1, d.read_hit_bytes / d.read_bytes) : null,
      /* Signed, like the API's offload_ratio: negative when the cache read
       * more from the back end than clients asked for. */
      offload: d.read_bytes ? 1 - d.backend_read_bytes / d.read_bytes : null,
    };
    for (const op of LAT_OPS) {
      m[`${op}_p50`] = quantileUs(d.lat[op], 0.5);
      m[`${op}_p99`] = quantileUs(d.lat[op], 0.99);
    }
    return m;
  }

  /* A point without values: the charts break their lines there (after a
   * pause, or when the daemon could not be reached for a while). */
  const gapPoint = (t) => ({ t, dt: 0, gap: true, all: null, vols: {}, cache: {} });

  function ingest(stats, t) {
    const prev = state.last;
    state.last = { t, stats };
    const lastPoint = state.points[state.points.length - 1];
    if (!prev) {
      if (lastPoint && !lastPoint.gap) state.points.push(gapPoint(t - 1));
      return;
    }
    const dt = (t - prev.t) / 1000;
    if (dt <= 0) return;
    if (dt > Math.max(5, (3 * state.intervalMs) / 1000) && lastPoint && !lastPoint.gap)
      state.points.push(gapPoint(prev.t + 1));
    const before = new Map(prev.stats.volumes.map((v) => [v.name, v]));
    const vols = {};
    const deltas = [];
    for (const v of stats.volumes) {
      const d = volumeDelta(before.get(v.name), v);
      if (!d) continue;
      deltas.push(d);
      vols[v.name] = metrics(sumDeltas([d]), dt);
    }
    const c = stats.cache;
    const pc = prev.stats.cache;
    const point = {
      t,
      dt,
      all: metrics(sumDeltas(deltas), dt),
      vols,
      cache: {
        logical: c.logical_bytes,
        used: c.used_bytes,
        capacity: c.capacity_bytes,
        evictions: c.evictions >= pc.evictions ? (c.evictions - pc.evictions) / dt : null,
        inserts: c.inserts >= pc.inserts ? (c.inserts - pc.inserts) / dt : null,
      },
    };
    state.points.push(point);
    const horizon = t - HISTORY_SECONDS * 1000 - 5000;
    while (state.points.length && state.points[0].t < horizon) state.points.shift();
  }

  /* ------------------------------------------------------------------ */
  /* charts                                                             */

  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  function niceStep(range, ticks) {
    const raw = range / ticks;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const n = raw / mag;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * mag;
  }

  /* For byte axes: steps of 1, 2, 4, 8... times a power of 1024. */
  function niceByteStep(range, ticks) {
    const raw = range / ticks;
    let unit = 1;
    while (raw >= unit * 1024) unit *= 1024;
    const n = raw / unit;
    const steps = [1, 2, 4, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1024];
    for (const s of steps) if (n <= s) return s * unit;
    return 1024 * unit;
  }

  class Chart {
    /* opts: {series: [{key, label, color, dashed}], value(point, key),
     *        fmt(v), bytes, log, max, fill} */
    constructor(id, opts) {
      this.fig = $(id);
      this.opts = opts;
      this.legend = document.createElement('span');
      this.legend.className = 'legend';
      this.legendValues = [];
      for (const s of opts.series) {
        const item = document.createElement('span');
        const sw = document.createElement('i');
        sw.className = s.dashed ? 'dashed' : '';
        sw.dataset.color = s.color;
        const label = document.createTextNode(`${s.label} `);
        const val = document.createElement('b');
        val.textContent = '–';
        item.append(sw, label, val);
        this.legend.append(item);
        this.legendValues.push({ sw, val });
      }
      this.fig.querySelector('figcaption').append(this.legend);
      this.canvas = document.createElement('canvas');
      this.canvas.dataset.points = '0';
      this.fig.append(this.canvas);
      this.hoverX = null;
      this.canvas.addEventListener('mousemove', (ev) => {
        this.hoverX = ev.offsetX;
        this.draw();
      });
      this.canvas.addEventListener('mouseleave', () => {
        this.hoverX = null;
        this.draw();
      });
      if (window.ResizeObserver) new ResizeObserver(() => this.draw()).observe(this.canvas);
    }

    draw() {
      const { opts, canvas } = this;
      const w = canvas.clientWidth;
      const h = canvas.clientHeight;
      if (!w || !h) return;
      const dpr = window.devicePixelRatio || 1;
      if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
        canvas.width = Math.round(w * dpr);
        canvas.height = Math.round(h * dpr);
      }
      const g = canvas.getContext('2d');
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, w, h);

      const colors = opts.series.map((s) => css(s.color));
      this.legendValues.forEach((lv, i) => {
        lv.sw.style.backgroundColor = colors[i];
        lv.sw.style.borderColor = colors[i];
      });

      const now = state.last ? state.last.t : performance.now();
      const t0 = now - state.windowSec * 1000;
      const pts = state.points.filter((p) => p.t >= t0);
      canvas.dataset.points = String(pts.length);

      /* Values per series; null breaks the line. */
      const vals = opts.series.map((s) => pts.map((p) => opts.value(p, s.key)));
      const last = {};
      opts.series.forEach((s, i) => {
        const v = vals[i].length ? vals[i][vals[i].length - 1] : null;
        last[s.key] = v;
        this.legendValues[i].val.textContent = v == null ? '–' : opts.fmt(v);
      });
      canvas.dataset.last = JSON.stringify(last);

      const padL = 58;
      const padR = 10;
      const padT = 8;
      const padB = 20;
      const pw = w - padL - padR;
      const ph = h - padT - padB;
      const x = (t) => padL + ((t - t0) / (now - t0)) * pw;

      /* y scale */
      let ymin = 0;
      let ymax = opts.max || 0;
      let ticks = [];
      let y;
      const finite = vals.flat().filter((v) => v != null && isFinite(v));
      if (opts.log) {
        const pos = finite.filter((v) => v > 0);
        let lo = pos.length ? Math.min(...pos) : 10;
        let hi = pos.length ? Math.max(...pos) : 1000;
        lo = 10 ** Math.floor(Math.log10(lo));
        hi = 10 ** Math.ceil(Math.log10(hi));
        if (hi <= lo) hi = lo * 10;
        for (let v = lo; v <= hi * 1.001; v *= 10) ticks.push(v);
        const ll = Math.log10(lo);
        const lh = Math.log10(hi);
        y = (v) => padT + ph - ((Math.log10(Math.max(v, lo)) - ll) / (lh - ll)) * ph;
      } else {
        if (!opts.max) {
          ymax = finite.length ? Math.max(...finite) : 0;
          if (ymax <= 0) ymax = opts.bytes ? 1024 * 1024 : 1;
          const step = opts.bytes ? niceByteStep(ymax, 4) : niceStep(ymax, 4);
          ymax = Math.ceil((ymax * 1.05) / step) * step;
          for (let v = 0; v <= ymax + step / 2; v += step) ticks.push(v);
        } else {
          /* A fixed top (ratios); the bottom drops below 0 for a negative
           * offload (read-ahead fetching more than clients read). */
          const lo = finite.length ? Math.min(...finite) : 0;
          if (lo < 0) ymin = Math.floor(lo * 4) / 4;
          for (let i = 0; i <= 4; i++) ticks.push(ymin + ((ymax - ymin) * i) / 4);
        }
        y = (v) => padT + ph - ((v - ymin) / (ymax - ymin)) * ph;
      }

      /* grid and axes */
      g.font = '11px system-ui, sans-serif';
      g.fillStyle = css('--muted');
      g.strokeStyle = css('--grid');
      g.lineWidth = 1;
      g.textAlign = 'right';
      g.textBaseline = 'middle';
      for (const v of ticks) {
        const yy = Math.round(y(v)) + 0.5;
        g.beginPath();
        g.moveTo(padL, yy);
        g.lineTo(w - padR, yy);
        g.stroke();
        g.fillText(opts.axisFmt ? opts.axisFmt(v) : opts.fmt(v), padL - 6, yy);
      }
      const span = state.windowSec;
      const xstep = span <= 60 ? 15 : span <= 300 ? 60 : 180;
      g.textAlign = 'center';
      g.textBaseline = 'top';
      for (let s = 0; s <= span; s += xstep) {
        const xx = Math.round(x(now - s * 1000)) + 0.5;
        g.beginPath();
        g.moveTo(xx, padT);
        g.lineTo(xx, padT + ph);
        g.stroke();
        const label = s === 0 ? 'now' : s < 60 ? `-${s}s` : `-${s / 60}m`;
        g.textAlign = s === 0 ? 'right' : 'center';
        g.fillText(label, s === 0 ? xx : xx, padT + ph + 5);
      }

      /* series */
      g.save();
      g.beginPath();
      g.rect(padL, padT - 1, pw, ph + 2);
      g.clip();
      opts.series.forEach((s, i) => {
        const color = colors[i];
        const v = vals[i];
        if (opts.fill && !s.dashed) {
          g.fillStyle = color;
          g.globalAlpha = 0.09;
          let open = false;
          let startX = 0;
          let lastX = 0;
          g.beginPath();
          for (let k = 0; k < pts.length; k++) {
            if (v[k] == null) {
              if (open) {
                g.lineTo(lastX, y(0));
                g.lineTo(startX, y(0));
                g.closePath();
                open = false;
              }
              continue;
            }
            const xx = x(pts[k].t);
            if (!open) {
              g.moveTo(xx, y(v[k]));
              startX = xx;
              open = true;
            } else {
              g.lineTo(xx, y(v[k]));
            }
            lastX = xx;
          }
          if (open) {
            g.lineTo(lastX, y(0));
            g.lineTo(startX, y(0));
            g.closePath();
          }
          g.fill();
          g.globalAlpha = 1;
        }
        g.strokeStyle = color;
        g.lineWidth = s.dashed ? 1.5 : 1.8;
        g.setLineDash(s.dashed ? [5, 4] : []);
        g.lineJoin = 'round';
        g.beginPath();
        let pen = false;
        for (let k = 0; k < pts.length; k++) {
          if (v[k] == null || !isFinite(v[k])) {
            pen = false;
            continue;
          }
          const xx = x(pts[k].t);
          const yy = y(v[k]);
          if (pen) g.lineTo(xx, yy);
          else g.moveTo(xx, yy);
          pen = true;
        }
        g.stroke();
      });
      g.setLineDash([]);
      g.restore();

      /* hover: nearest point's values */
      if (this.hoverX != null && pts.length && this.hoverX >= padL) {
        let best = 0;
        for (let k = 1; k < pts.length; k++)
          if (Math.abs(x(pts[k].t) - this.hoverX) < Math.abs(x(pts[best].t) - this.hoverX)) best = k;
        const xx = Math.round(x(pts[best].t)) + 0.5;
        g.strokeStyle = css('--muted');
        g.beginPath();
        g.moveTo(xx, padT);
        g.lineTo(xx, padT + ph);
        g.stroke();
        const lines = [`${Math.round((now - pts[best].t) / 1000)} s ago`];
        opts.series.forEach((s, i) => {
          const v = vals[i][best];
          lines.push(`${s.label}: ${v == null ? '–' : opts.fmt(v)}`);
        });
        g.font = '11.5px system-ui, sans-serif';
        const bw = Math.max(...lines.map((l) => g.measureText(l).width)) + 16;
        const bh = lines.length * 15 + 8;
        let bx = xx + 8;
        if (bx + bw > w - padR) bx = xx - 8 - bw;
        const by = padT + 4;
        g.fillStyle = css('--card');
        g.strokeStyle = css('--line');
        g.beginPath();
        g.rect(bx, by, bw, bh);
        g.fill();
        g.stroke();
        g.textAlign = 'left';
        g.textBaseline = 'top';
        lines.forEach((l, i) => {
          g.fillStyle = i === 0 ? css('--muted') : colors[i - 1];
          g.fillText(l, bx + 8, by + 5 + i * 15);
        });
      }
    }
  }

  const scoped = (p, key) => {
    const m = state.scope ? p.vols[state.scope] : p.all;
    return m ? m[key] : null;
  };
  const cacheValue = (p, key) => (p.cache[key] === undefined ? null : p.cache[key]);

  let charts = [];

  function makeCharts() {
    charts = [
      new Chart('chart-throughput', {
        series: [
          { key: 'readBps', label: 'read', color: '--c-read' },
          { key: 'writeBps', label: 'write', color: '--c-write' },
        ],
        value: scoped,
        fmt: fmtRate,
        axisFmt: fmtBytes,
        bytes: true,
        fill: true,
      }),
      new Chart('chart-iops', {
        series: [
          { key: 'readIops', label: 'read', color: '--c-read' },
          { key: 'writeIops', label: 'write', color: '--c-write' },
        ],
        value: scoped,
        fmt: fmtIops,
        fill: true,
      }),
      new Chart('chart-ratio', {
        series: [
          { key: 'hit', label: 'hit', color: '--c-hit' },
          { key: 'offload', label: 'offload', color: '--c-offload', dashed: true },
        ],
        value: scoped,
        fmt: fmtPct,
        axisFmt: (v) => `${Math.round(v * 100)}%`,
        max: 1,
      }),
      new Chart('chart-latency', {
        series: [
          { key: 'read_hit_p50', label: 'hit p50', color: '--c-hit' },
          { key: 'read_hit_p99', label: 'p99', color: '--c-hit', dashed: true },
          { key: 'read_miss_p50', label: 'miss p50', color: '--c-miss' },
          { key: 'read_miss_p99', label: 'p99', color: '--c-miss', dashed: true },
          { key: 'write_p50', label: 'write p50', color: '--c-write' },
          { key: 'write_p99', label: 'p99', color: '--c-write', dashed: true },
        ],
        value: scoped,
        fmt: fmtUs,
        log: true,
      }),
      new Chart('chart-cache', {
        series: [
          { key: 'logical', label: 'effective', color: '--c-logical' },
          { key: 'used', label: 'RAM used', color: '--c-used' },
          { key: 'capacity', label: 'capacity', color: '--c-capacity', dashed: true },
        ],
        value: cacheValue,
        fmt: fmtBytes,
        bytes: true,
        fill: true,
      }),
      new Chart('chart-churn', {
        series: [
          { key: 'inserts', label: 'inserts/s', color: '--c-insert' },
          { key: 'evictions', label: 'evictions/s', color: '--c-evict' },
        ],
        value: cacheValue,
        fmt: (v) => fmtNum(v, v < 10 ? 1 : 0),
        fill: true,
      }),
    ];
    $('chart-cache').querySelector('figcaption').firstChild.textContent = 'Cache memory (all volumes) ';
    $('chart-churn').querySelector('figcaption').firstChild.textContent = 'Cache churn, blocks/s ';
  }

  /* ------------------------------------------------------------------ */
  /* rendering the numbers                                              */

  function sumKey(vols, key) {
    return vols.reduce((a, v) => a + (v[key] || 0), 0);
  }

  function renderKpis(stats) {
    const vols = state.scope ? stats.volumes.filter((v) => v.name === state.scope) : stats.volumes;
    const readBytes = sumKey(vols, 'read_bytes');
    let hit;
    let offload;
    if (state.scope && vols.length) {
      hit = vols[0].hit_ratio;
      offload = vols[0].offload_ratio;
    } else {
      hit = readBytes ? sumKey(vols, 'read_hit_bytes') / readBytes : 0;
      offload = readBytes ? 1 - sumKey(vols, 'backend_read_bytes') / readBytes : 0;
    }
    setText('v-hit', readBytes ? fmtPct(hit) : '–', hit);
    setText('v-offload', readBytes ? fmtPct(offload) : '–', offload);

    const p = state.points.length ? state.points[state.points.length - 1] : null;
    const m = p ? (state.scope ? p.vols[state.scope] : p.all) : null;
    setText('v-hit-now', m ? fmtPct(m.hit) : '–');
    setText('v-offload-now', m ? fmtPct(m.offload) : '–');
    setText('v-read-iops', m ? fmtIops(m.readIops) : '–', m ? m.readIops : null);
    setText('v-write-iops', m ? fmtIops(m.writeIops) : '–', m ? m.writeIops : null);
    setText('v-read-mbs', m ? fmtRate(m.readBps) : '–', m ? m.readBps : null);
    setText('v-write-mbs', m ? fmtRate(m.writeBps) : '–', m ? m.writeBps : null);

    const c = stats.cache;
    setText('v-dedup', c.unique_blocks ? fmtTimes(c.dedup_ratio) : '–', c.dedup_ratio);
    setText('v-unique', fmtNum(c.unique_blocks));
    setText('v-logical', fmtBytes(c.logical_bytes), c.logical_bytes);
    setText('v-used', fmtBytes(c.used_bytes), c.used_bytes);

    /* Latency since start: the daemon's own figures for one volume; for
     * all volumes the same estimate over the summed histograms. */
    for (const op of LAT_OPS) {
      let p50 = null;
      let p99 = null;
      if (state.scope && vols.length) {
        const l = vols[0].latency_us[op];
        if (l.count) {
          p50 = l.p50;
          p99 = l.p99;
        }
      } else {
        let acc = null;
        for (const v of vols) acc = addBuckets(acc, v.latency_us[op].buckets);
        p50 = quantileUs(acc, 0.5);
        p99 = quantileUs(acc, 0.99);
      }
      setText(`v-lat-${op}-p50`, fmtUs(p50), p50);
      setText(`v-lat-${op}-p99`, fmtUs(p99), p99);
    }
  }

  function renderCache(stats) {
    const c = stats.cache;
    const scale = Math.max(c.capacity_bytes, c.logical_bytes, 1);
    setText('c-used', fmtBytes(c.used_bytes));
    setText('c-capacity', fmtBytes(c.capacity_bytes), c.capacity_bytes);
    setText('c-fill', fmtPct(c.fill_ratio));
    $('c-used-bar').style.width = `${(100 * c.used_bytes) / scale}%`;
    setText('c-logical', fmtBytes(c.logical_bytes));
    const mult = c.used_bytes ? c.logical_bytes / c.used_bytes : null;
    setText('c-multiplier', mult ? fmtTimes(mult) : '–', mult);
    $('c-logical-bar').style.width = `${(100 * c.logical_bytes) / scale}%`;
    setText('c-dedup', c.unique_blocks ? fmtTimes(c.dedup_ratio) : '–');
    setText('c-unique', fmtNum(c.unique_blocks));
    setText('c-logical-blocks', fmtNum(c.logical_blocks));
    setText('c-zero', fmtNum(c.zero_blocks));
    const metaPct = c.used_bytes ? ` (${fmtPct(c.metadata_bytes / c.used_bytes)})` : '';
    setText('c-meta', `${fmtBytes(c.metadata_bytes)}${metaPct}`, c.metadata_bytes);
    $('c-meta').title = 'cache metadata (entries, tables, directories); in brackets: relative to the RAM holding content';
    setText(
      'c-meta-block',
      c.unique_blocks ? `${fmtNum(c.metadata_bytes_per_block, 1)} B` : '–',
      c.metadata_bytes_per_block,
    );
    const p = state.points.length ? state.points[state.points.length - 1] : null;
    const rate = p && p.cache.evictions != null ? ` (${fmtNum(p.cache.evictions, 0)}/s)` : '';
    setText('c-evictions', `${fmtNum(c.evictions)}${rate}`, c.evictions);
    setText('c-inserts', fmtNum(c.inserts));
    setText('c-dedup-hits', fmtNum(c.dedup_hits));
    setText('c-insert-failures', fmtNum(c.insert_failures));
    const input = $('resize-size');
    if (document.activeElement !== input && !input.value) input.placeholder = fmtBytes(c.capacity_bytes).replace(/ |iB/g, '');
  }

  /* ---- volumes table: rows are kept and updated in place, so a button
   * under the mouse survives the refresh ---- */

  const rows = new Map();

  const COLS = ['name', 'state', 'size', 'backend', 'conns', 'mode', 'owner', 'hit', 'offload', 'read', 'write', 'lat', 'cached', 'actions'];
  const NUM_COLS = new Set(['size', 'conns', 'hit', 'offload', 'read', 'write', 'lat', 'cached']);

  /* A two-line figure: IOPS above, bytes/s below. */
  function rateCell(td) {
    const ops = document.createElement('div');
    const bps = document.createElement('div');
    bps.className = 'sub';
    td.append(ops, bps);
    return { ops, bps };
  }

  function button(label, action, cls, handler) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = `small ${cls}`;
    b.textContent = label;
    b.dataset.action = action;
    b.addEventListener('click', handler);
    return b;
  }

  function makeRow(name) {
    const tr = document.createElement('tr');
    tr.dataset.volume = name;
    const cells = {};
    for (const c of COLS) {
      const td = document.createElement('td');
      td.dataset.col = c;
      if (NUM_COLS.has(c)) td.className = 'num';
      tr.append(td);
      cells[c] = td;
    }
    const backend = document.createElement('span');
    backend.className = 'backend';
    cells.backend.append(backend);
    /* Hit ratio above (its value on the cell), the prediction below. */
    const hit = document.createElement('div');
    const mrc2 = document.createElement('div');
    mrc2.className = 'sub mrc2';
    cells.hit.append(hit, mrc2);
    const read = rateCell(cells.read);
    const write = rateCell(cells.write);
    const nameBtn = document.createElement('button');
    nameBtn.type = 'button';
    nameBtn.className = 'vol-name';
    nameBtn.title = 'show this volume in the charts';
    nameBtn.textContent = name;
    nameBtn.addEventListener('click', () => setScope(state.scope === name ? '' : name));
    cells.name.append(nameBtn);
    const badge = document.createElement('span');
    badge.className = 'badge';
    cells.state.append(badge);

    const actions = document.createElement('div');
    actions.className = 'actions';
    const toggle = button('Disable', 'toggle', 'ghost', () => toggleVolume(name, toggle));
    const inval = button('Invalidate', 'invalidate', 'ghost', () => invalidateVolume(name));
    const pf = button('Prefetch', 'prefetch', 'ghost', () => prefetchVolume(name));
    const progress = document.createElement('span');
    progress.className = 'progress';
    progress.hidden = true;
    const track = document.createElement('span');
    track.className = 'track';
    const fill = document.createElement('span');
    fill.className = 'fill';
    track.append(fill);
    const ptext = document.createElement('span');
    progress.append(track, ptext);
    const remove = button('Remove', 'remove', 'danger', () => removeVolume(name));
    actions.append(toggle, inval, pf, progress, remove);
    cells.actions.append(actions);
    return { tr, cells, badge, backend, hit, mrc2, read, write, toggle, pf, progress, fill, ptext };
  }

  function renderVolumes(stats) {
    const body = $('volumes-body');
    const names = new Set(stats.volumes.map((v) => v.name));
    for (const [name, r] of rows) {
      if (!names.has(name)) {
        r.tr.remove();
        rows.delete(name);
      }
    }
    const p = state.points.length ? state.points[state.points.length - 1] : null;
    /* In a cluster every volume has an owner: the column shows then only. */
    const owners = stats.volumes.some((v) => v.owner);
    $('th-owner').hidden = !owners;
    stats.volumes.forEach((v, i) => {
      let r = rows.get(v.name);
      if (!r) {
        r = makeRow(v.name);
        rows.set(v.name, r);
      }
      if (body.children[i] !== r.tr) body.insertBefore(r.tr, body.children[i] || null);
      const enabled = v.state === 'enabled';
      r.tr.dataset.state = v.state;
      r.tr.classList.toggle('selected', state.scope === v.name);
      setText(r.badge, enabled ? 'enabled' : 'disabled');
      r.badge.className = `badge ${enabled ? 'on' : 'off'}`;
      r.badge.title = enabled ? 'cached in RAM' : 'pass-through to the back end';
      setText(r.cells.size, fmtBytes(v.size_bytes), v.size_bytes);
      if (v.backend_hidden) {
        setText(r.backend, 'hidden');
        r.backend.title = 'shown only with the API token (Token button)';
      } else {
        setText(r.backend, v.backend);
        r.backend.title = v.backend;
      }
      r.backend.classList.toggle('hidden', !!v.backend_hidden);
      setText(r.cells.conns, String(v.connections), v.connections);
      /* A fenced volume is read-only for now (its writes refused). */
      setText(r.cells.mode, v.fenced ? 'fenced' : v.readonly ? 'ro' : 'rw', v.readonly ? 1 : 0);
      r.cells.mode.className = v.fenced ? 'mode fenced' : 'mode';
      r.cells.mode.title = v.fenced === 'move' ? 'writes fenced: a move is handing it to another node'
        : v.fenced ? "writes fenced: this node's etcd lease may have expired (reads go to the back end)"
        : v.readonly ? 'read-only' : 'read-write';
      r.cells.owner.hidden = !owners;
      setText(r.cells.owner, v.owner || '–');
      setText(r.hit, v.read_bytes ? fmtPct(v.hit_ratio) : '–');
      r.cells.hit.dataset.value = v.hit_ratio == null || !isFinite(v.hit_ratio) ? '' : String(v.hit_ratio);
      setText(r.cells.offload, v.read_bytes ? fmtPct(v.offload_ratio) : '–', v.offload_ratio);
      const m = p && p.vols[v.name];
      setText(r.read.ops, m ? `${fmtIops(m.readIops)} IOPS` : '–', m ? m.readIops : null);
      setText(r.read.bps, m ? fmtRate(m.readBps) : '', m ? m.readBps : null);
      setText(r.write.ops, m ? `${fmtIops(m.writeIops)} IOPS` : '–', m ? m.writeIops : null);
      setText(r.write.bps, m ? fmtRate(m.writeBps) : '', m ? m.writeBps : null);
      const l = v.latency_us.read_hit;
      setText(r.cells.lat, l.count ? `${fmtUs(l.p50)} / ${fmtUs(l.p99)}` : '–');
      setText(r.cells.cached, fmtBytes(v.cached_blocks * BLOCK), v.cached_blocks);
      r.cells.cached.title = `${fmtNum(v.cached_blocks)} blocks, ${fmtNum(v.zero_blocks)} of them zero`;
      if (!r.toggle.disabled) {
        setText(r.toggle, enabled ? 'Disable' : 'Enable');
        r.toggle.title = enabled ? 'turn acceleration off (pass-through; contents dropped)' : 'turn acceleration on';
      }
      if (!state.seenVolumes.has(v.name)) {
        state.seenVolumes.add(v.name);
        pollPrefetch(v.name, true);
      }
    });
    for (const name of state.seenVolumes) if (!names.has(name)) state.seenVolumes.delete(name);
    const hidden = stats.volumes.some((v) => v.backend_hidden);
    $('backends-hidden').hidden = !hidden;
    setText(
      'backends-hidden-text',
      getToken()
        ? 'Back ends are hidden: the stored token was not accepted (it changes when shoald makes a new one).'
        : 'Back ends are hidden: their paths are shown only to requests that carry the API token.',
    );
    setText('vol-count', `(${stats.volumes.length})`);
    $('no-volumes').hidden = stats.volumes.length > 0;
    $('volumes').hidden = stats.volumes.length === 0;
  }

  function renderScopeSelect(stats) {
    const sel = $('scope-select');
    const want = ['', ...stats.volumes.map((v) => v.name)];
    const have = [...sel.options].map((o) => o.value);
    if (want.join('\0') !== have.join('\0')) {
      sel.replaceChildren();
      for (const n of want) {
        const o = document.createElement('option');
        o.value = n;
        o.textContent = n || 'All volumes';
        sel.append(o);
      }
    }
    if (state.scope && !want.includes(state.scope)) state.scope = '';
    sel.value = state.scope;
    setText('scope-title', state.scope ? `Volume ${state.scope}` : 'All volumes');
  }

  function render() {
    if (!state.last) return;
    const stats = state.last.stats;
    setText('version', `shoald ${stats.version}`);
    setText('uptime', fmtDuration(stats.uptime_seconds));
    renderScopeSelect(stats);
    renderKpis(stats);
    renderCache(stats);
    renderVolumes(stats);
    renderVolumeMrc();
    renderSizing();
    renderCluster();
    if (stats.memcached && !cluster.started && !state.paused) {
      cluster.started = true;
      scheduleCluster(0);
    }
    for (const c of charts) c.draw();
    mrcCheckFresh(stats);
  }

  function setScope(name) {
    state.scope = name;
    render();
  }

  /* ------------------------------------------------------------------ */
  /* cache sizing: miss-ratio curves (GET /api/v1/mrc)                  */

  /* The curves move slowly (they rest on thousands of sampled reads) and
   * each answer snapshots every volume: polled every 10 s, not every
   * stats tick; sooner only when the capacity or the volumes changed (a
   * resize starts the curves over), and then at most every 2 s. */
  const MRC_POLL_MS = 10000;
  const MRC_EARLY_MS = 2000;
  const MRC_MIN_SAMPLES = 1000; /* below this the prediction is mostly noise */
  /* A volume's curve has a fixed, smaller sample budget (its rate falls as
   * the cache grows), so a volume of a large cache may take long to reach
   * MRC_MIN_SAMPLES: from this many on, its figure shows, marked rough. */
  const MRC_ROUGH_SAMPLES = 100;
  const MRC_AXIS = [0.125, 0.25, 0.5, 1, 2, 4]; /* labelled sizes; 3/4 and 3/2 are points only */
  const SVGNS = 'http://www.w3.org/2000/svg';

  const mrc = { data: null, error: null, at: 0, timer: null, busy: false, drawn: '' };

  const mrcPoint = (curve, factor) =>
    curve && Array.isArray(curve.points) ? curve.points.find((p) => p.factor === factor) || null : null;
  const mrcReady = (curve) => !!curve && curve.sampled_reads >= MRC_MIN_SAMPLES;

  function mrcVolume(name) {
    const list = mrc.data && Array.isArray(mrc.data.volumes) ? mrc.data.volumes : [];
    const v = list.find((x) => x.name === name);
    return v ? v.mrc : null;
  }

  /* 0.125 -> "1/8", 1.5 -> "1.5", 2 -> "2". */
  function fmtFactor(f) {
    let n = Math.round(f * 8);
    if (f >= 1) return String(f);
    let d = 8;
    while (n % 2 === 0) {
      n /= 2;
      d /= 2;
    }
    return `${n}/${d}`;
  }

  function scheduleMrc(ms) {
    if (state.paused && ms !== 0) return;
    if (mrc.timer) clearTimeout(mrc.timer);
    mrc.timer = setTimeout(pollMrc, ms);
  }

  async function pollMrc() {
    mrc.timer = null;
    if (mrc.busy) return;
    mrc.busy = true;
    try {
      mrc.data = await api('GET', `${API}/mrc`);
      mrc.error = null;
    } catch (e) {
      /* Shown in the panel only: the stats poll reports a lost daemon. */
      mrc.error = e;
    } finally {
      mrc.at = performance.now();
      mrc.busy = false;
    }
    renderSizing();
    renderVolumeMrc();
    if (!state.paused) scheduleMrc(MRC_POLL_MS);
  }

  /* After a stats sample: is the curve from another capacity or another
   * set of volumes? */
  function mrcCheckFresh(stats) {
    if (!mrc.data || mrc.busy || state.paused || performance.now() - mrc.at < MRC_EARLY_MS) return;
    const names = (list) => list.map((v) => v.name).join('\0');
    const stale = mrc.data.capacity_bytes !== stats.cache.capacity_bytes ||
      names(mrc.data.volumes || []) !== names(stats.volumes);
    if (stale) scheduleMrc(0);
  }

  function svgEl(tag, attrs, parent) {
    const el = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (parent) parent.append(el);
    return el;
  }

  /* The curves as SVG: x = cache size (log scale, today's size marked),
   * y = predicted hit ratio. Each point carries data-factor, data-bytes
   * and data-hit (the API's values) and a tooltip. */
  function drawMrcChart(capacity, series) {
    const fig = $('mrc-chart');
    const w = fig.clientWidth;
    const h = 210;
    const key = JSON.stringify([w, capacity, series.map((s) => [s.cls, s.curve])]);
    if (!w || key === mrc.drawn) return;
    mrc.drawn = key;
    const padL = 44;
    const padR = 16;
    const padT = 18;
    const padB = 22;
    const pw = w - padL - padR;
    const ph = h - padT - padB;
    const lo = Math.log2(MRC_AXIS[0]);
    const hi = Math.log2(MRC_AXIS[MRC_AXIS.length - 1]);
    const x = (f) => padL + ((Math.log2(f) - lo) / (hi - lo)) * pw;
    const y = (r) => padT + ph - Math.min(1, Math.max(0, r)) * ph;
    const root = svgEl('svg', { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: 'img' });
    svgEl('title', {}, root).textContent = 'Predicted read hit ratio by cache size';

    const grid = svgEl('g', { class: 'grid' }, root);
    for (const r of [0, 0.25, 0.5, 0.75, 1]) {
      const yy = Math.round(y(r)) + 0.5;
      svgEl('line', { x1: padL, x2: w - padR, y1: yy, y2: yy }, grid);
      const t = svgEl('text', { x: padL - 6, y: yy, 'text-anchor': 'end', 'dominant-baseline': 'middle' }, grid);
      t.textContent = `${r * 100}%`;
    }
    for (const f of MRC_AXIS) {
      const xx = Math.round(x(f)) + 0.5;
      svgEl('line', { x1: xx, x2: xx, y1: padT, y2: padT + ph }, grid);
      const anchor = f === MRC_AXIS[0] ? 'start' : f === MRC_AXIS[MRC_AXIS.length - 1] ? 'end' : 'middle';
      const t = svgEl('text', { x: xx, y: padT + ph + 6, 'text-anchor': anchor, 'dominant-baseline': 'hanging' }, grid);
      t.textContent = capacity ? fmtBytes(capacity * f) : `${fmtFactor(f)}×`;
    }
    const tx = Math.round(x(1)) + 0.5;
    const today = svgEl('g', { class: 'today' }, root);
    svgEl('line', { x1: tx, x2: tx, y1: padT - 4, y2: padT + ph }, today);
    const tt = svgEl('text', { x: tx, y: padT - 7, 'text-anchor': 'middle' }, today);
    tt.textContent = 'today';

    let drawn = 0;
    for (const s of series) {
      const pts = s.curve && s.curve.sampled_reads > 0 && Array.isArray(s.curve.points) ? s.curve.points : [];
      if (!pts.length) continue;
      drawn++;
      const cls = `series ${s.cls}${mrcReady(s.curve) ? '' : ' tentative'}`;
      const g = svgEl('g', { class: cls, 'data-series': s.cls }, root);
      const line = pts.map((p) => `${x(p.factor).toFixed(1)},${y(p.hit_ratio).toFixed(1)}`);
      svgEl('polyline', { points: line.join(' ') }, g);
      for (const p of pts) {
        const c = svgEl('circle', {
          cx: x(p.factor).toFixed(1),
          cy: y(p.hit_ratio).toFixed(1),
          r: p.factor === 1 ? 4.5 : 3.2,
          'data-factor': p.factor,
          'data-bytes': p.cache_bytes,
          'data-hit': p.hit_ratio,
        }, g);
        svgEl('title', {}, c).textContent =
          `${s.label}: ${fmtPct(p.hit_ratio)} with ${fmtBytes(p.cache_bytes)} (${fmtFactor(p.factor)}× today)`;
      }
    }
    if (!drawn) {
      const t = svgEl('text', { x: padL + pw / 2, y: padT + ph / 2, 'text-anchor': 'middle', class: 'empty' }, root);
      t.textContent = mrc.data ? 'no reads sampled yet' : 'waiting for the curve';
    }
    fig.replaceChildren(root);
    fig.dataset.points = String(root.querySelectorAll('g.series.cache circle').length);
  }

  /* "gold alone: with 2× the RAM 91.0%, today 86.0%, with half 70.2%." */
  function volumeSentence(name, c) {
    if (!mrcReady(c)) return `${name} alone: collecting samples (${fmtNum(c.sampled_reads)} sampled reads so far).`;
    const [p2, p1, ph] = [mrcPoint(c, 2), mrcPoint(c, 1), mrcPoint(c, 0.5)];
    return `${name} alone: with 2× the RAM ${fmtPct(p2 && p2.hit_ratio)}, today ${fmtPct(p1 && p1.hit_ratio)}, ` +
      `with half ${fmtPct(ph && ph.hit_ratio)} (${fmtNum(c.sampled_reads)} sampled reads).`;
  }

  function renderPointsTable(curve) {
    const head = $('mrc-points').tHead.rows[0];
    const body = $('mrc-points').tBodies[0].rows[0];
    const pts = curve && Array.isArray(curve.points) ? curve.points : [];
    while (head.cells.length > pts.length + 1) head.deleteCell(-1);
    while (body.cells.length > pts.length + 1) body.deleteCell(-1);
    pts.forEach((p, i) => {
      const th = head.cells[i + 1] || head.appendChild(document.createElement('th'));
      const td = body.cells[i + 1] || body.appendChild(document.createElement('td'));
      th.className = p.factor === 1 ? 'num today' : 'num';
      td.className = th.className;
      /* Size above, share of today's size below. */
      if (!th.firstChild) th.append(document.createElement('div'), document.createElement('div'));
      setText(th.firstChild, fmtBytes(p.cache_bytes));
      setText(th.lastChild, p.factor === 1 ? 'today' : `${fmtFactor(p.factor)}×`);
      th.lastChild.className = 'sub';
      th.dataset.value = String(p.cache_bytes);
      td.dataset.factor = String(p.factor);
      setText(td, fmtPct(p.hit_ratio), p.hit_ratio);
    });
  }

  function renderSizing() {
    const d = mrc.data;
    const curve = d ? d.cache : null;
    const ready = mrcReady(curve);
    const panel = $('mrc-panel');
    panel.dataset.state = !curve ? 'none' : ready ? 'ready' : 'collecting';
    const err = $('mrc-error');
    err.hidden = !mrc.error;
    if (mrc.error) {
      const status = mrc.error.status ? `${mrc.error.status} ` : '';
      setText(err, `The curve could not be read: ${status}${mrc.error.message}`);
    }

    const samples = curve ? curve.sampled_reads : null;
    setText('mrc-sampled', samples == null ? '–' : fmtNum(samples), samples);
    setText('mrc-rate', curve && curve.rate ? `1 in ${fmtNum(1 / curve.rate, 1)}` : '–', curve ? curve.rate : null);
    setText('mrc-memory', curve ? fmtBytes(curve.memory_bytes) : '–', curve ? curve.memory_bytes : null);
    const vols = state.last ? state.last.stats.volumes : [];
    const rb = sumKey(vols, 'read_bytes');
    setText('mrc-measured', rb ? fmtPct(sumKey(vols, 'read_hit_bytes') / rb) : '–');

    $('mrc-sentence').hidden = !ready;
    $('mrc-collecting').hidden = ready || !curve;
    setText('mrc-so-far', samples ? fmtNum(samples) : 'no');
    setText('mrc-min', fmtNum(MRC_MIN_SAMPLES));
    const p2 = mrcPoint(curve, 2);
    const p1 = mrcPoint(curve, 1);
    const ph = mrcPoint(curve, 0.5);
    setText('mrc-2x-size', p2 ? fmtBytes(p2.cache_bytes) : '–', p2 ? p2.cache_bytes : null);
    setText('mrc-2x', p2 ? fmtPct(p2.hit_ratio) : '–', p2 ? p2.hit_ratio : null);
    setText('mrc-1x', p1 ? fmtPct(p1.hit_ratio) : '–', p1 ? p1.hit_ratio : null);
    setText('mrc-half-size', ph ? fmtBytes(ph.cache_bytes) : '–', ph ? ph.cache_bytes : null);
    setText('mrc-half', ph ? fmtPct(ph.hit_ratio) : '–', ph ? ph.hit_ratio : null);
    renderPointsTable(curve);

    /* A volume in scope: its own curve beside the whole cache's. */
    const vc = state.scope ? mrcVolume(state.scope) : null;
    const vs = $('mrc-vol-sentence');
    vs.hidden = !vc;
    $('mrc-legend-vol').hidden = !vc;
    if (vc) {
      setText(vs, volumeSentence(state.scope, vc), mrcReady(vc) && mrcPoint(vc, 2) ? mrcPoint(vc, 2).hit_ratio : null);
      setText('mrc-legend-vol-name', state.scope);
    }
    const series = [{ cls: 'cache', label: 'all volumes', curve }];
    if (vc) series.push({ cls: 'vol', label: `${state.scope} alone`, curve: vc });
    drawMrcChart(d ? d.capacity_bytes : null, series);
  }

  /* Each volume's "2× RAM" figure (under its hit ratio), from its own
   * curve: "~" and whole percents while it rests on few samples. */
  function renderVolumeMrc() {
    for (const [name, r] of rows) {
      const c = mrcVolume(name);
      const td = r.mrc2;
      const p2 = mrcPoint(c, 2);
      const rough = !mrcReady(c);
      td.dataset.samples = c ? String(c.sampled_reads) : '';
      td.classList.toggle('rough', rough);
      if (p2 && c.sampled_reads >= (rough ? MRC_ROUGH_SAMPLES : MRC_MIN_SAMPLES)) {
        const p1 = mrcPoint(c, 1);
        const ph = mrcPoint(c, 0.5);
        const shown = rough ? `~${Math.round(p2.hit_ratio * 100)}%` : fmtPct(p2.hit_ratio);
        setText(td, `2× RAM: ${shown}`, p2.hit_ratio);
        td.title =
          `${name} alone in the cache, predicted read hit ratio: ${fmtPct(ph && ph.hit_ratio)} with half the RAM, ` +
          `${fmtPct(p1 && p1.hit_ratio)} today, ${fmtPct(p2.hit_ratio)} with 2× (${fmtBytes(p2.cache_bytes)}); ` +
          `from ${fmtNum(c.sampled_reads)} sampled reads` +
          (rough ? ` (rough: the curve settles after ${fmtNum(MRC_MIN_SAMPLES)})` : '');
      } else {
        setText(td, '', null);
        td.title = c
          ? `collecting samples: ${fmtNum(c.sampled_reads)} of ${fmtNum(MRC_MIN_SAMPLES)} sampled reads`
          : 'no miss-ratio curve yet';
      }
    }
  }

  /* ------------------------------------------------------------------ */
  /* cluster: nodes and memcached servers (GET /api/v1/cluster)         */

  /* Shown when the node has a memcached tier (--memcached or --etcd: the
   * stats then carry "memcached"). The answer may ask etcd, so it is
   * polled every few seconds, not every stats tick; memcached's own
   * figures are refreshed by the daemon every 3 s anyway. */
  const CLUSTER_POLL_MS = 3000;
  const cluster = { data: null, error: null, timer: null, busy: false, started: false };

  function scheduleCluster(ms) {
    if (state.paused && ms !== 0) return;
    if (cluster.timer) clearTimeout(cluster.timer);
    cluster.timer = setTimeout(pollCluster, ms);
  }

  async function pollCluster() {
    cluster.timer = null;
    if (cluster.busy) return;
    cluster.busy = true;
    try {
      cluster.data = await api('GET', `${API}/cluster`);
      cluster.error = null;
    } catch (e) {
      cluster.error = e;
    } finally {
      cluster.busy = false;
      renderCluster();
      if (!state.paused) scheduleCluster(CLUSTER_POLL_MS);
    }
  }

  function shareCell(td, cls, ratio) {
    let track = td.querySelector('.track');
    if (!track) {
      const wrap = document.createElement('span');
      wrap.className = 'share';
      track = document.createElement('span');
      track.className = 'track';
      const fill = document.createElement('span');
      fill.className = `fill ${cls}`;
      track.append(fill);
      const text = document.createElement('span');
      text.className = 'pct';
      wrap.append(track, text);
      td.append(wrap);
    }
    const r = ratio == null || !isFinite(ratio) ? 0 : ratio;
    track.firstChild.style.width = `${Math.min(100, r * 100).toFixed(1)}%`;
    setText(td.querySelector('.pct'), fmtPct(r));
    td.dataset.value = String(r);
  }

  /* Rows keyed by data-key, kept in place (in the order of `items`). */
  function syncRows(body, items, key, cols, fill) {
    const want = new Set(items.map(key));
    for (const tr of [...body.children]) if (!want.has(tr.dataset.key)) tr.remove();
    items.forEach((it, i) => {
      let tr = body.querySelector(`tr[data-key="${CSS.escape(key(it))}"]`);
      if (!tr) {
        tr = document.createElement('tr');
        tr.dataset.key = key(it);
        for (const c of cols) {
          const td = document.createElement('td');
          td.dataset.col = c.name;
          if (c.num) td.className = 'num';
          tr.append(td);
        }
      }
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
      const cells = {};
      for (const td of tr.children) cells[td.dataset.col] = td;
      fill(it, cells, tr);
    });
  }

  const NODE_COLS = ['name', 'state', 'api', 'memcached', 'volumes', 'started'].map((name) => ({ name }));
  const SERVER_COLS = [
    { name: 'server' }, { name: 'node' }, { name: 'state' }, { name: 'ring' }, { name: 'hits' },
    { name: 'hit', num: true }, { name: 'lat', num: true }, { name: 'items', num: true },
    { name: 'bytes', num: true }, { name: 'waste', num: true }, { name: 'block', num: true },
  ];

  function badge(td, text, cls, title) {
    let b = td.querySelector('.badge');
    if (!b) {
      b = document.createElement('span');
      td.append(b);
    }
    b.className = `badge ${cls}`;
    setText(b, text);
    b.title = title || '';
    td.dataset.value = text;
  }

  function renderCluster() {
    const stats = state.last ? state.last.stats : null;
    const panel = $('cluster-panel');
    panel.hidden = !(stats && stats.memcached);
    if (panel.hidden) return;
    const d = cluster.data;
    const err = $('cl-error');
    err.hidden = !cluster.error;
    if (cluster.error) {
      const status = cluster.error.status ? `${cluster.error.status} ` : '';
      setText(err, `The cluster could not be read: ${status}${cluster.error.message}`);
    }
    if (!d) return;
    const etcd = d.enabled === true;
    panel.dataset.etcd = etcd ? '1' : '0';
    setText('cl-summary', etcd ? `node ${d.node} · etcd ${d.etcd}` : 'memcached tier, no etcd (servers from --memcached)');
    /* The node's own view holds without etcd: said when it matters (etcd
       out of reach, or this node fenced). */
    const self = $('cl-self');
    self.hidden = !(etcd && (d.etcd_error || d.fenced));
    if (!self.hidden) {
      const owned = Array.isArray(d.owned) && d.owned.length ? d.owned.join(', ') : 'none';
      const parts = [];
      if (d.etcd_error) parts.push(`etcd cannot be read (${d.etcd_error}): nodes and owners below are unknown.`);
      parts.push(d.fenced ? `This node is fenced: writes to its read-write volumes (${owned}) are refused and their reads go past the cache.`
        : `This node is not fenced (read-write here: ${owned}).`);
      parts.push(`etcd last renewed its lease ${fmtNum(d.lease_renewed_seconds_ago, 1)} s ago.`);
      setText(self, parts.join(' '));
    }

    const listed = etcd && !d.etcd_error; /* etcd's lists are known */
    $('cl-nodes-wrap').hidden = !listed;
    syncRows($('cl-nodes-body'), etcd && Array.isArray(d.nodes) ? d.nodes : [], (n) => n.name, NODE_COLS, (n, c) => {
      setText(c.name, n.self ? `${n.name} (this)` : n.name);
      badge(c.state, n.state || '?', n.state === 'alive' ? 'on' : 'bad', 'its etcd lease lives');
      setText(c.api, n.api || '–');
      setText(c.memcached, n.memcached || '–');
      const vols = Array.isArray(n.volumes) ? n.volumes : [];
      setText(c.volumes, vols.length ? vols.join(', ') : '–', vols.length);
      setText(c.started, n.started ? new Date(n.started * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–');
    });

    const servers = Array.isArray(d.memcached) ? d.memcached : [];
    setText('cl-server-count', `(${servers.length})`);
    $('th-cl-node').hidden = !etcd;
    syncRows($('cl-servers-body'), servers, (m) => m.server, SERVER_COLS, (m, c, tr) => {
      tr.dataset.state = m.state || 'absent';
      setText(c.server, m.server);
      c.node.hidden = !etcd;
      setText(c.node, listed ? m.node || 'added' : '–');
      c.node.title = listed && !m.node ? 'added with shoalctl cluster add (no node)' : '';
      if (!m.state) {
        badge(c.state, 'not in ring', 'off', 'listed in etcd, not yet in this node\'s ring');
      } else if (m.state === 'ejected') {
        badge(c.state, 'ejected', 'bad', `retried in ${fmtNum(m.retry_in_seconds, 1)} s after ${m.failures} failure(s)`);
      } else {
        badge(c.state, m.state, m.state === 'live' ? 'on' : 'off',
          m.state === 'live' ? 'answering' : `${m.failures} failure(s) in a row: one more may eject it`);
      }
      shareCell(c.ring, 'ring', m.ring_share);
      c.ring.title = `${fmtNum(m.ring_buckets)} of 8192 buckets`;
      shareCell(c.hits, 'hits', m.hit_share);
      setText(c.hit, m.lookup_keys ? `${fmtNum(m.lookup_hits)} / ${fmtNum(m.lookup_keys)}` : '–', m.lookup_hits);
      c.hit.title = m.lookup_keys ? `hit ratio ${fmtPct(m.hit_ratio)} over ${fmtNum(m.lookups)} multi-gets` : '';
      setText(c.lat, m.lookups ? `${fmtUs(m.latency_p50_seconds * 1e6)} / ${fmtUs(m.latency_p99_seconds * 1e6)}` : '–',
        m.latency_p50_seconds);
      c.lat.title = m.lookups ? `mean ${fmtUs(m.latency_mean_seconds * 1e6)}` : '';
      const ok = m.stats_ok === true;
      setText(c.items, ok ? fmtNum(m.curr_items) : '–', ok ? m.curr_items : null);
      setText(c.bytes, ok ? `${fmtBytes(m.bytes)} of ${fmtBytes(m.limit_maxbytes)}` : '–', ok ? m.bytes : null);
      setText(c.waste, ok && m.slab_chunk_bytes ? `${fmtBytes(m.slab_waste_bytes)} (${fmtPct(m.slab_waste_ratio)})` : '–',
        ok ? m.slab_waste_bytes : null);
      setText(c.block, ok && m.curr_items ? `${fmtNum(m.chunk_bytes_per_item, 0)} B` : '–', ok ? m.chunk_bytes_per_item : null);
      const why = ok ? `memcached's own figures, ${fmtNum(m.stats_age_seconds, 1)} s old`
        : `its stats could not be read${m.stats_error ? `: ${m.stats_error}` : ''}`;
      for (const k of ['items', 'bytes', 'waste', 'block']) c[k].title = why;
    });

    const t = d.tier || {};
    const c = stats.cache;
    setText('cl-live', t.servers != null ? `${t.live} of ${t.servers}` : '–', t.live);
    setText('cl-items', fmtNum(t.curr_items), t.curr_items);
    setText('cl-mc-block', t.curr_items ? `${fmtNum(t.chunk_bytes_per_item, 0)} B` : '–', t.chunk_bytes_per_item);
    const local = c.unique_blocks ? BLOCK + c.metadata_bytes_per_block : null;
    setText('cl-local-block', local ? `${fmtNum(local, 0)} B` : '–', local);
    setText('cl-waste', t.slab_chunk_bytes ? fmtPct(t.slab_waste_ratio) : '–', t.slab_waste_ratio);
    setText('cl-tier-hits', fmtNum(c.tier_hits), c.tier_hits);
    setText('cl-puts', fmtNum(t.put_sent), t.put_sent);
    setText('cl-drops', fmtNum(t.put_drops), t.put_drops);
    setText('cl-queued', fmtBytes(t.put_queued), t.put_queued);
    setText('cl-ejections', fmtNum(t.ejections), t.ejections);
  }

  /* ------------------------------------------------------------------ */
  /* polling                                                            */

  let pollTimer = null;
  let polling = false;

  function setConn(kind, text) {
    $('conn-dot').className = `dot ${kind}`;
    setText('conn-text', text);
  }

  async function poll() {
    pollTimer = null;
    if (polling) return;
    polling = true;
    try {
      const stats = await api('GET', `${API}/stats`);
      const t = performance.now();
      ingest(stats, t);
      if (state.failures) ok('Connection to shoald restored.');
      state.failures = 0;
      setConn(state.paused ? 'paused' : 'live', state.paused ? 'paused' : 'live');
      render();
      await pollPrefetches();
    } catch (e) {
      state.failures++;
      setConn('down', e.status ? `error ${e.status}` : 'unreachable');
      if (state.failures === 1) showApiError(e);
    } finally {
      polling = false;
      if (!state.paused) schedulePoll(state.intervalMs);
    }
  }

  function schedulePoll(ms) {
    if (state.paused && ms !== 0) return;
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, ms);
  }

  /* ------------------------------------------------------------------ */
  /* actions                                                            */

  async function toggleVolume(name, btn) {
    const r = rows.get(name);
    const enabled = r && r.tr.dataset.state === 'enabled';
    btn.disabled = true;
    try {
      const v = await mutate('POST', volPath(name, enabled ? '/disable' : '/enable'));
      ok(`${name}: acceleration ${v && v.state === 'enabled' ? 'on' : 'off (pass-through)'}.`);
    } catch (e) {
      /* shown by mutate */
    } finally {
      btn.disabled = false;
    }
  }

  async function invalidateVolume(name) {
    const r = await ask({
      title: `Invalidate ${name}`,
      text:
        'Drop cached blocks so the next reads come from the back end. Needed after the back end ' +
        'was changed behind shoal (another host, a storage-side copy, a snapshot revert). ' +
        'Leave the range empty for the whole volume.',
      range: true,
      okLabel: 'Invalidate',
    });
    if (!r) return;
    let body;
    try {
      body = rangeBody(r);
    } catch (e) {
      message('error', e.message, 8000);
      return;
    }
    try {
      const res = await mutate('POST', volPath(name, '/invalidate'), body);
      ok(`${name}: invalidated ${fmtBytes(res.length)} at offset ${fmtNum(res.offset)}.`);
    } catch (e) {
      /* shown */
    }
  }

  async function prefetchVolume(name) {
    const r = await ask({
      title: `Prefetch ${name}`,
      text: 'Read a range from the back end into RAM in the background. Leave the range empty for the whole volume.',
      range: true,
      okLabel: 'Prefetch',
    });
    if (!r) return;
    let body;
    try {
      body = rangeBody(r);
    } catch (e) {
      message('error', e.message, 8000);
      return;
    }
    try {
      const res = await mutate('POST', volPath(name, '/prefetch'), body);
      state.prefetch.set(name, { running: true, offset: res.offset, length: res.length, done_bytes: 0 });
      showPrefetch(name);
      ok(`${name}: prefetch of ${fmtBytes(res.length)} started.`);
    } catch (e) {
      /* shown */
    }
  }

  function showPrefetch(name) {
    const r = rows.get(name);
    const st = state.prefetch.get(name);
    if (!r) return;
    const running = !!(st && st.running);
    r.progress.hidden = !running;
    r.pf.hidden = running;
    r.tr.dataset.prefetch = running ? 'running' : 'idle';
    if (running) {
      const frac = st.length ? st.done_bytes / st.length : 0;
      r.fill.style.width = `${Math.min(100, frac * 100).toFixed(1)}%`;
      r.ptext.textContent = `${(frac * 100).toFixed(0)}%`;
      r.progress.title = `prefetch: ${fmtBytes(st.done_bytes)} of ${fmtBytes(st.length)}`;
      r.progress.dataset.value = String(frac);
    }
  }

  async function pollPrefetch(name, quiet) {
    let st;
    try {
      st = await api('GET', volPath(name, '/prefetch'));
    } catch (e) {
      if (e.status === 404) state.prefetch.delete(name);
      return;
    }
    const was = state.prefetch.get(name);
    if (st.running) {
      state.prefetch.set(name, st);
    } else if (was) {
      state.prefetch.delete(name);
      if (!quiet) {
        if (st.error) message('error', `${name}: prefetch stopped: ${st.error}`, 20000);
        else ok(`${name}: prefetch done (${fmtBytes(st.done_bytes)}).`);
      }
    }
    showPrefetch(name);
  }

  /* Watched prefetches every poll; every 10th poll also the others, so a
   * prefetch started elsewhere (shoalctl, NBD_CMD_CACHE) shows up. */
  let prefetchSweep = 0;
  async function pollPrefetches() {
    const names = new Set(state.prefetch.keys());
    if (++prefetchSweep % 10 === 0 && state.last && state.last.stats.volumes.length <= 64)
      for (const v of state.last.stats.volumes) names.add(v.name);
    await Promise.all([...names].map((n) => pollPrefetch(n, !state.prefetch.has(n))));
  }

  async function removeVolume(name) {
    const r = rows.get(name);
    const conns = r ? Number(r.cells.conns.dataset.value || 0) : 0;
    const first = await ask({
      title: `Remove ${name}`,
      text: `Stop serving ${name} and drop its cache. The back end is not touched.` +
        (conns ? ` ${conns} client(s) are connected right now.` : ''),
      okLabel: 'Remove',
      danger: true,
    });
    if (!first) return;
    try {
      await mutate('DELETE', volPath(name));
      ok(`${name} removed.`);
      return;
    } catch (e) {
      if (e.status !== 409) return;
    }
    const force = await ask({
      title: `Force removal of ${name}?`,
      text: `${name} has connected clients. Forcing the removal disconnects them; their in-flight requests fail.`,
      okLabel: 'Force remove',
      danger: true,
    });
    if (!force) return;
    try {
      await mutate('DELETE', volPath(name, '?force=1'));
      ok(`${name} removed (clients disconnected).`);
    } catch (e) {
      /* shown */
    }
  }

  async function addVolume(ev) {
    ev.preventDefault();
    const name = $('add-name').value.trim();
    const backing = $('add-backing').value.trim();
    const readonly = $('add-readonly').checked;
    if (!name || !backing) return;
    const btn = ev.target.querySelector('button');
    btn.disabled = true;
    try {
      await mutate('POST', `${API}/volumes`, { name, backing, readonly });
      ok(`${name} added.`);
      $('add-name').value = '';
      $('add-backing').value = '';
      $('add-readonly').checked = false;
    } catch (e) {
      /* shown */
    } finally {
      btn.disabled = false;
    }
  }

  async function resizeCache(ev) {
    ev.preventDefault();
    const input = $('resize-size');
    const size = input.value.trim();
    if (!SIZE_RE.test(size)) {
      message('error', `"${size}" is not a size (bytes, or 512M, 2G…)`, 8000);
      return;
    }
    try {
      const c = await mutate('POST', `${API}/cache/resize`, { size: /^\d+$/.test(size) ? Number(size) : size });
      ok(`Cache capacity is now ${fmtBytes(c.capacity_bytes)}.`);
      input.value = '';
    } catch (e) {
      /* shown */
    }
  }

  /* ------------------------------------------------------------------ */
  /* start                                                              */

  function start() {
    loadPrefs();
    makeCharts();
    updateTokenButton();
    $('scope-select').addEventListener('change', (ev) => setScope(ev.target.value));
    $('window-select').addEventListener('change', (ev) => {
      state.windowSec = Number(ev.target.value);
      savePrefs();
      render();
    });
    $('interval-select').addEventListener('change', (ev) => {
      state.intervalMs = Number(ev.target.value);
      savePrefs();
      schedulePoll(state.intervalMs);
    });
    $('pause-btn').addEventListener('click', () => {
      state.paused = !state.paused;
      $('pause-btn').textContent = state.paused ? 'Resume' : 'Pause';
      if (state.paused) {
        if (pollTimer) clearTimeout(pollTimer);
        pollTimer = null;
        if (mrc.timer) clearTimeout(mrc.timer);
        mrc.timer = null;
        if (cluster.timer) clearTimeout(cluster.timer);
        cluster.timer = null;
        setConn('paused', 'paused');
      } else {
        /* A gap in time would read as one slow interval: restart rates. */
        state.last = null;
        schedulePoll(0);
        scheduleMrc(0);
        if (cluster.started) scheduleCluster(0);
      }
    });
    $('token-btn').addEventListener('click', () => askToken('').then(() => schedulePoll(0)));
    $('backends-token').addEventListener('click', () =>
      askToken('Back ends are shown only with the token.').then(() => schedulePoll(0)),
    );
    /* Only the confirming button submits, so Enter in a field confirms. */
    for (const b of document.querySelectorAll('dialog [data-close]'))
      b.addEventListener('click', () => b.closest('dialog').close(b.dataset.close));
    $('add-form').addEventListener('submit', addVolume);
    $('resize-form').addEventListener('submit', resizeCache);
    /* for tests and curious admins */
    window.shoal = { state, quantileUs, mrc, cluster };
    if (window.ResizeObserver) new ResizeObserver(() => renderSizing()).observe($('mrc-chart'));
    schedulePoll(0);
    scheduleMrc(0);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
