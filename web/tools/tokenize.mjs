// node web/tools/tokenize.mjs DIR [INDEX] < prompts.json > ids.json
// The page's tokenizer run by node. DIR is a build (its manifest's generation plan gives the
// INDEX-th tokenizer's folder, pad token and length, as the page reads them: the harness's
// tokenizer stage on the native backend) or a tokenizer folder (its pad token from
// special_tokens_map.json, as transformers reads it: the tests on real vocabularies).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ClipTokenizer } from "../lib/tokenizer.js";

const dir = process.argv[2];
const readJson = (path) => JSON.parse(readFileSync(path, "utf8"));
let plan;
if (existsSync(join(dir, "manifest.json"))) {
  const tokenizers = readJson(join(dir, "manifest.json")).generation.text.tokenizers;
  const chosen = tokenizers[Number(process.argv[3] || 0)];
  plan = { ...chosen, path: join(dir, chosen.path) };
} else {
  const specials = existsSync(join(dir, "special_tokens_map.json")) ? readJson(join(dir, "special_tokens_map.json")) : {};
  plan = { path: dir, pad: specials.pad_token || "<|endoftext|>", max_length: 77 };
}
const tokenizer = new ClipTokenizer(readJson(join(plan.path, "vocab.json")), readFileSync(join(plan.path, "merges.txt"), "utf8"), {
  maxLength: plan.max_length,
  pad: plan.pad,
});
const prompts = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(prompts.map((p) => Array.from(tokenizer.encode(p).ids))));
