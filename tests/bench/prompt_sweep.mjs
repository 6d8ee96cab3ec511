// A prompt sweep in headless Chromium: the five shipped places templates on world-places-200,
// default settings (the random-initialised control on, 100 shuffles, 10 split seeds). Prints
// the time from Extract to the map, cold (nothing stored), and with four of the five templates'
// activations already in the browser's store (only the fifth runs the model). Prints figures;
// not a test.
// Usage (from tests/e2e, after scripts/test or scripts/lab built everything):
//   node ../bench/prompt_sweep.mjs [workers]        Prints one JSON line.
import { launch, openLab, startServer, waitForProgress } from '../e2e/harness.mjs';

const workers = Number(process.argv[2]) || 2;
const server = await startServer();
const browser = await launch();
const mapped = (page) => waitForProgress(page, () => window.probelab.report && window.probelab.map && window.probelab.map.scene,
  { what: 'the map' });

/** Extract with `templates` in a page; resolves with the seconds to the map and what ran. */
async function timeToMap(page, templates) {
  await page.evaluate(() => { window.probelab.report = null; if (window.probelab.map) window.probelab.map.scene = null; });
  // A result on the page folds Setup away: open it to change the prompts.
  await page.evaluate(() => { document.getElementById('setup').open = true; });
  await page.fill('#template', templates.join('\n'));
  const before = await page.evaluate(() => window.probelab.workers.entitiesComputed);
  const t = performance.now();
  await page.click('#extract');
  await mapped(page);
  const seconds = (performance.now() - t) / 1000;
  const r = await page.evaluate(() => ({ prompt: window.probelab.report.prompt, layer: window.probelab.report.selected.layer,
    r2: window.probelab.report.selected.r2_test, p: window.probelab.report.selected.p_value,
    computed: window.probelab.workers.entitiesComputed }));
  return { seconds, ...r, computed: r.computed - before };
}

try {
  const query = `?dataset=world-places-200&workers=${workers}&nosw`;
  // Cold: a fresh browser profile.
  const { page: cold } = await openLab(browser, server.url, query);
  await cold.click('#shipped-prompts');
  await cold.waitForFunction(() => document.getElementById('template').value.split('\n').length === 5);
  const templates = (await cold.inputValue('#template')).split('\n');
  const first = await timeToMap(cold, templates);
  console.error(`cold: ${first.seconds.toFixed(1)} s to the map, ${first.computed} entities computed`);
  await cold.context().close();

  // Warm: another fresh profile, four templates run first (not timed), then all five.
  const context = await browser.newContext();
  const warm = await context.newPage();
  await warm.goto(server.url + query);
  await waitForProgress(warm, () => window.probelab && window.probelab.info, { what: 'the model to load' });
  await timeToMap(warm, templates.slice(0, 4));
  const second = await timeToMap(warm, templates);
  console.log(JSON.stringify({
    dataset: 'world-places-200', templates, workers,
    cold_seconds: first.seconds, cold_entities_computed: first.computed,
    four_stored_seconds: second.seconds, four_stored_entities_computed: second.computed,
    cold_over_four_stored: first.seconds / second.seconds,
    chosen: { prompt: first.prompt, layer: first.layer, r2_test: first.r2, p_value: first.p },
  }));
} finally {
  await browser.close();
  server.stop();
}
