// The first minute, as a new reader meets the lab: the whole way from opening the page to the
// map by keyboard alone; then the result leads the page (the inputs folded into Setup) and the
// embed reads as a figure, at 1280 px and 390 px; axe-core finds nothing serious on either; the
// screenshots the README shows are written to docs/.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, axeViolations, followStatus, launch, startServer, tabTo, waitForProgress, waitForReport } from './harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); server?.stop(); });

const QUERY = '?dataset=world-places-200&permutations=10&nosw';
const loaded = (page) => waitForProgress(page, () => window.probelab && window.probelab.info, { stallS: 180, what: 'the model to load' });
const box = (page, sel) => page.$eval(sel, (el) => { const r = el.getBoundingClientRect(); return { top: r.top, left: r.left, right: r.right, bottom: r.bottom }; });
const noAxeProblems = async (page, what) => {
  const found = await axeViolations(page);
  assert.deepEqual(found, [], `axe-core on ${what}:\n${found.join('\n')}`);
};
/** What sticks out of the viewport sideways (nothing, when the page needs no horizontal scroll). */
const overflow = (page) => page.evaluate(() => {
  const w = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth <= w) return [];
  return [...document.querySelectorAll('body *')].filter((el) => el.getBoundingClientRect().right > w + 0.5)
    .map((el) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} (right edge ${Math.round(el.getBoundingClientRect().right)} px)`);
});

test('the first minute: keyboard only to the map, results first, the embed as a figure, screenshots, axe', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await followStatus(page, 'keyboard');
  await page.goto(server.url + QUERY);
  await loaded(page);
  await page.waitForFunction(() => document.getElementById('names').value.split('\n').length === 200);
  assert.equal(await page.evaluate(() => document.getElementById('setup').open), true, 'Setup is open before any result');
  await noAxeProblems(page, 'the page before a run');

  // Keyboard only: switch the random-weights twin off, start the run, wait for the result.
  await tabTo(page, 'random-init');
  await page.keyboard.press('Space');
  assert.equal(await page.isChecked('#random-init'), false);
  await tabTo(page, 'extract');
  await page.keyboard.press('Enter');
  await waitForReport(page);
  const rep = await page.evaluate(() => window.probelab.report);

  // Results first: the inputs are folded into Setup, below the result; map and chart side by side.
  assert.equal(await page.evaluate(() => document.getElementById('setup').open), false, 'Setup did not fold');
  const [verdict, mapBox, chart, setup] = await Promise.all(['#verdict', '#map-wrap', '#layers-canvas', '#setup'].map((s) => box(page, s)));
  assert.ok(verdict.bottom <= mapBox.top && mapBox.bottom < setup.top, `order: ${JSON.stringify({ verdict, mapBox, setup })}`);
  assert.ok(chart.left >= mapBox.right, `map and chart side by side at 1280 px: ${JSON.stringify({ mapBox, chart })}`);

  // The slider by keyboard: one step redraws the map at the next layer and says so.
  await tabTo(page, 'layer');
  const from = Number(await page.inputValue('#layer'));
  await page.keyboard.press(from > 0 ? 'ArrowLeft' : 'ArrowRight');
  const to = from > 0 ? from - 1 : from + 1;
  assert.equal(Number(await page.inputValue('#layer')), to);
  assert.equal(new URL(page.url()).searchParams.get('layer'), String(to));
  // The screen-reader table lists the places drawn at that layer.
  const table = await page.evaluate(() => ({
    caption: document.getElementById('points-caption').textContent,
    rows: document.querySelectorAll('#points-table tbody tr').length,
    points: window.probelab.map.scene.points.length,
  }));
  assert.equal(table.caption, `Places on the map at layer ${to}: true and predicted positions`);
  assert.equal(table.rows, table.points);
  assert.equal(table.rows, rep.entities.filter((e) => e.split === 'test').length);

  // The map's zoom and pan by keyboard.
  await tabTo(page, 'map-wrap');
  await page.keyboard.press('+');
  await page.waitForFunction(() => Math.abs(window.probelab.map.view.scale - 1.6) < 1e-9);
  const x = await page.evaluate(() => window.probelab.map.view.x);
  await page.keyboard.press('ArrowRight');
  assert.notEqual(await page.evaluate(() => window.probelab.map.view.x), x, 'the arrow key did not pan');
  await page.keyboard.press('0');
  await page.waitForFunction(() => window.probelab.map.view.scale === 1);
  await noAxeProblems(page, 'the page with a result');
  assert.deepEqual(errors, []);

  // The same context keeps the result: each view below is drawn from the store, at 1280 and 390
  // px, and written to docs/ for the README.
  for (const width of [1280, 390]) {
    for (const embed of [false, true]) {
      const view = await context.newPage();
      await view.setViewportSize({ width, height: width > 500 ? 900 : 844 });
      await view.goto(server.url + (embed ? `?embed=1&title=${encodeURIComponent('Where SmolLM2 puts 200 places')}&` : '?') + QUERY.slice(1));
      await view.waitForFunction(() => window.probelab && window.probelab.report, null, { timeout: 120_000 });
      await loaded(view);
      const what = `${embed ? 'the embed' : 'the page'} at ${width} px`;
      assert.ok(await view.isVisible('#verdict'), `${what}: no verdict`);
      assert.ok(await view.isVisible('#map-canvas'), `${what}: no map`);
      assert.deepEqual(await overflow(view), [], `${what} scrolls sideways`);
      // The chart is laid out for the width it is shown at: its text is not scaled down.
      const scale = await view.$eval('#layers-canvas', (c) => c.clientWidth / (c.width / devicePixelRatio));
      assert.ok(scale > 0.97 && scale < 1.03, `${what}: the chart is drawn at ${scale.toFixed(2)}× its layout`);
      if (embed) {
        assert.equal(await view.textContent('#title'), 'Where SmolLM2 puts 200 places');
        // A figure: title, verdict, map with its slider, chart, top to bottom; no other controls.
        const tops = await Promise.all(['#title', '#verdict', '#map-wrap', '#layers-canvas'].map(async (s) => (await box(view, s)).top));
        assert.deepEqual([...tops].sort((a, b) => a - b), tops, `${what}: order ${tops}`);
        const controls = await view.$$eval('input, select, textarea, button', (els) => els
          .filter((el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden').map((el) => el.id));
        assert.deepEqual(controls, ['layer', 'play'], `${what}: controls shown`);
        // "Open in the lab" carries the same state, without the embed.
        const href = new URL(await view.getAttribute('#open-lab', 'href'));
        assert.equal(href.searchParams.has('embed'), false);
        assert.equal(href.searchParams.get('dataset'), 'world-places-200');
        assert.equal(href.searchParams.get('layer'), String(rep.selected.layer));
      } else {
        assert.equal(await view.evaluate(() => document.getElementById('setup').open), false);
      }
      await noAxeProblems(view, what);
      await view.screenshot({ path: path.join(ROOT, 'docs', `${embed ? 'embed' : 'lab'}-${width}.png`), fullPage: true });
      await view.close();
    }
  }

  // Reduced motion: no layer animation (no Play); the slider still steps through the layers.
  const calm = await context.newPage();
  await calm.emulateMedia({ reducedMotion: 'reduce' });
  await calm.goto(server.url + '?embed=1&' + QUERY.slice(1));
  await calm.waitForFunction(() => window.probelab && window.probelab.report, null, { timeout: 120_000 });
  assert.equal(await calm.isVisible('#play'), false, 'Play shows under prefers-reduced-motion');
  assert.equal(await calm.isVisible('#layer'), true);
  await calm.emulateMedia({ reducedMotion: 'no-preference' });
  await calm.waitForSelector('#play', { state: 'visible', timeout: 10_000 });   // and back without it
  await context.close();
});
