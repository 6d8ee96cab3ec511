// "Does the model use it?" in the page: the planted model, whose LM head reads latitude off one
// residual direction, and its twin, whose head reads a direction no name varies on. They are
// the files crate/tests/causal.rs builds and checks natively (tests/fixtures/planted_*).
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, launch, openLab, startServer, waitForProgress, waitForReport } from './harness.mjs';

let server, browser, gpuBrowser;
before(async () => { server = await startServer(); browser = await launch(); gpuBrowser = await launch({ webgpu: true }); });
after(async () => { await browser?.close(); await gpuBrowser?.close(); server?.stop(); });

const fixture = (name) => path.join(ROOT, 'tests/fixtures', name);

/** Loads `file` into the page, extracts the planted dataset, fits, and runs the causal test. */
async function causalOn(page, file) {
  const before = await page.evaluate(() => window.probelab.info.sha256);
  await page.setInputFiles('#model-file', fixture(file));
  await waitForProgress(page, (sha) => window.probelab.info && window.probelab.info.sha256 !== sha && !window.probelab.loading,
    { arg: before, what: `${file} to load` });
  await page.setInputFiles('#names-file', fixture('planted_latitude.csv'));
  await page.waitForFunction(() => document.getElementById('names').value.split('\n').length === 62);
  await page.evaluate(() => { window.probelab.report = null; });
  await page.click('#extract');
  await waitForReport(page);
  assert.equal(await page.evaluate(() => window.probelab.report.causal), undefined);
  assert.equal(await page.isVisible('#causal-panel'), true);
  await page.fill('#causal-readout', '{name}');
  await page.fill('#causal-column', 'hemisphere');
  await page.click('#causal-run');
  await waitForProgress(page, () => (window.probelab.report && window.probelab.report.causal) || !document.getElementById('error').hidden,
    { what: `the causal test on ${file}` });
  assert.equal(await page.isVisible('#error'), false, await page.textContent('#error'));
  return page.evaluate(() => window.probelab.report.causal);
}

test('the causal test finds the planted direction at the floor, and not the one nobody reads', async () => {
  const { page, pageErrors } = await openLab(browser, server.url, '?permutations=10');
  for (const [file, planted] of [['planted_latitude.gguf', true], ['planted_latitude_twin.gguf', false]]) {
    const c = await causalOn(page, file);
    const lat = c.axes[0];
    const nNull = lat.null_random.length + lat.null_orthogonal.length + (lat.null_control_task === null ? 0 : 1);
    assert.equal(lat.target, 'latitude');
    assert.ok(nNull >= 31, `${nNull} nulls`);
    // Its figures are drawn: the dose chart always, the map of moving answers for places.
    assert.equal(await page.isVisible('#causal-dose-canvas'), true);
    assert.equal(await page.isVisible('#causal-map-canvas'), true);
    const rows = await page.$$eval('#causal-table tbody tr', (trs) => trs.map((tr) => tr.textContent));
    assert.equal(rows.length, 4, rows.join('\n'));
    const summary = await page.textContent('#summary');
    if (planted) {
      assert.equal(lat.p_value, 1 / (1 + nNull), JSON.stringify(lat));
      assert.ok(c.baseline.answerable && lat.effect > 0, JSON.stringify(c.baseline));
      assert.ok(rows[0].includes(lat.p_value.toFixed(3)), rows[0]);
      assert.match(summary, /Does the model use it\? Edited at layer \d+ .* its answers follow the probe's direction/);
    } else {
      assert.ok(lat.p_value > 0.1, JSON.stringify(lat));
      assert.equal(c.baseline.answerable, false);
      assert.match(await page.textContent('#causal-baseline'), /does not answer the question/);
      assert.match(summary, /Does the model use it\? .* cannot show whether it uses the probe's direction/);
    }
    assert.match(await page.textContent('#causal-status'), /Done in [\d.]+ s \(\d+ edited forward passes, on the CPU\)/);
    if (planted) {
      // A window: the selected layer and the next, each edited along its own probe.
      const layer = c.layer;
      const want = Math.min(2, (await page.evaluate(() => window.probelab.report.model.n_layers)) - layer + 1);
      await page.fill('#causal-window', '2');
      await page.evaluate(() => { window.probelab.report.causal = undefined; });
      await page.click('#causal-run');
      await waitForProgress(page, (n) => (window.probelab.report.causal?.edited_layers || []).length === n
        || !document.getElementById('error').hidden, { arg: want, what: 'the causal test over a window' });
      assert.equal(await page.isVisible('#error'), false, await page.textContent('#error'));
      const w = await page.evaluate(() => window.probelab.report.causal);
      assert.deepEqual(w.edited_layers, [layer, layer + 1].slice(0, want));
      assert.equal(w.axes[0].p_value, 1 / (1 + nNull), JSON.stringify(w.axes[0]));
      if (want === 2) assert.match(await page.textContent('#summary'), new RegExp(`Edited at layers ${layer}–${layer + 1} `));
      await page.fill('#causal-window', '1');
    }
  }
  assert.deepEqual(pageErrors, []);
});

test('on WebGPU the causal test runs on the GPU and gives the answer the CPU gives', async () => {
  const cpu = await causalOn((await openLab(browser, server.url, '?permutations=10')).page, 'planted_latitude.gguf');
  const { page, pageErrors } = await openLab(gpuBrowser, server.url, '?engine=gpu&permutations=10');
  const gpu = await causalOn(page, 'planted_latitude.gguf');
  assert.match(await page.textContent('#causal-status'), /edited forward passes, on WebGPU\)/);
  for (const [a, b] of gpu.axes.map((ax, t) => [ax, cpu.axes[t]])) {
    assert.equal(a.p_value, b.p_value, a.target);
    assert.ok(Math.abs(a.effect - b.effect) <= 1e-3 * Math.abs(b.effect) + 1e-9, `${a.target}: ${a.effect} vs ${b.effect}`);
  }
  assert.equal(gpu.baseline.accuracy, cpu.baseline.accuracy);
  assert.deepEqual(pageErrors, []);
});
