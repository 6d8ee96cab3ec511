// Where a streamed model's bytes come from (worker.js reads them piece by piece): the user's
// File (Blob.slice), or a URL by HTTP range requests, each part kept in Cache Storage so that a
// second visit loads with the server gone. The parts are kept with the file's version (its size
// and the server's ETag or Last-Modified): when the server's file changes they are dropped, and
// a part that comes back of another version stops the load rather than mix two files.

export const PARTS_CACHE = 'probelab-model-parts';

const withQuery = (url, q) => `${url}${url.includes('?') ? '&' : '?'}${q}`;
const partKey = (url, start, len) => withQuery(url, `probelab-part=${start}-${start + len}`);
const sizeKey = (url) => withQuery(url, 'probelab-size');

/** What a server that ignores Range does, and what to do about it. */
export function noRangeMessage(url, bytes) {
  return `the server at ${url} does not support range requests: asked for one part of the file, `
    + `it answered with the whole file (HTTP 200${bytes ? `, ${bytes} bytes` : ''} instead of 206 Partial Content). `
    + 'A model this large is read in parts; serve it from a server that answers Range requests '
    + '(most static servers and CDNs do), or choose the file from disk.';
}

/** A response's version of its file: what changes when the file does. */
export function versionOf(res, size) {
  return `${size} ${res.headers.get('etag') || res.headers.get('last-modified') || ''}`;
}

/** What this browser keeps of a model in parts, `{size, version}`, or null. */
async function cachedRecord(cache, url) {
  const hit = await cache.match(sizeKey(url)).catch(() => null);
  if (!hit) return null;
  const text = await hit.text();
  // Parts kept before versions were recorded hold only the size.
  return text.startsWith('{') ? JSON.parse(text) : { size: Number(text), version: null };
}

/** The size of a model kept in this browser's Cache Storage in parts, or null. */
export async function cachedSize(url) {
  if (!self.caches) return null;
  try {
    return (await cachedRecord(await caches.open(PARTS_CACHE), url))?.size ?? null;
  } catch {
    return null;
  }
}

/**
 * `{size, fromCache, dropped, read(start, len) → Uint8Array}` for a File or a URL (`{file} |
 * {url, size, version}`; `version` is null when the server could not be asked, offline).
 */
export async function byteSource({ file, url, size, version = null }) {
  if (file) {
    return {
      size: file.size, fromCache: false,
      // A slice past the end comes back short: the core names the tensor that is cut.
      read: async (start, len) => new Uint8Array(await file.slice(start, start + len).arrayBuffer()),
    };
  }
  const cache = self.caches ? await caches.open(PARTS_CACHE).catch(() => null) : null;
  let dropped = 0;
  if (cache) {
    const kept = await cachedRecord(cache, url);
    if (version === null) version = kept?.version ?? `${size} `;
    else if (kept && kept.version !== version) dropped = await dropParts(cache, url);
    await cache.put(sizeKey(url), new Response(JSON.stringify({ size, version }))).catch(() => {});
  }
  const source = {
    size, dropped, fromCache: true,   // until a part comes from the network
    async read(start, len) {
      const key = partKey(url, start, len);
      const hit = cache && await cache.match(key).catch(() => null);
      if (hit) return new Uint8Array(await hit.arrayBuffer());
      source.fromCache = false;
      const bytes = await fetchRange(url, start, len, size, version);
      // A full disk only costs the offline copy.
      if (cache) await cache.put(key, new Response(bytes)).catch(() => {});
      return bytes;
    },
  };
  return source;
}

/** Deletes the parts kept of `url` (its file changed on the server); how many there were. */
async function dropParts(cache, url) {
  const prefix = withQuery(url, 'probelab-part=');
  const keys = (await cache.keys().catch(() => [])).filter((r) => r.url.startsWith(prefix));
  await Promise.all(keys.map((r) => cache.delete(r).catch(() => {})));
  return keys.length;
}

async function fetchRange(url, start, len, size, version) {
  let res;
  try {
    res = await fetch(url, { cache: 'no-store', headers: { Range: `bytes=${start}-${start + len - 1}` } });
  } catch (e) {
    throw new Error(`could not fetch bytes ${start}–${start + len} of ${url} (${e.message}), and this browser has no copy of them`);
  }
  if (res.status === 200) {
    res.body?.cancel();
    throw new Error(noRangeMessage(url, Number(res.headers.get('content-length')) || 0));
  }
  if (res.status !== 206) throw new Error(`could not fetch bytes ${start}–${start + len} of ${url}: HTTP ${res.status} ${res.statusText}`);
  const total = Number((res.headers.get('content-range') || '').split('/')[1]);
  if (versionOf(res, total || size) !== version) {
    res.body?.cancel();
    throw new Error(`the file at ${url} changed on the server while it was being read (it was ${version}, `
      + `now ${versionOf(res, total)}): load it again`);
  }
  // Short at a file's end: the core names the tensor that is cut.
  return new Uint8Array(await res.arrayBuffer());
}
