// Activations made elsewhere, fitted in the page without running the model: an HF
// hidden_states file (tests/fixtures/hf_hidden_states_smollm2.safetensors, 20 names of
// world-places-200) beside a CSV of those 20 rows gives the report `probelab fit` gives on the
// same files, with where the activations came from; the same data as an .npy gives the same
// report; names that differ at a row, a shape that does not match the names, a NaN and a
// format the core does not read are each shown as the core's message.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  ROOT, launch, nativeBinary, openLab, pageError, readSafetensors, startServer, waitForProgress, waitForReport,
} from './harness.mjs';

const HF = path.join(ROOT, 'tests/fixtures/hf_hidden_states_smollm2.safetensors');
const QUERY = '?permutations=10&split_seeds=0&nosw';

let server, browser;
before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); server?.stop(); });

const dir = mkdtempSync(path.join(os.tmpdir(), 'probelab-acts-import-'));
// The CSV of the fixture's 20 names: the first 20 rows of world-places-200.
const csvLines = readFileSync(path.join(ROOT, 'datasets/world_places_200.csv'), 'utf8').trim().split('\n').slice(0, 21);
const csvFile = (lines, name = 'places20.csv') => ({ name, mimeType: 'text/csv', buffer: Buffer.from(lines.join('\n') + '\n', 'utf8') });
const binFile = (name, buffer) => ({ name, mimeType: 'application/octet-stream', buffer });

/** An .npy file (version 1, little-endian f32, C order) as NumPy writes it. */
function npy(shape, data) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')},), }`;
  while ((10 + header.length + 1) % 64 !== 0) header += ' ';
  header += '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1'); head[6] = 1; head[7] = 0; head.writeUInt16LE(header.length, 8);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

/** Imports the CSV, picks the activations file(s) and fits; resolves with the page's report. */
async function fitInPage(page, csv, acts, random) {
  // A result folds Setup away (results first): open it again, as a user would.
  await page.evaluate(() => { document.getElementById('setup').open = true; });
  await page.setInputFiles('#names-file', csv);
  await page.waitForFunction(() => document.getElementById('dataset').value === 'imported');
  await page.setInputFiles('#acts-file', acts);
  if (random) await page.setInputFiles('#acts-random-file', random);
  await page.evaluate(() => { window.probelab.report = null; });
  await page.click('#acts-fit');
  await waitForReport(page);
  return page.evaluate(() => window.probelab.report);
}

/** Every layer's held-out R² and penalty, and the layer chosen, equal within 1e-6. */
function assertSameFit(got, want, what) {
  assert.equal(got.layers.length, want.layers.length, what);
  const worst = Math.max(...want.layers.map((l, i) => Math.abs(got.layers[i].r2_test - l.r2_test)));
  console.log(`    ${what}: ${want.layers.length} layers, largest test R² difference ${worst.toExponential(2)}, selected layer ${got.selected.layer} (test R² ${got.selected.r2_test?.toFixed(4) ?? got.layers[got.selected.layer].r2_test.toFixed(4)})`);
  for (const [i, l] of want.layers.entries()) {
    assert.ok(Math.abs(got.layers[i].r2_test - l.r2_test) <= 1e-6, `${what}: layer ${i} test R² ${got.layers[i].r2_test} vs ${l.r2_test}`);
    assert.ok(Math.abs(got.layers[i].alpha - l.alpha) <= 1e-6 * Math.max(1, l.alpha), `${what}: layer ${i} alpha`);
  }
  assert.equal(got.selected.layer, want.selected.layer, `${what}: the selected layer`);
}

test('an HF hidden_states file beside a CSV: the page fits what probelab fit fits, and says where it came from', async () => {
  const csvPath = path.join(dir, 'places20.csv');
  writeFileSync(csvPath, csvLines.join('\n') + '\n');
  const out = path.join(dir, 'cli');
  execFileSync(nativeBinary(), ['fit', HF, '--dataset', csvPath, '--permutations', '10', '--split-seeds', '0',
    '--ledger', path.join(dir, 'ledger.json'), '--out', out], { stdio: 'ignore' });
  const cli = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));

  const { page, pageErrors } = await openLab(browser, server.url, QUERY);
  const rep = await fitInPage(page, csvFile(csvLines), binFile('hf_hidden_states_smollm2.safetensors', readFileSync(HF)));
  assert.equal(rep.dataset.n, 20);
  assert.equal(rep.layers.length, 31);
  assertSameFit(rep, cli, 'the page against probelab fit');
  // The provenance, recorded as the command line records it and shown beside the results.
  const source = rep.notes['activations.source'];
  assert.match(source, /tool: transformers .*model: SmolLM2-135M-Instruct\.Q4_1\.gguf .*prompt: \{name\}; pool: last; read from hf_hidden_states_smollm2\.safetensors/);
  assert.equal(source.replace(/read from \S+/, ''), cli.notes['activations.source'].replace(/read from \S+/, ''));
  assert.match(rep.notes['activations.random_init'], /^missing/);
  const shown = await page.textContent('#acts-provenance');
  assert.match(shown, /Activations: tool: transformers/);
  assert.match(shown, /Random-init control: missing/);
  assert.equal(await page.isHidden('#acts-provenance'), false);
  assert.equal(rep.model.name, cli.model.name);
  assert.equal(await page.evaluate(() => window.probelab.workers.entitiesComputed), 0, 'the model did not run');

  // Another split re-fits the file, as probelab fit --split does.
  execFileSync(nativeBinary(), ['fit', HF, '--dataset', csvPath, '--permutations', '10', '--split-seeds', '0',
    '--split', 'group:continent', '--ledger', path.join(dir, 'ledger.json'), '--out', `${out}-continent`], { stdio: 'ignore' });
  const cliContinent = JSON.parse(readFileSync(path.join(`${out}-continent`, 'report.json'), 'utf8'));
  await page.evaluate(() => { window.probelab.report = null; });
  await page.selectOption('#split', 'group:continent');
  await waitForReport(page);
  const continent = await page.evaluate(() => window.probelab.report);
  assert.deepEqual(continent.split, cliContinent.split);
  assertSameFit(continent, cliContinent, 'leave each continent out, the page against probelab fit');
  await page.selectOption('#split', 'random');
  await waitForProgress(page, () => window.probelab.report?.split.kind === 'random');

  // The same data as an .npy (names from the CSV): the same report, the tool not stated.
  const hs = readSafetensors(HF, 'hidden_states');
  const asNpy = await fitInPage(page, csvFile(csvLines), binFile('hidden.npy', npy(hs.shape, hs.data)));
  assertSameFit(asNpy, rep, 'the .npy against the safetensors');
  assert.match(asNpy.notes['activations.source'], /tool: not stated.*read from hidden\.npy \(npy 'array' \[layers\+1, entities, d\]\)/);

  // With the second file as the random-init control (here the same activations): no longer missing.
  const withControl = await fitInPage(page, csvFile(csvLines), binFile('hidden.npy', npy(hs.shape, hs.data)),
    binFile('random.npy', npy(hs.shape, hs.data)));
  assert.equal(withControl.notes['activations.random_init'], 'from random.npy');
  assertSameFit(withControl, rep, 'with the control');
  assert.deepEqual(pageErrors, []);
});

test('names that differ, a shape that does not match, a NaN and an unknown format: the core\'s messages', async () => {
  const { page, pageErrors } = await openLab(browser, server.url, QUERY);
  const hf = binFile('hf_hidden_states_smollm2.safetensors', readFileSync(HF));
  const tryFit = async (csv, acts) => {
    await page.setInputFiles('#names-file', csv);
    await page.waitForFunction(() => document.getElementById('dataset').value === 'imported');
    await page.evaluate(() => { document.getElementById('error').hidden = true; });
    await page.setInputFiles('#acts-file', acts);
    await page.click('#acts-fit');
    const text = await pageError(page, 60_000);
    console.log(`    shown: ${text}`);
    return text;
  };
  // Row 5 of the CSV (Sydney) spelt otherwise.
  const renamed = csvLines.map((l, i) => (i === 5 ? l.replace(/^Sydney,/, 'Sidney,') : l));
  assert.notEqual(renamed[5], csvLines[5]);
  let e = await tryFit(csvFile(renamed, 'renamed.csv'), hf);
  assert.match(e, /the names differ at row 5: 'Sydney' in the file, 'Sidney' in dataset/);
  // 19 names for 20 entities.
  const hs = readSafetensors(HF, 'hidden_states');
  e = await tryFit(csvFile(csvLines.slice(0, 20), 'places19.csv'), binFile('hidden.npy', npy(hs.shape, hs.data)));
  assert.match(e, /hidden\.npy: .*shape \[31, 20, 576\].*19 names/);
  // A NaN, named by layer and entity (the fixture's five names, with coordinates).
  const five = ['name,latitude,longitude', 'Paris,48.9,2.4', 'Lima,-12.0,-77.0', 'Cairo,30.0,31.2', 'Oslo,59.9,10.8', 'Hanoi,21.0,105.8'];
  e = await tryFit(csvFile(five, 'five.csv'), binFile('nan.npz', readFileSync(path.join(ROOT, 'tests/fixtures/import/nan_at_l2_e3.npz'))));
  assert.match(e, /NaN at layer 2, entity 4 \('Oslo'\)/);
  // A format the core does not read: the message lists the ones it does.
  e = await tryFit(csvFile(csvLines), binFile('hidden.pt', Buffer.from('not activations')));
  assert.match(e, /'\.pt' is not a format Probelab reads; it reads .*safetensors.*NumPy \.npy, NumPy \.npz/);
  // Nothing lost: the page is still there, and no report was made of any of them.
  assert.equal(await page.evaluate(() => window.probelab.report), null);
  assert.equal(await page.isVisible('#acts-fit'), true);
  assert.deepEqual(pageErrors, []);
});

test('a file larger than the page reads is refused with the numbers, before it is read', async () => {
  const { page } = await openLab(browser, server.url, QUERY);
  await page.setInputFiles('#names-file', csvFile(csvLines));
  await page.waitForFunction(() => document.getElementById('dataset').value === 'imported');
  // A File whose size is over the limit, without writing a gigabyte: a sparse Blob of zeros.
  await page.evaluate(() => {
    const big = new File([new Uint8Array(8)], 'huge.safetensors');
    Object.defineProperty(big, 'size', { value: 3 * 2 ** 30 });
    const input = document.getElementById('acts-file');
    Object.defineProperty(input, 'files', { value: [big], configurable: true });
    input.dispatchEvent(new Event('change'));
  });
  await page.click('#acts-fit');
  assert.match(await pageError(page, 30_000), /huge\.safetensors is 3\.00 GiB; .* up to 1\.00 GiB .*probelab fit/);
});
