// The embed view in a sandboxed iframe, as a blog post includes it, read on a phone (Playwright's
// mobile emulation, 390 px): it runs on its own, shows the figure with the inputs hidden and no
// sideways scrolling, and answers a tap (a place's numbers) and a pinch (zoom).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, mapMarkerAt, startServer, waitForProgress } from './harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); server?.stop(); });

test('embed view inside <iframe sandbox="allow-scripts allow-same-origin">, on a phone: tap and pinch', async () => {
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  const page = await context.newPage();
  const src = `${server.url}?embed=1&dataset=world-places-200&permutations=10`;
  await page.setContent(`<!doctype html><meta name="viewport" content="width=device-width, initial-scale=1">
    <title>A blog post</title><body style="margin:0 8px"><p>Here is the lab:</p>
    <iframe id="lab" src="${src}" sandbox="allow-scripts allow-same-origin" style="width:100%;border:0" height="1500"></iframe></body>`);
  const frame = await (await page.waitForSelector('#lab')).contentFrame();
  await waitForProgress(page, () => window.probelab && window.probelab.report, { frame });
  assert.match(await frame.textContent('#summary'), /Layer \d+ .* R²/);
  assert.equal(await frame.isVisible('#model-panel'), false);
  assert.equal(await frame.isVisible('#verdict'), true);
  assert.equal(await frame.isVisible('#map-canvas'), true);
  assert.equal(await frame.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth), true,
    'the embed scrolls sideways at 390 px');
  const drawn = await frame.evaluate(() => {
    const c = document.getElementById('map-canvas');
    return c.width > 0 && c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data[3] > 0;
  });
  assert.ok(drawn, 'the map was not drawn');

  // Bring the map into the phone's viewport; frame coordinates + the iframe's box = the page's.
  const mapTop = await frame.$eval('#map-wrap', (el) => el.getBoundingClientRect().top);
  await page.evaluate((t) => window.scrollTo(0, document.getElementById('lab').getBoundingClientRect().top + window.scrollY + t - 40), mapTop);
  const at = async () => (await page.$('#lab')).boundingBox();

  // A tap on the place farthest from every other marker shows that place's numbers.
  const lonely = await frame.evaluate(() => {
    const pts = window.probelab.map.scene.points;
    const marks = pts.flatMap((p) => [[p, p.true_xy], [p, p.pred_xy]]);
    let best = null, bestD = -1;
    for (const p of pts) {
      const d = Math.min(...marks.filter(([q]) => q !== p).map(([, m]) => Math.hypot(m[0] - p.pred_xy[0], m[1] - p.pred_xy[1])));
      if (d > bestD) { bestD = d; best = p.name; }
    }
    return best;
  });
  const [mx, my] = await mapMarkerAt(frame, lonely);
  const ib = await at();
  await page.touchscreen.tap(ib.x + mx, ib.y + my);
  await frame.waitForSelector('#map-tip', { state: 'visible', timeout: 10_000 });
  assert.equal(await frame.evaluate(() => window.probelab.map.active?.point.name), lonely);
  assert.match(await frame.textContent('#map-tip'), /error \d+ km/);

  // A two-finger pinch outwards over the map zooms it in.
  const c = await frame.$eval('#map-canvas', (el) => { const r = el.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; });
  const [cx, cy] = [ib.x + c[0], ib.y + c[1]];
  const cdp = await context.newCDPSession(page);
  const fingers = (d) => [{ x: cx - d, y: cy, id: 0 }, { x: cx + d, y: cy, id: 1 }];
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: fingers(20) });
  for (let d = 30; d <= 80; d += 10) await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: fingers(d) });
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  await frame.waitForFunction(() => window.probelab.map.view.scale > 2, null, { timeout: 10_000 });
  await page.close();
});
