// Time from opening the lab to the first map, in headless Chromium (CPU path), on the default
// model and the built-in world set: a cold visit (empty browser: download the model, extract
// with the model and its random-initialised twin, fit with every control) and then a warm
// revisit in the same browser profile (service worker, model and results in its caches).
// Usage: node first_map.mjs [dataset] [permutations]   Prints one JSON line per visit.
import { launch, startServer } from '../e2e/harness.mjs';

const dataset = process.argv[2] || 'world-places-200';
const permutations = Number(process.argv[3] || 100);
const server = await startServer();
const browser = await launch();

/** Opens the page and returns seconds (since navigation started) to each milestone. */
async function visit(context, { click }) {
  const page = await context.newPage();
  const t0 = Date.now();
  await page.goto(`${server.url}?dataset=${dataset}&permutations=${permutations}`);
  const since = () => (Date.now() - t0) / 1000;
  const marks = {};
  const mapDrawn = () => page.waitForFunction(() => {
    const c = document.getElementById('map-canvas');
    return window.probelab.report && c.width > 0 && !document.getElementById('probe-panel').hidden;
  }, null, { timeout: 1_200_000, polling: 50 });
  if (click) {
    await page.waitForFunction(() => !document.getElementById('extract').disabled, null, { timeout: 600_000, polling: 50 });
    marks.model_loaded_s = since();
    await page.click('#extract');
    await page.waitForFunction(() => window.probelab.lastRun, null, { timeout: 1_200_000, polling: 50 });
    marks.extracted_s = since();
    await page.waitForFunction(() => window.probelab.randomRun, null, { timeout: 1_200_000, polling: 50 });
    marks.random_init_extracted_s = since();
  }
  await mapDrawn();
  marks.first_map_s = since();
  if (!click) {
    await page.waitForFunction(() => window.probelab.info, null, { timeout: 600_000, polling: 50 });
    marks.model_loaded_s = since();
  }
  marks.from_cache = /cache/.test(await page.textContent('#probe-status'));
  marks.entities_computed = await page.evaluate(() => window.probelab.workers.entitiesComputed);
  await page.close();
  return marks;
}

try {
  const context = await browser.newContext();
  const cold = await visit(context, { click: true });
  console.log(JSON.stringify({ visit: 'cold', dataset, permutations, random_init: true, ...cold }));
  const warm = await visit(context, { click: false });
  console.log(JSON.stringify({ visit: 'warm', dataset, permutations, random_init: true, ...warm }));
} finally {
  await browser.close();
  server.stop();
}
