// Models past the CPU engine's 2 GiB, in the page: a synthetic GGUF with Llama-2-7B shapes
// (d_model 4096, 32 heads, ffn 11008, a 32,000-piece SentencePiece vocabulary) streamed to
// WebGPU (SwiftShader) piece by piece, by HTTP range requests or from a File, with wasm memory
// far below the file's size; its vectors equal the native CPU path's. Also: a second visit
// loads from Cache Storage with the model's server gone, the CPU worker path refuses the file
// with its numbers, a server without range support is explained, a truncated file names the
// tensor that is cut.
//
// Size: 2 blocks of f32 matrices, f32 embedding and LM head: 2.49 GiB, past 2 GiB through wide
// types rather than layers (1 block would be 1.86 GB). The LM head is never multiplied (only
// activations are asked for) and the embedding is a lookup, so the cost is the 2 blocks: about
// 0.4 GFLOP a token each, and the GPU's matmuls work in tiles of 64 tokens, so one batch of the
// 4 names costs as much as 64 tokens, about 50 GFLOP. SwiftShader does well under 1 GFLOP/s
// here: about 300 s on a busy 2-core machine (measured), so the page extracts twice (by URL,
// and from the File), and the second visit only loads.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  ROOT, followStatus, ggufTensors, launch, launchProfile, nativeBinary, pageError, readSafetensors,
  startRangeServer, startServer, waitForProgress, worstRelDiff,
} from './harness.mjs';

const NAMES = ['Paris', 'Lagos', 'Tokyo', 'Lima'];
const SYNTH = ['--layers', '2', '--quant', 'f32', '--embed-quant', 'f32'];
const MAX_WASM_BYTES = 512e6;
const tmp = mkdtempSync(path.join(tmpdir(), 'probelab-large-'));
const big = path.join(tmp, 'llama2-7b-shapes-2-layers-f32.gguf');
let server, models, browser, native, sha256, size, fromUrl;

// The generator is `probelab synth-model`; a binary without it skips these tests, saying so.
let noGenerator = null;

before(async () => {
  try {
    execFileSync(nativeBinary(), ['synth-model', '--help'], { stdio: 'ignore' });
  } catch {
    noGenerator = `${nativeBinary()} has no synth-model command (the synthetic GGUF generator): build it from a branch that has one`;
    return;
  }
  let t0 = Date.now();
  execFileSync(nativeBinary(), ['synth-model', '--vocab', path.join(ROOT, 'tests/fixtures/spm32k_vocab.json'),
    ...SYNTH, '--out', big], { stdio: ['ignore', 'inherit', 'inherit'] });
  size = statSync(big).size;
  console.log(`  synthetic model: ${(size / 2 ** 30).toFixed(2)} GiB in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  assert.ok(size > 2 ** 31, `the test file is ${size} bytes, not past 2 GiB`);
  const csv = path.join(tmp, 'names.csv');
  writeFileSync(csv, 'name\n' + NAMES.join('\n') + '\n');
  const out = path.join(tmp, 'native.safetensors');
  t0 = Date.now();
  execFileSync(nativeBinary(), ['extract', '--model', big, '--dataset', csv, '--prompt', '{name}',
    '--pool', 'last', '--engine', 'cpu', '--out', out], { stdio: ['ignore', 'ignore', 'inherit'] });
  console.log(`  native CPU extraction: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  native = readSafetensors(out);
  const h = createHash('sha256');
  for await (const chunk of createReadStream(big)) h.update(chunk);
  sha256 = h.digest('hex');
  server = await startServer();
  models = await startRangeServer(big);
  browser = await launch({ webgpu: true });
});
after(async () => {
  await browser?.close();
  server?.stop();
  await models?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** Opens the page with `query` (its own model load not awaited); keeps every model status line. */
async function open(context, query) {
  const page = await context.newPage();
  await followStatus(page, 'large');
  await page.addInitScript(() => {
    window.__modelLines = [];
    document.addEventListener('DOMContentLoaded', () => {
      const el = document.getElementById('model-status');
      new MutationObserver(() => window.__modelLines.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
    });
  });
  await page.goto(server.url + query);
  return page;
}

/** Waits for the big model to be the page's model; returns its info and the wasm memory peak. */
async function loaded(page) {
  await waitForProgress(page, (n) => (window.probelab.info && window.probelab.info.file_size === n && !window.probelab.loading)
    || !document.getElementById('error').hidden, { arg: size, what: 'the large model to stream in' });
  assert.equal(await page.isVisible('#error'), false, await page.textContent('#error'));
  return page.evaluate(() => ({ info: window.probelab.info, memory: window.probelab.memoryPeak, stream: window.probelab.stream }));
}

/** Extracts NAMES in the page (the random-initialised twin is off: it needs CPU weights). */
async function extract(page) {
  await page.evaluate(() => { document.getElementById('setup').open = true; window.probelab.lastRun = null; });
  assert.equal(await page.isDisabled('#random-init'), true, 'the random-init control needs CPU weights');
  await page.fill('#names', NAMES.join('\n'));
  await page.fill('#template', '{name}');
  await page.selectOption('#pooling', 'last');
  await page.click('#extract');
  // One GPU batch on SwiftShader is silent for minutes (its status changes when it ends).
  await waitForProgress(page, () => window.probelab.lastRun || !document.getElementById('error').hidden, { what: 'the extraction', stallS: 1200 });
  assert.equal(await page.isVisible('#error'), false, await page.textContent('#error'));
  assert.match(await page.textContent('#extract-status'), /Done on WebGPU/);
  return page.evaluate(() => {
    const r = window.probelab.lastRun;
    return { nLayers: r.nLayers, nEntities: r.nEntities, dModel: r.dModel, data: Array.from(r.data) };
  });
}

function checkAgainstNative(web, what) {
  assert.deepEqual([web.nLayers + 1, web.nEntities, web.dModel], native.shape);
  const rel = worstRelDiff(web.data, native.data, web.dModel);
  console.log(`  ${what} vs native CPU: worst relative error per vector ${rel.toExponential(2)}`);
  assert.ok(rel <= 1e-4, `${what}: relative error ${rel}`);
}

test('a 2.7 GB model streams to WebGPU by range requests, equals the native CPU path, and loads again from Cache Storage with its server gone', async (t) => {
  if (noGenerator) { t.skip(noGenerator); return; }
  const profile = mkdtempSync(path.join(tmp, 'profile-'));
  const context = await launchProfile(profile, { webgpu: true });
  let stopped = false;
  try {
    const url = `?nosw&engine=gpu&model=${encodeURIComponent(models.url)}`;
    let page = await open(context, url);
    const t0 = Date.now();
    const first = await loaded(page);
    const seconds = (Date.now() - t0) / 1000;
    const status = await page.textContent('#model-status');
    console.log(`  streamed in ${seconds.toFixed(0)} s; ${status}; ${await page.textContent('#memory')}`);
    assert.equal(first.info.sha256, sha256, 'the page hashed every byte of the file');
    assert.equal(first.info.vocab_size, 32000);
    assert.match(status, /streamed to the GPU/);
    // The size and the adapter's limits came first, before the header or any weight was read.
    const lines = await page.evaluate(() => window.__modelLines);
    const upFront = lines.findIndex((l) => /streamed to the GPU; .*largest buffer [\d.]+ GiB, largest binding [\d.]+ GiB\): reading the header/.test(l));
    const uploading = lines.findIndex((l) => /read and uploaded/.test(l));
    assert.ok(upFront >= 0 && upFront < uploading, lines.slice(0, 4).join('\n'));
    assert.match(lines[upFront], /\(2\.5 GiB, streamed/);
    assert.ok(first.stream.plan.max_binding > 0 && first.stream.plan.gpu_bytes > 2e9, JSON.stringify(first.stream.plan));
    assert.ok(first.memory > 0 && first.memory < MAX_WASM_BYTES, `wasm memory ${first.memory} bytes`);
    fromUrl = await extract(page);
    checkAgainstNative(fromUrl, 'WebGPU, by range requests');
    const after = await page.evaluate(() => window.probelab.memoryPeak);
    assert.ok(after < MAX_WASM_BYTES, `wasm memory after the extraction: ${after} bytes`);
    await page.close();

    // A second visit with the model's server gone: the parts come from Cache Storage.
    await models.stop();
    stopped = true;
    page = await open(context, url);
    const second = await loaded(page);
    assert.equal(second.info.sha256, sha256);
    assert.match(await page.textContent('#model-status'), /from this browser's copy/);
    assert.ok(second.memory < MAX_WASM_BYTES, `wasm memory ${second.memory} bytes`);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    if (stopped) models = await startRangeServer(big);
  }
});

test('the same file chosen from disk streams from the File and gives identical vectors', async (t) => {
  if (noGenerator) { t.skip(noGenerator); return; }
  // A model URL that does not exist: the page holds no model (and no wasm memory for one) first.
  const page = await open(browser, '?nosw&engine=gpu&model=none.gguf');
  await pageError(page);
  await page.setInputFiles('#model-file', big);
  const got = await loaded(page);
  console.log(`  ${await page.textContent('#memory')}`);
  assert.ok(got.memory < MAX_WASM_BYTES, `wasm memory ${got.memory} bytes`);
  assert.equal(got.info.sha256, sha256);
  const web = await extract(page);
  if (fromUrl) assert.deepEqual(web.data, fromUrl.data, 'the File and the URL gave other vectors');
  else checkAgainstNative(web, 'WebGPU, from the File');
});

test('the CPU worker path refuses the file with the numbers', async (t) => {
  if (noGenerator) { t.skip(noGenerator); return; }
  const page = await open(browser, '?nosw&engine=cpu&model=none.gguf');
  await pageError(page);
  await page.setInputFiles('#model-file', big);
  await page.waitForFunction(() => /GiB/.test(document.getElementById('error').textContent));
  const text = await page.textContent('#error');
  const gib = (size / 2 ** 30).toFixed(1);
  assert.match(text, new RegExp(`the model is ${gib} GiB; the browser engine holds models up to 2\\.0 GiB`));
});

test('a server without range support is explained', async (t) => {
  if (noGenerator) { t.skip(noGenerator); return; }
  models.setMode('no-range');
  try {
    const page = await open(browser, `?nosw&engine=gpu&model=${encodeURIComponent(models.url)}`);
    const text = await pageError(page);
    assert.match(text, /does not support range requests/);
    assert.match(text, /HTTP 200/);
  } finally {
    models.setMode('range');
  }
});

test('a truncated file fails naming the tensor that is cut, before any weight is uploaded', async (t) => {
  if (noGenerator) { t.skip(noGenerator); return; }
  // Cut in the middle of the file's last tensor (found from the header by the test's own
  // reader), past 2 GiB so that the page streams it.
  const cutTensor = (await ggufTensors(big)).sort((a, b) => a.start - b.start).at(-1);
  const cut = Math.floor((cutTensor.start + cutTensor.end) / 2);
  assert.ok(cut > 2 ** 31, `the last tensor, ${cutTensor.name}, lies below 2 GiB`);
  models.setMode(cut);
  try {
    const page = await open(browser, `?nosw&engine=gpu&model=${encodeURIComponent(models.url)}`);
    const text = await pageError(page, 300_000);
    console.log(`  ${text}`);
    assert.ok(text.includes(`'${cutTensor.name}'`), `the message does not name ${cutTensor.name}`);
    assert.match(text, /truncated/);
    // The plan (and any upload) comes after the header check.
    assert.match(await page.textContent('#model-status'), /No model loaded/);
    assert.equal(await page.evaluate(() => window.probelab.stream.plan), null);
  } finally {
    models.setMode('range');
  }
});
