// Activations made elsewhere, read and fitted by the core off the page's thread, in a worker of
// their own: the page starts one per fit and ends it after, so the file's memory (WebAssembly
// memory never shrinks) goes with it and the model workers keep theirs.
// Messages in: read {file, randomFile?, dataset, csv}, fit {split, permutations, seed,
// splitSeeds, plan}. Out: read {info, memory}, fit-progress {stage, done, total}, fitted
// {report, scenes, memory}, error {message}; memory is the worker's WebAssembly memory in bytes.
import init, { ImportedActs } from './pkg/probelab.js';

const ready = init();
let acts = null;
// The worker's WebAssembly memory: it never shrinks, so it is the peak (the page shows it).
const memoryBytes = async () => (await ready).memory.buffer.byteLength;

async function read(msg) {
  // Each file is copied into WebAssembly memory and parsed there; its JS copy is dropped here.
  const bytes = new Uint8Array(await msg.file.arrayBuffer());
  const random = msg.randomFile ? new Uint8Array(await msg.randomFile.arrayBuffer()) : undefined;
  acts = new ImportedActs(msg.file.name, bytes, msg.randomFile?.name, random, msg.dataset, msg.csv);
  return JSON.parse(acts.info());
}

self.onmessage = async ({ data: msg }) => {
  try {
    await ready;
    if (msg.type === 'read') self.postMessage({ type: 'read', info: await read(msg), memory: await memoryBytes() });
    else if (msg.type === 'fit') {
      const report = acts.fit(msg.split, msg.permutations, msg.seed, msg.splitSeeds, msg.plan,
        (stage, done, total) => self.postMessage({ type: 'fit-progress', stage, done, total }));
      try {
        self.postMessage({ type: 'fitted', report: report.to_json(), scenes: report.scenes(), memory: await memoryBytes() });
      } finally {
        report.free();
      }
    }
  } catch (e) {
    const text = String(e && e.message ? e.message : e);
    // A file too large for WebAssembly's memory aborts the core (a RuntimeError): say so.
    const message = e instanceof WebAssembly.RuntimeError
      ? `the file did not fit in WebAssembly's memory (${text}); fit it with the command line (probelab fit)`
      : text;
    self.postMessage({ type: 'error', message });
  }
};
