// The service worker: after one visit the lab opens and runs with the network off.
// - The page's own files: network first (a rebuilt site is picked up at once), the copy kept on
//   the first visit when the network is gone.
// - Models (*.gguf): from Cache Storage when there (the page puts each downloaded model there),
//   else from the network.
const APP_CACHE = 'probelab-app-v1';
const MODEL_CACHE = 'probelab-models';
const APP_FILES = [
  './', 'index.html', 'style.css', 'favicon.svg', 'config.js', 'app.js', 'workers.js', 'worker.js',
  'activations.js', 'imported.js', 'import_worker.js', 'store.js', 'results.js', 'scene.js', 'source.js', 'pkg/probelab.js', 'pkg/probelab_bg.wasm',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(APP_CACHE).then((c) => c.addAll(APP_FILES)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});

async function networkFirst(request) {
  const cache = await caches.open(APP_CACHE);
  try {
    const response = await fetch(request);
    if (response.ok && response.type === 'basic') cache.put(request, response.clone()).catch(() => {});
    return response;
  } catch (e) {
    // Offline: the copy from an earlier visit (a link's ?query still opens the page).
    const hit = await cache.match(request, { ignoreSearch: request.mode === 'navigate' });
    if (hit) return hit;
    throw e;
  }
}

async function modelFirstFromCache(request) {
  const hit = await (await caches.open(MODEL_CACHE)).match(request.url);
  return hit || fetch(request);
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  // A range request is a streamed model's part (source.js keeps those itself).
  if (url.pathname.endsWith('.gguf') && !request.headers.has('range')) event.respondWith(modelFirstFromCache(request));
  else if (url.origin === self.location.origin) event.respondWith(networkFirst(request));
});
