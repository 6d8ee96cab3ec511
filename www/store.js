// The browser's store of finished work, in IndexedDB:
// - activations, batch by batch, per run (model hash, model or random-init twin, prompt, pooling
//   and the entity list), so a reload resumes an interrupted extraction and a changed split
//   re-fits without running the model again;
// - fitted reports, so a revisit shows its last result at once;
// - each model URL's hash, so that revisit can find its results before the model has loaded;
// - the ledger of analysis plans scored on each test set, and the plan locked per dataset
//   (the command line keeps the same ledger in a file, --ledger).
// When IndexedDB is missing or full the lab goes on without it and says why (`reason`).

import { sha256_hex } from './pkg/probelab.js';

const DB_NAME = 'probelab';
const DB_VERSION = 2;
/** Bump when the meaning of a stored report or activation changes, to ignore old entries. */
const FORMAT = 1;
/** How long to wait for IndexedDB before going on without it. */
const OPEN_TIMEOUT_MS = 3000;

const request = (req) => new Promise((resolve, reject) => {
  req.onsuccess = () => resolve(req.result);
  req.onerror = () => reject(req.error);
});
const finished = (tx) => new Promise((resolve, reject) => {
  tx.oncomplete = () => resolve();
  tx.onerror = () => reject(tx.error);
  tx.onabort = () => reject(tx.error || new Error('the transaction was aborted'));
});

/** Hex SHA-256 of a string or bytes (by the wasm core: call after its init). */
export function sha256Hex(input) {
  return sha256_hex(typeof input === 'string' ? new TextEncoder().encode(input) : input);
}

/**
 * The key of one run's activations: everything that decides them, and nothing else — the model
 * (`info.sha256`), model or random twin (`variant`), prompt template, pooling and the names.
 */
export function runKey(info, names, opts, variant) {
  return sha256Hex(JSON.stringify({ FORMAT, modelSha256: info.sha256, variant, template: opts.template, pool: opts.pooling, names }));
}

export class Store {
  /** Opens the store; never throws: without IndexedDB every method is a no-op. */
  static async open() {
    const store = new Store();
    try {
      if (!self.indexedDB) throw new Error('this browser has no IndexedDB');
      const open = indexedDB.open(DB_NAME, DB_VERSION);
      open.onupgradeneeded = () => {
        // From nothing, or from an older version: add only the stores it lacks.
        const db = open.result;
        const has = (name) => db.objectStoreNames.contains(name);
        if (!has('runs')) db.createObjectStore('runs', { keyPath: 'run' });
        if (!has('chunks')) db.createObjectStore('chunks', { autoIncrement: true }).createIndex('run', 'run');
        if (!has('reports')) db.createObjectStore('reports', { keyPath: 'key' });
        if (!has('models')) db.createObjectStore('models', { keyPath: 'url' });
        if (!has('plans')) db.createObjectStore('plans', { keyPath: 'key' });
      };
      // Some embedding contexts (a third-party iframe) leave the request unanswered.
      const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('IndexedDB did not answer')), OPEN_TIMEOUT_MS));
      store.db = await Promise.race([request(open), timeout]);
    } catch (e) {
      store.reason = `no cache in this browser (${e.message || e}): results last until the page closes`;
    }
    return store;
  }

  constructor() {
    this.db = null;
    this.reason = null;
    this.pending = new Set();
  }

  get ok() { return Boolean(this.db) && !this.reason; }

  async get(storeName, key) {
    if (!this.db) return undefined;
    try {
      return await request(this.db.transaction(storeName).objectStore(storeName).get(key));
    } catch { return undefined; }
  }

  async put(storeName, value) {
    if (!this.ok) return;
    try {
      const tx = this.db.transaction(storeName, 'readwrite');
      tx.objectStore(storeName).put(value);
      await finished(tx);
    } catch (e) { this.fail(e); }
  }

  fail(e) {
    // Quota or a closed database: stop writing, keep computing.
    this.reason = `the browser's cache refused a write (${e && e.name ? e.name : ''} ${e && e.message ? e.message : e}); `
      + 'results from now on last until the page closes';
  }

  /**
   * Starts (or re-opens) a run of `n` entities; a stored run of another shape is dropped.
   * Resolves with its record ({run, n, nLayers, dModel, done, complete}).
   */
  async beginRun(run, shape) {
    const old = await this.get('runs', run);
    if (old && old.n === shape.n && old.nLayers === shape.nLayers && old.dModel === shape.dModel) return old;
    if (old) await this.dropRun(run);
    const rec = { run, ...shape, done: 0, complete: false, updated: Date.now() };
    await this.put('runs', rec);
    return rec;
  }

  /** Calls onChunk({indices, data, tokens, firstTokenIds}) for every stored batch of `run`. */
  async readChunks(run, onChunk) {
    if (!this.db) return;
    const tx = this.db.transaction('chunks');
    const cursor = tx.objectStore('chunks').index('run').openCursor(IDBKeyRange.only(run));
    await new Promise((resolve, reject) => {
      cursor.onsuccess = () => {
        const c = cursor.result;
        if (!c) { resolve(); return; }
        onChunk(c.value);
        c.continue();
      };
      cursor.onerror = () => reject(cursor.error);
    });
  }

  /**
   * Stores one finished batch of `run` (in the background; `flush` waits for it) and, in the
   * same transaction, the run's count of stored entities (`done`), so a page can say how much
   * an interrupted run left without reading its activations.
   */
  putChunk(run, chunk) {
    if (!this.ok) return;
    const p = (async () => {
      try {
        const tx = this.db.transaction(['chunks', 'runs'], 'readwrite');
        tx.objectStore('chunks').add({ run, ...chunk });
        const runs = tx.objectStore('runs');
        const rec = await request(runs.get(run));
        if (rec) runs.put({ ...rec, done: (rec.done || 0) + chunk.indices.length, updated: Date.now() });
        await finished(tx);
      } catch (e) { this.fail(e); }
    })();
    this.pending.add(p);
    p.finally(() => this.pending.delete(p));
  }

  /** Waits until every batch handed to putChunk is written (or failed). */
  async flush() {
    while (this.pending.size) await Promise.all([...this.pending]);
  }

  async completeRun(run) {
    await this.flush();
    const rec = await this.get('runs', run);
    if (rec && this.ok) await this.put('runs', { ...rec, complete: true, updated: Date.now() });
  }

  async dropRun(run) {
    if (!this.db) return;
    try {
      const tx = this.db.transaction(['runs', 'chunks'], 'readwrite');
      tx.objectStore('runs').delete(run);
      const idx = tx.objectStore('chunks').index('run');
      const keys = await request(idx.getAllKeys(IDBKeyRange.only(run)));
      for (const k of keys) tx.objectStore('chunks').delete(k);
      await finished(tx);
    } catch (e) { this.fail(e); }
  }

  getReport(key) { return this.get('reports', key); }
  putReport(key, value) { return this.put('reports', { key, ...value, saved: Date.now() }); }

  /** The ledger of plans scored (its JSON text, the core's format), or undefined. */
  async ledger() { return (await this.get('plans', 'ledger'))?.text; }
  putLedger(text) { return this.put('plans', { key: 'ledger', text, saved: Date.now() }); }

  /** The plan locked for a dataset (by its rows' hash): {hash, plan, locked} or undefined. */
  lockedPlan(datasetSha256) { return this.get('plans', `locked:${datasetSha256}`); }
  lockPlan(datasetSha256, plan) { return this.put('plans', { key: `locked:${datasetSha256}`, ...plan, locked: Date.now() }); }
  async unlockPlan(datasetSha256) {
    if (!this.ok) return;
    try {
      const tx = this.db.transaction('plans', 'readwrite');
      tx.objectStore('plans').delete(`locked:${datasetSha256}`);
      await finished(tx);
    } catch (e) { this.fail(e); }
  }

  /** What was last seen at a model URL: {sha256, n_layers, d_model, name}. */
  modelRecord(url) { return this.get('models', url); }
  putModelRecord(url, record) { return this.put('models', { url, ...record }); }
}

/** The key of a fitted report: the runs it was fitted on plus everything the fit reads. */
export function reportKey({ run, randomRun, dataset, split, permutations, seed, surprisal }) {
  // A fit with the names' surprisal is another report; one without keeps its old key.
  return sha256Hex(JSON.stringify({ FORMAT, run, randomRun, dataset, split, permutations, seed, ...(surprisal ? { surprisal } : {}) }));
}
