// The browser's WebGPU engine: with Chromium's --enable-unsafe-webgpu (SwiftShader, a software
// adapter) the page extracts on the GPU and its vectors match the native CPU binary; without
// the flag it says why it stays on the CPU and still extracts; a GPU lost mid-run falls back to
// the CPU without losing finished batches, or, for a model streamed to the GPU alone, says so
// and keeps them for the next load.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  MODEL, ROOT, extractInPage, launch, launchProfile, mapPixels, nativeBinary, openLab, pageError, readSafetensors,
  startRangeServer, startServer, waitForReport,
} from './harness.mjs';

const NAMES = ['Paris', 'São Paulo', '東京', 'Kraków', "Côte d'Ivoire", 'Reykjavík', 'New York City', 'Lagos'];
const tmp = mkdtempSync(path.join(tmpdir(), 'probelab-webgpu-'));
let server, gpuBrowser, plainBrowser, native;

before(async () => {
  server = await startServer();
  gpuBrowser = await launch({ webgpu: true });
  plainBrowser = await launch();
  const csv = path.join(tmp, 'names.csv');
  writeFileSync(csv, 'name\n' + NAMES.map((n) => `"${n}"`).join('\n') + '\n');
  const out = path.join(tmp, 'native.safetensors');
  execFileSync(nativeBinary(), ['extract', '--model', MODEL, '--dataset', csv, '--prompt', '{name}',
    '--pool', 'last', '--engine', 'cpu', '--out', out], { stdio: ['ignore', 'ignore', 'inherit'] });
  native = readSafetensors(out);
});
after(async () => { await gpuBrowser?.close(); await plainBrowser?.close(); server?.stop(); });

/** Worst per-vector cosine and relative error of the page's vectors against the native ones. */
function compare(web) {
  assert.deepEqual([web.nLayers + 1, web.nEntities, web.dModel], native.shape);
  const d = web.dModel;
  let minCos = 1, maxRel = 0;
  for (let v = 0; v < native.data.length / d; v++) {
    let dot = 0, na = 0, nb = 0, diff = 0;
    for (let j = 0; j < d; j++) {
      const a = web.data[v * d + j], b = native.data[v * d + j];
      dot += a * b; na += a * a; nb += b * b; diff += (a - b) ** 2;
    }
    minCos = Math.min(minCos, dot / Math.sqrt(Math.max(na * nb, 1e-30)));
    maxRel = Math.max(maxRel, Math.sqrt(diff / Math.max(nb, 1e-30)));
  }
  return { minCos, maxRel };
}

test('with WebGPU the page extracts on the GPU and matches the native binary', async () => {
  const { page, pageErrors } = await openLab(gpuBrowser, server.url);
  const engine = await page.textContent('#engine');
  console.log(`  ${engine}`);
  assert.match(engine, /WebGPU \(/);
  assert.match(engine, /software adapter/);
  const web = await extractInPage(page, NAMES);
  assert.match(await page.textContent('#extract-status'), /Done on WebGPU/);
  const { minCos, maxRel } = compare(web);
  console.log(`  WebGPU vs native CPU: worst cosine ${minCos.toFixed(7)}, worst relative error ${maxRel.toExponential(2)}`);
  assert.ok(minCos >= 0.9999, `cosine ${minCos}`);
  assert.ok(maxRel <= 1e-3, `relative error ${maxRel}`);
  assert.deepEqual(pageErrors, []);
});

// The whole lab on WebGPU, on a small set: SwiftShader is a CPU rasteriser (well under
// 1 GFLOP/s here), and the parity test above already checks the numbers. The 200-place run is a
// benchmark (tests/bench/webgpu_lab.mjs). A SwiftShader batch costs about the same whatever its
// size (the per-submission work dominates), so 12 per batch: 3 batches, each a status line.
const WHOLE_LAB_PLACES = 36;

test(`with WebGPU the whole lab runs: ${WHOLE_LAB_PLACES} places, probes, summary, chart and map`, async () => {
  const { page, pageErrors } = await openLab(gpuBrowser, server.url, '?permutations=10&nosw&gpu_batch=12', { label: 'webgpu' });
  // The most populous places of the built-in set, on every continent, as an imported CSV.
  const lines = readFileSync(path.join(ROOT, 'datasets/world_places.csv'), 'utf8').trim().split('\n');
  const csv = lines.slice(0, WHOLE_LAB_PLACES + 1).join('\n') + '\n';
  await page.setInputFiles('#names-file', { name: 'places.csv', mimeType: 'text/csv', buffer: Buffer.from(csv, 'utf8') });
  await page.waitForFunction((n) => document.getElementById('names').value.split('\n').length === n, WHOLE_LAB_PLACES);
  await page.uncheck('#random-init');   // the twin runs on the CPU; the page's CPU run is lab.test's
  await page.click('#extract');
  await waitForReport(page);
  assert.match(await page.textContent('#extract-status'), new RegExp(`Done on WebGPU: ${WHOLE_LAB_PLACES} entities`));
  assert.match(await page.textContent('#engine'), /WebGPU \(/);
  const rep = await page.evaluate(() => window.probelab.report);
  assert.equal(rep.dataset.n, WHOLE_LAB_PLACES);
  assert.equal(rep.layers.length, 31);
  assert.match(await page.textContent('#summary'), /Layer \d+ .* R² -?\d/);
  const counts = await mapPixels(page);
  assert.ok(counts.land > counts.total * 0.05 && counts.ocean > counts.total * 0.1 && counts.saturated > 30, JSON.stringify(counts));
  const chart = await page.evaluate(() => document.getElementById('layers-canvas').width);
  assert.ok(chart > 0, 'the score chart was not drawn');
  assert.deepEqual(pageErrors, []);
});

test('a GPU lost mid-run falls back to the CPU and keeps the finished batches', async () => {
  // Four GPU batches of two names; the device is destroyed before the third.
  const { page } = await openLab(gpuBrowser, server.url, '?engine=gpu&gpu_batch=2&gpu_fail_after=2');
  assert.match(await page.textContent('#engine'), /WebGPU/);
  const web = await extractInPage(page, NAMES);
  assert.match(await page.textContent('#engine'), /CPU.*WebGPU engine failed/);
  assert.match(await page.textContent('#extract-status'), /then the CPU after the GPU failed/);
  assert.equal(await page.evaluate(() => window.probelab.lastRun.batchesOnGpu), 2);
  const { minCos, maxRel } = compare(web);
  assert.ok(minCos >= 0.9999 && maxRel <= 1e-3, `after the fallback: cosine ${minCos}, relative error ${maxRel}`);
});

test('a GPU lost mid-run on a streamed model: the page says so, and the finished batches are kept for the next load', async () => {
  // The lab's own server (scripts/serve.py) answers range requests, so ?stream reads the model
  // from it in parts.
  const res = await fetch(new URL('models/' + path.basename(MODEL), server.url), { headers: { Range: 'bytes=100-163' } });
  assert.equal(res.status, 206);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), readFileSync(MODEL).subarray(100, 164));
  // ?stream sends the weights to the GPU alone (as a model over 2 GiB must go), so the CPU
  // cannot take over; an on-disk profile, as a user's browser has, keeps what finished.
  const profile = await launchProfile(mkdtempSync(path.join(tmp, 'profile-')), { webgpu: true });
  try {
    const first = await openLab(profile, server.url, '?stream&engine=gpu&gpu_batch=2&gpu_fail_after=2');
    assert.match(await first.page.textContent('#model-status'), /streamed to the GPU/);
    await first.page.fill('#names', NAMES.join('\n'));
    await first.page.fill('#template', '{name}');
    await first.page.selectOption('#pooling', 'last');
    await first.page.click('#extract');
    const message = await pageError(first.page, 600_000);
    console.log(`  ${message}`);
    assert.match(message, /GPU failed after 2 of 4 batches/);
    assert.match(message, /finished batches are kept in this browser/);
    await first.page.close();
    // The model loaded again: the two finished batches come from the store, the rest run.
    const again = await openLab(profile, server.url, '?stream&engine=gpu&gpu_batch=2');
    const web = await extractInPage(again.page, NAMES);
    assert.match(await again.page.textContent('#extract-status'), /\(4 computed, 4 from this browser's cache\)/);
    const { minCos, maxRel } = compare(web);
    assert.ok(minCos >= 0.9999 && maxRel <= 1e-3, `after the reload: cosine ${minCos}, relative error ${maxRel}`);
    assert.deepEqual(again.pageErrors, []);
  } finally {
    await profile.close();
  }
});

test('a streamed model whose file changes on its server: the kept parts are dropped, and a change mid-load stops it', async () => {
  const models = await startRangeServer(MODEL);
  const profile = await launchProfile(mkdtempSync(path.join(tmp, 'profile-')), { webgpu: true });
  const load = async () => {
    const { page } = await openLab(profile, server.url, `?nosw&stream&engine=gpu&model=${encodeURIComponent(models.url)}`);
    const seen = await page.evaluate(() => ({ dropped: window.probelab.stream.dropped, fromCache: window.probelab.workers.streamed.fromCache }));
    await page.close();
    return seen;
  };
  try {
    models.setEtag('v1');
    assert.deepEqual(await load(), { dropped: 0, fromCache: false });
    // The same version again: every part from this browser's copy.
    assert.deepEqual(await load(), { dropped: 0, fromCache: true });
    // A new version of the file: the kept parts are dropped and read anew.
    models.setEtag('v2');
    const changed = await load();
    console.log(`  after the change: ${changed.dropped} kept parts dropped`);
    assert.ok(changed.dropped > 0 && !changed.fromCache, JSON.stringify(changed));
    // The file changes while it is read: the load stops and says so, rather than mix two files.
    let parts = 0;
    models.setEtag((req) => (req.method === 'GET' && req.headers.range && ++parts > 3 ? 'v4' : 'v3'));
    const page = await profile.newPage();
    await page.goto(server.url + `?nosw&stream&engine=gpu&model=${encodeURIComponent(models.url)}`);
    assert.match(await pageError(page, 300_000), /changed on the server while it was being read.*load it again/);
  } finally {
    await profile.close();
    await models.stop();
  }
});

test('without WebGPU the page says so, stays on the CPU and still extracts', async () => {
  const { page, pageErrors } = await openLab(plainBrowser, server.url);
  const engine = await page.textContent('#engine');
  console.log(`  ${engine}`);
  assert.match(engine, /CPU \(WebAssembly.*no WebGPU: .+/);
  const web = await extractInPage(page, NAMES);
  assert.match(await page.textContent('#extract-status'), /Done on the CPU/);
  const { minCos, maxRel } = compare(web);
  assert.ok(minCos >= 0.9999 && maxRel <= 1e-4, `cosine ${minCos}, relative error ${maxRel}`);
  assert.deepEqual(pageErrors, []);
});

test('?engine=cpu keeps the CPU even where WebGPU is offered', async () => {
  const { page } = await openLab(gpuBrowser, server.url, '?engine=cpu');
  assert.match(await page.textContent('#engine'), /CPU \(WebAssembly.*as asked/);
});
