// The whole lab on WebGPU in headless Chromium: the default dataset (world-places-200) extracted
// on the GPU engine, then the probes, summary and map. Prints each status line as it changes
// (batch by batch) and one JSON line of figures at the end. On these machines the adapter is
// SwiftShader (a CPU rasteriser), so the figure says nothing about a real GPU's speed.
// Usage: node tests/bench/webgpu_lab.mjs [gpuBatch=50] [permutations=10]
import { launch, openLab, startServer, waitForReport } from '../e2e/harness.mjs';

const gpuBatch = Number(process.argv[2] || 50);
const permutations = Number(process.argv[3] || 10);
const server = await startServer();
const browser = await launch({ webgpu: true });
try {
  const { page } = await openLab(browser, server.url, `?permutations=${permutations}&nosw&gpu_batch=${gpuBatch}`, { label: 'bench' });
  await page.waitForFunction(() => document.getElementById('names').value.split('\n').length === 200);
  await page.uncheck('#random-init');
  const t0 = Date.now();
  await page.click('#extract');
  // No silence limit worth the name: a benchmark waits as long as it takes.
  await waitForReport(page, { stallS: 3600 });
  const run = await page.evaluate(() => ({ tokens: window.probelab.lastRun.tokens, seconds: window.probelab.lastRun.seconds, engine: window.probelab.lastRun.engine }));
  console.log(JSON.stringify({
    bench: 'webgpu whole lab', adapter: await page.textContent('#engine'), entities: 200, gpu_batch: gpuBatch,
    engine: run.engine, tokens: run.tokens, extract_seconds: run.seconds, tokens_per_s: run.tokens / run.seconds,
    to_report_seconds: (Date.now() - t0) / 1000,
  }));
} finally {
  await browser.close();
  server.stop();
}
