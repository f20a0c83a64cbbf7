import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { sha256Hex, VerifiedStore, versionedKey } from "../lib/integrity.js";

const BASE = "http://127.0.0.1:1/models/tiny/";
const good = new TextEncoder().encode("weights");
const entry = (bytes) => ({ sha256: createHash("sha256").update(bytes).digest("hex"), size: bytes.length });
const manifest = { files: { "params_shard_0.bin": entry(good) } };

function serverWith(body, status = 200) {
  const calls = [];
  const fetcher = async (url) => {
    calls.push(url);
    return { ok: status === 200, status, arrayBuffer: async () => body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength) };
  };
  return { fetcher, calls };
}

function memoryCaches() {
  const stores = new Map();
  return {
    async open(name) {
      if (!stores.has(name)) stores.set(name, new Map());
      const m = stores.get(name);
      return {
        async match(key) {
          return m.has(key) ? new Response(m.get(key)) : undefined;
        },
        async put(key, response) {
          m.set(key, new Uint8Array(await response.arrayBuffer()));
        },
        async delete(key) {
          return m.delete(typeof key === "string" ? key : key.url);
        },
        async keys() {
          return [...m.keys()].map((url) => ({ url }));
        },
        raw: m,
      };
    },
  };
}

test("sha256Hex matches node's", async () => {
  assert.equal(await sha256Hex(good), createHash("sha256").update(good).digest("hex"));
});

test("a file whose bytes match the manifest is returned and cached under its versioned key", async () => {
  const { fetcher, calls } = serverWith(good);
  const cacheStorage = memoryCaches();
  const store = new VerifiedStore(BASE, manifest, { fetcher, cacheStorage });
  assert.deepEqual(await store.bytes("params_shard_0.bin"), good);
  const key = versionedKey(`${BASE}params_shard_0.bin`, manifest.files["params_shard_0.bin"].sha256);
  assert.deepEqual(calls, [key]);
  await store.bytes("params_shard_0.bin"); // second read: from the cache, no fetch
  assert.equal(calls.length, 1);
});

test("a tampered file of the right size is refused, never cached", async () => {
  const cacheStorage = memoryCaches();
  const store = new VerifiedStore(BASE, manifest, { fetcher: serverWith(new TextEncoder().encode("WEIGHTS")).fetcher, cacheStorage });
  await assert.rejects(store.bytes("params_shard_0.bin"), /WSD_INTEGRITY: params_shard_0.bin: sha256 .* manifest.json says .*refused/);
  assert.equal((await (await cacheStorage.open("wsd-models")).keys()).length, 0);
});

test("a truncated file is refused by size", async () => {
  const store = new VerifiedStore(BASE, manifest, { fetcher: serverWith(good.subarray(0, 3)).fetcher, cacheStorage: null });
  await assert.rejects(store.bytes("params_shard_0.bin"), /WSD_INTEGRITY: params_shard_0.bin: 3 bytes, manifest.json says 7/);
});

test("a file that fails to fetch is WSD_FETCH with its name and status", async () => {
  const store = new VerifiedStore(BASE, manifest, { fetcher: serverWith(good, 404).fetcher, cacheStorage: null });
  await assert.rejects(store.bytes("params_shard_0.bin"), /WSD_FETCH: params_shard_0.bin: HTTP 404/);
});

test("a file the manifest does not list is refused", async () => {
  const store = new VerifiedStore(BASE, manifest, { fetcher: serverWith(good).fetcher, cacheStorage: null });
  await assert.rejects(store.bytes("extra.bin"), /WSD_INTEGRITY: extra.bin is not listed/);
  assert.throws(() => store.nameOf("http://127.0.0.1:1/elsewhere/x.bin"), /outside the model folder/);
});

test("a damaged cache entry is dropped and fetched again", async () => {
  const { fetcher, calls } = serverWith(good);
  const cacheStorage = memoryCaches();
  const store = new VerifiedStore(BASE, manifest, { fetcher, cacheStorage });
  await store.bytes("params_shard_0.bin");
  const cache = await cacheStorage.open("wsd-models");
  for (const key of cache.raw.keys()) cache.raw.set(key, new TextEncoder().encode("rotten!"));
  assert.deepEqual(await store.bytes("params_shard_0.bin"), good);
  assert.equal(calls.length, 2);
});

test("prune drops cached files of an older build of the same folder", async () => {
  const cacheStorage = memoryCaches();
  const old = new VerifiedStore(BASE, manifest, { fetcher: serverWith(good).fetcher, cacheStorage });
  await old.bytes("params_shard_0.bin");
  const newer = new TextEncoder().encode("weights2");
  const rebuilt = new VerifiedStore(BASE, { files: { "params_shard_0.bin": entry(newer) } }, { fetcher: serverWith(newer).fetcher, cacheStorage });
  assert.deepEqual(await rebuilt.bytes("params_shard_0.bin"), newer); // the old version is never served
  assert.equal(await rebuilt.prune(), 1);
});

test("a full storage quota stops caching but the verified file is still used", async () => {
  const { fetcher } = serverWith(good);
  const cacheStorage = memoryCaches();
  const cache = await cacheStorage.open("wsd-models");
  let puts = 0;
  cache.put = async () => {
    puts += 1;
    throw new DOMException("Quota exceeded.", "QuotaExceededError");
  };
  cacheStorage.open = async () => cache;
  const store = new VerifiedStore(BASE, manifest, { fetcher, cacheStorage });
  const warn = console.warn;
  console.warn = () => {};
  try {
    assert.deepEqual(await store.bytes("params_shard_0.bin"), good);
    assert.deepEqual(await store.bytes("params_shard_0.bin"), good); // fetched again, not cached, no second put
  } finally {
    console.warn = warn;
  }
  assert.equal(puts, 1);
  assert.equal(store.cacheFull, true);
});
