// Extraction in headless Chromium (the page's CPU path) on a list of names; prints one JSON line.
// Usage: node browser_extract.mjs NAMES.txt [batchSize] [workers]
import { readFileSync } from 'node:fs';
import { launch, openLab, startServer } from '../e2e/harness.mjs';

const names = readFileSync(process.argv[2], 'utf8').split('\n').filter((l) => l.trim());
const batchSize = Number(process.argv[3] || 32);
const workers = process.argv[4] ? `?workers=${process.argv[4]}` : '';
const server = await startServer();
const browser = await launch();
try {
  const { page } = await openLab(browser, server.url, workers);
  await page.fill('#names', names.join('\n'));
  await page.fill('#batch-size', String(batchSize));
  await page.click('#extract');
  await page.waitForFunction(() => window.probelab.lastRun, null, { timeout: 3_600_000, polling: 1000 });
  const r = await page.evaluate(() => ({ tokens: window.probelab.lastRun.tokens, seconds: window.probelab.lastRun.seconds }));
  console.log(JSON.stringify({ engine: `browser wasm (batch ${batchSize}, ${await page.evaluate(() => document.getElementById('engine').textContent.match(/\d+ workers?/)[0])})`, tokens: r.tokens, entities: names.length,
    seconds: r.seconds, tokens_per_s: r.tokens / r.seconds, entities_per_s: names.length / r.seconds }));
} finally {
  await browser.close();
  server.stop();
}
