// Peak memory of headless Chromium (an on-disk profile, as a user's browser has) while the page
// extracts N names with activations streamed to the browser's store (?hold_max_mb=0: the page
// keeps none of them), sampled from /proc
// (resident set of the browser and all its child processes: renderer, workers, GPU, storage).
// Usage: node browser_memory.mjs [--hold] N [N2 …]   (names from datasets/world_places.csv,
// numbered beyond its 6,000 rows; --hold lets the page keep them too, as it does for a fit).
// Prints one JSON line per N.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT, launchProfile, startServer } from '../e2e/harness.mjs';

const hold = process.argv.includes('--hold');
const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
if (!sizes.length) { console.error('usage: node browser_memory.mjs N [N2 …]'); process.exit(2); }
const places = readFileSync(path.join(ROOT, 'datasets/world_places.csv'), 'utf8').trim().split('\n').slice(1)
  .map((line) => line.split(',')[0].replace(/^"|"$/g, ''));
const namesFor = (n) => Array.from({ length: n }, (_, i) => {
  const round = Math.floor(i / places.length);
  return round ? `${places[i % places.length]} ${round}` : places[i % places.length];
});

/** Resident bytes of a process tree (Linux /proc). */
function treeRss(pid) {
  const children = (p) => {
    try {
      return readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch { return []; }
  };
  let total = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop();
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch { /* exited */ }
    stack.push(...children(p));
  }
  return total;
}

const server = await startServer();
try {
  for (const n of sizes) {
    const profile = mkdtempSync(path.join(tmpdir(), 'probelab-profile-'));
    const browser = await launchProfile(profile);
    // Playwright's launch gives no pid; Chromium is the newest process named chromium whose
    // parent is this node process.
    const pid = Number(readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim().split(/\s+/)
      .filter((p) => { try { return /chrom/.test(readFileSync(`/proc/${p}/comm`, 'utf8')); } catch { return false; } }).pop());
    const page = browser.pages()[0] || await browser.newPage();
    await page.goto(`${server.url}?dataset=custom&nosw${hold ? '' : '&hold_max_mb=0'}`);
    await page.waitForFunction(() => window.probelab && window.probelab.info, null, { timeout: 120_000 });
    const idle = treeRss(pid);
    await page.evaluate((text) => {
      const box = document.getElementById('names');
      box.value = text;
      box.dispatchEvent(new Event('input'));
    }, namesFor(n).join('\n'));
    let peak = 0;
    const sampler = setInterval(() => { peak = Math.max(peak, treeRss(pid)); }, 250);
    const t = Date.now();
    await page.click('#extract');
    await page.waitForFunction(() => window.probelab.lastRun, null, { timeout: 24 * 3600_000, polling: 1000 });
    clearInterval(sampler);
    const r = await page.evaluate(() => ({ held: window.probelab.lastRun.data !== null, tokens: window.probelab.lastRun.tokens, stored: window.probelab.lastRun.stored }));
    console.log(JSON.stringify({
      names: n, tokens: r.tokens, seconds: (Date.now() - t) / 1000, activations_mb: Math.round((31 * n * 576 * 4) / 1e6),
      held_in_page: r.held, stored: r.stored, idle_rss_mb: Math.round(idle / 1e6), peak_rss_mb: Math.round(peak / 1e6),
    }));
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
} finally {
  server.stop();
}
