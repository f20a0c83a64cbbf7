import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { ClipTokenizer, TokenizerError } from "../lib/tokenizer.js";

const fixture = JSON.parse(readFileSync(new URL("./fixtures/tokenizer.json", import.meta.url), "utf8"));
const tokenizer = new ClipTokenizer(fixture.vocab, fixture.merges);

for (const { text, ids } of fixture.cases) {
  test(`ids equal transformers' for ${JSON.stringify(text.slice(0, 30))}`, () => {
    assert.deepEqual(Array.from(tokenizer.encode(text).ids), ids);
  });
}

test("an over-long prompt is truncated to 77 with EOS last, and says so", () => {
  const out = tokenizer.encode("cat ".repeat(200));
  assert.equal(out.ids.length, 77);
  assert.equal(out.truncated, true);
  assert.equal(out.tokens, 200);
  assert.equal(out.ids[76], tokenizer.eos);
});

test("the empty prompt is BOS, EOS, then EOS padding", () => {
  const out = tokenizer.encode("");
  assert.equal(out.ids[0], tokenizer.bos);
  assert.ok(out.ids.slice(1).every((id) => id === tokenizer.eos));
  assert.equal(out.truncated, false);
});

test("a vocab without the special tokens is refused", () => {
  assert.throws(() => new ClipTokenizer({ a: 0 }, ""), TokenizerError);
});

test("a malformed merges line is refused with its line number", () => {
  assert.throws(() => new ClipTokenizer(fixture.vocab, "#version: 0.2\na b c\n"), /line 2/);
});

test("fetch reports a missing tokenizer file by name", async () => {
  const fetcher = async () => ({ ok: false, status: 404 });
  await assert.rejects(ClipTokenizer.fetch("http://x/tokenizer/", fetcher), /tokenizer\/vocab.json could not be fetched: HTTP 404/);
});
