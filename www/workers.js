// A pool of model workers: the page's way to use every core without shared memory. Each worker
// holds its own copy of the model; an extraction is split into contiguous shards, one per
// worker, and the shards' activations are stitched back in order.

export class WorkerPool {
  constructor(size) {
    this.workers = Array.from({ length: size }, () =>
      new Worker(new URL('./worker.js', import.meta.url), { type: 'module' }));
    this.listeners = new Set();
    this.lastRequestId = 0;
    /** Entities the model has run on since the page opened (a cache hit adds none). */
    this.entitiesComputed = 0;
    /** Each worker's wasm memory in bytes, as its last reply said (it only grows: the peak). */
    this.memory = new Array(size).fill(0);
    this.workers.forEach((w, i) => {
      w.onmessage = (ev) => {
        if (ev.data.memory) this.memory[i] = Math.max(this.memory[i], ev.data.memory);
        this.listeners.forEach((f) => f(i, ev.data));
      };
      w.onerror = (e) => this.listeners.forEach((f) => f(i, { type: 'error', phase: 'worker', message: e.message || 'the worker failed' }));
    });
  }

  get size() { return this.workers.length; }

  /** Workers that hold the current model: all of them, or one when the model is large. */
  get active() { return this.activeCount || 1; }

  /**
   * Sends a message to worker i and resolves with the first reply whose type is in `done`.
   * Replies carry the id of the request they answer: a load abandoned when another worker
   * failed first still gets its late reply, and that reply must not end the next request.
   */
  request(i, msg, done, onOther = () => {}, transfer = []) {
    const id = ++this.lastRequestId;
    return new Promise((resolve, reject) => {
      const listener = (from, m) => {
        if (from !== i || (m.id !== undefined && m.id !== id)) return;
        if (m.type === 'error') { this.listeners.delete(listener); reject(Object.assign(new Error(m.message), { phase: m.phase })); }
        else if (done.includes(m.type)) { this.listeners.delete(listener); resolve(m); }
        else onOther(m);
      };
      this.listeners.add(listener);
      this.workers[i].postMessage({ ...msg, id }, transfer);
    });
  }

  /**
   * Loads the model bytes into every worker (a copy each). With `engine` 'gpu' or 'auto',
   * worker 0 also puts the weights on the GPU through WebGPU; `this.gpu` then says whether
   * extraction runs there ({ok, name, software, reason}). Resolves with the model's info.
   */
  async load(bytes, source, engine = 'auto') {
    // Each worker keeps its own copy (plus f32 weights): only small models get several.
    const count = bytes.length > WorkerPool.COPY_LIMIT_BYTES ? 1 : this.size;
    const wantGpu = engine !== 'cpu';
    const replies = await Promise.all(this.workers.slice(0, count).map((_, i) => {
      const copy = i === count - 1 ? bytes : bytes.slice();
      return this.request(i, { type: 'load', bytes: copy, source, gpu: wantGpu && i === 0 }, ['loaded'], () => {}, [copy.buffer]);
    }));
    this.activeCount = count;
    this.streamed = null;
    this.gpu = replies[0].engine;
    this.gpuFailed = null;
    return replies[0].info;
  }

  /** The largest wasm memory of any worker so far, in bytes. */
  get memoryPeak() { return Math.max(...this.memory); }

  /** The WebGPU adapter as worker 0 sees it: {name, software, limits} or {reason}. */
  async adapter() {
    return (await this.request(0, { type: 'adapter' }, ['adapter'])).adapter;
  }

  /**
   * Streams a model larger than wasm's memory to the GPU in worker 0 (`src`: {file} or
   * {url, size}); the other workers hold nothing of it. onPlan({plan, adapter}) once the header
   * is read, onProgress({done, total, piece, pieces, tensor}) as pieces arrive. Resolves with
   * the model's info; extraction then runs on the GPU only.
   */
  async loadStream(src, source, onPlan = () => {}, onProgress = () => {}) {
    const reply = await this.request(0, { type: 'load-stream', ...src, source }, ['loaded'], (m) => {
      if (m.type === 'stream-plan') onPlan(m);
      else if (m.type === 'stream-progress') onProgress(m);
    });
    this.activeCount = 1;
    this.gpu = reply.engine;
    this.gpuFailed = null;
    this.streamed = { fromCache: reply.fromCache };
    return reply.info;
  }

  /** Whether the next extraction runs on the GPU (in worker 0 alone). */
  get onGpu() { return Boolean(this.gpu && this.gpu.ok && !this.gpuFailed); }

  /**
   * Extracts the entities `indices` of `names` (all of them when `indices` is null). Each
   * finished batch goes to onRows({indices, data, tokens, firstTokenIds}) as soon as it
   * arrives — data is [layers + 1][batch][d], indices are places in `names` — so nothing here
   * holds the whole result. onProgress({done, total, tokens, seconds}) counts this call's work.
   * Resolves with {tokens, seconds, engine, gpuFailed, batchesOnGpu} or {cancelled, done, total}.
   */
  async extract(names, indices, opts, onProgress, onRows) {
    // Problems are numbered against the whole list, so check it whole before splitting.
    await this.request(0, { type: 'check', names, template: opts.template }, ['checked']);
    const todo = indices || Uint32Array.from(names, (_, i) => i);
    // The GPU holds the model's own weights; the random-initialised twin runs on the CPU.
    const gpu = this.onGpu && !opts.randomInit;
    // One worker drives the GPU (with the core's wide GPU batches, see worker.js).
    if (gpu) opts = { ...opts, engine: 'gpu' };
    const n = gpu ? 1 : Math.max(1, Math.min(this.active, todo.length));
    let batchesOnGpu = null;
    const bounds = Array.from({ length: n + 1 }, (_, k) => Math.round((k * todo.length) / n));
    const done = new Array(n).fill(0);
    const tokens = new Array(n).fill(0);
    const start = performance.now();
    const shards = await Promise.all(Array.from({ length: n }, (_, k) => {
      const part = todo.slice(bounds[k], bounds[k + 1]);
      return this.request(k, { type: 'extract', ...opts, names: Array.from(part, (i) => names[i]), indices: part },
        ['extracted', 'cancelled'], (m) => {
          if (m.type === 'gpu-failed') {
            this.gpuFailed = m.message;
            batchesOnGpu = m.batchesOnGpu;
            onProgress({ gpuFailed: m.message, batchesOnGpu: m.batchesOnGpu, batches: m.batches });
            return;
          }
          if (m.type !== 'rows') return;
          done[k] = m.done; tokens[k] = m.tokensDone;
          this.entitiesComputed += m.indices.length;
          onRows(m);
          onProgress({
            done: done.reduce((a, b) => a + b), total: todo.length,
            tokens: tokens.reduce((a, b) => a + b), seconds: (performance.now() - start) / 1000,
          });
        });
    }));
    const seconds = (performance.now() - start) / 1000;
    if (shards.some((s) => s.type === 'cancelled')) {
      this.cancel();
      return { cancelled: true, done: done.reduce((a, b) => a + b), total: todo.length };
    }
    return {
      tokens: tokens.reduce((a, b) => a + b), seconds,
      engine: gpu ? (shards[0].gpuFailed ? 'gpu+cpu' : 'gpu') : 'cpu',
      gpuFailed: gpu ? shards[0].gpuFailed : null, batchesOnGpu,
    };
  }

  cancel() { this.workers.forEach((w) => w.postMessage({ type: 'cancel' })); }

  /**
   * Fits the probes and controls in worker 0; resolves with {report, scenes} (JSON texts).
   * onProgress({stage, done, total}) follows the fit's stages (check, layers, report).
   */
  async fit(args, onProgress = () => {}) {
    const m = await this.request(0, { type: 'fit', ...args }, ['fitted'], (p) => { if (p.type === 'fit-progress') onProgress(p); });
    return { report: m.report, scenes: m.scenes };
  }

  /**
   * The model's surprisal of each name inside the prompt (nats per token, NaN where not
   * scored), on worker 0's CPU model; onProgress({done, total}) after each batch.
   */
  async surprisal(names, template, onProgress = () => {}) {
    const m = await this.request(0, { type: 'surprisal', names, template }, ['surprisal'], (p) => { if (p.type === 'surprisal-progress') onProgress(p); });
    return m.values;
  }

  /**
   * The causal test on worker 0's model (its GPU when extraction runs there, else its CPU);
   * resolves with {causal, engine, gpuFailed} (causal: the report's causal block as JSON text)
   * or {cancelled: true}. onProgress({done, total, engine}) counts edited passes.
   */
  async steer(args, onProgress = () => {}) {
    const engine = this.onGpu ? 'gpu' : 'cpu';
    const m = await this.request(0, { type: 'steer', engine, ...args }, ['steered', 'cancelled'],
      (p) => { if (p.type === 'steer-progress') onProgress(p); });
    return m.type === 'cancelled' ? { cancelled: true } : { causal: m.causal, engine: m.engine, gpuFailed: m.gpuFailed };
  }

  /** The shipped prompt set for `kind` ('places' or 'time'), its random prefix from this model. */
  async shippedPrompts(kind) {
    const m = await this.request(0, { type: 'prompts', kind }, ['prompts']);
    return m.templates;
  }

  /** A safetensors file of gathered activations, made by worker 0's core. */
  async safetensors(args) {
    const m = await this.request(0, { type: 'safetensors', ...args }, ['safetensors']);
    return m.bytes;
  }
}

/** Models above this size run in one worker only (each worker holds a full copy). */
WorkerPool.COPY_LIMIT_BYTES = 300e6;
