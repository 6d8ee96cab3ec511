// The page: reads inputs, drives the model workers, shows progress, results and errors.
// Nothing here computes; the workers (and the wasm core inside them) do. Finished work is kept
// in the browser's store (store.js), so a revisit or a reload picks up where it was.
import { DEFAULT_MODEL_URL } from './config.js';
import { WorkerPool } from './workers.js';
import { gatherActivations, readStoredRun } from './activations.js';
import { fitImported, provenanceText } from './imported.js';
import { fillCausal, linkToLab, showResults } from './results.js';
import { Store, reportKey, runKey, sha256Hex } from './store.js';
import { cachedSize, versionOf } from './source.js';
import init, {
  Report, analysis_plan, builtin_datasets, ledger_plans_scored, ledger_record, plan_differences, plan_unrecorded, prompt_templates, read_dataset,
} from './pkg/probelab.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const embedded = params.has('embed');
const workerCount = Math.max(1, Math.min(Number(params.get('workers')) || navigator.hardwareConcurrency || 2, 4));
const workers = new WorkerPool(workerCount);
// ?engine=cpu|gpu|auto: auto (the default) takes WebGPU when the browser offers an adapter.
const engineChoice = ['cpu', 'gpu', 'auto'].includes(params.get('engine')) ? params.get('engine') : 'auto';
const permutations = Number(params.get('permutations')) || 100;
// ?stream: stream every model to the GPU as a large one is (tests of that path on small models).
const forceStream = params.has('stream');
const SEED = 0n;

const state = {
  info: null, lastRun: null, randomRun: null, report: null, extracting: false, loading: false,
  imported: null, shownFrom: null,
};
// Exposed for end-to-end tests and for people poking at the page from the console.
window.probelab = state;
state.workers = workers;
const storeReady = Store.open().then((s) => { state.store = s; return s; });
const wasmReady = init();

// A service worker keeps the app and the model for offline use (not in tests that ask ?nosw).
if ('serviceWorker' in navigator && !params.has('nosw')) {
  navigator.serviceWorker.register('sw.js').catch((e) => { state.swError = String(e); });
}

function showError(message) {
  const box = $('error');
  box.textContent = message;   // textContent: data is never parsed as HTML
  box.hidden = false;
}
function clearError() { $('error').hidden = true; $('error').textContent = ''; }

function setBusy() {
  $('extract').disabled = state.extracting || state.loading || !state.info;
  $('cancel').disabled = !state.extracting;
  $('split').disabled = state.extracting;
  $('plan-lock').disabled = state.extracting || !state.info;
  $('plan-unlock').disabled = state.extracting;
  $('shipped-prompts').disabled = state.extracting || state.loading || !state.info;
  // The causal test edits the model's own activations: not those of a file.
  $('causal-run').disabled = state.extracting || state.loading || !state.info || !state.report || Boolean(state.shown?.imported);
  $('acts-fit').disabled = state.extracting || !$('acts-file').files.length;
}

const mb = (n) => (n / 1e6).toFixed(1) + ' MB';

/**
 * The browser's CPU engine keeps the GGUF's blocks plus f32 copies of the weights inside
 * WebAssembly's 4 GiB memory: refuse a model that cannot fit before anything is allocated.
 */
const MAX_MODEL_BYTES = 2 ** 31;
const gib = (n) => (n / 2 ** 30).toFixed(1) + ' GiB';
function checkSize(bytes) {
  if (bytes > MAX_MODEL_BYTES) {
    throw new Error(`the model is ${gib(bytes)}; the browser engine holds models up to ${gib(MAX_MODEL_BYTES)} `
      + '(WebAssembly has 4 GiB of memory for the weights and their working copies). '
      + 'Use a smaller quantization, or the command line (probelab run), which has no such limit.');
  }
}

/**
 * Downloads a model whole, with progress: `{bytes}`, or `{size}` without reading the body when
 * the model is too large to hold (it is then streamed to the GPU by range requests), or, with
 * the network gone, `{size}` of a large model this browser keeps in parts.
 */
async function fetchWithProgress(url, onProgress) {
  let res;
  try {
    // Past the browser's HTTP cache: the page keeps its own copy (a second one would double a
    // large model on disk), and the file's version must be the server's own.
    res = await fetch(url, { cache: 'no-store' });
  } catch (e) {
    const size = await cachedSize(url);
    if (size) return { size };
    throw e;
  }
  if (!res.ok) throw new Error(`could not fetch ${url}: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get('content-length')) || 0;
  if (total > MAX_MODEL_BYTES || (forceStream && total)) {
    res.body.cancel();
    return { size: total, version: versionOf(res, total) };
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
  return { bytes };
}

/**
 * A model over the CPU engine's limit goes to the GPU piece by piece (worker 0 reads it from the
 * File or by range requests; wasm holds one piece at a time). Its size and the adapter's limits
 * are shown before anything is read; without WebGPU it is refused with the CPU engine's numbers.
 */
async function streamModel(src, name, size) {
  const adapter = engineChoice === 'cpu' ? null : await workers.adapter();
  if (!adapter || adapter.reason) {
    try {
      checkSize(size);
    } catch (e) {
      throw new Error(e.message + (adapter
        ? ` The WebGPU engine, which streams larger models to the GPU, is not available here: ${adapter.reason}.`
        : ' (?engine=cpu: the WebGPU engine, which streams larger models to the GPU, is off.)'));
    }
  }
  const lim = adapter.limits;
  const limits = `${adapter.name}: largest buffer ${gib(lim.maxBufferSize)}, largest binding ${gib(lim.maxStorageBufferBindingSize)}`;
  state.stream = { size, adapter, plan: null };
  const say = (text) => { $('model-status').textContent = `${name} (${gib(size)}, streamed to the GPU; ${limits}): ${text}`; };
  say('reading the header…');
  const bar = $('model-progress');
  bar.hidden = false; bar.max = size; bar.value = 0;
  return workers.loadStream(src, name, (m) => {
    state.stream.plan = m.plan;
    state.stream.dropped = m.dropped;
    say(`${mb(m.plan.gpu_bytes)} of GPU buffers in ${m.plan.pieces} pieces, the largest part ${mb(m.plan.largest_part)}…`
      + (m.dropped ? ` (the file changed on the server: the ${m.dropped} parts this browser kept of it were dropped)` : ''));
  }, (p) => {
    bar.value = p.done;
    say(`${mb(p.done)} of ${mb(p.total)} (${Math.round((100 * p.done) / p.total)}%) read and uploaded; wasm memory ${mb(workers.memoryPeak)}`);
  });
}

/** The page's line on the workers' WebAssembly memory (its peak: wasm memory never shrinks). */
function showMemory() {
  state.memoryPeak = workers.memoryPeak;
  $('memory').textContent = `WebAssembly memory (largest worker, peak): ${mb(state.memoryPeak)}.`;
}

const MODEL_CACHE = 'probelab-models';

/** Keeps a downloaded model in Cache Storage, where the service worker serves it offline. */
async function keepModelOffline(url, bytes) {
  if (!self.caches) return;
  try {
    const cache = await caches.open(MODEL_CACHE);
    if (await cache.match(url)) return;
    // The Response copies the bytes, so the caller may hand them to the workers at once.
    const res = new Response(bytes, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) } });
    cache.put(url, res).catch(() => {});
  } catch { /* no Cache Storage here: the lab still works online */ }
}

async function loadModel(source) {
  clearError();
  state.loading = true; setBusy();
  const bar = $('model-progress');
  try {
    let url = null;
    let i;
    const name = source.file ? source.file.name : source.url;
    if (source.file) {
      if (source.file.size > MAX_MODEL_BYTES || forceStream) i = await streamModel({ file: source.file }, name, source.file.size);
      else {
        $('model-status').textContent = `Reading ${source.file.name}…`;
        const bytes = new Uint8Array(await source.file.arrayBuffer());
        $('model-status').textContent = `Reading ${mb(bytes.length)} of weights…`;
        i = await workers.load(bytes, name, engineChoice);
      }
    } else {
      url = new URL(source.url, location.href).href;
      bar.hidden = false;
      const got = await fetchWithProgress(url, (loaded, total) => {
        bar.max = total || 1; bar.value = total ? loaded : 0;
        $('model-status').textContent = total
          ? `Downloading: ${mb(loaded)} of ${mb(total)} (${Math.round((100 * loaded) / total)}%)`
          : `Downloading: ${mb(loaded)}`;
      });
      if (got.size) i = await streamModel({ url, size: got.size, version: got.version }, name, got.size);
      else {
        await keepModelOffline(url, got.bytes);
        $('model-status').textContent = `Reading ${mb(got.bytes.length)} of weights…`;
        i = await workers.load(got.bytes, name, engineChoice);
      }
    }
    state.info = i;
    $('model-status').textContent =
      `${i.name}: ${i.n_layers} layers, d_model ${i.d_model}, ${i.quantization}, ${mb(i.file_size)}, sha256 ${i.sha256.slice(0, 12)}… (from ${name})`
      + (i.warnings.length ? ` — warning: ${i.warnings.join('; ')}` : '')
      + (workers.streamed ? ` — streamed to the GPU${workers.streamed.fromCache ? ' from this browser\'s copy' : ''}; the CPU engine does not hold it` : '');
    showMemory();
    // A streamed model's weights are on the GPU only: the random-initialised twin needs the CPU's.
    $('random-init').disabled = Boolean(workers.streamed);
    if (workers.streamed) $('random-init').checked = false;
    showEngine();
    if (engineChoice === 'gpu' && !workers.onGpu) showError(`WebGPU was asked for (?engine=gpu) but is not available: ${workers.gpu ? workers.gpu.reason : 'unknown'}. Extraction runs on the CPU.`);
    const store = await storeReady;
    if (url) await store.putModelRecord(url, { sha256: i.sha256, n_layers: i.n_layers, d_model: i.d_model, name: i.name });
    // Results shown from the store before the model loaded belong to the model they name.
    if (state.shownFrom && state.shownFrom !== i.sha256) {
      $('probe-panel').hidden = true;
      resultsFirst(false);
      $('probe-status').textContent = '';
      state.shownFrom = null;
    }
    await showStoredState();
    await showPlanState();
  } catch (e) {
    $('model-status').textContent = state.info ? `Still using ${state.info.name}.` : 'No model loaded.';
    showError(`Could not load the model: ${e.message}`);
  } finally {
    bar.hidden = true;
    state.loading = false; setBusy();
  }
}

function cpuText() {
  return `CPU (WebAssembly, ${workers.active} worker${workers.active > 1 ? 's' : ''})`;
}

/** Says which engine extraction runs on, and why. */
function showEngine() {
  const g = workers.gpu;
  let text;
  if (workers.gpuFailed) text = `Engine: ${cpuText()} — the WebGPU engine failed (${workers.gpuFailed}); extraction fell back to the CPU.`;
  else if (workers.onGpu) {
    text = `Engine: WebGPU (${g.name}${g.software ? ', a software adapter: correct but slower than a real GPU' : ''}), one worker.`;
  } else if (engineChoice === 'cpu') text = `Engine: ${cpuText()}, as asked (?engine=cpu).`;
  else text = `Engine: ${cpuText()} — no WebGPU: ${g ? g.reason : 'not tried'}.`;
  $('engine').textContent = text;
}

// ---- Datasets: built-in ones, an imported CSV, or typed names -------------------------------

const builtins = wasmReady.then(() => JSON.parse(builtin_datasets()));

/** The dataset the probes use: {name, csv?, target, key} or null (names only, no targets). */
async function currentDataset() {
  const value = $('dataset').value;
  if (value === 'custom') return null;
  if (value === 'imported' && state.imported) return state.imported;
  const d = (await builtins).find((x) => x.name === value);
  return d ? { name: d.name, target: d.target, key: `builtin:${d.name}` } : null;
}

/** Split choices for a dataset: random, its own is_test column, or holding out each group. */
function fillSplits(groups, hasIsTest) {
  const wanted = $('split').value || params.get('split') || 'random';
  const choices = [['random', 'random: 20% of entities held out']];
  if (hasIsTest) choices.push(['column', 'the file\'s is_test column']);
  for (const g of groups) choices.push([`group:${g}`, `hold out each ${g} in turn (block hold-out)`]);
  if (!choices.some(([v]) => v === wanted)) choices.push([wanted, wanted]);
  $('split').replaceChildren(...choices.map(([value, text]) => Object.assign(document.createElement('option'), { value, textContent: text })));
  $('split').value = wanted;
}

async function showDataset() {
  const name = $('dataset').value;
  if (name === 'custom') {
    $('dataset-note').textContent = 'Extraction only: probes need targets (a built-in dataset or a CSV with them).';
    await showStoredState();
    return;
  }
  if (name === 'imported' && state.imported) {
    $('names').value = state.imported.names.join('\n');
    fillSplits(state.imported.groups, state.imported.hasIsTest);
    $('dataset-note').textContent = `${state.imported.fileName}: ${state.imported.n} entities with ${state.imported.target === 'space' ? 'latitude and longitude' : 'years'}.`;
    return;
  }
  const d = (await builtins).find((x) => x.name === name);
  $('names').value = d.names.join('\n');
  fillSplits(d.groups, false);
  $('dataset-note').textContent = `${d.n} entities with ${d.target === 'space' ? 'latitude and longitude' : 'years'}; probes and controls run after extraction.`;
  await showStoredState();
}

/** Lists a CSV's unusable rows by line (as text: the file may hold anything). */
function showProblems(fileName, problems) {
  const list = $('csv-problems');
  const shown = problems.slice(0, 20).map((p) => {
    const li = document.createElement('li');
    li.textContent = `line ${p.line}: ${p.message}`;
    return li;
  });
  if (problems.length > 20) {
    const li = document.createElement('li');
    li.textContent = `… and ${problems.length - 20} more`;
    shown.push(li);
  }
  list.replaceChildren(...shown);
  $('csv-problems-title').textContent = problems.length
    ? `${fileName}: ${problems.length} row${problems.length > 1 ? 's' : ''} skipped`
    : '';
  $('csv-problems-box').hidden = problems.length === 0;
}

/** A dropped or picked CSV: a dataset with targets when it has them, else a list of names. */
async function importFile(file) {
  clearError();
  await wasmReady;
  const bytes = new Uint8Array(await file.arrayBuffer());
  let d;
  try {
    d = JSON.parse(read_dataset(file.name, bytes));
  } catch (e) {
    showProblems(file.name, []);
    showError(`${file.name}: ${e.message}`);
    return;
  }
  if (d.kind === 'names') {
    // No target columns: still a list of names to extract (the probes need targets).
    $('names').value = d.names.join('\n');
    $('dataset').value = 'custom';
    showProblems(file.name, []);
    await showDataset();
    $('dataset-note').textContent = `${file.name}: ${d.names.length} names, no targets (${d.why}); extraction only.`;
    return;
  }
  state.imported = {
    name: d.name, fileName: file.name, target: d.target, n: d.n, names: d.names, csv: bytes,
    hasIsTest: d.has_is_test, groups: d.groups, key: `csv:${await sha256Hex(bytes)}`,
  };
  let opt = $('dataset').querySelector('option[value="imported"]');
  if (!opt) {
    opt = Object.assign(document.createElement('option'), { value: 'imported' });
    $('dataset').append(opt);
  }
  opt.textContent = `${file.name} (${d.n} entities, ${d.target})`;
  $('dataset').value = 'imported';
  showProblems(file.name, d.problems);
  await showDataset();
  await showPlanState();
}

/**
 * The prompt templates, one per line, as the core reads and checks them (at least one, each
 * with {name}, none twice); `problem` says what is wrong instead.
 */
function readTemplates() {
  try {
    return { templates: prompt_templates($('template').value) };
  } catch (e) {
    return { templates: [], problem: e.message || String(e) };
  }
}

function currentRequest() {
  // Every line is an entity: an empty line is reported by the core, not silently dropped.
  const lines = $('names').value.replace(/\r/g, '').split('\n');
  while (lines.length && lines[lines.length - 1].trim() === '') lines.pop();
  const { templates, problem } = readTemplates();
  return {
    names: lines,
    opts: {
      // `template` is the one being extracted (the first until a sweep's loop sets it); the
      // names' surprisal and the entity check use the first.
      template: templates[0] ?? '', templates, templateProblem: problem, pooling: $('pooling').value,
      batchSize: Math.max(1, Number($('batch-size').value) || 32),
      // For tests of the fallback: the GPU's device is destroyed before this batch.
      ...(params.has('gpu_batch') ? { gpuBatch: Number(params.get('gpu_batch')) } : {}),
      ...(params.has('gpu_fail_after') ? { failGpuAfter: Number(params.get('gpu_fail_after')) } : {}),
    },
  };
}

// ---- Running: extraction (model, then its random-initialised twin), then the fit ------------

/** A rate for a status line: a slow software GPU's 0.2 tokens/s is not "0". */
function perSecond(x) {
  return x < 10 ? x.toFixed(1) : x.toFixed(0);
}

function progressText(p, what) {
  const rate = p.tokens / Math.max(p.seconds, 1e-6);
  const fresh = p.done - p.fromStore;
  const left = fresh ? (p.seconds / fresh) * (p.total - p.done) : 0;
  return `${what}${p.done} / ${p.total} entities`
    + (p.fromStore ? ` (${p.fromStore} from this browser's cache)` : '')
    + ` · ${perSecond(rate)} tokens/s · about ${left.toFixed(0)} s left`;
}

async function extractStage(names, opts, variant, what) {
  const store = await storeReady;
  $('extract-progress').value = 0;
  return gatherActivations({
    workers, store, info: state.info, names, opts, variant,
    // ?hold_max_mb=N: keep activations in the page only up to N MB (memory measurements).
    ...(params.has('hold_max_mb') ? { holdMaxBytes: Number(params.get('hold_max_mb')) * 1e6 } : {}),
    onProgress: (p) => {
      if (p.gpuFailed) {
        showEngine();
        $('extract-status').textContent = workers.streamed
          ? `The GPU failed after ${p.batchesOnGpu} of ${p.batches} batches; this model is on the GPU alone, so the run stops (the finished batches are kept).`
          : `The GPU failed after ${p.batchesOnGpu} of ${p.batches} batches: the rest run on the CPU.`;
        return;
      }
      $('extract-progress').max = p.total; $('extract-progress').value = p.done;
      $('extract-status').textContent = progressText(p, what);
    },
  });
}

/**
 * A sweep: one gathered run per template (and, with the control, one of the random-initialised
 * twin per template), all of the same names. A single template is a sweep of one.
 */
function sweepOf(names, opts, runs, randoms) {
  return { names, opts, runs, randoms, nLayers: runs[0].nLayers, dModel: runs[0].dModel };
}

/** The run of `template` in a sweep (the first when it has none of that name). */
function runOf(sweep, template) {
  return sweep.runs[Math.max(0, sweep.opts.templates.indexOf(template))];
}

/** Extracts `variant` for every template of the sweep; null when cancelled (said on the page). */
async function extractTemplates(names, opts, variant, label) {
  const runs = [];
  const k = opts.templates.length;
  for (const [i, template] of opts.templates.entries()) {
    const which = k > 1 ? `prompt ${i + 1} of ${k} (${template}): ` : '';
    const r = await extractStage(names, { ...opts, template }, variant, label + which);
    if (r.cancelled) return { cancelled: r, runs };
    runs.push({ ...r, template });
  }
  return { runs };
}

async function runExtraction() {
  clearError();
  const { names, opts } = currentRequest();
  if (!names.length) { showError('Enter at least one name.'); return; }
  if (opts.templateProblem) { showError(`Prompt templates: ${opts.templateProblem}`); return; }
  state.extracting = true; setBusy();
  try {
    const dataset = await currentDataset();
    // A locked plan refuses other settings before the model runs, not after.
    if (dataset) await checkLock(await storeReady, planOf(dataset, opts, currentSplit(), $('random-init').checked));
    $('result').hidden = true;
    const model = await extractTemplates(names, opts, 'model', '');
    if (model.cancelled) {
      const r = model.cancelled;
      $('extract-status').textContent = `Cancelled after ${r.done} of ${r.total} entities`
        + (model.runs.length ? ` of prompt ${model.runs.length + 1} (the first ${model.runs.length} are done)` : '')
        + (state.store.ok ? '; the finished ones are kept in this browser, and Extract continues from there.' : '.');
      return;
    }
    const runs = model.runs;
    // lastRun is the first template's run (as it was before sweeps); sweep holds them all.
    state.sweep = sweepOf(names, opts, runs, null);
    state.lastRun = { ...runs[0], nEntities: names.length, names, opts: { ...opts, template: runs[0].template } };
    state.randomRun = null;
    state.report = null;
    const sum = (key) => runs.reduce((a, r) => a + r[key], 0);
    const computed = sum('computed'), fromStore = sum('fromStore'), tokens = sum('tokens'), seconds = sum('seconds');
    const engines = [...new Set(runs.filter((r) => r.computed).map((r) => r.engine))];
    const on = { gpu: ' on WebGPU', cpu: ' on the CPU', 'gpu+cpu': ' (WebGPU, then the CPU after the GPU failed)' }[engines.includes('gpu+cpu') ? 'gpu+cpu' : engines[0]] || '';
    const prompts = runs.length > 1 ? ` × ${runs.length} prompts` : '';
    const doneText = computed
      ? `Done${on}: ${names.length} entities${prompts} (${computed} computed, ${fromStore} from this browser's cache), ${tokens} tokens in ${seconds.toFixed(2)} s (${perSecond(tokens / seconds)} tokens/s).`
      : `All ${names.length} entities' activations${prompts} came from this browser's cache (same model, prompt and names).`;
    $('extract-status').textContent = doneText;
    showMemory();
    const r = runs[0];
    $('result').hidden = false;
    $('result-summary').textContent =
      `Activations: ${r.nLayers + 1} layers × ${names.length} entities × ${r.dModel} dimensions${runs.length > 1 ? `, for each of ${runs.length} prompt templates` : ''}.`
      + (r.data ? '' : ' Too large to hold in the page: they are in this browser\'s cache; fit them with the command line (probelab fit).')
      + (state.store.reason ? ` (${state.store.reason})` : '');
    $('download-acts').disabled = !r.data;
    // The page state lives in the URL, so a link reproduces the view.
    const url = new URL(location.href);
    url.searchParams.set('dataset', $('dataset').value === 'imported' ? 'custom' : $('dataset').value);
    url.searchParams.delete('prompt');
    for (const t of opts.templates) url.searchParams.append('prompt', t);
    history.replaceState(null, '', url);
    if (!dataset || runs.some((x) => !x.data)) return;
    if ($('random-init').checked) {
      const twin = await extractTemplates(names, opts, 'random-init', 'Random-initialised control model: ');
      if (twin.cancelled) {
        const t = twin.cancelled;
        $('extract-status').textContent = `Cancelled the random-initialised control after ${t.done} of ${t.total} entities; the probes are fitted without it.`;
      } else {
        state.sweep = sweepOf(names, opts, runs, twin.runs);
        state.randomRun = twin.runs[0];
        $('extract-status').textContent = `${doneText} The random-initialised control model ran too (${twin.runs.reduce((a, x) => a + x.computed, 0)} computed, ${twin.runs.reduce((a, x) => a + x.fromStore, 0)} from the cache).`;
      }
    }
    await fitAndShow(dataset, state.sweep);
  } catch (e) {
    workers.cancel();
    showError(`${e.planRefused ? '' : 'Extraction failed: '}${e.message}`);
    if (!e.planRefused) $('extract-status').textContent = '';
  } finally {
    state.extracting = false; setBusy();
  }
}

const currentSplit = () => $('split').value;

/** The current time as RFC 3339 UTC to the second, as the command line writes it. */
const nowUtc = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/**
 * The analysis plan of fitting `sweep` now ({hash, plan}): everything that could be changed
 * after seeing the test score, hashed by the core exactly as `probelab run` hashes it.
 */
function planOf(dataset, opts, split, withTwin) {
  return JSON.parse(analysis_plan(dataset.name, dataset.csv, state.info.sha256, opts.pooling, split,
    opts.templates, permutations, SEED, withTwin));
}

/** The plans the ledger holds for a plan's test set (its dataset and split). */
async function plansScored(store, plan) {
  return ledger_plans_scored(await store.ledger(), JSON.stringify(plan.plan));
}

/**
 * "Lock the plan": what is locked for the current dataset, whether the current settings follow
 * it (and if not, where they differ), and how many plans this test set has seen.
 */
async function showPlanState() {
  const status = $('plan-status');
  const dataset = await currentDataset();
  const { opts } = currentRequest();
  if (!dataset || !state.info || opts.templateProblem) {
    status.textContent = dataset ? '' : 'A plan is for a dataset with targets (a built-in one or a CSV with them).';
    $('plan-lock').hidden = false; $('plan-unlock').hidden = true;
    delete status.dataset.locked;
    return;
  }
  const store = await storeReady;
  let plan;
  try { plan = planOf(dataset, opts, currentSplit(), $('random-init').checked); } catch (e) { status.textContent = e.message; return; }
  const locked = await store.lockedPlan(plan.plan.dataset_sha256);
  const scored = await plansScored(store, plan);
  const count = `${scored} plan${scored === 1 ? '' : 's'} scored on this test set in this browser`;
  $('plan-lock').hidden = Boolean(locked); $('plan-unlock').hidden = !locked;
  if (!locked) {
    delete status.dataset.locked;
    status.textContent = `No plan locked for this dataset (${count}).`;
    return;
  }
  status.dataset.locked = locked.hash;
  const fields = locked.hash === plan.hash ? [] : plan_differences(JSON.stringify(locked.plan), JSON.stringify(plan.plan));
  status.textContent = `Plan ${locked.hash.slice(0, 12)} locked ${new Date(locked.locked).toISOString().slice(0, 19).replace('T', ' ')} UTC (${count}). `
    + (fields.length ? `The settings now differ from it in: ${fields.join(', ')}; a fit is refused until they match or the plan is unlocked.`
      : 'The settings follow it.');
}

/** Locks the current settings' plan for this dataset: fits with other settings are refused. */
async function lockPlan() {
  clearError();
  const dataset = await currentDataset();
  const { opts } = currentRequest();
  const store = await storeReady;
  try {
    if (!dataset) throw new Error('a plan is for a dataset with targets: choose a built-in dataset or a CSV with latitude/longitude or years');
    if (opts.templateProblem) throw new Error(`prompt templates: ${opts.templateProblem}`);
    if (!store.ok) throw new Error(store.reason || 'this browser keeps no store, so a locked plan would not last');
    const plan = planOf(dataset, opts, currentSplit(), $('random-init').checked);
    await store.lockPlan(plan.plan.dataset_sha256, plan);
  } catch (e) {
    showError(`Could not lock the plan: ${e.message}`);
  }
  await showPlanState();
}

async function unlockPlan() {
  const dataset = await currentDataset();
  const store = await storeReady;
  if (dataset && state.info) {
    const plan = planOf(dataset, currentRequest().opts, currentSplit(), false);
    await store.unlockPlan(plan.plan.dataset_sha256);
  }
  await showPlanState();
}

/** Refuses (throws, naming what differs) a plan other than the one locked for its dataset. */
async function checkLock(store, plan) {
  const locked = await store.lockedPlan(plan.plan.dataset_sha256);
  if (locked && locked.hash !== plan.hash) {
    const fields = plan_differences(JSON.stringify(locked.plan), JSON.stringify(plan.plan));
    throw Object.assign(new Error(`this fit differs from the plan locked for this dataset (plan ${locked.hash.slice(0, 12)}) in: ${fields.join(', ')}. `
      + 'Change the settings back, or Unlock the plan to run it anyway (it will count as exploratory).'), { planRefused: true });
  }
}

/**
 * Before the test set is scored: a plan locked for this dataset must be the plan of this fit
 * (else the fit is refused, naming what differs), and the plan is recorded in the browser's
 * ledger of plans scored on this test set. Resolves with the report's `plan` block.
 */
async function recordPlan(store, plan) {
  await checkLock(store, plan);
  const planText = JSON.stringify(plan.plan);
  if (!store.ok) return plan_unrecorded(planText, nowUtc());
  const { ledger, record } = JSON.parse(ledger_record(await store.ledger(), planText, nowUtc()));
  await store.putLedger(JSON.stringify(ledger));
  showPlanState();
  // A ledger the store refused to keep cannot say whether this plan was first.
  return store.ok ? JSON.stringify(record) : plan_unrecorded(planText, nowUtc());
}

/** Fits the probes and controls on a sweep (or takes the stored report of the same fit) and draws them. */
async function fitAndShow(dataset, sweep) {
  const store = await storeReady;
  const split = currentSplit();
  const { runs, randoms, opts } = sweep;
  const surprisal = surprisalFor({ names: sweep.names, opts });
  // One template keeps the key a single run always had, so earlier results stay found.
  const keyOf = (list) => (list ? (list.length === 1 ? list[0].run : list.map((r) => r.run)) : null);
  const key = await reportKey({ run: keyOf(runs), randomRun: keyOf(randoms), dataset: dataset.key, split, permutations, seed: String(SEED), surprisal: surprisal ? 'v1' : undefined });
  $('probe-panel').hidden = false;
  let stored = await store.getReport(key);
  const t = performance.now();
  if (!stored) {
    const plan = await recordPlan(store, planOf(dataset, opts, split, Boolean(randoms)));
    const sweepText = runs.length > 1 ? ` × ${runs.length} prompts` : '';
    const what = `ridge probes on ${sweep.nLayers + 1} layers${sweepText} with ${permutations} shuffled-target refits`
      + (randoms ? ', the random-initialised model' : '') + ' and every other control';
    $('probe-status').textContent = `Fitting ${what}…`;
    const bar = $('fit-progress');
    bar.hidden = false; bar.value = 0;
    const joined = (list) => {
      const out = new Float32Array(list.reduce((a, r) => a + r.data.length, 0));
      let at = 0;
      for (const r of list) { out.set(r.data, at); at += r.data.length; }
      return out;
    };
    const { report, scenes } = await workers.fit({
      data: joined(runs), nLayers: sweep.nLayers, dModel: sweep.dModel,
      randomInit: randoms ? joined(randoms) : undefined,
      firstTokenIds: runs[0].firstTokenIds, dataset: dataset.name, csv: dataset.csv, split, permutations,
      ...(params.has('split_seeds') ? { splitSeeds: Number(params.get('split_seeds')) } : {}),
      modelName: state.info.name, modelSha256: state.info.sha256, templates: opts.templates, pooling: opts.pooling,
      surprisal: surprisal ? surprisal.slice() : undefined, plan,
    }, (p) => {
      if (p.stage !== 'layers' && p.stage !== 'split seeds') return;
      bar.max = p.total; bar.value = p.done;
      if (p.stage === 'layers') $('probe-status').textContent = `Fitting ${what}: layer ${p.done} of ${p.total} done.`;
      else if (p.stage === 'split seeds') $('probe-status').textContent = `Re-drawing the split over other seeds: ${p.done} of ${p.total} done.`;
    }).finally(() => { bar.hidden = true; });
    stored = { reportJson: report, scenes };
    await store.putReport(key, stored);
    $('probe-status').textContent = `Fitted in ${((performance.now() - t) / 1000).toFixed(1)} s.`;
  } else {
    $('probe-status').textContent = 'The same fit was done before: shown from this browser\'s cache.';
  }
  show(stored, state.info.sha256, key);
}

/**
 * Draws a stored result ({reportJson, scenes}); `key` is where the store keeps it. `imported`:
 * fitted on a file's activations, which this tab does not hold as a run.
 */
function show(stored, sha256, key, imported = false) {
  state.shown = { stored, key, imported };
  // Read once into the core: the slider, the summary and the exports ask this handle.
  const report = Report.from_json(stored.reportJson);
  state.report = showResults(report, stored.reportJson, JSON.parse(stored.scenes), params.has('layer') ? Number(params.get('layer')) : undefined);
  state.shownFrom = sha256;
  $('probe-panel').hidden = false;
  $('summary').textContent = report.summary();
  $('acts-provenance').textContent = provenanceText(state.report);
  $('acts-provenance').hidden = !$('acts-provenance').textContent;
  fillCausal(state.report);
  resultsFirst(true);
  // The activations go with the result when this tab holds them (not on a revisit from the store).
  $('export-acts').disabled = imported || !shownRun()?.data;
  if (embedded) showTitle(state.report.dataset.target);
  linkToLab();
}

/**
 * Results first: once a result is on the page it leads, and the inputs fold into Setup (once,
 * so a reader who opened Setup again keeps it open across re-fits). Without one, Setup is open.
 */
function resultsFirst(shown) {
  if (shown && !document.body.classList.contains('has-results')) $('setup').open = false;
  if (!shown) $('setup').open = true;
  document.body.classList.toggle('has-results', shown);
}

/** The embed's title: ?title=, or a question that names what the figure tests. */
function showTitle(target) {
  const fallback = target === 'time' ? 'Is there a timeline inside the model?'
    : target === 'space' ? 'Is there a map of the world inside the model?' : 'Probelab';
  $('title').textContent = params.get('title') || fallback;
  document.title = $('title').textContent;
}

/**
 * What the store already holds for the current model, names and prompt: a report (shown at
 * once), complete activations (a fit away), or part of an interrupted run (Extract resumes).
 * `modelRecord` stands in for the model before it has loaded (a revisit).
 */
async function showStoredState(modelRecord) {
  const info = modelRecord || state.info;
  const dataset = await currentDataset();
  if (!info || state.extracting) return false;
  const store = await storeReady;
  const { names, opts } = currentRequest();
  if (!names.length || opts.templateProblem) return false;
  // Every template's run, and the twin's: a sweep's report is keyed by all of them.
  const keys = async (variant) => Promise.all(opts.templates.map((template) => runKey(info, names, { ...opts, template }, variant)));
  const [runs, randomRuns] = await Promise.all([keys('model'), keys('random-init')]);
  const recs = await Promise.all(runs.map((r) => store.get('runs', r)));
  const status = $('extract-status');
  if (/interrupted run/.test(status.textContent)) status.textContent = '';
  const partial = recs.find((rec) => rec && !rec.complete && rec.done);
  if (partial) $('extract-status').textContent = `${partial.done} of ${names.length} entities are cached from an interrupted run: Extract continues from there.`;
  if (!dataset || !recs.every((rec) => rec && rec.complete)) return false;
  const randomRecs = $('random-init').checked ? await Promise.all(randomRuns.map((r) => store.get('runs', r))) : [];
  const withTwin = randomRecs.length > 0 && randomRecs.every((rec) => rec && rec.complete);
  const keyOf = (list) => (list.length === 1 ? list[0] : list);
  const rk = await reportKey({ run: keyOf(runs), randomRun: withTwin ? keyOf(randomRuns) : null, dataset: dataset.key, split: currentSplit(), permutations, seed: String(SEED) });
  const stored = await store.getReport(rk);
  if (stored) {
    show(stored, info.sha256, rk);
    $('probe-status').textContent = 'Shown from this browser\'s cache (the same model, names, prompt and split as before).';
    return true;
  }
  return false;
}

/** The names' surprisal measured for this model, prompt and names, when it was. */
function surprisalFor({ names, opts }) {
  const s = state.surprisal;
  return s && s.sha256 === state.info?.sha256 && s.template === opts.template && s.names === names.join('\n') ? s.values : null;
}

/**
 * "Colour by: the model's surprisal": scores each name with the model once (CPU, one more
 * pass with the LM head), then re-fits so the report, the summary and the map carry it.
 */
async function colourBySurprisal() {
  if ($('color-by').value !== 'surprisal' || !state.report || state.extracting || !state.info) return;
  if (state.report.entities.some((e) => e.surprisal !== undefined && e.surprisal !== null)) return;
  const { names, opts } = currentRequest();
  if (surprisalFor({ names, opts })) return;
  state.extracting = true; setBusy();
  const bar = $('fit-progress');
  try {
    $('probe-status').textContent = 'Scoring each name with the model (its surprisal)…';
    bar.hidden = false; bar.value = 0;
    const values = await workers.surprisal(names, opts.template, (p) => {
      bar.max = p.total; bar.value = p.done;
      $('probe-status').textContent = `Scoring each name with the model (its surprisal): ${p.done} of ${p.total}.`;
    });
    state.surprisal = { sha256: state.info.sha256, template: opts.template, names: names.join('\n'), values };
  } catch (e) {
    showError(`Could not score the names: ${e.message}`);
    return;
  } finally {
    bar.hidden = true;
    state.extracting = false; setBusy();
  }
  await refit();
}

/** Whether this tab's last extraction is of these names with these prompts and pooling. */
function isLastRun(names, opts) {
  const r = state.sweep;
  return Boolean(r) && r.names.join('\n') === names.join('\n')
    && r.opts.templates.join('\n') === opts.templates.join('\n') && r.opts.pooling === opts.pooling;
}

/**
 * The sweep of these names and prompts: this tab's last extraction, or complete runs read back
 * from the store (every template's, and the twin's when the control is on and stored for all);
 * null when some template's activations are not stored.
 */
async function sweepFor(names, opts) {
  if (isLastRun(names, opts)) return state.sweep;
  const store = await storeReady;
  const read = async (variant) => {
    const runs = [];
    for (const template of opts.templates) {
      const r = await readStoredRun({ store, info: state.info, names, opts: { ...opts, template }, variant });
      if (!r || !r.data) return null;
      runs.push({ ...r, template });
    }
    return runs;
  };
  const runs = await read('model');
  if (!runs) return null;
  return sweepOf(names, opts, runs, $('random-init').checked ? await read('random-init') : null);
}

/** The activations the shown result chose (its template's run), when this tab holds them. */
function shownRun() {
  const sweep = state.sweep;
  if (!sweep || !state.report) return sweep?.runs[0] ?? null;
  return sweep.opts.templates.includes(state.report.prompt) ? runOf(sweep, state.report.prompt) : null;
}

/** A changed split re-fits the activations in memory or in the store; the model does not run. */
async function refit() {
  if (state.extracting || !state.info) return;
  const dataset = await currentDataset();
  if (!dataset) return;
  const url = new URL(location.href);
  url.searchParams.set('split', currentSplit());
  history.replaceState(null, '', url);
  const { names, opts } = currentRequest();
  if (opts.templateProblem) return;
  const sweep = await sweepFor(names, opts);
  if (!sweep) return;   // nothing extracted yet: Extract fits with the new split
  state.extracting = true; setBusy();
  try {
    await fitAndShow(dataset, sweep);
  } catch (e) {
    showError(e.planRefused ? e.message : `Could not fit: ${e.message}`);
  } finally {
    state.extracting = false; setBusy();
  }
}

// ---- Activations made elsewhere: a file beside the CSV, fitted without the model -------------

/**
 * Fits the chosen activations file (and the random-init control's, when given) on the current
 * dataset: the core reads it and checks it against the dataset's names, the plan is recorded as
 * for any fit, and the report says where the activations came from.
 */
async function fitActivationsFile() {
  clearError();
  const file = $('acts-file').files[0];
  const randomFile = $('acts-random-file').files[0];
  const status = $('acts-status');
  const dataset = await currentDataset();
  if (!file) return;
  if (!dataset) {
    showError('Fitting activations needs targets: choose a built-in dataset or a CSV with latitude/longitude or years (its names in the file\'s order).');
    return;
  }
  state.extracting = true; setBusy();
  const bar = $('fit-progress');
  const t = performance.now();
  const split = currentSplit();
  try {
    const store = await storeReady;
    status.textContent = `Reading ${file.name}${randomFile ? ` and ${randomFile.name}` : ''}…`;
    const { report, scenes, memory } = await fitImported({
      file, randomFile, dataset, split, permutations, seed: SEED,
      splitSeeds: params.has('split_seeds') ? Number(params.get('split_seeds')) : 10,
      recordPlan: (info) => recordPlan(store, JSON.parse(analysis_plan(dataset.name, dataset.csv, info.model_sha256,
        info.pooling, split, [info.prompt], permutations, SEED, Boolean(randomFile)))),
      onInfo: (info, memory) => {
        status.textContent = `${file.name}: ${info.n_layers + 1} layers × ${info.n_entities} entities × ${info.d_model} dimensions `
          + `(WebAssembly memory ${mb(memory)}); fitting…`;
        $('probe-panel').hidden = false;
        bar.hidden = false; bar.value = 0;
      },
      onProgress: (p) => {
        if (p.stage !== 'layers' && p.stage !== 'split seeds') return;
        bar.max = p.total; bar.value = p.done;
        $('probe-status').textContent = p.stage === 'layers'
          ? `Fitting ${file.name}: layer ${p.done} of ${p.total} done.`
          : `Re-drawing the split over other seeds: ${p.done} of ${p.total} done.`;
      },
    });
    show({ reportJson: report, scenes }, null, null, true);
    const done = `Fitted ${file.name} in ${((performance.now() - t) / 1000).toFixed(1)} s (WebAssembly memory ${mb(memory)}).`;
    status.textContent = done;
    $('probe-status').textContent = done;
  } catch (e) {
    status.textContent = '';
    showError(e.planRefused ? e.message : `Could not fit ${file.name}: ${e.message}`);
  } finally {
    bar.hidden = true;
    state.extracting = false; setBusy();
  }
}

// ---- Does the model use it? (the causal test) ------------------------------------------------

/**
 * Edits the residual stream along the shown probe's direction at its layer and reads the
 * model's own answers against null edits (worker 0, CPU), then adds the causal block to the
 * shown report: the summary, the table and the stored result carry it. Cancel keeps the report
 * as it was.
 */
async function runCausal() {
  if (!state.report || !state.shown || state.extracting || !state.info || state.shown.imported) return;
  const status = $('causal-status');
  const dataset = await currentDataset();
  const { names, opts } = currentRequest();
  // The causal test edits the activations of the template the report chose.
  const sweep = opts.templateProblem ? null : await sweepFor(names, opts);
  const run = sweep && sweep.opts.templates.includes(state.report.prompt) ? runOf(sweep, state.report.prompt) : null;
  if (!dataset || !run || !run.data) {
    status.textContent = 'The causal test edits this model\'s activations: extract them first (Setup, Extract).';
    return;
  }
  const layer = state.report.selected.layer;
  const n = sweep.names.length, d = sweep.dModel;
  // A window edits the selected layer and the ones after it, each along its own probe.
  const lastLayer = state.report.model.n_layers;
  const count = Math.min(Math.max(1, Number($('causal-window').value) || 1), lastLayer - layer + 1);
  const layerActs = run.data.slice(layer * n * d, (layer + count) * n * d);
  const where = count > 1 ? `layers ${layer}–${layer + count - 1}` : `layer ${layer}`;
  state.extracting = true; setBusy();
  $('causal-cancel').disabled = false;
  const bar = $('causal-progress');
  bar.hidden = false; bar.value = 0;
  const t = performance.now();
  status.textContent = `Running the prompts to layer ${layer}…`;
  try {
    const res = await workers.steer({
      reportJson: state.shown.stored.reportJson, layerActs, firstTokenIds: run.firstTokenIds,
      dataset: dataset.name, csv: dataset.csv, pooling: opts.pooling, layer,
      readout: $('causal-readout').value.trim(), answerColumn: $('causal-column').value.trim(),
      window: count - 1,
    }, (p) => {
      bar.max = p.total; bar.value = p.done;
      status.textContent = `Editing ${where} along the probe and the null directions: pass ${p.done} of ${p.total}.`;
    });
    if (res.cancelled) {
      status.textContent = 'Cancelled: the report is as it was.';
      return;
    }
    const full = JSON.parse(state.shown.stored.reportJson);
    full.causal = JSON.parse(res.causal);
    const reportJson = JSON.stringify(full);
    const handle = Report.from_json(reportJson);
    let next;
    try { next = { reportJson, scenes: handle.scenes() }; } finally { handle.free(); }
    if (state.shown.key) await (await storeReady).putReport(state.shown.key, next);
    show(next, state.info.sha256, state.shown.key);
    const on = { gpu: 'on WebGPU', cpu: 'on the CPU', 'gpu+cpu': `on WebGPU, then the CPU after the GPU failed (${res.gpuFailed})` }[res.engine];
    status.textContent = `Done in ${((performance.now() - t) / 1000).toFixed(1)} s (${bar.max} edited forward passes, ${on}).`;
  } catch (e) {
    status.textContent = '';
    showError(`The causal test failed: ${e.message}`);
  } finally {
    bar.hidden = true;
    $('causal-cancel').disabled = true;
    state.extracting = false; setBusy();
  }
}

async function downloadActivations() {
  const r = shownRun();
  const sweep = state.sweep;
  try {
    const bytes = await workers.safetensors({
      data: r.data.slice(), names: sweep.names, tokensPerEntity: r.tokensPerEntity,
      template: r.template, pooling: sweep.opts.pooling, datasetName: 'names',
    });
    const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
    const a = Object.assign(document.createElement('a'), { href: url, download: 'activations.safetensors' });
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (e) {
    showError(`Could not write the file: ${e.message}`);
  }
}

// ---- Wiring ---------------------------------------------------------------------------------

$('model-file').addEventListener('change', (e) => {
  const f = e.target.files[0];
  if (f) loadModel({ file: f });
});
$('model-load-url').addEventListener('click', () => {
  const url = $('model-url').value.trim();
  if (url) loadModel({ url });
});
$('names-file').addEventListener('change', (e) => { if (e.target.files[0]) importFile(e.target.files[0]); });
// Drag and drop a CSV anywhere on the entities panel.
$('data-panel').addEventListener('dragover', (e) => { e.preventDefault(); $('data-panel').classList.add('drop'); });
$('data-panel').addEventListener('dragleave', () => $('data-panel').classList.remove('drop'));
$('data-panel').addEventListener('drop', (e) => {
  e.preventDefault();
  $('data-panel').classList.remove('drop');
  const f = e.dataTransfer.files[0];
  if (f) importFile(f);
});
$('acts-file').addEventListener('change', setBusy);
$('acts-fit').addEventListener('click', fitActivationsFile);
$('extract').addEventListener('click', runExtraction);
$('cancel').addEventListener('click', () => workers.cancel());
$('download-acts').addEventListener('click', downloadActivations);
$('export-acts').addEventListener('click', downloadActivations);
// A result fitted on a file is re-fitted from the file; any other from the run it came from.
$('split').addEventListener('change', async () => { await showPlanState(); await (state.shown?.imported ? fitActivationsFile() : refit()); });
$('color-by').addEventListener('change', colourBySurprisal);
$('causal-run').addEventListener('click', runCausal);
$('plan-lock').addEventListener('click', lockPlan);
$('plan-unlock').addEventListener('click', unlockPlan);
$('random-init').addEventListener('change', showPlanState);
$('template').addEventListener('change', async () => { await showStoredState(); await showPlanState(); });
$('shipped-prompts').addEventListener('click', async () => {
  clearError();
  const dataset = await currentDataset();
  try {
    // The random prefix is drawn from the loaded model's vocabulary, as --prompt-set does.
    $('template').value = (await workers.shippedPrompts(dataset?.target === 'time' ? 'time' : 'places')).join('\n');
  } catch (e) {
    showError(`Could not make the shipped prompt set: ${e.message}`);
    return;
  }
  await showStoredState();
  await showPlanState();
});
$('causal-cancel').addEventListener('click', () => workers.cancel());
$('dataset').addEventListener('change', async () => { await showDataset(); await showPlanState(); });
$('names').addEventListener('input', () => { $('dataset').value = 'custom'; showDataset(); });

$('engine').textContent = 'Engine: starting…';

builtins.then((list) => {
  for (const d of list) {
    const o = document.createElement('option');
    o.value = d.name; o.textContent = `${d.name} (${d.n} entities, ${d.target})`;
    $('dataset').append(o);
  }
  const wanted = params.get('dataset') || 'world-places-200';
  if (list.some((d) => d.name === wanted)) $('dataset').value = wanted;
});

if (params.has('prompt')) $('template').value = params.getAll('prompt').join('\n');
const initial = params.get('model') || DEFAULT_MODEL_URL;
$('model-url').value = initial;

// A revisit: the last result for this model, names and prompt is drawn before the model has
// even loaded (the model's hash is remembered by URL; the load checks it).
const arrived = Promise.all([builtins, storeReady, wasmReady]).then(async ([, store]) => {
  await showDataset();
  const rec = await store.modelRecord(new URL(initial, location.href).href);
  return rec ? showStoredState(rec) : false;
});
// Load the default model on arrival, unless the URL asks for another (?model=URL).
const loaded = arrived.then(() => loadModel({ url: initial }));

// Embedded (?embed=1, e.g. in a blog post's iframe): a figure that runs on its own — progress,
// then the title, the verdict, the map with its slider and Play, and the chart; no inputs.
if (embedded) {
  document.body.classList.add('embed');
  showTitle(null);
  $('open-lab-line').hidden = false;
  linkToLab();
  Promise.all([loaded, arrived]).then(async ([, shown]) => {
    if (!shown && state.info && $('dataset').value !== 'custom') runExtraction();
  });
}
