// The lab end to end: the page loads the default model and the built-in world dataset on its
// own, extracts, fits the probes with their controls, and draws the figures.
import assert from 'node:assert/strict';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, launch, mapPixels, openLab, readSafetensors, startServer, waitForProgress, waitForReport } from './harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); server?.stop(); });

test('200 places: extraction, probes, summary, chart and map', async () => {
  const { page, pageErrors } = await openLab(browser, server.url, '?permutations=20');
  await page.waitForFunction(() => document.getElementById('names').value.split('\n').length === 200);
  await page.click('#extract');
  await waitForReport(page);
  const rep = await page.evaluate(() => window.probelab.report);
  assert.equal(rep.dataset.n, 200);
  assert.equal(rep.layers.length, 31);
  assert.match(await page.textContent('#summary'), /Layer \d+ .* R² -?\d/);
  assert.match(await page.textContent('#engine'), /CPU \(WebAssembly/);
  // The verdict card carries the report's own numbers, and each line links to its figure.
  const sel = rep.selected;
  const headline = await page.textContent('#verdict-headline');
  assert.ok(headline.startsWith(`Layer ${sel.layer} reads latitude and longitude of held-out places: R² ${sel.r2_test.toFixed(2)}, median error ${sel.km_median.toFixed(0)} km, p = ${sel.p_value.toFixed(3)}`), headline);
  const card = await page.$$eval('#verdict-checks li', (lis) => lis.map((li) => ({
    key: li.dataset.key, cls: li.className, value: li.dataset.value, against: li.dataset.against,
    text: li.textContent, href: li.querySelector('a').getAttribute('href'), mark: li.querySelector('.mark').textContent,
  })));
  assert.deepEqual(card.map((c) => c.key), ['shuffled', 'names', 'beyond_names', 'layer0', 'random_init', 'control_task', 'unseen_group']);
  const line = (k) => card.find((c) => c.key === k);
  // The marks are the core's (the command line prints the same).
  for (const c of card) assert.equal(c.mark, { 'check yes': '✓', 'check no': '✗', 'check not_run': '–' }[c.cls], c.key);
  const num = (v) => (v === undefined ? null : Number(v));
  assert.equal(num(line('shuffled').value), sel.p_value);
  assert.match(line('shuffled').text, new RegExp(`p = ${sel.p_value.toFixed(3)}`));
  assert.equal(line('shuffled').cls, `check ${sel.p_value < 0.05 ? 'yes' : 'no'}`);
  for (const [k, probe, control] of [['names', sel.r2_test, rep.baselines.ngram_r2_test],
    ['layer0', sel.r2_test, rep.baselines.layer0_r2_test], ['random_init', sel.r2_test, sel.random_init_r2],
    ['control_task', sel.r2_test_fitted, sel.control_task_r2]]) {
    assert.equal(num(line(k).value), probe, k);
    assert.equal(num(line(k).against), control, k);
    assert.equal(line(k).cls, `check ${probe > control ? 'yes' : 'no'}`, k);
    assert.ok(line(k).text.includes(`(${probe.toFixed(2)} against ${control.toFixed(2)})`), `${k}: ${line(k).text}`);
    assert.equal(line(k).href, '#layers-canvas');
  }
  assert.equal(line('unseen_group').cls, 'check not_run');
  // What the activations add to the names: the gain's p after choosing the layer, its mark.
  assert.equal(num(line('beyond_names').value), sel.gain_p_value);
  assert.equal(line('beyond_names').cls, `check ${sel.gain_over_names > 0 && sel.gain_p_value < 0.05 ? 'yes' : 'no'}`);
  assert.ok(line('beyond_names').text.includes(`R² ${sel.gain_over_names >= 0 ? '+' : ''}${sel.gain_over_names.toFixed(2)} over the n-grams`), line('beyond_names').text);
  // A control that reaches the probe at any layer is said first (here computed from the report).
  const best = (f) => Math.max(...rep.layers.map(f).filter(Number.isFinite));
  const wins = rep.baselines.ngram_r2_test >= sel.r2_test || rep.baselines.knn_r2_test >= sel.r2_test || (sel.layer !== 0 && rep.baselines.layer0_r2_test >= sel.r2_test)
    || best((l) => l.controls.random_init_r2) >= sel.r2_test || best((l) => l.controls.control_task_r2) >= sel.r2_test_fitted;
  assert.equal(await page.isVisible('#verdict-warning'), wins);
  assert.equal((await page.textContent('#summary')).startsWith('Read with care:'), wins);
  assert.equal(line('unseen_group').href, '#map-wrap');
  // The per-continent table lists every group with its counts, as text.
  const rows = await page.$$eval('#by-group tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  assert.equal(rows.length, rep.by_group.length);
  assert.ok(rows.length >= 6, `groups: ${JSON.stringify(rows)}`);
  assert.deepEqual(rows.map((r) => r[0]), rep.by_group.map((g) => g.group));
  assert.deepEqual(rows.map((r) => Number(r[2])), rep.by_group.map((g) => g.n_test));
  // Mean error and proximity error per group, not R² within a group (negative by construction).
  assert.deepEqual(rows.map((r) => r[3]), rep.by_group.map((g) => g.km_mean.toFixed(0)));
  assert.deepEqual(rows.map((r) => r[4]), rep.by_group.map((g) => g.proximity_error.toFixed(2)));
  assert.ok(rep.by_group.every((g) => g.proximity_error >= 0 && g.proximity_error <= 1));
  // Whom the map serves: the places' population, its correlation with the error in the summary
  // and its median per group in the table.
  const pop = rep.coverage.find((c) => c.column === 'population');
  assert.ok(pop && pop.n_test === rep.split.n_test, JSON.stringify(rep.coverage));
  assert.ok((await page.textContent('#summary')).includes(`the held-out error against population, Spearman ρ ${pop.spearman >= 0 ? '+' : ''}${pop.spearman.toFixed(2)}`));
  assert.deepEqual(rows.map((r) => r[5]), rep.by_group.map((g) => {
    const m = pop.by_group.find((x) => x.group === g.group)?.median;
    return m === undefined ? 'n/a' : m.toFixed(0);
  }));
  // What the names give away: one row per flag (world places carry qualifiers such as
  // "Barcelona, Spain" and non-ASCII names), with the report's numbers as text.
  const flagRows = await page.$$eval('#name-flags tbody tr', (trs) => trs.map((tr) => ({
    flag: tr.dataset.flag, cells: [...tr.children].map((td) => td.textContent) })));
  assert.ok(['qualifier', 'non_ascii'].every((k) => rep.name_flags.some((f) => f.flag === k)), JSON.stringify(rep.name_flags));
  assert.deepEqual(flagRows.map((r) => r.flag), rep.name_flags.map((f) => f.flag));
  const fixed2 = (v) => (v === null ? 'n/a' : v.toFixed(2));
  for (const [i, f] of rep.name_flags.entries()) {
    assert.deepEqual(flagRows[i].cells.slice(0, 7), [f.description, `${f.n} (${f.n_test})`, fixed2(f.r2_test),
      fixed2(f.r2_test_others), fixed2(f.random_init_r2_test), fixed2(f.ngram_r2_test), fixed2(f.knn_r2_test)]);
  }
  assert.equal(await page.isVisible('#name-flags'), true);
  // The score-by-layer chart draws the names' lines; the learning chart is drawn beside its
  // report's figures.
  const charts = await page.evaluate(() => window.probelab.charts);
  const texts = (scene) => scene.items.filter((it) => it.kind === 'text').map((it) => it.text);
  assert.ok(texts(charts.layers).includes(`${rep.baselines.knn_neighbours} most similar names (no model)`), JSON.stringify(texts(charts.layers)));
  assert.ok(texts(charts.layers).includes('n-grams + probe of what they miss'));
  assert.equal(rep.learning.layer, sel.layer);
  assert.ok(texts(charts.learning).some((t) => t.startsWith(`probe, layer ${sel.layer} (code ${rep.learning.code.compression.toFixed(2)}`)), JSON.stringify(texts(charts.learning)));
  assert.equal(await page.isVisible('#learning-canvas'), true);
  const inked = await page.evaluate(() => {
    const c = document.getElementById('learning-canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 2] > d[i] + 60 && d[i + 3] > 0) n++;
    return n;
  });
  assert.ok(inked > 100, `learning chart: ${inked} bluish pixels`);

  // The map canvas shows land, ocean and coloured points.
  const counts = await mapPixels(page);
  assert.ok(counts.land > counts.total * 0.05, `land pixels: ${JSON.stringify(counts)}`);
  assert.ok(counts.ocean > counts.total * 0.1, `ocean pixels: ${JSON.stringify(counts)}`);
  assert.ok(counts.saturated > 200, `point pixels: ${JSON.stringify(counts)}`);

  // The layer slider redraws the map for that layer and records it in the URL.
  const before = await page.evaluate(() => document.getElementById('map-canvas').toDataURL());
  await page.evaluate(() => { const s = document.getElementById('layer'); s.value = '3'; s.dispatchEvent(new Event('input')); });
  const afterSlide = await page.evaluate(() => document.getElementById('map-canvas').toDataURL());
  assert.notEqual(before, afterSlide, 'the map did not change with the layer');
  assert.equal(new URL(page.url()).searchParams.get('layer'), '3');
  assert.equal(new URL(page.url()).searchParams.get('dataset'), 'world-places-200');

  // Exports: their contents match the report the page shows.
  const save = async (button) => {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
    const path = await dl.path();
    return { name: dl.suggestedFilename(), bytes: readFileSync(path) };
  };
  const json = await save('#export-report');
  assert.equal(json.name, 'report.json');
  assert.deepEqual(JSON.parse(json.bytes.toString('utf8')), rep);
  const csv = await save('#export-csv');
  const lines = csv.bytes.toString('utf8').trim().split('\n');
  assert.equal(lines.length, 1 + rep.entities.length);
  assert.match(lines[0], /^name,split,true_latitude,true_longitude,predicted_latitude,predicted_longitude,error_km/);
  const first = rep.entities[0];
  assert.ok(lines[1].startsWith(`${first.name.includes(',') ? '"' + first.name + '"' : first.name},${first.split},`), lines[1]);
  for (const b of ['#export-map', '#export-layers']) {
    const png = await save(b);
    assert.deepEqual([...png.bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${png.name} is not a PNG`);
  }

  // Colour by the model's surprisal of each name: the page scores the names once, re-fits, and
  // the map shades its places by it (a colour bar instead of the continents' legend).
  const groupMap = await page.evaluate(() => document.getElementById('map-canvas').toDataURL());
  await page.selectOption('#color-by', 'surprisal');
  await waitForProgress(page, () => window.probelab.report?.entities.every((e) => typeof e.surprisal === 'number'),
    { what: 'the surprisal re-fit' });
  const rs = await page.evaluate(() => window.probelab.report);
  assert.deepEqual(rs.coverage.map((c) => c.column), ['population', 'surprisal']);
  assert.ok(rs.entities.every((e) => e.surprisal > 0), 'every name is scored after a line break');
  assert.ok((await page.textContent('#summary')).includes('the held-out error against surprisal'));
  await page.waitForFunction(() => window.probelab.map.scene?.items.some((it) => it.kind === 'text' && it.text.startsWith("model's surprisal of the name")));
  const shaded = await page.evaluate(() => document.getElementById('map-canvas').toDataURL());
  assert.notEqual(shaded, groupMap, 'the map did not change colour');
  const hits = await page.evaluate(() => window.probelab.map.scene.points.length);
  assert.equal(hits, rs.split.n_test);
  assert.deepEqual(pageErrors, []);
  await page.close();
});

test('a time dataset: predicted against true year, no map controls', async () => {
  const { page, pageErrors } = await openLab(browser, server.url, '?dataset=historical-years-200&permutations=10&nosw');
  await page.waitForFunction(() => document.getElementById('names').value.split('\n').length === 200);
  await page.uncheck('#random-init');
  await page.click('#extract');
  await waitForReport(page);
  const rep = await page.evaluate(() => window.probelab.report);
  assert.equal(rep.dataset.target, 'time');
  assert.match(await page.textContent('#summary'), /predicts the year of held-out entities with R² -?\d.*mean error \d+ years/);
  assert.equal(await page.isVisible('#map-controls'), false);
  assert.equal(await page.textContent('#by-group-error'), 'mean error (years)');
  // The scatter of predicted against true year is drawn in the figure's place: its points are
  // translucent blue (#0072b2), so count bluish pixels.
  const blue = await page.evaluate(() => {
    const c = document.getElementById('map-canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 2] > d[i] + 60 && d[i + 3] > 0) n++;
    return n;
  });
  assert.ok(blue > 300, `scatter points: ${blue} bluish pixels`);
  assert.deepEqual(pageErrors, []);
  await page.close();
});

test('a run with mean pooling says "mean" in its report.json and its activations file', async () => {
  const { page, pageErrors } = await openLab(browser, server.url, '?permutations=10&nosw');
  const lines = readFileSync(path.join(ROOT, 'datasets/world_places.csv'), 'utf8').trim().split('\n');
  await page.setInputFiles('#names-file', { name: 'places.csv', mimeType: 'text/csv', buffer: Buffer.from(lines.slice(0, 41).join('\n') + '\n') });
  await page.waitForFunction(() => document.getElementById('dataset').value === 'imported');
  await page.selectOption('#pooling', 'mean');
  await page.uncheck('#random-init');
  await page.click('#extract');
  await waitForReport(page);
  const save = async (button) => {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
    return readFileSync(await dl.path());
  };
  const report = JSON.parse((await save('#export-report')).toString('utf8'));
  assert.equal(report.dataset.n, 40);
  assert.equal(report.pooling, 'mean');
  const acts = path.join(tmpdir(), `probelab-mean-${process.pid}.safetensors`);
  writeFileSync(acts, await save('#export-acts'));
  try {
    const { shape, metadata } = readSafetensors(acts);
    assert.deepEqual(shape, [report.model.n_layers + 1, 40, report.model.d_model]);
    assert.equal(metadata.pool, 'mean');
  } finally {
    unlinkSync(acts);
  }
  assert.deepEqual(pageErrors, []);
});
