// CSV import in the page: a file with targets becomes a dataset the probes run on (bad rows
// listed by line); a names-only file is for extraction; a file that cannot be used is refused
// with a message that names the problem.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, launch, openLab, pageError, startServer, waitForReport } from './harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); server?.stop(); });

const file = (name, text) => ({ name, mimeType: 'text/csv', buffer: Buffer.from(text, 'utf8') });

test('a CSV with latitude and longitude: bad rows listed by line, probes fitted on the rest', async () => {
  const { page, pageErrors } = await openLab(browser, server.url, '?permutations=10&nosw');
  const lines = readFileSync(path.join(ROOT, 'datasets/world_places.csv'), 'utf8').trim().split('\n');
  // Rows 2..121 (lines 2..121 of the file): 120 places spread over the continents, then three
  // bad rows (the last repeats row 2 exactly; the same name elsewhere would be a homonym, kept)
  // and a formula-like cell that is only text.
  const rows = [lines[0], ...lines.slice(1).filter((_, i) => i % 50 === 0).slice(0, 120)];
  rows.push('Nowhere,95,10,X,Europe,1', 'Halfway,12', rows[1], '"=HYPERLINK(""x"")",10,20,Y,Africa,5');
  await page.setInputFiles('#names-file', file('my places.csv', rows.join('\n') + '\n'));
  await page.waitForFunction(() => document.getElementById('dataset').value === 'imported');
  const problems = await page.$$eval('#csv-problems li', (li) => li.map((x) => x.textContent));
  assert.equal(problems.length, 3, JSON.stringify(problems));
  assert.match(problems[0], /^line 122: .*latitude/);
  assert.match(problems[1], /^line 123: /);
  assert.match(problems[2], /^line 124: .*duplicate/);
  assert.equal((await page.inputValue('#names')).split('\n').length, 121);
  // Its columns offer block hold-out by continent.
  const splits = await page.$$eval('#split option', (o) => o.map((x) => x.value));
  assert.ok(splits.includes('group:continent'), JSON.stringify(splits));
  await page.uncheck('#random-init');
  await page.click('#extract');
  await waitForReport(page);
  const rep = await page.evaluate(() => window.probelab.report);
  assert.equal(rep.dataset.n, 121);
  assert.equal(rep.dataset.target, 'space');
  assert.ok(rep.entities.some((e) => e.name === '=HYPERLINK("x")'), 'the formula-like name was kept as text');
  assert.deepEqual(pageErrors, []);
  await page.close();
});

test('dropping a CSV of years imports it; names-only and unusable files are handled', async () => {
  const { page } = await openLab(browser, server.url, '?nosw');
  // Drag and drop onto the entities panel.
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['name,year\nTrajan,98\nCharlemagne,AD 800\nCleopatra,69 BC\nAda Lovelace,1815-12-10\n'], 'years.csv', { type: 'text/csv' }));
    document.getElementById('data-panel').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  await page.waitForFunction(() => document.getElementById('dataset').value === 'imported');
  assert.match(await page.textContent('#dataset-note'), /years\.csv: 4 entities with years/);
  assert.equal(await page.isHidden('#csv-problems-box'), true);

  await page.setInputFiles('#names-file', file('names.csv', 'name,country\nParis,France\nLima,Peru\n'));
  await page.waitForFunction(() => /no targets/.test(document.getElementById('dataset-note').textContent));
  assert.equal(await page.inputValue('#dataset'), 'custom');
  assert.equal(await page.inputValue('#names'), 'Paris\nLima');

  await page.setInputFiles('#names-file', { name: 'model.csv', mimeType: 'text/csv', buffer: Buffer.from([0xff, 0xfe, 0x6e, 0x00, 0x61, 0x00, 0x0a, 0x00]) });
  assert.match(await pageError(page, 30_000), /model\.csv: .*UTF-16/);
  await page.close();
});
