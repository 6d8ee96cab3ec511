// Shared by the end-to-end tests: start the lab's server, launch Debian's Chromium, read files.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'node:test';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const MODEL = path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf');

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** Starts scripts/serve.py on a free port; returns { url, stop }. */
export async function startServer() {
  const port = await freePort();
  const proc = spawn('python3', [path.join(ROOT, 'scripts/serve.py'), '--port', String(port)], {
    env: { ...process.env, PROBELAB_SERVE_QUIET: '1' }, stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((resolve, reject) => {
    proc.stdout.on('data', (d) => { if (String(d).includes('Probelab is at')) resolve(); });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}/`, stop: () => proc.kill() };
}

function launchOptions(webgpu) {
  return {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic',
      ...(webgpu ? ['--enable-unsafe-webgpu'] : []),
    ],
  };
}

const browsers = new Set();

/** Headless Chromium; webgpu: true adds the flag that exposes SwiftShader's WebGPU adapter. */
export async function launch({ webgpu = false } = {}) {
  const browser = await chromium.launch(launchOptions(webgpu));
  browsers.add(browser);
  browser.on('disconnected', () => browsers.delete(browser));
  return browser;
}

// Every test owns the pages it opens: after each one (passed, failed or timed out) they are
// closed, so a page still computing cannot starve the next test of the machine's cores.
afterEach(async () => {
  for (const b of browsers) {
    await Promise.all(b.contexts().map((c) => c.close().catch(() => {})));
  }
});

/**
 * Headless Chromium with an on-disk profile in `dir`, as a user's browser has: its IndexedDB
 * lives on disk (launch()'s contexts are off the record and keep storage in memory).
 * Resolves with a BrowserContext.
 */
export async function launchProfile(dir, { webgpu = false } = {}) {
  return chromium.launchPersistentContext(dir, launchOptions(webgpu));
}

/**
 * Prints each change of the page's extraction and fit status lines to the test output, with the
 * seconds since the page opened, so a slow run (lines keep coming) and a stuck one (they stop)
 * look different. Call before the page navigates.
 */
export async function followStatus(page, label = '') {
  const t0 = Date.now();
  await page.exposeFunction('__probelabStatus', (id, text) => {
    console.log(`    [${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s]${label ? ' ' + label : ''} ${id}: ${text}`);
  });
  await page.addInitScript(() => {
    const watch = () => {
      for (const id of ['extract-status', 'probe-status', 'causal-status']) {
        const el = document.getElementById(id);
        if (!el) continue;
        let last = '';
        new MutationObserver(() => {
          const text = el.textContent.trim();
          if (text && text !== last) { last = text; window.__probelabStatus(id, text); }
        }).observe(el, { childList: true, characterData: true, subtree: true });
      }
    };
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', watch);
    else watch();
  });
}

/** Opens the lab (its status lines followed) and waits until the default model is loaded. */
export async function openLab(browser, url, query = '', { label = '' } = {}) {
  const page = await browser.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  await followStatus(page, label);
  await page.goto(url + query);
  await waitForProgress(page, () => window.probelab && window.probelab.info, { stallS: 180, what: 'the model to load' });
  return { page, pageErrors };
}

/**
 * Waits until `predicate` holds in the page (or `frame`), for as long as the page keeps making
 * progress: the time limit is on silence, not on the whole run, so a machine half as fast still
 * passes and a stuck run still fails. Progress is any change of the status lines or progress
 * bars. The allowed silence is `stallS` seconds, or ten times the longest gap between two
 * changes seen so far in this wait, whichever is longer (the limit is sized from the measured
 * rate of the run itself).
 */
export async function waitForProgress(page, predicate, { arg = null, stallS = 300, what = 'the result', frame = page } = {}) {
  const start = Date.now();
  let last = null, since = start, longestGap = 0;
  for (;;) {
    try {
      await frame.waitForFunction(predicate, arg, { timeout: 5_000, polling: 250 });
      return;
    } catch (e) {
      if (!/Timeout/i.test(String(e && e.message))) throw e;
    }
    // A navigation in between (a reload) counts as a change.
    const now = await frame.evaluate(() => ['model-status', 'extract-status', 'probe-status', 'causal-status', 'model-progress', 'extract-progress', 'fit-progress', 'causal-progress']
      .map((id) => { const el = document.getElementById(id); return el ? (el.value ?? '') + ':' + el.textContent : ''; }).join('|')).catch((e) => `navigating ${Date.now()} ${e.message}`);
    const t = Date.now();
    if (now !== last) {
      if (last !== null) longestGap = Math.max(longestGap, t - since);
      last = now; since = t;
    } else if (t - since > Math.max(stallS * 1000, 10 * longestGap)) {
      throw new Error(`waiting for ${what}: no progress for ${((t - since) / 1000).toFixed(0)} s `
        + `(after ${((t - start) / 1000).toFixed(0)} s in all); the page says: ${now}`);
    }
  }
}

/** Waits for the page's fitted report (see waitForProgress). */
export function waitForReport(page, opts = {}) {
  return waitForProgress(page, () => window.probelab.report, { what: 'the report', ...opts });
}

/** Types names, runs an extraction and returns the page's activations. */
export async function extractInPage(page, names, { template = '{name}', pooling = 'last' } = {}) {
  await page.fill('#names', names.join('\n'));
  await page.fill('#template', template);
  await page.selectOption('#pooling', pooling);
  await page.evaluate(() => { window.probelab.lastRun = null; });
  await page.click('#extract');
  await waitForProgress(page, () => window.probelab.lastRun, { what: 'the extraction' });
  return page.evaluate(() => {
    const r = window.probelab.lastRun;
    return { nLayers: r.nLayers, nEntities: r.nEntities, dModel: r.dModel, data: Array.from(r.data) };
  });
}

/** Reads one tensor of a safetensors file as Float32Array plus its shape and the metadata. */
export function readSafetensors(file, name = 'activations') {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const t = header[name];
  const [s, e] = t.data_offsets;
  const bytes = buf.subarray(8 + n + s, 8 + n + e);
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  return { shape: t.shape, data, metadata: header.__metadata__ };
}

/** The native command-line binary (built by the test script). */
export function nativeBinary() {
  const p = process.env.PROBELAB_BIN;
  if (!p) throw new Error('set PROBELAB_BIN to the native probelab binary (scripts/test does)');
  return p;
}

/** Waits for the page's error box and returns its text. */
export async function pageError(page, timeout = 120_000) {
  await page.waitForSelector('#error:not([hidden])', { timeout });
  return page.textContent('#error');
}

/** Worst per-vector relative difference ‖a − b‖ / ‖b‖ over vectors of length d. */
export function worstRelDiff(a, b, d) {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let worst = 0;
  for (let v = 0; v < b.length / d; v++) {
    let num = 0, den = 0;
    for (let j = v * d; j < (v + 1) * d; j++) { num += (a[j] - b[j]) ** 2; den += b[j] ** 2; }
    worst = Math.max(worst, Math.sqrt(num / Math.max(den, 1e-30)));
  }
  return worst;
}

/** The map canvas's pixels by colour family: land, ocean, saturated (points and lines). */
export function mapPixels(page, frame = page) {
  return frame.evaluate(() => {
    const c = document.getElementById('map-canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const near = (i, [r, g, b]) => Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 12;
    let land = 0, ocean = 0, saturated = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (near(i, [0xf2, 0xef, 0xe6])) land++;
      else if (near(i, [0xdd, 0xe7, 0xf0])) ocean++;
      const mx = Math.max(d[i], d[i + 1], d[i + 2]), mn = Math.min(d[i], d[i + 1], d[i + 2]);
      if (mx - mn > 120) saturated++;
    }
    return { land, ocean, saturated, total: d.length / 4 };
  });
}

/** Viewport position of the map's predicted marker for the place `name`, through the view. */
export function mapMarkerAt(page, name) {
  return page.evaluate((wanted) => {
    const m = window.probelab.map;
    const p = m.scene.points.find((q) => q.name === wanted);
    const c = document.getElementById('map-canvas');
    const r = c.getBoundingClientRect();
    const k = c.clientWidth / m.scene.width;
    return [r.left + c.clientLeft + (m.view.x + m.view.scale * p.pred_xy[0]) * k,
      r.top + c.clientTop + (m.view.y + m.view.scale * p.pred_xy[1]) * k];
  }, name);
}

/** Presses Tab until the element with `id` has the focus; returns the presses it took. */
export async function tabTo(page, id, max = 120) {
  for (let n = 1; n <= max; n++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((want) => document.activeElement?.id === want, id)) return n;
  }
  const at = await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
  throw new Error(`${max} presses of Tab never reached #${id} (the focus is on ${at})`);
}

/** axe-core's serious and critical violations on the page (or frame), as "rule: targets" lines. */
export async function axeViolations(page) {
  const source = readFileSync(path.join(ROOT, 'tests/e2e/node_modules/axe-core/axe.min.js'), 'utf8');
  await page.evaluate(source);
  const found = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  });
  return found;
}

/**
 * Serves one file over HTTP with range requests (206 Partial Content) and CORS, as a CDN does.
 * `mode` (changeable while it runs): 'range', 'no-range' (every request answered 200 with the
 * whole file, as a server without range support does), or a number N: the file cut to its
 * first N bytes (an interrupted upload). Resolves with { url, stop, setMode, requests }.
 */
export async function startRangeServer(file, name = 'model.gguf') {
  const { createServer: createHttp } = await import('node:http');
  const { createReadStream, statSync } = await import('node:fs');
  let mode = 'range';
  // The file's ETag: none, a string, or a function of the request (a file that changes).
  let etag = null;
  const state = { requests: 0 };
  const server = createHttp((req, res) => {
    state.requests++;
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Headers', 'Range');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Range, Content-Length, Accept-Ranges, ETag');
    const tag = typeof etag === 'function' ? etag(req) : etag;
    if (tag) res.setHeader('ETag', `"${tag}"`);
    if (req.method === 'OPTIONS') { res.writeHead(204); res.end(); return; }
    if (req.url.split('?')[0] !== `/${name}`) { res.writeHead(404); res.end(); return; }
    const size = typeof mode === 'number' ? mode : statSync(file).size;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
    if (mode === 'no-range' || !m) {
      res.writeHead(200, { 'Content-Length': size, 'Content-Type': 'application/octet-stream' });
      createReadStream(file, { start: 0, end: size - 1 }).pipe(res).on('error', () => {});
      return;
    }
    const start = Number(m[1]);
    const end = Math.min(m[2] ? Number(m[2]) : size - 1, size - 1);
    if (start >= size) { res.writeHead(416, { 'Content-Range': `bytes */${size}` }); res.end(); return; }
    res.writeHead(206, {
      'Content-Length': end - start + 1, 'Content-Range': `bytes ${start}-${end}/${size}`,
      'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream',
    });
    createReadStream(file, { start, end }).pipe(res).on('error', () => {});
  });
  // A stopped server must refuse connections at once (no kept-alive socket answers).
  server.keepAliveTimeout = 1000;
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/${name}`,
    setMode: (m) => { mode = m; },
    setEtag: (t) => { etag = t; },
    get requests() { return state.requests; },
    stop: () => new Promise((r) => { server.close(r); server.closeAllConnections(); }),
  };
}

/**
 * The tensors of a GGUF file as [{name, dtype, dims, start, end}] (absolute byte ranges), read
 * from its header: where a cut falls, independently of the code under test.
 */
export async function ggufTensors(file) {
  const { openSync, readSync, closeSync } = await import('node:fs');
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(64 << 20);
  const got = readSync(fd, buf, 0, buf.length, 0);
  closeSync(fd);
  let at = 0;
  const u32 = () => { const v = buf.readUInt32LE(at); at += 4; return v; };
  const u64 = () => { const v = Number(buf.readBigUInt64LE(at)); at += 8; return v; };
  const str = () => { const n = u64(); const s = buf.toString('utf8', at, at + n); at += n; return s; };
  const fixed = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const value = (t) => {
    if (t in fixed) {
      const v = t === 4 || t === 5 ? buf.readUInt32LE(at) : null;
      at += fixed[t];
      return v;
    }
    if (t === 8) return str();
    if (t === 9) { const inner = u32(); const n = u64(); for (let i = 0; i < n; i++) value(inner); return null; }
    throw new Error(`GGUF value type ${t}`);
  };
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${file} is not GGUF`);
  at = 4; u32();
  const nTensors = u64(), nKv = u64();
  let alignment = 32;
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const v = value(u32());
    if (key === 'general.alignment') alignment = v;
  }
  // ggml type: [block elements, block bytes] for the types the tests write.
  const sizes = { 0: [1, 4], 1: [1, 2], 2: [32, 18], 3: [32, 20], 8: [32, 34], 12: [256, 144] };
  const infos = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const dims = Array.from({ length: u32() }, () => u64());
    const dtype = u32();
    const offset = u64();
    infos.push({ name, dims, dtype, offset });
  }
  if (at > got) throw new Error('GGUF header longer than 64 MiB');
  const data = Math.ceil(at / alignment) * alignment;
  return infos.map((t) => {
    const [be, bb] = sizes[t.dtype] || [NaN, NaN];
    const len = (t.dims.reduce((a, b) => a * b, 1) / be) * bb;
    return { name: t.name, dtype: t.dtype, dims: t.dims, start: data + t.offset, end: data + t.offset + len };
  });
}
