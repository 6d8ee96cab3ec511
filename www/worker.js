// The model runs here, off the page's thread. Messages in: load, extract, cancel.
// Messages out: progress, loaded, extracted, error. The page never waits on this worker.
import init, { Lab } from './pkg/probelab.js';

let lab = null;
let cancelled = false;
const ready = init();

const post = (msg, transfer) => self.postMessage(msg, transfer || []);
const fail = (phase, e) => post({ type: 'error', phase, message: String(e && e.message ? e.message : e) });

async function fetchWithProgress(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`could not fetch ${url}: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get('content-length')) || 0;
  if (!res.body) return new Uint8Array(await res.arrayBuffer());
  const reader = res.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    post({ type: 'progress', phase: 'download', loaded, total });
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  return bytes;
}

async function load(msg) {
  await ready;
  const bytes = msg.file ? new Uint8Array(await msg.file.arrayBuffer()) : await fetchWithProgress(msg.url);
  post({ type: 'progress', phase: 'parse', loaded: bytes.length, total: bytes.length });
  // A file that fails to load leaves the current model in place.
  const next = new Lab(bytes);
  if (lab) lab.free();
  lab = next;
  post({ type: 'loaded', info: lab.info(), source: msg.file ? msg.file.name : msg.url });
}

async function extract(msg) {
  if (!lab) throw new Error('load a model first');
  cancelled = false;
  const nBatches = lab.prepare(msg.names, msg.template, msg.pool, msg.batchSize);
  const start = performance.now();
  let done = 0, tokens = 0;
  for (let i = 0; i < nBatches; i++) {
    // Yield so a Cancel message can arrive between batches.
    await new Promise((r) => setTimeout(r, 0));
    if (cancelled) { post({ type: 'cancelled', done, total: msg.names.length }); return; }
    const [n, t] = lab.run_batch(i);
    done += n; tokens += t;
    post({ type: 'progress', phase: 'extract', done, total: msg.names.length, tokens, seconds: (performance.now() - start) / 1000 });
  }
  const data = lab.activations();
  const info = lab.info();
  post({
    type: 'extracted', data, nLayers: info.n_layers, nEntities: msg.names.length, dModel: info.d_model,
    tokens, seconds: (performance.now() - start) / 1000,
  }, [data.buffer]);
}

self.onmessage = async (ev) => {
  const msg = ev.data;
  try {
    if (msg.type === 'load') await load(msg);
    else if (msg.type === 'extract') await extract(msg);
    else if (msg.type === 'cancel') cancelled = true;
    else if (msg.type === 'safetensors') {
      const bytes = lab.safetensors(msg.datasetName);
      post({ type: 'safetensors', bytes }, [bytes.buffer]);
    }
  } catch (e) {
    fail(msg.type, e);
  }
};
