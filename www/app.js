// The page: reads inputs, talks to the worker, shows progress, results and errors.
// Nothing here computes; the worker (and the wasm core inside it) does.
import { DEFAULT_MODEL_URL } from './config.js';

const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });

const state = { info: null, lastRun: null, extracting: false };
// Exposed for end-to-end tests and for people poking at the page from the console.
window.probelab = state;

function showError(message) {
  const box = $('error');
  box.textContent = message;   // textContent: data is never parsed as HTML
  box.hidden = false;
}
function clearError() { $('error').hidden = true; $('error').textContent = ''; }

function setExtracting(on) {
  state.extracting = on;
  $('extract').disabled = on || !state.info;
  $('cancel').disabled = !on;
}

const mb = (n) => (n / 1e6).toFixed(1) + ' MB';

worker.onmessage = (ev) => {
  try {
    handle(ev.data);
  } catch (e) {
    showError(`The page failed to show a result: ${e.message}`);
    setExtracting(false);
  }
};

function handle(m) {
  switch (m.type) {
    case 'progress':
      if (m.phase === 'download') {
        const p = $('model-progress');
        p.hidden = false;
        p.max = m.total || 1; p.value = m.total ? m.loaded : 0;
        $('model-status').textContent = m.total
          ? `Downloading: ${mb(m.loaded)} of ${mb(m.total)} (${Math.round(100 * m.loaded / m.total)}%)`
          : `Downloading: ${mb(m.loaded)}`;
      } else if (m.phase === 'parse') {
        $('model-status').textContent = `Reading ${mb(m.total)} of weights…`;
      } else if (m.phase === 'extract') {
        const p = $('extract-progress');
        p.max = m.total; p.value = m.done;
        const rate = m.tokens / Math.max(m.seconds, 1e-6);
        const left = m.done ? (m.seconds / m.done) * (m.total - m.done) : 0;
        $('extract-status').textContent =
          `${m.done} / ${m.total} entities · ${rate.toFixed(0)} tokens/s · about ${left.toFixed(0)} s left`;
      }
      break;
    case 'loaded': {
      state.info = m.info;
      const i = m.info;
      $('model-progress').hidden = true;
      $('model-status').textContent =
        `${i.name}: ${i.n_layers} layers, d_model ${i.d_model}, ${i.quantization}, ${mb(i.file_size)}, sha256 ${i.sha256.slice(0, 12)}… (from ${m.source})`
        + (i.warnings.length ? ` — warning: ${i.warnings.join('; ')}` : '');
      setExtracting(false);
      break;
    }
    case 'extracted':
      setExtracting(false);
      state.lastRun = { nLayers: m.nLayers, nEntities: m.nEntities, dModel: m.dModel, data: m.data, tokens: m.tokens, seconds: m.seconds };
      $('extract-status').textContent = `Done: ${m.nEntities} entities, ${m.tokens} tokens in ${m.seconds.toFixed(2)} s (${(m.tokens / m.seconds).toFixed(0)} tokens/s).`;
      $('result').hidden = false;
      $('result-summary').textContent = `Activations: ${m.nLayers + 1} layers × ${m.nEntities} entities × ${m.dModel} dimensions.`;
      break;
    case 'cancelled':
      setExtracting(false);
      $('extract-status').textContent = `Cancelled after ${m.done} of ${m.total} entities.`;
      break;
    case 'safetensors': {
      const url = URL.createObjectURL(new Blob([m.bytes], { type: 'application/octet-stream' }));
      const a = Object.assign(document.createElement('a'), { href: url, download: 'activations.safetensors' });
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      break;
    }
    case 'error':
      if (m.phase === 'load') {
        $('model-progress').hidden = true;
        $('model-status').textContent = state.info ? `Still using ${state.info.name}.` : 'No model loaded.';
        showError(`Could not load the model: ${m.message}`);
      } else {
        showError(`${m.phase === 'extract' ? 'Extraction failed' : 'Error'}: ${m.message}`);
      }
      setExtracting(false);
      break;
  }
}
worker.onerror = (e) => showError(`The model worker failed: ${e.message || 'unknown error'} (reload the page)`);

function loadModel(source) {
  clearError();
  $('model-status').textContent = 'Loading…';
  worker.postMessage({ type: 'load', ...source });
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
  const text = await f.text();
  const { parse_names_csv, default: init } = await import('./pkg/probelab.js');
  await init();
  try {
    $('names').value = parse_names_csv(new TextEncoder().encode(text)).join('\n');
    clearError();
  } catch (err) {
    showError(`${f.name}: ${err.message}`);
  }
});
$('extract').addEventListener('click', () => {
  clearError();
  // Every line is an entity: an empty line is reported by the core, not silently dropped.
  const lines = $('names').value.replace(/\r/g, '').split('\n');
  while (lines.length && lines[lines.length - 1].trim() === '') lines.pop();
  if (!lines.length) { showError('Enter at least one name.'); return; }
  setExtracting(true);
  $('result').hidden = true;
  $('extract-progress').value = 0;
  worker.postMessage({
    type: 'extract', names: lines, template: $('template').value, pool: $('pool').value,
    batchSize: Math.max(1, Number($('batch-size').value) || 32),
  });
});
$('cancel').addEventListener('click', () => worker.postMessage({ type: 'cancel' }));
$('download-acts').addEventListener('click', () => worker.postMessage({ type: 'safetensors', datasetName: 'names' }));

$('engine').textContent = 'Engine: CPU (WebAssembly' + (crossOriginIsolated ? ', threads available' : '') +
  '). The WebGPU engine is not built yet.';

// Load the default model on arrival, unless the URL asks for another (?model=URL).
const params = new URLSearchParams(location.search);
const initial = params.get('model') || DEFAULT_MODEL_URL;
$('model-url').value = initial;
loadModel({ url: initial });
