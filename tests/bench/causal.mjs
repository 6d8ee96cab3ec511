// The whole causal test ("Does the model use it?") on world-places-200 at the default settings,
// natively (probelab steer, CPU) and in headless Chromium (worker 0, CPU/WebAssembly), on the
// default model. Goal (issue 12): under 60 s natively, under 5 minutes in the page.
// Usage (from tests/e2e, after scripts/test or scripts/lab built everything):
//   PROBELAB_BIN=/path/to/release/probelab node ../bench/causal.mjs     Prints one JSON line.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MODEL, launch, nativeBinary, openLab, startServer, waitForProgress, waitForReport } from '../e2e/harness.mjs';

const bin = nativeBinary();
const dir = mkdtempSync(path.join(tmpdir(), 'probelab-causal-bench-'));
execFileSync(bin, ['run', '--model', MODEL, '--dataset', 'world-places-200', '--out', dir,
  '--no-random-init', '--permutations', '20', '--engine', 'cpu'], { stdio: 'ignore' });
let t = performance.now();
const said = spawnSync(bin, ['steer', dir, '--model', MODEL, '--engine', 'cpu'], { encoding: 'utf8' }).stderr;
const nativeSeconds = (performance.now() - t) / 1000;
const nativeCore = Number((/causal test: ([\d.]+) s/.exec(said) || [])[1]);

const server = await startServer();
const browser = await launch();
try {
  const { page } = await openLab(browser, server.url, '?permutations=20');
  await page.waitForFunction(() => document.getElementById('names').value.split('\n').length === 200);
  await page.click('#extract');
  await waitForReport(page);
  t = performance.now();
  await page.click('#causal-run');
  await waitForProgress(page, () => (window.probelab.report && window.probelab.report.causal) || !document.getElementById('error').hidden,
    { what: 'the causal test' });
  const pageSeconds = (performance.now() - t) / 1000;
  const c = await page.evaluate(() => window.probelab.report.causal);
  const passes = Number(await page.getAttribute('#causal-progress', 'max'));
  console.log(JSON.stringify({
    dataset: 'world-places-200', layer: c.layer, entities: c.n_entities, passes,
    native_steer_seconds: nativeSeconds, native_causal_test_seconds: nativeCore,
    page_cpu_seconds: pageSeconds, page_over_native: pageSeconds / nativeCore,
  }));
} finally {
  await browser.close();
  server.stop();
}
