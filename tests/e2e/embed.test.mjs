// The embed view in a sandboxed iframe, as a blog post would include it: it runs on its own and
// shows the summary, the chart and the map, with the inputs hidden.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, startServer, waitForProgress } from './harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); server?.stop(); });

test('embed view inside <iframe sandbox="allow-scripts allow-same-origin">', async () => {
  const page = await browser.newPage();
  const src = `${server.url}?embed=1&dataset=world-places-200&permutations=10`;
  await page.setContent(`<!doctype html><title>A blog post</title><p>Here is the lab:</p>
    <iframe id="lab" src="${src}" sandbox="allow-scripts allow-same-origin" width="900" height="1200"></iframe>`);
  const frame = await (await page.waitForSelector('#lab')).contentFrame();
  await waitForProgress(page, () => window.probelab && window.probelab.report, { frame });
  assert.match(await frame.textContent('#summary'), /Layer \d+ .* R²/);
  assert.equal(await frame.isVisible('#model-panel'), false);
  assert.equal(await frame.isVisible('#map-canvas'), true);
  const drawn = await frame.evaluate(() => {
    const c = document.getElementById('map-canvas');
    return c.width > 0 && c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data[3] > 0;
  });
  assert.ok(drawn, 'the map was not drawn');
  await page.close();
});
