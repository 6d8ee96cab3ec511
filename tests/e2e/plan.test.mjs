// Choices priced in, in the page: a prompt sweep (the template chosen with the layer), the
// analysis plan locked before the test set is scored, and the ledger of plans scored on a test
// set, kept in the browser's store across a reload. The plan's hash is the command line's.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { MODEL, ROOT, followStatus, launch, nativeBinary, pageError, startServer, waitForProgress, waitForReport } from './harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); server?.stop(); });

const dir = mkdtempSync(path.join(tmpdir(), 'probelab-plan-'));
// 80 places: enough for a random split with validation folds, quick to extract twice.
const CSV = path.join(dir, 'places-80.csv');
writeFileSync(CSV, readFileSync(path.join(ROOT, 'datasets/world_places_200.csv'), 'utf8').split('\n').slice(0, 81).join('\n') + '\n');
const QUERY = '?permutations=10&split_seeds=2&nosw';

const waitLoaded = (page) => waitForProgress(page, () => window.probelab && window.probelab.info, { what: 'the model to load' });
const fitted = (page, previous) => waitForProgress(page, (prev) => window.probelab.report && window.probelab.report.plan
  && JSON.stringify(window.probelab.report.plan) !== prev, { arg: previous, what: 'a new fit' });
// A result on the page folds Setup away: open it to change the inputs, as a reader would.
const setTemplates = async (page, text) => {
  await page.evaluate(() => { document.getElementById('setup').open = true; });
  await page.fill('#template', text);
  await page.dispatchEvent('#template', 'change');
};
const planOf = (page) => page.evaluate(() => JSON.stringify(window.probelab.report.plan));

async function setUp(page) {
  await waitLoaded(page);
  await page.setInputFiles('#names-file', CSV);
  await page.waitForFunction(() => document.getElementById('dataset').value === 'imported');
  await page.evaluate(() => { document.getElementById('setup').open = true; });
  await page.setChecked('#random-init', false);
}

test('prompt sweep, locked plan and the ledger across a reload; bad prompt sets are clear errors', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await followStatus(page, 'plan');
  await page.goto(server.url + QUERY);
  await setUp(page);

  // Bad prompt sets stop before the model runs, each with an error that names the problem.
  for (const [templates, why] of [['Where is it', /\{name\}/], ['{name}\n{name}', /given twice/], ['  \n', /empty/]]) {
    await page.fill('#template', templates);
    await page.click('#extract');
    assert.match(await pageError(page, 10_000), why, `templates ${JSON.stringify(templates)}`);
    await page.evaluate(() => { document.getElementById('error').hidden = true; });
  }
  assert.equal(await page.evaluate(() => window.probelab.workers.entitiesComputed), 0);

  // Two templates, the plan locked first: the sweep chooses one, and the run is confirmatory.
  await setTemplates(page, '{name}\nWhere is {name}');
  await page.click('#plan-lock');
  await page.waitForFunction(() => document.getElementById('plan-status').dataset.locked);
  const locked = await page.getAttribute('#plan-status', 'data-locked');
  assert.match(await page.textContent('#plan-status'), /The settings follow it/);
  await page.click('#extract');
  await fitted(page, null);
  const first = await page.evaluate(() => window.probelab.report);
  assert.equal(first.prompts.length, 2, 'a report entry per template');
  assert.ok(['{name}', 'Where is {name}'].includes(first.prompt));
  assert.ok(first.prompt_spread, 'the spread across prompts');
  assert.equal(first.plan.hash, locked, 'the report carries the locked plan');
  assert.equal(first.plan.status, 'confirmatory');
  assert.equal(first.plan.plans_tried, 1);
  assert.deepEqual(first.plan.plan.prompts, ['{name}', 'Where is {name}']);
  assert.equal(await page.getAttribute('#plan-badge', 'data-status'), 'confirmatory');
  assert.match(await page.textContent('#plan-badge'), /^Confirmatory/);
  assert.match(await page.textContent('#summary'), /^Confirmatory: the first plan/);
  assert.match(await page.textContent('#verdict-seeds'), /seed/);
  assert.equal(first.seed_spread.seeds.length, 2);
  // Each template was extracted once: 2 × 80 entities.
  assert.equal(await page.evaluate(() => window.probelab.workers.entitiesComputed), 160);

  // The command line hashes the same settings to the same plan.
  const out = path.join(dir, 'cli');
  execFileSync(nativeBinary(), ['run', '--model', MODEL, '--dataset', CSV, '--out', out, '--prompt', '{name}',
    '--prompt', 'Where is {name}', '--permutations', '10', '--no-random-init', '--split-seeds', '0',
    '--ledger', path.join(dir, 'ledger.json'), '--engine', 'cpu'], { stdio: 'ignore' });
  const cli = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
  assert.equal(cli.plan.hash, first.plan.hash, 'the page and the command line hash the same plan alike');

  // Another plan while one is locked: refused before any fit, naming what differs.
  await setTemplates(page, '{name}');
  await page.waitForFunction(() => /differ from it in: prompts/.test(document.getElementById('plan-status').textContent));
  await page.click('#extract');
  assert.match(await pageError(page), /differs from the plan locked for this dataset .* in: prompts/);
  assert.equal(await page.evaluate(() => window.probelab.report.plan.hash), locked, 'the refused fit replaced nothing');

  // Unlocked, the same change is scored: from the stored activations, and exploratory.
  await page.click('#plan-unlock');
  await page.waitForFunction(() => !document.getElementById('plan-status').dataset.locked);
  await page.click('#extract');
  await fitted(page, await planOf(page));
  const second = await page.evaluate(() => window.probelab.report);
  assert.equal(second.plan.status, 'exploratory');
  assert.equal(second.plan.plans_tried, 2);
  assert.equal(second.prompts, undefined, 'one template: the plain report');
  assert.equal(await page.getAttribute('#plan-badge', 'data-status'), 'exploratory');
  assert.match(await page.textContent('#plan-badge'), /^Exploratory.*2 plans scored on this test set/);
  assert.match(await page.textContent('#summary'), /^Exploratory: 2 plans/);
  assert.equal(await page.evaluate(() => window.probelab.workers.entitiesComputed), 160, 'the model ran again');

  // A reload: the ledger is still there, so a third plan is counted as the third.
  await page.reload();
  await setUp(page);
  await page.waitForFunction(() => /2 plans scored on this test set/.test(document.getElementById('plan-status').textContent));
  await setTemplates(page, 'Where is {name}');
  await page.click('#extract');
  await fitted(page, JSON.stringify(second.plan));
  const third = await page.evaluate(() => window.probelab.report);
  assert.equal(third.plan.status, 'exploratory');
  assert.equal(third.plan.plans_tried, 3);
  assert.equal(await page.evaluate(() => window.probelab.workers.entitiesComputed), 0, 'all from the store');
  // The first plan again is still the confirmatory one, and adds no plan.
  await setTemplates(page, '{name}\nWhere is {name}');
  await page.waitForFunction((hash) => window.probelab.report.plan.hash === hash, locked);
  assert.equal(await page.getAttribute('#plan-badge', 'data-status'), 'confirmatory');
  assert.match(await page.textContent('#plan-status'), /3 plans scored on this test set/);
  assert.deepEqual(errors, []);
  await context.close();
});
