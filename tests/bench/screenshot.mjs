// The README's screenshot (docs/lab.png): the lab after a run on the built-in 200 world places,
// with a place's tooltip showing. Usage (from tests/e2e): node ../bench/screenshot.mjs
import path from 'node:path';
import { ROOT, launch, mapMarkerAt, startServer } from '../e2e/harness.mjs';

const server = await startServer();
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${server.url}?dataset=world-places-200&nosw`);
  await page.waitForFunction(() => window.probelab && window.probelab.info, null, { timeout: 120_000 });
  await page.click('#extract');
  await page.waitForFunction(() => window.probelab.report, null, { timeout: 900_000 });
  // Hover the test place with the largest error, so the tooltip shows a telling case.
  await page.locator('#map-canvas').scrollIntoViewIfNeeded();
  const worst = await page.evaluate(() => [...window.probelab.map.scene.points].sort((a, b) => b.error_km - a.error_km)[0].name);
  const at = await mapMarkerAt(page, worst);
  await page.mouse.move(at[0], at[1]);
  await page.waitForSelector('#map-tip:not([hidden])');
  const out = path.join(ROOT, 'docs/lab.png');
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  server.stop();
}
