// Loading a model past 2 GiB in the page (WebGPU, streamed): a synthetic GGUF with Llama-2-7B
// shapes (default: all 32 blocks in Q4_0, 3.65 GiB, as Llama-2-7B Q4_0 is), written by
// `probelab synth-model`, loaded in headless Chromium (SwiftShader's WebGPU here) three ways:
// by HTTP range requests into an empty profile (kept in Cache Storage), again from Cache
// Storage with the server stopped, and from the File. Prints the load time and the workers'
// wasm memory peak for each; nothing is extracted (7B shapes take minutes per layer on a
// software adapter). Prints figures; not a test.
// Usage (from tests/e2e): node ../bench/large_model_page.mjs [LAYERS] [QUANT]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT, launchProfile, nativeBinary, pageError, startRangeServer, startServer, waitForProgress } from '../e2e/harness.mjs';

const layers = process.argv[2] || '32';
const quant = process.argv[3] || 'q4_0';
const tmp = mkdtempSync(path.join(tmpdir(), 'probelab-bench-large-'));
const file = path.join(tmp, `llama2-7b-shaped-${layers}-${quant}.gguf`);
execFileSync(nativeBinary(), ['synth-model', '--vocab', path.join(ROOT, 'tests/fixtures/spm32k_vocab.json'),
  '--layers', layers, '--quant', quant, '--out', file], { stdio: ['ignore', 'inherit', 'inherit'] });
const size = statSync(file).size;
const server = await startServer();
let models = await startRangeServer(file);
const context = await launchProfile(path.join(tmp, 'profile'), { webgpu: true });

/** Opens the page and returns the seconds until the model is loaded, and the page's figures. */
async function load(query, { setFile = false } = {}) {
  const page = await context.newPage();
  let t0 = Date.now();
  await page.goto(server.url + query);
  if (setFile) {
    await pageError(page); // the page's own model URL does not exist: no model held first
    t0 = Date.now();
    await page.setInputFiles('#model-file', file);
  }
  await waitForProgress(page, (n) => (window.probelab.info && window.probelab.info.file_size === n && !window.probelab.loading)
    || !document.getElementById('error').hidden, { arg: size, what: 'the model to stream in' });
  const seconds = (Date.now() - t0) / 1000;
  const error = await page.isVisible('#error') ? await page.textContent('#error') : null;
  const figures = await page.evaluate(() => ({
    wasm_memory_peak_bytes: window.probelab.memoryPeak,
    status: document.getElementById('model-status').textContent,
  }));
  await page.close();
  return { seconds, error, ...figures };
}

try {
  const url = `?nosw&engine=gpu&model=${encodeURIComponent(models.url)}`;
  const base = { file_bytes: size, layers: Number(layers), quant };
  console.log(JSON.stringify({ load: 'URL, range requests (cold)', ...base, ...(await load(url)), requests: models.requests }));
  await models.stop();
  console.log(JSON.stringify({ load: 'Cache Storage, server stopped', ...base, ...(await load(url)) }));
  console.log(JSON.stringify({ load: 'File', ...base, ...(await load('?nosw&engine=gpu&model=none.gguf', { setFile: true })) }));
} finally {
  await context.close();
  server.stop();
  rmSync(tmp, { recursive: true, force: true });
}
