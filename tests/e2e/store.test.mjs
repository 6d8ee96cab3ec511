// The browser's store of finished work and the service worker: a revisit shows the last result
// without running the model, a changed split re-fits without it, a reload mid-extraction
// resumes (computing only what was missing), and after one visit the lab runs offline.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, startServer, waitForProgress, waitForReport, worstRelDiff } from './harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); server?.stop(); });

const computed = (page) => page.evaluate(() => window.probelab.workers.entitiesComputed);
const waitLoaded = (page) => waitForProgress(page, () => window.probelab && window.probelab.info);

test('revisit: the last result is shown from the store; a new split re-fits without the model', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(server.url + '?permutations=10');
  await waitLoaded(page);
  await page.waitForFunction(() => document.getElementById('names').value.split('\n').length === 200);
  await page.click('#extract');
  await waitForReport(page);
  const first = await page.evaluate(() => window.probelab.report);
  // The random-initialised control ran in the page: it has a score at every layer.
  assert.ok(first.layers.every((l) => Number.isFinite(l.controls.random_init_r2)), 'random-init control missing');
  assert.match(await page.textContent('#summary'), /Random-initialised model at the same layer: R² -?\d/);
  assert.equal(await computed(page), 400, 'the model and its random twin each ran on 200 entities');

  // A second visit: the same report, drawn without running the model.
  const again = await context.newPage();
  await again.goto(server.url + '?permutations=10');
  await again.waitForFunction(() => window.probelab.report, null, { timeout: 60_000 });
  assert.match(await again.textContent('#probe-status'), /from this browser's cache/);
  const shown = await again.evaluate(() => window.probelab.report);
  assert.deepEqual(shown.selected, first.selected);
  await waitLoaded(again);
  assert.equal(await computed(again), 0);
  assert.equal(await again.evaluate(() => window.probelab.shownFrom), shown.model.sha256);

  // A new split: re-fitted from the stored activations, the model does not run.
  await again.selectOption('#split', 'group:continent');
  await waitForProgress(again, () => window.probelab.report && window.probelab.report.split.kind !== 'random');
  const blocked = await again.evaluate(() => window.probelab.report);
  assert.match(JSON.stringify(blocked.split), /continent/);
  assert.ok(blocked.layers.every((l) => Number.isFinite(l.controls.random_init_r2)), 'random-init control lost in the re-fit');
  assert.equal(await computed(again), 0, 'the re-fit ran the model');
  assert.equal(new URL(again.url()).searchParams.get('split'), 'group:continent');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a reload mid-extraction resumes: finished batches are not recomputed', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(server.url + '?dataset=world-places');
  await waitLoaded(page);
  const names = (await page.inputValue('#names')).split('\n').slice(0, 240);
  const setUp = async (p) => {
    await p.fill('#names', names.join('\n'));
    await p.fill('#batch-size', '8');
  };
  await setUp(page);
  await page.click('#extract');
  await waitForProgress(page, () => window.probelab.workers.entitiesComputed >= 64);
  await page.reload();
  await waitLoaded(page);
  await setUp(page);
  // The page says what it found before anything runs.
  await page.waitForFunction(() => /cached from an interrupted run/.test(document.getElementById('extract-status').textContent), null, { timeout: 60_000 });
  await page.click('#extract');
  await waitForProgress(page, () => window.probelab.lastRun);
  const run = await page.evaluate(() => {
    const r = window.probelab.lastRun;
    return { fromStore: r.fromStore, computed: r.computed, data: Array.from(r.data) };
  });
  assert.ok(run.fromStore >= 64 && run.fromStore < 240, `from the store: ${run.fromStore}`);
  assert.equal(run.computed, 240 - run.fromStore);
  assert.equal(await computed(page), run.computed, 'the resumed run recomputed finished entities');

  // The stitched activations equal a fresh run's (other batches: padding moves the last digits).
  const fresh = await browser.newContext();
  const ref = await fresh.newPage();
  await ref.goto(server.url + '?nosw');
  await waitLoaded(ref);
  await ref.fill('#names', names.join('\n'));
  await ref.click('#extract');
  await waitForProgress(ref, () => window.probelab.lastRun);
  const refData = await ref.evaluate(() => Array.from(window.probelab.lastRun.data));
  assert.equal(refData.length, run.data.length);
  const worst = worstRelDiff(run.data, refData, 576);
  assert.ok(worst < 1e-4, `resumed vs fresh: worst relative difference ${worst}`);
  await fresh.close();
  await context.close();
});

test('offline: after one visit the lab opens and runs with the server gone', async () => {
  const own = await startServer();
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(own.url);
  await waitLoaded(page);
  // The service worker is active and the model is in Cache Storage.
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.waitForFunction(async () => {
    const c = await caches.open('probelab-models');
    return (await c.keys()).length > 0;
  }, null, { timeout: 60_000, polling: 500 });
  own.stop();
  await new Promise((r) => setTimeout(r, 500));
  const offline = await context.newPage();
  await offline.goto(own.url + '?dataset=custom');
  await waitLoaded(offline);
  await offline.fill('#names', 'Paris\nKraków\nNairobi');
  await offline.click('#extract');
  await waitForProgress(offline, () => window.probelab.lastRun);
  const r = await offline.evaluate(() => ({ n: window.probelab.lastRun.nEntities, computed: window.probelab.lastRun.computed }));
  assert.deepEqual(r, { n: 3, computed: 3 });
  await context.close();
});
