// node web/tools/tokenize.mjs TOKENIZER_DIR < prompts.json > ids.json
// The page's tokenizer run by node: the harness's tokenizer stage on the native backend.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ClipTokenizer } from "../lib/tokenizer.js";

const dir = process.argv[2];
const tokenizer = new ClipTokenizer(
  JSON.parse(readFileSync(join(dir, "vocab.json"), "utf8")),
  readFileSync(join(dir, "merges.txt"), "utf8")
);
const prompts = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(prompts.map((p) => Array.from(tokenizer.encode(p).ids))));
