// The page: reads inputs, drives the model workers, shows progress, results and errors.
// Nothing here computes; the workers (and the wasm core inside them) do.
import { DEFAULT_MODEL_URL } from './config.js';
import { EnginePool } from './pool.js';
import { showResults } from './results.js';
import init, { builtin_datasets } from './pkg/probelab.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const poolSize = Math.max(1, Math.min(Number(params.get('workers')) || navigator.hardwareConcurrency || 2, 4));
const pool = new EnginePool(poolSize);
// ?engine=cpu|gpu|auto: auto (the default) takes WebGPU when the browser offers an adapter.
const engineChoice = ['cpu', 'gpu', 'auto'].includes(params.get('engine')) ? params.get('engine') : 'auto';

const state = { info: null, lastRun: null, extracting: false, loading: false };
// Exposed for end-to-end tests and for people poking at the page from the console.
window.probelab = state;

function showError(message) {
  const box = $('error');
  box.textContent = message;   // textContent: data is never parsed as HTML
  box.hidden = false;
}
function clearError() { $('error').hidden = true; $('error').textContent = ''; }

function setBusy() {
  $('extract').disabled = state.extracting || state.loading || !state.info;
  $('cancel').disabled = !state.extracting;
}

const mb = (n) => (n / 1e6).toFixed(1) + ' MB';

/**
 * The browser's CPU engine keeps the GGUF's blocks plus f32 copies of the weights inside
 * WebAssembly's 4 GiB memory: refuse a model that cannot fit before anything is allocated.
 */
const MAX_MODEL_BYTES = 2 ** 31;
function checkSize(bytes) {
  if (bytes > MAX_MODEL_BYTES) {
    const gb = (n) => (n / 2 ** 30).toFixed(1) + ' GiB';
    throw new Error(`the model is ${gb(bytes)}; the browser engine holds models up to ${gb(MAX_MODEL_BYTES)} `
      + '(WebAssembly has 4 GiB of memory for the weights and their working copies). '
      + 'Use a smaller quantization, or the command line (probelab run), which has no such limit.');
  }
}

async function fetchWithProgress(url, checkTotal, onProgress) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`could not fetch ${url}: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get('content-length')) || 0;
  try {
    checkTotal(total);
  } catch (e) {
    res.body.cancel();
    throw e;
  }
  const reader = res.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onProgress(loaded, total);
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  return bytes;
}

async function loadModel(source) {
  clearError();
  state.loading = true; setBusy();
  const bar = $('model-progress');
  try {
    let bytes;
    if (source.file) {
      checkSize(source.file.size);
      $('model-status').textContent = `Reading ${source.file.name}…`;
      bytes = new Uint8Array(await source.file.arrayBuffer());
    } else {
      bar.hidden = false;
      bytes = await fetchWithProgress(source.url, checkSize, (loaded, total) => {
        bar.max = total || 1; bar.value = total ? loaded : 0;
        $('model-status').textContent = total
          ? `Downloading: ${mb(loaded)} of ${mb(total)} (${Math.round((100 * loaded) / total)}%)`
          : `Downloading: ${mb(loaded)}`;
      });
    }
    $('model-status').textContent = `Reading ${mb(bytes.length)} of weights…`;
    const name = source.file ? source.file.name : source.url;
    const i = await pool.load(bytes, name, engineChoice);
    state.info = i;
    $('model-status').textContent =
      `${i.name}: ${i.n_layers} layers, d_model ${i.d_model}, ${i.quantization}, ${mb(i.file_size)}, sha256 ${i.sha256.slice(0, 12)}… (from ${name})`
      + (i.warnings.length ? ` — warning: ${i.warnings.join('; ')}` : '');
    showEngine();
    if (engineChoice === 'gpu' && !pool.onGpu) showError(`WebGPU was asked for (?engine=gpu) but is not available: ${pool.gpu ? pool.gpu.reason : 'unknown'}. Extraction runs on the CPU.`);
  } catch (e) {
    $('model-status').textContent = state.info ? `Still using ${state.info.name}.` : 'No model loaded.';
    showError(`Could not load the model: ${e.message}`);
  } finally {
    bar.hidden = true;
    state.loading = false; setBusy();
  }
}

function cpuText() {
  return `CPU (WebAssembly, ${pool.active} worker${pool.active > 1 ? 's' : ''})`;
}

/** Says which engine extraction runs on, and why. */
function showEngine() {
  const g = pool.gpu;
  let text;
  if (pool.gpuFailed) text = `Engine: ${cpuText()} — the WebGPU engine failed (${pool.gpuFailed}); extraction fell back to the CPU.`;
  else if (pool.onGpu) {
    text = `Engine: WebGPU (${g.name}${g.software ? ', a software adapter: correct but slower than a real GPU' : ''}), one worker.`;
  } else if (engineChoice === 'cpu') text = `Engine: ${cpuText()}, as asked (?engine=cpu).`;
  else text = `Engine: ${cpuText()} — no WebGPU: ${g ? g.reason : 'not tried'}.`;
  $('engine').textContent = text;
}

function currentRequest() {
  // Every line is an entity: an empty line is reported by the core, not silently dropped.
  const lines = $('names').value.replace(/\r/g, '').split('\n');
  while (lines.length && lines[lines.length - 1].trim() === '') lines.pop();
  return {
    names: lines,
    opts: {
      template: $('template').value, pool: $('pool').value,
      batchSize: Math.max(1, Number($('batch-size').value) || 32),
      // For tests of the fallback: the GPU's device is destroyed before this batch.
      ...(params.has('gpu_batch') ? { gpuBatch: Number(params.get('gpu_batch')) } : {}),
      ...(params.has('gpu_fail_after') ? { failGpuAfter: Number(params.get('gpu_fail_after')) } : {}),
    },
  };
}

async function runExtraction() {
  clearError();
  const { names, opts } = currentRequest();
  if (!names.length) { showError('Enter at least one name.'); return; }
  state.extracting = true; setBusy();
  $('result').hidden = true;
  $('extract-progress').value = 0;
  try {
    const r = await pool.extract(names, opts, state.info, (p) => {
      if (p.gpuFailed) {
        showEngine();
        $('extract-status').textContent = `The GPU failed after ${p.batchesOnGpu} of ${p.batches} batches: the rest run on the CPU.`;
        return;
      }
      $('extract-progress').max = p.total; $('extract-progress').value = p.done;
      const rate = p.tokens / Math.max(p.seconds, 1e-6);
      const left = p.done ? (p.seconds / p.done) * (p.total - p.done) : 0;
      $('extract-status').textContent =
        `${p.done} / ${p.total} entities · ${rate.toFixed(0)} tokens/s · about ${left.toFixed(0)} s left`;
    });
    if (r.cancelled) {
      $('extract-status').textContent = `Cancelled after ${r.done} of ${r.total} entities.`;
      return;
    }
    state.lastRun = { ...r, nEntities: names.length, names, opts };
    state.report = null;
    const on = { gpu: ' on WebGPU', cpu: ' on the CPU', 'gpu+cpu': ' (WebGPU, then the CPU after the GPU failed)' }[r.engine];
    $('extract-status').textContent =
      `Done${on}: ${names.length} entities, ${r.tokens} tokens in ${r.seconds.toFixed(2)} s (${(r.tokens / r.seconds).toFixed(0)} tokens/s).`;
    $('result').hidden = false;
    $('result-summary').textContent =
      `Activations: ${r.nLayers + 1} layers × ${names.length} entities × ${r.dModel} dimensions.`;
    const dataset = $('dataset').value;
    // The page state lives in the URL, so a link reproduces the view.
    const url = new URL(location.href);
    url.searchParams.set('dataset', dataset);
    url.searchParams.set('prompt', opts.template);
    history.replaceState(null, '', url);
    if (dataset !== 'custom') await fitProbes(dataset, r, opts);
  } catch (e) {
    pool.cancel();
    showError(`Extraction failed: ${e.message}`);
    $('extract-status').textContent = '';
  } finally {
    state.extracting = false; setBusy();
  }
}

const fmt = (v, d = 2) => (v === null || v === undefined || Number.isNaN(v) ? 'n/a' : v.toFixed(d));

/** Fits the probes and controls on the extraction `r` and draws the figures. */
async function fitProbes(dataset, r, opts) {
  const permutations = Number(params.get('permutations')) || 100;
  $('probe-panel').hidden = false;
  $('probe-status').textContent = `Fitting ridge probes on ${r.nLayers + 1} layers with ${permutations} shuffled-target refits…`;
  const t = performance.now();
  const { report, scenes } = await pool.fit({
    data: r.data.slice(), nLayers: r.nLayers, dModel: r.dModel, randomInit: undefined,
    firstTokenIds: r.firstTokenIds, dataset, split: params.get('split') || 'random', permutations,
    modelName: state.info.name, modelSha256: state.info.sha256, template: opts.template,
  });
  state.report = showResults(report, JSON.parse(scenes), params.has('layer') ? Number(params.get('layer')) : undefined);
  $('probe-status').textContent = `Fitted in ${((performance.now() - t) / 1000).toFixed(1)} s.`;
  $('summary').textContent = summarize(state.report);
}

/** "What survives the controls", in words. */
function summarize(rep) {
  const s = rep.selected, b = rep.baselines;
  const what = rep.dataset.target === 'space' ? 'latitude and longitude' : 'the year';
  const err = rep.dataset.target === 'space' ? `median error ${fmt(s.km_median, 0)} km` : `mean error ${fmt(s.years_mae, 0)} years`;
  const worst = [...rep.by_group].filter((g) => g.r2_test !== null).sort((a, c) => a.r2_test - c.r2_test)[0];
  return `Layer ${s.layer} (chosen on the training set's validation folds) predicts ${what} of held-out entities with R² ${fmt(s.r2_test)} (${err}); `
    + `p = ${fmt(s.p_value, 3)} against ${s.n_permutations} shuffles, paying for the choice of layer. `
    + `Baselines: layer 0 (token embeddings) R² ${fmt(b.layer0_r2_test)}, names alone (character n-grams) R² ${fmt(b.ngram_r2_test)}; `
    + `control-task selectivity ${fmt(s.selectivity)}. `
    + (worst ? `Worst served: ${worst.group} (R² ${fmt(worst.r2_test)}, ${worst.n_test} test entities). ` : '')
    + 'The random-initialised model control runs on the command line (probelab run).';
}

async function downloadActivations() {
  const r = state.lastRun;
  try {
    const bytes = await pool.safetensors({
      data: r.data.slice(), names: r.names, tokensPerEntity: r.tokensPerEntity,
      template: r.opts.template, pool: r.opts.pool, datasetName: 'names',
    });
    const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
    const a = Object.assign(document.createElement('a'), { href: url, download: 'activations.safetensors' });
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (e) {
    showError(`Could not write the file: ${e.message}`);
  }
}

$('model-file').addEventListener('change', (e) => {
  const f = e.target.files[0];
  if (f) loadModel({ file: f });
});
$('model-load-url').addEventListener('click', () => {
  const url = $('model-url').value.trim();
  if (url) loadModel({ url });
});
$('names-file').addEventListener('change', async (e) => {
  const f = e.target.files[0];
  if (!f) return;
  const { parse_names_csv, default: init } = await import('./pkg/probelab.js');
  await init();
  try {
    $('names').value = parse_names_csv(new Uint8Array(await f.arrayBuffer())).join('\n');
    clearError();
  } catch (err) {
    showError(`${f.name}: ${err.message}`);
  }
});
$('extract').addEventListener('click', runExtraction);
$('cancel').addEventListener('click', () => pool.cancel());
$('download-acts').addEventListener('click', downloadActivations);

$('engine').textContent = 'Engine: starting…';

// Built-in datasets: choosing one fills the names; typing names switches to "my own names".
const builtins = init().then(() => JSON.parse(builtin_datasets()));
builtins.then((list) => {
  for (const d of list) {
    const o = document.createElement('option');
    o.value = d.name; o.textContent = `${d.name} (${d.n} entities, ${d.target})`;
    $('dataset').append(o);
  }
  const wanted = params.get('dataset') || 'world-places-200';
  if (list.some((d) => d.name === wanted)) { $('dataset').value = wanted; showDataset(); }
});
async function showDataset() {
  const name = $('dataset').value;
  if (name === 'custom') { $('dataset-note').textContent = 'Extraction only: probes need targets (a built-in dataset).'; return; }
  const d = (await builtins).find((x) => x.name === name);
  $('names').value = d.names.join('\n');
  $('dataset-note').textContent = `${d.n} entities with ${d.target === 'space' ? 'latitude and longitude' : 'years'}; probes and controls run after extraction.`;
}
$('dataset').addEventListener('change', showDataset);
$('names').addEventListener('input', () => { $('dataset').value = 'custom'; showDataset(); });

// Load the default model on arrival, unless the URL asks for another (?model=URL).
if (params.has('prompt')) $('template').value = params.get('prompt');
const initial = params.get('model') || DEFAULT_MODEL_URL;
$('model-url').value = initial;
const loaded = loadModel({ url: initial });

// Embedded (?embed=1, e.g. in a blog post's iframe): a compact view that runs on its own —
// progress, then the summary, the chart and the map; the inputs stay hidden.
if (params.has('embed')) {
  document.body.classList.add('embed');
  Promise.all([loaded, builtins]).then(async () => {
    await showDataset();
    if (state.info && $('dataset').value !== 'custom') runExtraction();
  });
}
