// Model files fetched against manifest.json: each file's bytes must have the sha256 the
// manifest records, or the file is refused and never used. Verified files are kept in the
// Cache API under versioned keys (the URL plus its sha256), so a rebuilt model is never
// served stale and a reload with the network off still finds every file.
import { WsdError } from "./errors.js";

export async function sha256Hex(bytes, subtle = globalThis.crypto.subtle) {
  const digest = new Uint8Array(await subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function versionedKey(url, sha256) {
  return `${url}?v=${sha256.slice(0, 16)}`;
}

// A response's bytes read into one buffer of the size the manifest gives, and how many came:
// arrayBuffer() collects the chunks and copies them again (in Node, 2x slower on 2 GB of weights).
async function bodyBytes(response, size) {
  if (!response.body?.getReader) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    return { bytes, length: bytes.length };
  }
  const bytes = new Uint8Array(size);
  const reader = response.body.getReader();
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { bytes, length };
    if (length + value.length <= size) bytes.set(value, length);
    length += value.length; // past the size: only counted, for the error
  }
}

export class VerifiedStore {
  // baseUrl: the model folder's URL (ending in "/"); manifest: its parsed manifest.json.
  constructor(baseUrl, manifest, { fetcher = globalThis.fetch.bind(globalThis), cacheStorage = globalThis.caches, scope = "wsd-models", onFetch = null } = {}) {
    this.base = new URL(baseUrl).href;
    this.manifest = manifest;
    this.fetcher = fetcher;
    this.cacheStorage = cacheStorage;
    this.scope = scope;
    this.onFetch = onFetch;
    this.cache = null;
  }

  nameOf(url) {
    const href = new URL(url, this.base).href.split("?")[0];
    if (!href.startsWith(this.base)) throw new WsdError("WSD_INTEGRITY", `${href} is outside the model folder ${this.base}; refused.`);
    return href.slice(this.base.length);
  }

  entry(name) {
    const entry = this.manifest.files && Object.hasOwn(this.manifest.files, name) ? this.manifest.files[name] : undefined;
    if (!entry) throw new WsdError("WSD_INTEGRITY", `${name} is not listed in manifest.json; refused.`, { name });
    return entry;
  }

  async openCache() {
    if (!this.cacheStorage) return null;
    if (!this.cache) this.cache = await this.cacheStorage.open(this.scope);
    return this.cache;
  }

  // The verified bytes of one file of the model folder.
  async bytes(name) {
    const expected = this.entry(name);
    const url = new URL(name, this.base).href;
    const key = versionedKey(url, expected.sha256);
    const cache = await this.openCache();
    if (cache) {
      const hit = await cache.match(key);
      if (hit) {
        const bytes = new Uint8Array(await hit.arrayBuffer());
        if ((await sha256Hex(bytes)) === expected.sha256) return bytes;
        await cache.delete(key); // a damaged cache entry is dropped and fetched again
      }
    }
    let response;
    try {
      // The versioned URL is also the cache key; the server marks it immutable when it matches.
      response = await this.fetcher(key, { cache: "no-cache" });
    } catch (err) {
      throw new WsdError("WSD_FETCH", `${name}: ${err.message || err}`, { name });
    }
    if (!response.ok) throw new WsdError("WSD_FETCH", `${name}: HTTP ${response.status}`, { name, status: response.status });
    const { bytes, length } = await bodyBytes(response, expected.size);
    if (length !== expected.size) {
      throw new WsdError("WSD_INTEGRITY", `${name}: ${length} bytes, manifest.json says ${expected.size}; refused.`, { name });
    }
    const found = await sha256Hex(bytes);
    if (found !== expected.sha256) {
      throw new WsdError("WSD_INTEGRITY", `${name}: sha256 ${found.slice(0, 16)}…, manifest.json says ${expected.sha256.slice(0, 16)}…; refused.`, { name });
    }
    if (this.onFetch) this.onFetch(name, bytes.length);
    if (cache && !this.cacheFull) {
      try {
        await cache.put(key, new Response(bytes, { headers: { "Content-Type": "application/octet-stream" } }));
      } catch (err) {
        // Caching is for offline reloads, not for this load: a full quota (an incognito profile,
        // a 4 GB model on a small disk) stops caching and the verified bytes are used anyway.
        if (err && err.name !== "QuotaExceededError") throw err;
        this.cacheFull = true;
        console.warn(`wsd: browser storage is full; ${name} and later files are not cached for offline use`);
      }
    }
    return bytes;
  }

  async json(name) {
    return JSON.parse(new TextDecoder().decode(await this.bytes(name)));
  }

  async text(name) {
    return new TextDecoder().decode(await this.bytes(name));
  }

  // Drop cached files of this model folder that the current manifest no longer lists.
  async prune() {
    const cache = await this.openCache();
    if (!cache) return 0;
    const keep = new Set(Object.entries(this.manifest.files || {}).map(([n, e]) => versionedKey(new URL(n, this.base).href, e.sha256)));
    let dropped = 0;
    for (const request of await cache.keys()) {
      if (request.url.startsWith(this.base) && !keep.has(request.url)) {
        await cache.delete(request);
        dropped += 1;
      }
    }
    return dropped;
  }

  // tvmjs's artifact-cache interface, so fetchTensorCache reads shards through this store.
  // tvmjs asks for the shards one after another; the next `ahead` of `order` are fetched and
  // verified while it uploads the current one (at most ahead + 1 shards held at once).
  asArtifactCache(order = [], ahead = 2) {
    const store = this;
    const pending = new Map();
    const readAhead = (name) => {
      const at = order.indexOf(name);
      for (const next of order.slice(at + 1, at + 1 + ahead)) {
        if (pending.has(next)) continue;
        const bytes = store.bytes(next);
        bytes.catch(() => {}); // a failure is reported when tvmjs asks for that shard
        pending.set(next, bytes);
      }
    };
    return {
      async fetchWithCache(url, storetype) {
        const name = store.nameOf(url);
        const fetched = pending.get(name) ?? store.bytes(name);
        pending.delete(name);
        readAhead(name);
        const bytes = await fetched;
        if (storetype && storetype.toLowerCase() === "json") return JSON.parse(new TextDecoder().decode(bytes));
        if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes.buffer; // no copy
        return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
      },
      async addToCache(url) {
        await store.bytes(store.nameOf(url));
      },
      async hasAllKeys() {
        return true; // skip tvmjs's separate download pass: fetchWithCache fetches, verifies and caches
      },
      async deleteInCache() {},
    };
  }
}
