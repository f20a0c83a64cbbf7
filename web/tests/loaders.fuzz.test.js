// Property tests (fast-check) for what the page loads: manifest.json, tensor-cache.json,
// sampler tables and tokenizer files. Whatever the bytes, each loader either accepts a
// well-formed file or throws a WsdError with a WSD_* code: never a TypeError, never a hang.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import fc from "fast-check";
import { WsdError } from "../lib/errors.js";
import { ClipTokenizer, TokenizerError } from "../lib/tokenizer.js";
import { checkManifest, checkSamplerTable, checkTensorCache } from "../lib/validate.js";

const files = JSON.parse(readFileSync(new URL("./fixtures/model_files.json", import.meta.url), "utf8"));
const words = JSON.parse(readFileSync(new URL("./fixtures/tokenizer.json", import.meta.url), "utf8"));
const clone = (v) => structuredClone(v);

// Every path to a value inside a JSON document, so a mutation can hit any field.
function paths(value, prefix = []) {
  const out = [prefix];
  if (value !== null && typeof value === "object") {
    for (const key of Object.keys(value)) out.push(...paths(value[key], [...prefix, key]));
  }
  return out;
}

function mutate(doc, path, replacement, remove) {
  const copy = clone(doc);
  if (path.length === 0) return replacement;
  let node = copy;
  for (const key of path.slice(0, -1)) node = node[key];
  const last = path[path.length - 1];
  if (remove) Array.isArray(node) ? node.splice(Number(last), 1) : delete node[last];
  else node[last] = replacement;
  return copy;
}

const anyJson = fc.jsonValue({ maxDepth: 3 });

function onlyNamedErrors(check, code = "WSD_MODEL") {
  return (value) => {
    try {
      check(value);
    } catch (err) {
      assert.ok(err instanceof WsdError, `not a WsdError: ${err && err.stack}`);
      assert.equal(err.code, code);
    }
  };
}

function mutations(doc) {
  const all = paths(doc);
  return fc.tuple(fc.constantFrom(...all), anyJson, fc.boolean()).map(([p, v, rm]) => mutate(doc, p, v, rm));
}

test("the fixtures themselves are accepted", () => {
  checkManifest(files.manifest);
  checkTensorCache(files.tensorCache, files.manifest);
  checkSamplerTable(files.table, "schedulers/pndm-4.json");
});

test("manifest.json: any mutation is accepted or a WSD_MODEL error", () => {
  fc.assert(fc.property(fc.oneof(mutations(files.manifest), anyJson), onlyNamedErrors((m) => checkManifest(m))), { numRuns: 2000 });
});

test("tensor-cache.json: any mutation is accepted or a WSD_MODEL error", () => {
  fc.assert(fc.property(fc.oneof(mutations(files.tensorCache), anyJson), onlyNamedErrors((t) => checkTensorCache(t, files.manifest))), { numRuns: 2000 });
});

test("a tensor that ends past its shard is refused by name", () => {
  const bad = clone(files.tensorCache);
  bad.records[0].records[2].byteOffset = files.manifest.files["params_shard_0.bin"].size;
  assert.throws(() => checkTensorCache(bad, files.manifest), /ends past the end of params_shard_0.bin/);
});

test("sampler tables: any mutation is accepted or a WSD_MODEL error", () => {
  fc.assert(fc.property(fc.oneof(mutations(files.table), anyJson), onlyNamedErrors((t) => checkSamplerTable(t, "t.json"))), { numRuns: 2000 });
});

test("a table whose rows disagree in length is refused (it would run a wrong loop)", () => {
  const bad = clone(files.table);
  bad.coeffs.pop();
  assert.throws(() => checkSamplerTable(bad, "schedulers/pndm-4.json"), /WSD_MODEL: schedulers\/pndm-4.json: "coeffs" must be 5 rows/);
});

test("merges that are not text are refused as a TokenizerError (a JSON object once crashed String())", () => {
  assert.throws(() => new ClipTokenizer(words.vocab, { toString: 0 }), TokenizerError);
  assert.throws(() => new ClipTokenizer(words.vocab, ["a b"]), /merges.txt is not text/);
});

test("tokenizer files: fuzzed vocab and merges are accepted (77 integer ids) or a TokenizerError", () => {
  const vocabs = fc.oneof(
    mutations(words.vocab),
    fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(fc.integer({ min: -2, max: 2000 }), fc.string())),
    anyJson,
  );
  const lines = words.merges.split("\n");
  const merges = fc.oneof(
    fc.string(),
    fc.array(fc.constantFrom(...lines.slice(0, 50), "", "#x", "a", "a b c", "é ü"), { maxLength: 30 }).map((l) => l.join("\n")),
    anyJson,
  );
  fc.assert(
    fc.property(vocabs, merges, fc.string({ maxLength: 40 }), (vocab, mergeText, prompt) => {
      let tok;
      try {
        tok = new ClipTokenizer(vocab, mergeText);
      } catch (err) {
        // the session reports a TokenizerError as WSD_TOKENIZER (lib/assets.js loadTokenizers)
        assert.ok(err instanceof TokenizerError, `not a TokenizerError: ${err && err.stack}`);
        return;
      }
      const out = tok.encode(prompt);
      assert.equal(out.ids.length, 77);
      assert.ok(Array.from(out.ids).every((id) => Number.isInteger(id)));
    }),
    { numRuns: 500 },
  );
});
