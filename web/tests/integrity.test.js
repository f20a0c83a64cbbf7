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

// a fetch Response whose body arrives in chunks of 3 bytes, as a network stream does
const streamed = (bytes) => async () =>
  new Response(
    new ReadableStream({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 3) controller.enqueue(bytes.slice(i, i + 3));
        controller.close();
      },
    }),
  );

test("a streamed body is read whole into one buffer of the manifest's size", async () => {
  const store = new VerifiedStore(BASE, manifest, { fetcher: streamed(good), cacheStorage: null });
  const bytes = await store.bytes("params_shard_0.bin");
  assert.deepEqual(bytes, good);
  assert.equal(bytes.buffer.byteLength, good.length);
});

test("a streamed body longer or shorter than the manifest says is refused with its length", async () => {
  const longer = new VerifiedStore(BASE, manifest, { fetcher: streamed(new TextEncoder().encode("weights and more")), cacheStorage: null });
  await assert.rejects(longer.bytes("params_shard_0.bin"), /WSD_INTEGRITY: params_shard_0.bin: 16 bytes, manifest.json says 7/);
  const shorter = new VerifiedStore(BASE, manifest, { fetcher: streamed(good.subarray(0, 5)), cacheStorage: null });
  await assert.rejects(shorter.bytes("params_shard_0.bin"), /WSD_INTEGRITY: params_shard_0.bin: 5 bytes, manifest.json says 7/);
});

test("the artifact cache fetches the next shards while tvmjs uploads one, and each only once", async () => {
  const shards = ["a.bin", "b.bin", "c.bin", "d.bin"];
  const body = (name) => new TextEncoder().encode(`bytes of ${name}`);
  const files = Object.fromEntries(shards.map((n) => [n, entry(body(n))]));
  const calls = [];
  const fetcher = async (url) => {
    const name = new URL(url).pathname.split("/").pop();
    calls.push(name);
    const bytes = body(name);
    return { ok: true, status: 200, arrayBuffer: async () => bytes.buffer };
  };
  const cache = new VerifiedStore(BASE, { files }, { fetcher, cacheStorage: null }).asArtifactCache(shards, 2);
  const first = await cache.fetchWithCache(`${BASE}a.bin`);
  assert.deepEqual(new Uint8Array(first), body("a.bin"));
  assert.deepEqual(calls, ["a.bin", "b.bin", "c.bin"]); // two ahead of the one asked for
  for (const name of shards.slice(1)) assert.deepEqual(new Uint8Array(await cache.fetchWithCache(`${BASE}${name}`)), body(name));
  assert.deepEqual(calls, shards); // none twice
});

test("a bad shard fetched ahead fails when tvmjs asks for it, not before", async () => {
  const shards = ["a.bin", "b.bin"];
  const files = { "a.bin": entry(good), "b.bin": entry(good) };
  const fetcher = async (url) => {
    const bytes = url.includes("b.bin") ? new TextEncoder().encode("WEIGHTS") : good;
    return { ok: true, status: 200, arrayBuffer: async () => bytes.buffer };
  };
  const cache = new VerifiedStore(BASE, { files }, { fetcher, cacheStorage: null }).asArtifactCache(shards);
  assert.deepEqual(new Uint8Array(await cache.fetchWithCache(`${BASE}a.bin`)), good);
  await assert.rejects(cache.fetchWithCache(`${BASE}b.bin`), /WSD_INTEGRITY: b.bin: sha256/);
});
