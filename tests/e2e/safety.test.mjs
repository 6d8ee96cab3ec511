// No code from data, and no network traffic beyond the page's own files and the chosen model:
// entity names that look like HTML stay text, under a Content-Security-Policy without
// 'unsafe-inline' or 'unsafe-eval'.
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { extractInPage, launch, openLab, startServer } from './harness.mjs';

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
  await page.waitForFunction(() => window.probelab && window.probelab.info, null, { timeout: 120_000 });

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
