// Fitting all layers with all controls in headless Chromium, on activations of the built-in
// space set's shape (random numbers: fitting time does not depend on their values).
// Usage: node browser_fit.mjs [dataset] [permutations]   Prints one JSON line.
import { launch, startServer } from '../e2e/harness.mjs';

const dataset = process.argv[2] || 'world-places';
const permutations = Number(process.argv[3] || 100);
const server = await startServer();
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(server.url + '?model=none');
  const r = await page.evaluate(async ({ dataset, permutations }) => {
    const m = await import('./pkg/probelab.js');
    await m.default();
    const n = JSON.parse(m.builtin_datasets()).find((d) => d.name === dataset).n;
    const nLayers = 30, d = 576;
    const data = new Float32Array((nLayers + 1) * n * d);
    let s = 12345;
    for (let i = 0; i < data.length; i++) { s = (s * 1103515245 + 12345) >>> 0; data[i] = s / 2 ** 32 - 0.5; }
    const t = performance.now();
    const json = m.fit_probes(data, nLayers, d, undefined, new Uint32Array(0), dataset, undefined,
      'random', permutations, 0n, 'random numbers', '0'.repeat(64), '{name}');
    const seconds = (performance.now() - t) / 1000;
    return { seconds, n, layers: JSON.parse(json).layers.length };
  }, { dataset, permutations });
  console.log(JSON.stringify({ engine: 'browser wasm', dataset, entities: r.n, layers: r.layers, dims: 576, permutations, random_init: false, seconds: r.seconds }));
} finally {
  await browser.close();
  server.stop();
}
