// One run's activations, gathered from the browser's store and the model workers: batches
// already stored (an earlier visit, or a run interrupted by a reload) are read back, only the
// missing entities go to the model, and every new batch is stored as soon as it arrives.

import { runKey } from './store.js';

/** Above this the page keeps activations in the store only (a fit needs them whole). */
export const MAX_GATHER_BYTES = 1.5 * 2 ** 30;

/**
 * Activations [layers + 1][names][d] for `names` on the loaded model (`variant` 'model') or its
 * random-initialised twin ('random-init'). onProgress({done, total, fromStore, tokens, seconds}).
 * Runs larger than holdMaxBytes go to the store only (data: null).
 * Resolves with {run, data (null when too large to hold), tokensPerEntity, firstTokenIds,
 * fromStore, computed, tokens, seconds, engine, ...} or {cancelled, done, total}.
 */
export async function gatherActivations({ workers, store, info, names, opts, variant, onProgress, holdMaxBytes = MAX_GATHER_BYTES }) {
  const N = names.length, L = info.n_layers + 1, d = info.d_model;
  const run = await runKey(info, names, opts, variant);
  const keep = L * N * d * 4 <= holdMaxBytes;
  const data = keep ? new Float32Array(L * N * d) : null;
  const tokensPerEntity = new Uint32Array(N);
  const firstTokenIds = new Uint32Array(N);
  const have = new Uint8Array(N);
  let count = 0;
  const place = (c) => {
    const m = c.indices.length;
    c.indices.forEach((g, j) => {
      if (g >= N) return;
      if (!have[g]) count += 1;
      have[g] = 1;
      tokensPerEntity[g] = c.tokens[j];
      firstTokenIds[g] = c.firstTokenIds[j];
      if (!data) return;
      for (let l = 0; l < L; l++) {
        data.set(c.data.subarray((l * m + j) * d, (l * m + j + 1) * d), (l * N + g) * d);
      }
    });
  };
  const rec = await store.beginRun(run, { n: N, nLayers: info.n_layers, dModel: d });
  await store.readChunks(run, place);
  const fromStore = count;
  const missing = [];
  for (let i = 0; i < N; i++) if (!have[i]) missing.push(i);
  let result = { tokens: 0, seconds: 0, engine: 'store' };
  if (missing.length && !workers) return null;  // reading the store only, and it lacks some
  if (missing.length) {
    result = await workers.extract(names, Uint32Array.from(missing), { ...opts, randomInit: variant === 'random-init' },
      (p) => onProgress(p.gpuFailed ? p : { ...p, done: p.done + fromStore, total: N, fromStore }),
      (chunk) => {
        const c = { indices: chunk.indices, data: chunk.data, tokens: chunk.tokens, firstTokenIds: chunk.firstTokenIds };
        place(c);
        store.putChunk(run, c);
      });
    if (result.cancelled) {
      await store.flush();
      return { ...result, done: result.done + fromStore, total: N, fromStore };
    }
  }
  if (count !== N) throw new Error(`internal: ${N - count} entities have no activations`);
  await store.completeRun(run);
  return {
    ...result, run, data, tokensPerEntity, firstTokenIds, fromStore, computed: missing.length,
    nLayers: info.n_layers, dModel: d, wasComplete: rec.complete, stored: store.ok,
  };
}

/** Reads a complete stored run whole (for a re-fit after a reload); null when not stored. */
export async function readStoredRun({ store, info, names, opts, variant }) {
  const N = names.length, L = info.n_layers + 1, d = info.d_model;
  const run = await runKey(info, names, opts, variant);
  const rec = await store.get('runs', run);
  if (!rec || !rec.complete || L * N * d * 4 > MAX_GATHER_BYTES) return null;
  return gatherActivations({ workers: null, store, info, names, opts, variant, onProgress: () => {} });
}
