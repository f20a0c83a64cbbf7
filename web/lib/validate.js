// The shape of what the page reads before it trusts it: manifest.json, tensor-cache.json and
// the sampler tables. A file can pass its sha256 and still be malformed (another wsd's build,
// a hand-edited and re-signed copy); each check here turns that into a named WSD_MODEL error
// instead of a TypeError deep in the loop, a hang, or a silently wrong image.
import { WsdError } from "./errors.js";

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isInt = (v, min = 0) => Number.isSafeInteger(v) && v >= min;
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const isShape = (v, min = 0) => Array.isArray(v) && v.every((d) => isInt(d, min));
const DTYPE_BYTES = { float32: 4, float16: 2, int32: 4, uint32: 4, int8: 1, uint8: 1 };

function fail(file, what) {
  throw new WsdError("WSD_MODEL", `${file}: ${what}; rebuild the model with \`wsd build\`.`, { file });
}

function need(ok, file, what) {
  if (!ok) fail(file, what);
}

function checkTensorSpecs(list, file, where) {
  need(Array.isArray(list), file, `${where} must be a list`);
  for (const [i, t] of list.entries()) {
    need(isObj(t) && typeof t.name === "string" && isShape(t.shape) && typeof t.dtype === "string" && t.dtype in DTYPE_BYTES, file, `${where}[${i}] must be {name, shape, dtype}`);
  }
}

export function checkManifest(m, file = "manifest.json") {
  need(isObj(m), file, "not a JSON object");
  for (const key of ["library", "target", "files", "entry_points"]) need(key in m, file, `has no "${key}": not a wsd build`);
  need(isObj(m.files) && Object.keys(m.files).length > 0, file, '"files" must list the built files');
  for (const [name, e] of Object.entries(m.files)) {
    need(isObj(e) && typeof e.sha256 === "string" && /^[0-9a-f]{64}$/.test(e.sha256) && isInt(e.size), file, `files["${name}"] must be {sha256, size}`);
    need(!name.startsWith("/") && !name.split("/").includes(".."), file, `files["${name}"] is outside the model folder`);
  }
  need(typeof m.library === "string" && Object.hasOwn(m.files, m.library), file, '"library" must name a listed file');
  need(isObj(m.entry_points) && Object.keys(m.entry_points).length > 0, file, '"entry_points" must not be empty');
  for (const [name, e] of Object.entries(m.entry_points)) {
    need(isObj(e), file, `entry_points.${name} must be an object`);
    checkTensorSpecs(e.inputs, file, `entry_points.${name}.inputs`);
    checkTensorSpecs(e.outputs, file, `entry_points.${name}.outputs`);
    need(isObj(e.params) && typeof e.params.prefix === "string" && isInt(e.params.count), file, `entry_points.${name}.params must be {prefix, count}`);
  }
  if ("latent_shape" in m) need(isShape(m.latent_shape, 1) && m.latent_shape.length === 4, file, '"latent_shape" must be 4 positive sizes');
  if ("image_size" in m) need(isInt(m.image_size, 1), file, '"image_size" must be a positive integer');
  if ("max_tokens" in m) need(isInt(m.max_tokens, 2), file, '"max_tokens" must be an integer >= 2');
  if ("schedulers" in m) {
    need(Array.isArray(m.schedulers) && m.schedulers.every((s) => typeof s === "string"), file, '"schedulers" must be a list of names');
    need(m.schedulers.includes(m.default_scheduler), file, '"default_scheduler" must be one of "schedulers"');
    need(isObj(m.scheduler_steps), file, '"scheduler_steps" must map each scheduler to its step counts');
    for (const s of m.schedulers) need(isShape(m.scheduler_steps[s], 1) && m.scheduler_steps[s].length > 0, file, `scheduler_steps.${s} must be a list of step counts`);
  }
  if ("generation" in m) checkGeneration(m, file);
  if ("lora" in m) checkLoraTable(m, file);
  return m;
}

// Which weights a LoRA may change (wsd/lora.py): layers by name, the keys naming them, their params.
function checkLoraTable(m, file) {
  const t = m.lora;
  need(isObj(t) && typeof t.targets === "string" && Array.isArray(t.layers), file, '"lora" must be {targets, layers}');
  const isNames = (v) => Array.isArray(v) && v.every((s) => typeof s === "string");
  const prefixes = new Set(Object.values(m.entry_points).map((e) => e.params.prefix));
  for (const [i, layer] of t.layers.entries()) {
    need(isObj(layer) && typeof layer.name === "string" && isNames(layer.keys) && layer.keys.length > 0 && isNames(layer.params), file, `lora.layers[${i}] must be {name, keys, params}`);
    for (const p of layer.params) need(prefixes.has(p.slice(0, p.lastIndexOf("_"))), file, `lora.layers[${i}].params: ${p} is no entry point's weight`);
  }
}

// The generation loop's plan (wsd/generation.py): tokenizers, entry points, constants.
function checkGeneration(m, file) {
  const g = m.generation;
  need(isObj(g) && isObj(g.text) && isObj(g.denoise), file, '"generation" must be {text, denoise, ...}');
  need(Array.isArray(g.text.tokenizers) && g.text.tokenizers.length > 0, file, "generation.text.tokenizers must be a non-empty list");
  for (const [i, t] of g.text.tokenizers.entries()) {
    need(isObj(t) && typeof t.path === "string" && typeof t.pad === "string" && isInt(t.max_length, 2), file, `generation.text.tokenizers[${i}] must be {path, pad, max_length}`);
    need(!t.path.startsWith("/") && !t.path.split("/").includes(".."), file, `generation.text.tokenizers[${i}].path is outside the model folder`);
  }
  for (const key of ["entry"]) need(typeof g.text[key] === "string" && typeof g.denoise[key] === "string", file, `generation.text/denoise need an "${key}"`);
  need(isObj(g.constants || {}), file, "generation.constants must be an object");
  for (const [name, c] of Object.entries(g.constants || {})) {
    const n = isObj(c) && isShape(c.shape) ? c.shape.reduce((a, b) => a * b, 1) : -1;
    need(n >= 0 && c.dtype === "float32" && Array.isArray(c.data) && c.data.length === n && c.data.every(isNum), file, `generation.constants.${name} must be {shape, dtype: float32, data}`);
  }
  if ("default_guidance" in g) need(isNum(g.default_guidance), file, "generation.default_guidance must be a number");
}

export function checkTensorCache(tc, manifest, file = "tensor-cache.json") {
  need(isObj(tc) && Array.isArray(tc.records), file, 'must be an object with "records"');
  for (const [i, shard] of tc.records.entries()) {
    need(isObj(shard) && typeof shard.dataPath === "string", file, `records[${i}] must name its dataPath`);
    const listed = Object.hasOwn(manifest.files, shard.dataPath) ? manifest.files[shard.dataPath] : null;
    need(listed, file, `records[${i}].dataPath ${JSON.stringify(shard.dataPath)} is not in manifest.json`);
    need(shard.nbytes === listed.size, file, `records[${i}].nbytes ${shard.nbytes}, the shard is ${listed.size} bytes`);
    need(Array.isArray(shard.records), file, `records[${i}].records must be a list`);
    for (const [j, rec] of shard.records.entries()) {
      const where = `records[${i}].records[${j}]`;
      need(isObj(rec) && typeof rec.name === "string" && isShape(rec.shape) && rec.dtype in DTYPE_BYTES, file, `${where} must be {name, shape, dtype}`);
      need(isInt(rec.byteOffset) && isInt(rec.nbytes), file, `${where} needs byteOffset and nbytes`);
      const want = rec.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[rec.dtype];
      need(rec.nbytes === want, file, `${where} (${rec.name}) is ${rec.nbytes} bytes, its shape and dtype make ${want}`);
      need(rec.byteOffset + rec.nbytes <= listed.size, file, `${where} (${rec.name}) ends past the end of ${shard.dataPath}`);
    }
  }
  return tc;
}

export function checkSamplerTable(t, file) {
  need(isObj(t), file, "not a JSON object");
  need(Array.isArray(t.timesteps) && t.timesteps.length > 0 && t.timesteps.every(isNum), file, '"timesteps" must be a non-empty list of numbers');
  const n = t.timesteps.length;
  need(Array.isArray(t.coeffs) && t.coeffs.length === n && t.coeffs.every((c) => Array.isArray(c) && c.length === 8 && c.every(isNum)), file, `"coeffs" must be ${n} rows of 8 numbers`);
  for (const key of ["push", "save_cur", ...("noise" in t ? ["noise"] : [])]) {
    need(Array.isArray(t[key]) && t[key].length === n && t[key].every((b) => typeof b === "boolean"), file, `"${key}" must be ${n} booleans`);
  }
  need(Array.isArray(t.input_scale) && t.input_scale.length === n && t.input_scale.every(isNum), file, `"input_scale" must be ${n} numbers`);
  need(isNum(t.init_noise_sigma) && t.init_noise_sigma > 0, file, '"init_noise_sigma" must be a positive number');
  need(isInt(t.history) && t.history <= 3, file, '"history" must be 0..3');
  if ("add_noise" in t) need(Array.isArray(t.add_noise) && t.add_noise.length === n && t.add_noise.every((r) => Array.isArray(r) && r.length === 2 && r.every(isNum)), file, `"add_noise" must be ${n} pairs of numbers`);
  return t;
}
