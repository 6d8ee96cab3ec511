// The map end to end: hover shows a place's name, true and predicted position and error (the
// report's own numbers), the wheel zooms about the cursor, dragging pans, hit-testing follows the
// view, Reset view restores the drawing, the slider keeps the view, and Train/Test changes what
// is drawn.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, openLab, startServer, waitForReport } from './harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); server?.stop(); });

const fmtLat = (v) => `${Math.abs(v).toFixed(2)}°${v >= 0 ? 'N' : 'S'}`;
const fmtLon = (v) => `${Math.abs(v).toFixed(2)}°${v >= 0 ? 'E' : 'W'}`;
const wrapLon = (v) => (v >= -180 && v < 180 ? v : ((((v + 180) % 360) + 360) % 360) - 180);
/** A value whose rounding to `digits` decimals does not hinge on its last bits. */
const roundsSafely = (v, digits) => {
  const f = Math.abs(v) * 10 ** digits;
  return Math.abs(f - Math.floor(f) - 0.5) > 0.01;
};

/** What the page's map shows: its points, view and where its canvas sits (CSS pixels). */
function mapState(page) {
  return page.evaluate(() => {
    const m = window.probelab.map;
    const c = document.getElementById('map-canvas');
    const r = c.getBoundingClientRect();
    return {
      points: m.scene.points,
      circles: m.scene.items.filter((i) => i.kind === 'circle').length,
      view: { ...m.view },
      drawnView: m.drawnView && { ...m.drawnView },
      width: m.scene.width,
      height: m.scene.height,
      left: r.left + c.clientLeft,
      top: r.top + c.clientTop,
      cssPerScene: c.clientWidth / m.scene.width,
    };
  });
}

/** Client (viewport) position of a scene point through the view. */
const toClient = (s, [x, y]) => [
  s.left + (s.view.x + s.view.scale * x) * s.cssPerScene,
  s.top + (s.view.y + s.view.scale * y) * s.cssPerScene,
];

const pixels = (page) => page.evaluate(() => document.getElementById('map-canvas').toDataURL());
const tipText = async (page) => {
  await page.waitForSelector('#map-tip:not([hidden])', { timeout: 10_000 });
  return page.evaluate(() => [...document.getElementById('map-tip').children].map((d) => d.textContent));
};
const drawn = (page, pred, arg = null) => page.waitForFunction(pred, arg, { timeout: 10_000 });

test('map: hover, zoom, pan, reset and the train/test toggle', async () => {
  const { page, pageErrors } = await openLab(browser, server.url, '?permutations=20');
  await page.waitForFunction(() => document.getElementById('names').value.split('\n').length === 200);
  await page.click('#extract');
  await waitForReport(page);
  const rep = await page.evaluate(() => window.probelab.report);
  const nTest = rep.entities.filter((e) => e.split === 'test').length;
  assert.ok(nTest > 0 && nTest < 200, `test entities: ${nTest}`);
  await page.locator('#map-canvas').scrollIntoViewIfNeeded();
  await page.mouse.move(2, 2);

  // The selected layer's map, test places only: one hit record per held-out place, with the
  // report's positions and errors.
  let s = await mapState(page);
  assert.equal(await page.inputValue('#layer'), String(rep.selected.layer));
  assert.equal(await page.inputValue('#map-split'), 'test');
  assert.equal(s.points.length, nTest);
  for (const p of s.points) {
    const e = rep.entities.find((x) => x.name === p.name && x.split === 'test');
    assert.ok(e, p.name);
    assert.ok(Math.abs(p.true_lat - e.truth[0]) < 1e-6 && Math.abs(p.true_lon - e.truth[1]) < 1e-6, p.name);
    assert.ok(Math.abs(p.pred_lat - Math.max(-90, Math.min(90, e.predicted[0]))) < 1e-6, p.name);
    assert.ok(Math.abs(p.pred_lon - wrapLon(e.predicted[1])) < 1e-6, p.name);
    assert.ok(Math.abs(p.error_km - e.error) < 0.01, `${p.name}: ${p.error_km} vs ${e.error}`);
  }

  // A place whose predicted marker stands clear of every other marker, away from the edges,
  // with numbers that round the same from the report and from the hit record.
  const markers = s.points.flatMap((p, i) => [[i, p.true_xy], [i, p.pred_xy]]);
  const clear = (i) => {
    const [x, y] = s.points[i].pred_xy;
    return markers.every(([j, [mx, my]]) => (j === i && mx === x && my === y) || Math.hypot(mx - x, my - y) * s.cssPerScene > 12);
  };
  const pick = s.points.findIndex((p, i) => {
    const e = rep.entities.find((x) => x.name === p.name && x.split === 'test');
    const [x, y] = p.pred_xy;
    return clear(i) && x > 0.25 * s.width && x < 0.75 * s.width && y > 0.25 * s.height && y < 0.75 * s.height
      && roundsSafely(e.error, 0) && [e.truth[0], e.truth[1], p.pred_lat, p.pred_lon].every((v) => roundsSafely(v, 2));
  });
  assert.ok(pick >= 0, 'no isolated test place to hover');
  const point = s.points[pick];
  const ent = rep.entities.find((x) => x.name === point.name && x.split === 'test');

  // Hover exactly on its predicted marker: the tooltip names it and gives the report's numbers.
  const before0 = await pixels(page);
  let [cx, cy] = toClient(s, point.pred_xy);
  await page.mouse.move(cx, cy);
  const lines = await tipText(page);
  assert.equal(lines[0], ent.name);
  assert.ok(lines[1].includes('test'), lines[1]);
  assert.ok(lines[1].includes(ent.group), lines[1]);
  assert.equal(lines[2], `true ${fmtLat(ent.truth[0])}, ${fmtLon(ent.truth[1])}`);
  assert.equal(lines[3], `predicted ${fmtLat(Math.max(-90, Math.min(90, ent.predicted[0])))}, ${fmtLon(wrapLon(ent.predicted[1]))}`);
  assert.equal(lines[4], `error ${Math.round(ent.error)} km`);
  // The highlight is drawn on the overlay, not in the map (whose PNG export stays clean).
  assert.equal(await pixels(page), before0);
  // Off the places: no tooltip.
  await page.mouse.move(s.left + 3, s.top + 3);
  await page.waitForSelector('#map-tip', { state: 'hidden' });

  // Wheel up over the place (at a whole pixel, as wheel events report): the view zooms about
  // the cursor, so the place stays under it.
  const [wx, wy] = [Math.round(cx), Math.round(cy)];
  await page.mouse.move(wx, wy);
  await tipText(page);
  await page.mouse.wheel(0, -600);
  await drawn(page, () => window.probelab.map.drawnView?.scale > 1);
  s = await mapState(page);
  assert.ok(s.view.scale > 2, `scale ${s.view.scale}`);
  assert.notEqual(await pixels(page), before0, 'the canvas did not change with the zoom');
  const [zx, zy] = toClient(s, point.pred_xy);
  assert.ok(Math.hypot(zx - wx, zy - wy) <= Math.hypot(cx - wx, cy - wy) * s.view.scale + 0.5,
    `the place moved from (${cx}, ${cy}) to (${zx}, ${zy}) under a cursor at (${wx}, ${wy})`);
  assert.equal((await tipText(page))[0], ent.name);

  // Drag towards the middle: the view pans by the drag, and the place is found where it went.
  const dx = cx < s.left + (s.width * s.cssPerScene) / 2 ? 90 : -90;
  const dy = cy < s.top + (s.height * s.cssPerScene) / 2 ? 50 : -50;
  await page.mouse.move(s.left + 3, s.top + 3);
  const startX = s.left + (s.width * s.cssPerScene) / 2, startY = s.top + (s.height * s.cssPerScene) / 2;
  await page.mouse.move(startX, startY);
  await page.mouse.down();
  await page.mouse.move(startX + dx / 2, startY + dy / 2, { steps: 3 });
  await page.mouse.move(startX + dx, startY + dy, { steps: 3 });
  await page.mouse.up();
  await drawn(page, (x0) => window.probelab.map.drawnView.x !== x0, s.view.x);
  const panned = await mapState(page);
  assert.equal(panned.view.scale, s.view.scale);
  assert.ok(Math.abs((panned.view.x - s.view.x) * s.cssPerScene - dx) < 1.5, JSON.stringify([s.view, panned.view]));
  assert.ok(Math.abs((panned.view.y - s.view.y) * s.cssPerScene - dy) < 1.5, JSON.stringify([s.view, panned.view]));
  [cx, cy] = toClient(panned, point.pred_xy);
  assert.ok(Math.hypot(cx - zx - dx, cy - zy - dy) < 1.5);
  await page.mouse.move(s.left + 3, s.top + 3);
  await page.mouse.move(cx, cy);
  assert.equal((await tipText(page))[0], ent.name);
  // Where the place was before the pan there is now nothing of it.
  await page.mouse.move(zx, zy);
  const there = await page.evaluate(() => !document.getElementById('map-tip').hidden
    && document.getElementById('map-tip').firstChild.textContent);
  assert.notEqual(there, ent.name);

  // The layer slider keeps the view.
  await page.evaluate((l) => { const el = document.getElementById('layer'); el.value = String(l); el.dispatchEvent(new Event('input')); },
    rep.selected.layer === 0 ? 1 : rep.selected.layer - 1);
  s = await mapState(page);
  assert.deepEqual(s.drawnView, panned.view);
  await page.evaluate((l) => { const el = document.getElementById('layer'); el.value = String(l); el.dispatchEvent(new Event('input')); },
    rep.selected.layer);

  // Reset view: the whole map again, pixel for pixel.
  await page.mouse.move(2, 2);
  await page.click('#zoom-reset');
  await drawn(page, () => window.probelab.map.drawnView.scale === 1);
  s = await mapState(page);
  assert.deepEqual(s.view, { scale: 1, x: 0, y: 0 });
  assert.equal(await pixels(page), before0);
  // "+" zooms about the middle; a double-click resets.
  await page.click('#zoom-in');
  await drawn(page, () => window.probelab.map.drawnView.scale > 1);
  assert.notEqual(await pixels(page), before0);
  [cx, cy] = toClient(await mapState(page), [s.width / 2, s.height / 2]);
  await page.mouse.dblclick(cx, cy);
  await drawn(page, () => window.probelab.map.drawnView.scale === 1);
  assert.equal(await pixels(page), before0);

  // Train and test: every place, the training ones in-sample and faded; back to test only.
  await page.mouse.move(2, 2);
  await page.selectOption('#map-split', 'all');
  const both = await mapState(page);
  assert.equal(both.points.length, 200);
  assert.equal(both.points.filter((p) => p.split === 'train').length, 200 - nTest);
  // A ring and a dot per training place, a legend key for them (and any group only they have).
  assert.ok(both.circles - s.circles >= 2 * (200 - nTest) + 1, `${both.circles} vs ${s.circles}`);
  assert.ok(both.circles - s.circles <= 2 * (200 - nTest) + 11, `${both.circles} vs ${s.circles}`);
  assert.notEqual(await pixels(page), before0);
  const trainPoint = both.points.find((p) => p.split === 'train');
  const trainEnt = rep.entities.find((x) => x.name === trainPoint.name && x.split === 'train');
  assert.ok(Math.abs(trainPoint.error_km - trainEnt.error) < 0.01, `${trainPoint.error_km} vs ${trainEnt.error}`);
  await page.selectOption('#map-split', 'test');
  s = await mapState(page);
  assert.equal(s.points.length, nTest);
  assert.equal(await pixels(page), before0);

  assert.deepEqual(pageErrors, []);
  await page.close();
});
