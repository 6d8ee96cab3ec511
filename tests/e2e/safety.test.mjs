// No code from data, and no network traffic beyond the page's own files and the chosen model:
// entity names that look like HTML stay text, under a Content-Security-Policy without
// 'unsafe-inline' or 'unsafe-eval'.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  ROOT, extractInPage, launch, mapMarkerAt, startServer, waitForProgress, waitForReport,
} from './harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); server?.stop(); });

const PAYLOADS = ['<img src=x onerror=alert(1)>', '"><script>alert(2)</script>', "javascript:alert(3)", '=HYPERLINK("http://evil.example")'];

test('the CSP forbids inline script and eval', async () => {
  const res = await fetch(server.url);
  const csp = res.headers.get('content-security-policy');
  assert.ok(csp, 'no Content-Security-Policy header');
  assert.doesNotMatch(csp, /'unsafe-inline'|'unsafe-eval'/);
  assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'/);
});

test('HTML-like names are shown as text and nothing runs; every request stays on the page\'s origin', async () => {
  const page = await browser.newPage();
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  const dialogs = [];
  page.on('dialog', async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  const origin = new URL(server.url).origin;
  await page.goto(server.url);
  await waitForProgress(page, () => window.probelab && window.probelab.info);

  // Through the names box, and through a CSV file.
  const r = await extractInPage(page, ['Paris', ...PAYLOADS]);
  assert.equal(r.nEntities, 1 + PAYLOADS.length);
  const dir = mkdtempSync(path.join(tmpdir(), 'probelab-xss-'));
  const csv = path.join(dir, 'evil.csv');
  writeFileSync(csv, 'name\n' + PAYLOADS.map((p) => `"${p.replaceAll('"', '""')}"`).join('\n') + '\n');
  await page.setInputFiles('#names-file', csv);
  await page.waitForFunction((n) => document.getElementById('names').value.split('\n').length === n, PAYLOADS.length);
  assert.equal(await page.inputValue('#names'), PAYLOADS.join('\n'));
  // An error message quoting a name is text too.
  await page.fill('#names', `${PAYLOADS[0]}\n\n${PAYLOADS[1]}`);
  await page.click('#extract');
  await page.waitForSelector('#error:not([hidden])');

  assert.deepEqual(dialogs, [], 'a name ran as code');
  assert.equal(await page.locator('img[src="x"]').count(), 0, 'a name became an <img>');
  assert.equal(await page.locator('script:not([src])').count(), 0, 'an inline script appeared');
  const foreign = requests.filter((u) => !u.startsWith(origin) && !u.startsWith('blob:') && !u.startsWith('data:'));
  assert.deepEqual(foreign, [], 'requests beyond the page and the model');
  assert.ok(requests.some((u) => u.endsWith('.gguf')), 'the model request was not seen');
  await page.close();
});

test('HTML-like names and groups stay text in the map tooltip, the table and the exports', async () => {
  const page = await browser.newPage();
  const dialogs = [];
  page.on('dialog', async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  await page.goto(server.url + '?permutations=5&nosw');
  await waitForProgress(page, () => window.probelab && window.probelab.info);
  // 60 real places; four renamed to the payloads, and one continent named like markup.
  const quote = (v) => `"${v.replaceAll('"', '""')}"`;
  const lines = readFileSync(path.join(ROOT, 'datasets/world_places.csv'), 'utf8').trim().split('\n').filter((l) => !l.includes('"'));
  const rows = lines.slice(1).filter((_, i) => i % 97 === 0).slice(0, 60).map((line, i) => {
    const [name, lat, lon, country, continent] = line.split(',');
    const evilGroup = continent === 'Europe' ? PAYLOADS[1] : continent;
    return [i < PAYLOADS.length ? PAYLOADS[i] : name, lat, lon, country, evilGroup].map(quote).join(',');
  });
  const dir = mkdtempSync(path.join(tmpdir(), 'probelab-xss-'));
  const csv = path.join(dir, 'evil places.csv');
  writeFileSync(csv, 'name,latitude,longitude,country,continent\n' + rows.join('\n') + '\n');
  await page.setInputFiles('#names-file', csv);
  await page.waitForFunction(() => document.getElementById('dataset').value === 'imported');
  await page.uncheck('#random-init');
  await page.click('#extract');
  await waitForReport(page);

  // The table shows the markup-like group as text.
  const groups = await page.$$eval('#by-group tbody tr > :first-child', (tds) => tds.map((td) => td.textContent));
  assert.ok(groups.includes(PAYLOADS[1]), JSON.stringify(groups));
  // Every payload is hovered on the map (train and test shown): the tooltip's first line is
  // the raw name.
  await page.selectOption('#map-split', 'all');
  await page.waitForFunction(() => window.probelab.map.scene.points.length === window.probelab.report.dataset.n);
  await page.locator('#map-canvas').scrollIntoViewIfNeeded();
  for (const payload of PAYLOADS) {
    const at = await mapMarkerAt(page, payload);
    await page.mouse.move(2, 2);
    await page.mouse.move(at[0], at[1]);
    await page.waitForSelector('#map-tip:not([hidden])');
    const first = await page.evaluate(() => document.getElementById('map-tip').firstElementChild.textContent);
    assert.equal(first, payload);
  }
  // The predictions CSV carries the names as quoted text (no formula is turned on).
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  const exported = readFileSync(await dl.path(), 'utf8');
  for (const payload of PAYLOADS) assert.ok(exported.includes(payload.includes('"') || payload.includes(',') ? quote(payload) : payload), `${payload} not in the CSV`);

  assert.deepEqual(dialogs, [], 'a name ran as code');
  assert.equal(await page.locator('img[src="x"]').count(), 0, 'a name became an <img>');
  assert.equal(await page.locator('script:not([src])').count(), 0, 'an inline script appeared');
  await page.close();
});
