// Runs that break: Cancel mid-extraction stops between batches, keeps the page usable, and the
// next run works; the main thread stays responsive while the workers extract.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { extractInPage, launch, openLab, startServer, waitForProgress } from './harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); server?.stop(); });

test('Cancel mid-extraction, then extract again; no long main-thread tasks', async () => {
  const { page, pageErrors } = await openLab(browser, server.url, '?dataset=world-places');
  await page.waitForFunction(() => document.getElementById('names').value.split('\n').length === 6000);
  // Long tasks on the page's thread (the model runs in workers, so there should be none).
  await page.evaluate(() => {
    window.__longTasks = [];
    new PerformanceObserver((l) => l.getEntries().forEach((e) => window.__longTasks.push(e.duration)))
      .observe({ type: 'longtask', buffered: false });
  });
  await page.click('#extract');
  await waitForProgress(page, () => Number(document.getElementById('extract-progress').value) > 0);
  // While it runs, the page answers input at once.
  const t = Date.now();
  await page.fill('#template', 'The city of {name}');
  assert.ok(Date.now() - t < 1000, 'the page did not respond while extracting');
  await page.click('#cancel');
  await page.waitForFunction(() => /Cancelled after \d+ of 6000/.test(document.getElementById('extract-status').textContent), null, { timeout: 60_000 });
  assert.equal(await page.isDisabled('#extract'), false);
  const longTasks = await page.evaluate(() => window.__longTasks);
  assert.ok(longTasks.every((d) => d < 200), `main-thread tasks over 200 ms: ${longTasks}`);
  // The next run works.
  const r = await extractInPage(page, ['Paris', 'Lima']);
  assert.equal(r.nEntities, 2);
  assert.deepEqual(pageErrors, []);
  await page.close();
});
