// Activations made elsewhere (an HF hidden_states stack, a NumPy array, Probelab's own file),
// fitted in the page without a model: the core reads the file as `probelab fit` does (formats,
// names, shape and NaN checks, provenance) and fits it with the page's fit. Nothing is checked
// here; the core's messages are shown as they are.

/**
 * The page reads the files whole into one worker's WebAssembly memory (4 GiB at most), which
 * holds each file and its activations as 32-bit floats (twice the file for f16): both files
 * together are refused above this, with the numbers, before anything is read.
 */
export const MAX_IMPORT_BYTES = 2 ** 30;

const gib = (n) => (n / 2 ** 30).toFixed(2) + ' GiB';

/** Throws, with the numbers, when the files are larger than the page reads. */
export function checkImportSize(files) {
  const total = files.reduce((a, f) => a + f.size, 0);
  if (total > MAX_IMPORT_BYTES) {
    throw new Error(`${files.map((f) => `${f.name} is ${gib(f.size)}`).join(', ')}; the page reads activation files `
      + `whole into WebAssembly memory and takes up to ${gib(MAX_IMPORT_BYTES)} in all. `
      + 'Fit larger files (or a directory of shards) with the command line: probelab fit FILE --dataset CSV.');
  }
}

/**
 * Reads `file` (and `randomFile`, the random-init model's activations, when given) in a worker
 * of its own as activations of `dataset`'s names (the file's own names, when it has them, must
 * be the dataset's), asks `recordPlan(info)` for the plan's record (info: the file's {source,
 * random_init, n_entities, n_layers, d_model, model_name, model_sha256, prompt, pooling}), then
 * fits. onProgress({stage, done, total}); onInfo(info, memory) once the file is read (memory:
 * the worker's WebAssembly memory in bytes). Resolves with {report, scenes} (JSON texts), info and memory (the worker's peak).
 */
export async function fitImported({ file, randomFile, dataset, split, permutations, seed, splitSeeds, recordPlan, onInfo = () => {}, onProgress = () => {} }) {
  checkImportSize([file, ...(randomFile ? [randomFile] : [])]);
  const worker = new Worker(new URL('import_worker.js', import.meta.url), { type: 'module' });
  // One request at a time: resolves with the reply of type `want`, rejects with the core's error.
  const ask = (msg, want) => new Promise((resolve, reject) => {
    worker.onmessage = ({ data: m }) => {
      if (m.type === 'fit-progress') onProgress(m);
      else if (m.type === 'error') reject(new Error(m.message));
      else if (m.type === want) resolve(m);
    };
    worker.onerror = (e) => reject(new Error(e.message || 'the import worker failed'));
    worker.postMessage(msg);
  });
  try {
    const { info, memory } = await ask({ type: 'read', file, randomFile, dataset: dataset.name, csv: dataset.csv }, 'read');
    onInfo(info, memory);
    const plan = await recordPlan(info);
    const m = await ask({ type: 'fit', split, permutations, seed, splitSeeds, plan }, 'fitted');
    return { report: m.report, scenes: m.scenes, info, memory: m.memory };
  } finally {
    worker.terminate();
  }
}

/** The report's line on where its activations came from, when they came from a file. */
export function provenanceText(report) {
  const notes = report?.notes || {};
  if (!notes['activations.source']) return '';
  return `Activations: ${notes['activations.source']}. Random-init control: ${notes['activations.random_init']}.`;
}
