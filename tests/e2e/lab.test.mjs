// The lab end to end: the page loads the default model and the built-in world dataset on its
// own, extracts, fits the probes with their controls, and draws the figures.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, openLab, startServer } from './harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); server?.stop(); });

test('200 places: extraction, probes, summary, chart and map', async () => {
  const { page, pageErrors } = await openLab(browser, server.url, '?permutations=20');
  await page.waitForFunction(() => document.getElementById('names').value.split('\n').length === 200);
  await page.click('#extract');
  await page.waitForFunction(() => window.probelab.report, null, { timeout: 600_000 });
  const rep = await page.evaluate(() => window.probelab.report);
  assert.equal(rep.dataset.n, 200);
  assert.equal(rep.layers.length, 31);
  assert.match(await page.textContent('#summary'), /Layer \d+ .* R² -?\d/);
  assert.match(await page.textContent('#engine'), /CPU \(WebAssembly/);

  // The map canvas shows land, ocean and coloured points: count pixels by colour family.
  const counts = await page.evaluate(() => {
    const c = document.getElementById('map-canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const near = (i, [r, g, b]) => Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 12;
    let land = 0, ocean = 0, saturated = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (near(i, [0xf2, 0xef, 0xe6])) land++;
      else if (near(i, [0xdd, 0xe7, 0xf0])) ocean++;
      const mx = Math.max(d[i], d[i + 1], d[i + 2]), mn = Math.min(d[i], d[i + 1], d[i + 2]);
      if (mx - mn > 120) saturated++;
    }
    return { land, ocean, saturated, total: d.length / 4 };
  });
  assert.ok(counts.land > counts.total * 0.05, `land pixels: ${JSON.stringify(counts)}`);
  assert.ok(counts.ocean > counts.total * 0.1, `ocean pixels: ${JSON.stringify(counts)}`);
  assert.ok(counts.saturated > 200, `point pixels: ${JSON.stringify(counts)}`);
  assert.deepEqual(pageErrors, []);
  await page.close();
});
