// The page: reads inputs, drives the model workers, shows progress, results and errors.
// Nothing here computes; the workers (and the wasm core inside them) do.
import { DEFAULT_MODEL_URL } from './config.js';
import { EnginePool } from './pool.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const poolSize = Math.max(1, Math.min(Number(params.get('workers')) || navigator.hardwareConcurrency || 2, 4));
const pool = new EnginePool(poolSize);

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

async function fetchWithProgress(url, onProgress) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`could not fetch ${url}: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get('content-length')) || 0;
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
      $('model-status').textContent = `Reading ${source.file.name}…`;
      bytes = new Uint8Array(await source.file.arrayBuffer());
    } else {
      bar.hidden = false;
      bytes = await fetchWithProgress(source.url, (loaded, total) => {
        bar.max = total || 1; bar.value = total ? loaded : 0;
        $('model-status').textContent = total
          ? `Downloading: ${mb(loaded)} of ${mb(total)} (${Math.round((100 * loaded) / total)}%)`
          : `Downloading: ${mb(loaded)}`;
      });
    }
    $('model-status').textContent = `Reading ${mb(bytes.length)} of weights…`;
    const name = source.file ? source.file.name : source.url;
    const i = await pool.load(bytes, name);
    state.info = i;
    $('model-status').textContent =
      `${i.name}: ${i.n_layers} layers, d_model ${i.d_model}, ${i.quantization}, ${mb(i.file_size)}, sha256 ${i.sha256.slice(0, 12)}… (from ${name})`
      + (i.warnings.length ? ` — warning: ${i.warnings.join('; ')}` : '');
    $('engine').textContent = `Engine: CPU (WebAssembly, ${pool.active} worker${pool.active > 1 ? 's' : ''}). The WebGPU engine is not built yet.`;
  } catch (e) {
    $('model-status').textContent = state.info ? `Still using ${state.info.name}.` : 'No model loaded.';
    showError(`Could not load the model: ${e.message}`);
  } finally {
    bar.hidden = true;
    state.loading = false; setBusy();
  }
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
    $('extract-status').textContent =
      `Done: ${names.length} entities, ${r.tokens} tokens in ${r.seconds.toFixed(2)} s (${(r.tokens / r.seconds).toFixed(0)} tokens/s).`;
    $('result').hidden = false;
    $('result-summary').textContent =
      `Activations: ${r.nLayers + 1} layers × ${names.length} entities × ${r.dModel} dimensions.`;
  } catch (e) {
    pool.cancel();
    showError(`Extraction failed: ${e.message}`);
    $('extract-status').textContent = '';
  } finally {
    state.extracting = false; setBusy();
  }
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

$('engine').textContent = 'Engine: CPU (WebAssembly). The WebGPU engine is not built yet.';

// Load the default model on arrival, unless the URL asks for another (?model=URL).
const initial = params.get('model') || DEFAULT_MODEL_URL;
$('model-url').value = initial;
loadModel({ url: initial });
