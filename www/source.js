// Where a streamed model's bytes come from (worker.js reads them piece by piece): the user's
// File (Blob.slice), or a URL by HTTP range requests, each part kept in Cache Storage so that a
// second visit loads with the server gone.

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

/** The size of a model kept in this browser's Cache Storage in parts, or null. */
export async function cachedSize(url) {
  if (!self.caches) return null;
  try {
    const hit = await (await caches.open(PARTS_CACHE)).match(sizeKey(url));
    return hit ? Number(await hit.text()) : null;
  } catch {
    return null;
  }
}

/** `{size, fromCache, read(start, len) → Uint8Array}` for a File or a URL (`{file} | {url, size}`). */
export async function byteSource({ file, url, size }) {
  if (file) {
    return {
      size: file.size, fromCache: false,
      // A slice past the end comes back short: the core names the tensor that is cut.
      read: async (start, len) => new Uint8Array(await file.slice(start, start + len).arrayBuffer()),
    };
  }
  const cache = self.caches ? await caches.open(PARTS_CACHE).catch(() => null) : null;
  if (cache) await cache.put(sizeKey(url), new Response(String(size))).catch(() => {});
  const source = {
    size, fromCache: true,   // until a part comes from the network
    async read(start, len) {
      const key = partKey(url, start, len);
      const hit = cache && await cache.match(key).catch(() => null);
      if (hit) return new Uint8Array(await hit.arrayBuffer());
      source.fromCache = false;
      const bytes = await fetchRange(url, start, len);
      // A full disk only costs the offline copy.
      if (cache) await cache.put(key, new Response(bytes)).catch(() => {});
      return bytes;
    },
  };
  return source;
}

async function fetchRange(url, start, len) {
  let res;
  try {
    res = await fetch(url, { headers: { Range: `bytes=${start}-${start + len - 1}` } });
  } catch (e) {
    throw new Error(`could not fetch bytes ${start}–${start + len} of ${url} (${e.message}), and this browser has no copy of them`);
  }
  if (res.status === 200) {
    res.body?.cancel();
    throw new Error(noRangeMessage(url, Number(res.headers.get('content-length')) || 0));
  }
  if (res.status !== 206) throw new Error(`could not fetch bytes ${start}–${start + len} of ${url}: HTTP ${res.status} ${res.statusText}`);
  // Short at a file's end: the core names the tensor that is cut.
  return new Uint8Array(await res.arrayBuffer());
}
