// The browser path of extraction: same vectors as the native binary, and clear errors for bad
// input — in real headless Chromium, through the page's own controls.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  MODEL, extractInPage, launch, nativeBinary, openLab, pageError, readSafetensors, startServer,
  worstRelDiff,
} from './harness.mjs';

const NAMES = ['Paris', 'São Paulo', '東京', 'Kraków', "Côte d'Ivoire", 'Reykjavík', 'New York City',
  'Ulaanbaatar', 'Lagos', 'Buenos Aires', 'Москва', 'Wellington'];
const tmp = mkdtempSync(path.join(tmpdir(), 'probelab-e2e-'));
let server, browser;

before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); server?.stop(); });

for (const [template, pool] of [['{name}', 'last'], ['The city of {name} is in', 'mean']]) {
  test(`browser extraction equals the native binary (${template}, ${pool})`, async () => {
    const csv = path.join(tmp, 'names.csv');
    writeFileSync(csv, 'name\n' + NAMES.map((n) => `"${n}"`).join('\n') + '\n');
    const out = path.join(tmp, `native-${pool}.safetensors`);
    execFileSync(nativeBinary(), ['extract', '--model', MODEL, '--dataset', csv, '--prompt', template,
      '--pool', pool, '--out', out], { stdio: ['ignore', 'ignore', 'inherit'] });
    const native = readSafetensors(out);

    const { page, pageErrors } = await openLab(browser, server.url);
    const web = await extractInPage(page, NAMES, { template, pooling: pool });
    assert.deepEqual([web.nLayers + 1, web.nEntities, web.dModel], native.shape);
    // Per layer and entity, so one bad vector cannot hide in a global average.
    const worst = worstRelDiff(web.data, native.data, web.dModel);
    console.log(`  worst per-vector relative difference browser vs native: ${worst.toExponential(2)}`);
    assert.ok(worst <= 1e-4, `browser and native differ by ${worst}`);
    assert.match(await page.textContent('#engine'), /CPU/);
    assert.deepEqual(pageErrors, []);
    await page.close();
  });
}

test('bad models and bad names give clear messages in the page, and the page keeps working', async () => {
  const { page } = await openLab(browser, server.url);
  const model = readFileSync(MODEL);

  const files = {
    'not-a-model.gguf': [Buffer.from('<!DOCTYPE html><html>404</html>'), /not a GGUF file/],
    'truncated.gguf': [model.subarray(0, 5_000_000), /truncated/],
    'mamba.gguf': [patchArchitecture(model, 'mamba'), /unsupported model architecture 'mamba'/],
    'iq4nl.gguf': [patchFirstWeightType(model, 20), /unsupported quantization type.*IQ4_NL/],
  };
  for (const [name, [bytes, want]] of Object.entries(files)) {
    const p = path.join(tmp, name);
    writeFileSync(p, bytes);
    await page.evaluate(() => { document.getElementById('error').hidden = true; });
    await page.setInputFiles('#model-file', p);
    const msg = await pageError(page);
    assert.match(msg, want, `${name}: ${msg}`);
    // The model loaded before is still there.
    assert.match(await page.textContent('#model-status'), /Still using/);
  }

  for (const [names, want] of [
    [['Paris', '   ', 'Lima'], /entity 2 has an empty name/],
    [['Paris', 'Lima '.repeat(9000)], /entity 2 .*context is 8192 tokens/],
  ]) {
    await page.evaluate(() => { document.getElementById('error').hidden = true; });
    await page.fill('#names', names.join('\n'));
    await page.click('#extract');
    assert.match(await pageError(page), want);
  }
  // After all that, an extraction still works.
  const ok = await extractInPage(page, ['Paris', 'Lima']);
  assert.equal(ok.nEntities, 2);
  await page.close();
});

test('a model too large for the browser is refused up front, with the numbers', async () => {
  // A sparse 5 GB file: the server would stream it, but the page must refuse it from its size.
  const huge = path.join(path.dirname(MODEL), `huge-test-${process.pid}.gguf`);
  const fd = openSync(huge, 'w');
  ftruncateSync(fd, 5_000_000_000);
  closeSync(fd);
  try {
    const { page } = await openLab(browser, server.url);
    await page.fill('#model-url', `models/${path.basename(huge)}`);
    await page.click('#model-load-url');
    const msg = await pageError(page, 30_000);
    assert.match(msg, /the model is 4\.7 GiB; the browser engine holds models up to 2\.0 GiB/);
    assert.match(await page.textContent('#model-status'), /Still using/);
    await page.close();
  } finally {
    unlinkSync(huge);
  }
});

/** The same GGUF with general.architecture changed to another name of the same length. */
function patchArchitecture(bytes, arch) {
  const out = Buffer.from(bytes.subarray(0, 6_000_000));
  const key = Buffer.from('general.architecture');
  const at = out.indexOf(key) + key.length + 4 + 8; // type (u32), string length (u64)
  assert.equal(out.subarray(at, at + 5).toString(), 'llama');
  out.write(arch, at);
  return Buffer.concat([out, bytes.subarray(6_000_000)]);
}

/** The same GGUF with blk.0.attn_q.weight's ggml type set to `type`. */
function patchFirstWeightType(bytes, type) {
  const out = Buffer.from(bytes.subarray(0, 6_000_000));
  const name = Buffer.from('blk.0.attn_q.weight');
  const at = out.indexOf(name) + name.length + 4 + 16; // n_dims (u32), two dims (u64)
  out.writeUInt32LE(type, at);
  return Buffer.concat([out, bytes.subarray(6_000_000)]);
}
