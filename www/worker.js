// One model worker: holds a wasm Lab and runs extraction batch by batch, off the page's thread.
// Messages in: adapter, load, load-stream, check, prompts, extract, cancel, fit, surprisal, steer,
// safetensors. Out: adapter, stream-plan, stream-progress, loaded, checked, prompts, rows (one per
// finished batch), extracted, cancelled, fit-progress, fitted, surprisal, steer-progress, steered,
// safetensors, gpu-failed, error. Replies carry `memory`, the wasm memory's size in bytes (it only
// grows, so it is the peak).
// www/workers.js drives several of these.
// A worker asked to (`gpu` in its load message) also puts the weights on the GPU through
// WebGPU and then runs batches there, dropping to its CPU copy if the GPU fails.
import init, * as wasm from './pkg/probelab.js';
import { byteSource } from './source.js';

const { Lab, fit_probes } = wasm;
let lab = null;
let gpu = null;        // wasm GpuModel, when extraction runs on the GPU
let gpuFailed = null;  // why the GPU was dropped mid-run
let cancelled = false;
let exports = null;
const ready = init().then((e) => { exports = e; });

/** This worker's wasm memory (WebAssembly.Memory buffer.byteLength): it never shrinks. */
const memoryBytes = () => (exports ? exports.memory.buffer.byteLength : 0);

// The id of the request being answered goes back with every reply (see workers.js request()),
// with the wasm memory's size.
const replyTo = (id) => (msg, transfer) => self.postMessage({ ...msg, id, memory: memoryBytes() }, transfer || []);

/** The WebGPU adapter as the browser describes it, or why there is none. */
async function probeAdapter() {
  if (!self.navigator || !navigator.gpu) return { reason: 'this browser has no navigator.gpu' };
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return { reason: `requestAdapter failed: ${e.message || e}` };
  }
  if (!adapter) return { reason: 'navigator.gpu.requestAdapter() returned no adapter (WebGPU is off or blocked here)' };
  const info = adapter.info || {};
  const software = Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter);
  const name = [info.vendor, info.architecture, info.device, info.description]
    .filter((s) => s && String(s).trim()).join(' ') || 'unnamed adapter';
  const limits = {
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup,
    maxStorageBuffersPerShaderStage: adapter.limits.maxStorageBuffersPerShaderStage,
    maxBufferSize: adapter.limits.maxBufferSize,
  };
  // Whether the adapter's limits suit the kernels is the core's call (GpuModel.load says why not).
  return { name, software, limits };
}

async function loadGpu(bytes) {
  gpu?.free(); gpu = null; gpuFailed = null;
  const adapter = await probeAdapter();
  if (adapter.reason) return { ok: false, ...adapter };
  try {
    gpu = await wasm.GpuModel.load(bytes);
    return { ok: true, ...adapter, wgpu: gpu.report(), maxBatchTokens: gpu.max_batch_tokens() };
  } catch (e) {
    return { ok: false, ...adapter, reason: `${adapter.name}: ${e.message || e}` };
  }
}

async function load(msg, post) {
  await ready;
  const bytes = msg.bytes ? new Uint8Array(msg.bytes) : new Uint8Array(await msg.file.arrayBuffer());
  // A file that fails to load leaves the current model in place.
  const next = new Lab(bytes);
  if (lab) lab.free();
  lab = next;
  let engine = null;
  if (msg.gpu) {
    engine = wasm.GpuModel ? await loadGpu(bytes) : { ok: false, reason: 'this build has no GPU engine' };
  } else if (gpu) { gpu.free(); gpu = null; }
  post({ type: 'loaded', info: lab.info(), source: msg.source, engine });
}

/**
 * Streams a model larger than wasm's memory to the GPU: the header from the first bytes (a
 * longer prefix when the header is longer), then each planned piece read from the File or by
 * HTTP range requests (kept in Cache Storage) and handed to the core, which uploads it and
 * drops it. The Lab that results has the tokenizer but no CPU weights. A failure leaves the
 * current model in place.
 */
async function loadStream(msg, post) {
  await ready;
  const adapter = await probeAdapter();
  if (adapter.reason) throw new Error(`streaming a model to the GPU needs WebGPU: ${adapter.reason}`);
  const source = await byteSource(msg);
  let loader = null;
  for (let len = 4 << 20; !loader; len *= 4) {
    const prefix = await source.read(0, Math.min(len, source.size));
    loader = await wasm.GpuLoader.begin(prefix, source.size);
    if (!loader && len >= source.size) throw new Error('the GGUF header runs past the end of the file');
  }
  try {
    post({ type: 'stream-plan', plan: loader.plan(), adapter, fromCache: source.fromCache, dropped: source.dropped || 0 });
    const offsets = loader.offsets(), lengths = loader.lengths(), tensors = loader.tensors();
    const n = offsets.length;
    let done = 0, told = 0;
    // One read ahead: the next piece arrives while this one uploads.
    let next = source.read(offsets[0], lengths[0]);
    try {
      for (let i = 0; i < n; i++) {
        const bytes = await next;
        next = i + 1 < n ? source.read(offsets[i + 1], lengths[i + 1]) : null;
        loader.put(bytes);   // a short piece fails here, naming its tensor
        done += lengths[i];
        if (performance.now() - told > 250 || i === n - 1) {
          told = performance.now();
          post({ type: 'stream-progress', done, total: source.size, piece: i + 1, pieces: n, tensor: tensors[i] });
        }
      }
    } catch (e) {
      next?.catch(() => {});
      throw e;
    }
    const model = loader.finish();
    const nextLab = loader.lab();
    gpu?.free(); lab?.free();
    gpu = model; lab = nextLab; gpuFailed = null;
    gpu.streamed = true;
    const engine = { ok: true, ...adapter, wgpu: gpu.report(), maxBatchTokens: gpu.max_batch_tokens(), streamed: true };
    post({ type: 'loaded', info: lab.info(), source: msg.source, engine, fromCache: source.fromCache });
  } finally {
    loader.free();
  }
}

/**
 * Extracts msg.names (whose places in the page's whole list are msg.indices), batch by batch;
 * each finished batch goes straight to the page as a `rows` message, so the worker never holds
 * more than one batch. With msg.randomInit the random-initialised twin runs instead (CPU only).
 */
async function extract(msg, post) {
  if (!lab) throw new Error('load a model first');
  cancelled = false;
  lab.use_random_init(msg.randomInit ? wasm.random_init_seed() : undefined);
  try {
    const useGpu = msg.engine === 'gpu' && gpu && !gpuFailed && !msg.randomInit;
    // The GPU wants wide batches: the core's GPU batch size, or the page's ?gpu_batch (tests).
    const batchSize = useGpu ? (msg.gpuBatch || Math.max(msg.batchSize, wasm.gpu_batch_size())) : msg.batchSize;
    const nBatches = lab.prepare(msg.names, msg.template, msg.pooling, batchSize);
    const tokensPer = lab.tokens_per_entity();
    const firstIds = lab.first_token_ids();
    let done = 0, tokens = 0;
    for (let i = 0; i < nBatches; i++) {
      // Yield so a Cancel message can arrive between batches.
      await new Promise((r) => setTimeout(r, 0));
      if (cancelled) { post({ type: 'cancelled', done }); return; }
      let n, t;
      if (useGpu && !gpuFailed) {
        if (msg.failGpuAfter !== undefined && i === msg.failGpuAfter) gpu.destroy_device_for_tests();
        try {
          [n, t] = await lab.run_batch_gpu(gpu, i);
        } catch (e) {
          // Batches already done stay; this one and the rest run on the CPU.
          gpuFailed = String(e && e.message ? e.message : e);
          post({ type: 'gpu-failed', message: gpuFailed, batchesOnGpu: i, batches: nBatches });
        }
      }
      if (n === undefined && gpu && gpu.streamed) {
        // A model streamed to the GPU has no CPU weights to fall back on.
        throw new Error(`the GPU failed after ${i} of ${nBatches} batches (${gpuFailed}); this model was streamed `
          + 'to the GPU alone, so the CPU cannot take over. The finished batches are kept in this browser: '
          + 'load the model again and Extract continues from there.');
      }
      if (n === undefined) [n, t] = lab.run_batch(i);
      done += n; tokens += t;
      const local = lab.batch_entities(i);
      const data = lab.take_rows();
      post({
        type: 'rows', done, tokensDone: tokens, data,
        indices: local.map((j) => msg.indices[j]),
        tokens: local.map((j) => tokensPer[j]),
        firstTokenIds: local.map((j) => firstIds[j]),
      }, [data.buffer]);
    }
    post({ type: 'extracted', tokens, gpuFailed: useGpu ? gpuFailed : null });
  } finally {
    if (msg.randomInit) lab.use_random_init(undefined);  // frees the twin's weights
  }
}

/**
 * The causal test ("Does the model use it?") on this worker's model, pass by pass: on the GPU
 * where this worker holds one (the CPU takes over if it fails mid-run, keeping the passes
 * done), else on the CPU; progress after each, a Cancel honoured between them (the page keeps
 * its report as it was).
 */
async function steer(msg, post) {
  if (!lab) throw new Error('load a model first');
  cancelled = false;
  const total = lab.steer_prepare(msg.reportJson, msg.layerActs, msg.firstTokenIds || new Uint32Array(),
    msg.dataset, msg.csv, msg.pooling, msg.layer, msg.readout || undefined, msg.answerColumn || undefined,
    msg.candidates || [], msg.window || 0);
  let onGpu = msg.engine === 'gpu' && gpu && !gpuFailed;
  let failed = null;
  post({ type: 'steer-progress', done: 0, total, engine: onGpu ? 'gpu' : 'cpu' });
  if (onGpu) {
    try {
      for (let i = 0; i < lab.steer_batches(); i++) lab.steer_set_hidden(i, await lab.steer_hidden_gpu(gpu, i));
    } catch (e) {
      failed = String(e && e.message ? e.message : e);
      onGpu = false;
    }
  }
  if (!onGpu) lab.steer_hold_cpu();
  let yielded = performance.now();
  for (;;) {
    let more;
    if (onGpu) {
      try {
        const rows = await lab.steer_job_gpu(gpu);
        more = rows !== null;
        if (more) lab.steer_record(rows);
      } catch (e) {
        // The passes recorded stay; the rest run on the CPU from rows it holds itself.
        failed = String(e && e.message ? e.message : e);
        onGpu = false;
        lab.steer_hold_cpu();
        continue;
      }
    } else {
      more = lab.steer_step();
    }
    if (!more) break;
    // Yield (and report) every 50 ms or so: often enough for Cancel, rarely enough to cost nothing.
    if (performance.now() - yielded < 50) continue;
    post({ type: 'steer-progress', done: lab.steer_done(), total, engine: onGpu ? 'gpu' : 'cpu' });
    await new Promise((r) => setTimeout(r, 0));
    yielded = performance.now();
    if (cancelled) { lab.steer_cancel(); post({ type: 'cancelled', done: lab.steer_done() }); return; }
  }
  post({ type: 'steer-progress', done: total, total });
  post({ type: 'steered', causal: lab.steer_finish(), engine: msg.engine === 'gpu' && gpu ? (failed ? 'gpu+cpu' : 'gpu') : 'cpu', gpuFailed: failed });
}

self.onmessage = async (ev) => {
  const msg = ev.data;
  const post = replyTo(msg.id);
  try {
    if (msg.type === 'load') await load(msg, post);
    else if (msg.type === 'load-stream') await loadStream(msg, post);
    else if (msg.type === 'adapter') post({ type: 'adapter', adapter: await probeAdapter() });
    else if (msg.type === 'check') { lab.check(msg.names, msg.template); post({ type: 'checked' }); }
    else if (msg.type === 'prompts') post({ type: 'prompts', templates: lab.shipped_prompts(msg.kind) });
    else if (msg.type === 'extract') await extract(msg, post);
    else if (msg.type === 'cancel') cancelled = true;
    else if (msg.type === 'fit') {
      await ready;
      // data (and randomInit) hold each template's activations one after the other.
      const report = fit_probes(msg.data, msg.nLayers, msg.dModel, msg.randomInit, msg.firstTokenIds,
        msg.dataset, msg.csv, msg.split, msg.permutations, 0n, msg.splitSeeds ?? 10, msg.modelName, msg.modelSha256,
        msg.templates, msg.pooling, msg.surprisal, msg.plan,
        (stage, done, total) => post({ type: 'fit-progress', stage, done, total }));
      try {
        post({ type: 'fitted', report: report.to_json(), scenes: report.scenes() });
      } finally {
        report.free();
      }
    }
    else if (msg.type === 'surprisal') {
      const values = lab.name_surprisal(msg.names, msg.template, (done, total) => post({ type: 'surprisal-progress', done, total }));
      post({ type: 'surprisal', values }, [values.buffer]);
    }
    else if (msg.type === 'steer') await steer(msg, post);
    else if (msg.type === 'safetensors') {
      const bytes = lab.safetensors(msg.data, msg.names, msg.tokensPerEntity, msg.template, msg.pooling, msg.datasetName);
      post({ type: 'safetensors', bytes }, [bytes.buffer]);
    }
  } catch (e) {
    post({ type: 'error', phase: msg.type, message: String(e && e.message ? e.message : e) });
  }
};
