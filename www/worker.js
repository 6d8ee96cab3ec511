// One model worker: holds a wasm Lab and runs extraction batch by batch, off the page's thread.
// Messages in: load, check, extract, cancel, safetensors. Out: progress, loaded, checked,
// extracted, cancelled, safetensors, error. www/pool.js drives several of these.
import init, { Lab, fit_probes, report_scenes } from './pkg/probelab.js';

let lab = null;
let cancelled = false;
const ready = init();

const post = (msg, transfer) => self.postMessage(msg, transfer || []);

async function load(msg) {
  await ready;
  const bytes = msg.bytes ? new Uint8Array(msg.bytes) : new Uint8Array(await msg.file.arrayBuffer());
  // A file that fails to load leaves the current model in place.
  const next = new Lab(bytes);
  if (lab) lab.free();
  lab = next;
  post({ type: 'loaded', info: lab.info(), source: msg.source });
}

async function extract(msg) {
  if (!lab) throw new Error('load a model first');
  cancelled = false;
  const nBatches = lab.prepare(msg.names, msg.template, msg.pool, msg.batchSize);
  let done = 0, tokens = 0;
  for (let i = 0; i < nBatches; i++) {
    // Yield so a Cancel message can arrive between batches.
    await new Promise((r) => setTimeout(r, 0));
    if (cancelled) { post({ type: 'cancelled', done }); return; }
    const [n, t] = lab.run_batch(i);
    done += n; tokens += t;
    post({ type: 'progress', phase: 'extract', done, tokens });
  }
  const data = lab.activations();
  const tokensPerEntity = lab.tokens_per_entity();
  const firstTokenIds = lab.first_token_ids();
  post({ type: 'extracted', data, tokensPerEntity, firstTokenIds, tokens }, [data.buffer]);
}

self.onmessage = async (ev) => {
  const msg = ev.data;
  try {
    if (msg.type === 'load') await load(msg);
    else if (msg.type === 'check') { lab.check(msg.names, msg.template); post({ type: 'checked' }); }
    else if (msg.type === 'extract') await extract(msg);
    else if (msg.type === 'cancel') cancelled = true;
    else if (msg.type === 'fit') {
      await ready;
      const report = fit_probes(msg.data, msg.nLayers, msg.dModel, msg.randomInit, msg.firstTokenIds,
        msg.dataset, undefined, msg.split, msg.permutations, 0n, msg.modelName, msg.modelSha256, msg.template);
      post({ type: 'fitted', report, scenes: report_scenes(report) });
    }
    else if (msg.type === 'safetensors') {
      const bytes = lab.safetensors(msg.data, msg.names, msg.tokensPerEntity, msg.template, msg.pool, msg.datasetName);
      post({ type: 'safetensors', bytes }, [bytes.buffer]);
    }
  } catch (e) {
    post({ type: 'error', phase: msg.type, message: String(e && e.message ? e.message : e) });
  }
};
