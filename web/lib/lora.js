// LoRA at run time, the page's half of wsd/lora.py: a safetensors LoRA file (diffusers/PEFT or kohya
// keys) matched against the manifest's `lora` table (every key prefix a layer answers to, written by
// the build), and merged as W + scale * alpha/rank * up @ down. Pure functions: the session owns
// the GPU side (lib/session.js setLora).
import { WsdError } from "./errors.js";

const DOWN = [".lora_A.weight", ".lora_down.weight"];
const UP = [".lora_B.weight", ".lora_up.weight"];
const ALPHA = [".alpha"];

const fail = (message) => new WsdError("WSD_LORA", message);

// float16 words -> float32 (subnormals and infinities included); JS has no Float16Array everywhere
export function halfToFloat(words) {
  const out = new Float32Array(words.length);
  for (let i = 0; i < words.length; i++) {
    const h = words[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) out[i] = sign * frac * 2 ** -24;
    else if (exp === 31) out[i] = frac ? NaN : sign * Infinity;
    else out[i] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
}

// float32 -> float16 words, rounding to nearest even (as numpy's astype(float16))
export function floatToHalf(values) {
  const out = new Uint16Array(values.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < values.length; i++) {
    f[0] = values[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    let e = exp - 127 + 15;
    if (e >= 31) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let half = mant >>> shift;
      const rest = mant & ((1 << shift) - 1);
      const mid = 1 << (shift - 1);
      if (rest > mid || (rest === mid && half & 1)) half++;
      out[i] = sign | half;
      continue;
    }
    let half = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++; // a carry into the exponent is right
    out[i] = sign | half;
  }
  return out;
}

function bf16ToFloat(words) {
  const out = new Float32Array(words.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < words.length; i++) u[i] = words[i] << 16;
  return out;
}

const READERS = {
  F32: (bytes) => new Float32Array(bytes.slice().buffer),
  F16: (bytes) => halfToFloat(new Uint16Array(bytes.slice().buffer)),
  BF16: (bytes) => bf16ToFloat(new Uint16Array(bytes.slice().buffer)),
};

// safetensors: an 8-byte little-endian header length, a JSON header, the raw data.
// Written here: the format is 20 lines and the page has no package manager.
export function parseSafetensors(input, source = "LoRA file") {
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  if (bytes.length < 8) throw fail(`${source}: not a safetensors file (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = Number(view.getBigUint64(0, true));
  if (length <= 0 || 8 + length > bytes.length) throw fail(`${source}: not a safetensors file (header of ${length} bytes in a file of ${bytes.length})`);
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)));
  } catch {
    throw fail(`${source}: not a safetensors file (its header is not JSON)`);
  }
  const tensors = new Map();
  const data = bytes.subarray(8 + length);
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const read = READERS[info.dtype];
    if (!read) throw fail(`${source}: tensor ${name} is ${info.dtype}; a LoRA's tensors must be F32, F16 or BF16`);
    const [begin, end] = info.data_offsets;
    if (!(end >= begin && end <= data.length)) throw fail(`${source}: tensor ${name} lies outside the file (truncated?)`);
    tensors.set(name, { shape: info.shape, data: read(data.subarray(begin, end)) });
  }
  return { tensors, metadata: header.__metadata__ || {} };
}

// diffusers' per-component PEFT settings (lora_alpha, use_rslora) from the header's metadata
function peftSettings(metadata, source) {
  const raw = metadata.lora_adapter_metadata;
  if (!raw) return {};
  let flat;
  try {
    flat = JSON.parse(raw);
  } catch {
    throw fail(`${source}: lora_adapter_metadata is not JSON`);
  }
  const out = {};
  for (const [key, value] of Object.entries(flat)) {
    const dot = key.indexOf(".");
    const component = key.slice(0, dot);
    (out[component] ||= {})[key.slice(dot + 1)] = value;
  }
  for (const [component, settings] of Object.entries(out)) {
    for (const field of ["alpha_pattern", "rank_pattern"]) {
      const set = settings[field];
      if (set && Object.keys(set).length) throw fail(`${source}: ${component}.${field} is set; per-layer alphas and ranks are not supported`);
    }
  }
  return out;
}

// Per layer the file changes: {name, params, down, up, rank, factor}; every key must name a layer.
export function planLora(table, file, source = "LoRA file") {
  if (!table) throw fail(`${source}: this build has no LoRA table (built before LoRA support): rebuild it`);
  const index = new Map();
  for (const layer of table.layers) for (const key of layer.keys) index.set(key, layer);
  const parts = new Map();
  for (const [key, tensor] of file.tensors) {
    const suffix = [...DOWN, ...UP, ...ALPHA].find((s) => key.endsWith(s));
    const layer = suffix && index.get(key.slice(0, -suffix.length));
    if (!layer) throw fail(`${source}: key ${key} names no layer this model lets a LoRA change (${table.targets}; keys end in ${[...DOWN, ...UP, ...ALPHA].join(", ")})`);
    const role = DOWN.includes(suffix) ? "down" : UP.includes(suffix) ? "up" : "alpha";
    if (!parts.has(layer.name)) parts.set(layer.name, { layer });
    parts.get(layer.name)[role] = tensor;
  }
  const settings = peftSettings(file.metadata, source);
  const out = [];
  for (const name of [...parts.keys()].sort()) {
    const got = parts.get(name);
    if (!got.down || !got.up) throw fail(`${source}: layer ${name} has ${got.down ? "no up" : "no down"} matrix`);
    const rank = got.down.shape[0];
    if (got.up.shape.length < 2 || got.up.shape[1] !== rank) throw fail(`${source}: layer ${name}: up [${got.up.shape}] does not follow down [${got.down.shape}]`);
    const own = settings[name.slice(0, name.indexOf("."))] || {};
    const alpha = got.alpha ? got.alpha.data[0] : Number(own.lora_alpha || rank);
    const factor = alpha / (own.use_rslora ? Math.sqrt(rank) : rank);
    out.push({ name, params: got.layer.params, down: got.down, up: got.up, rank, factor });
  }
  return out;
}

// base (float32, the weight's elements in order) + scale * factor * up @ down, as a new array
export function mergeLayer(base, shape, change, scale, source = "LoRA file") {
  const rows = shape[0];
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  const { down, up, rank } = change;
  if (up.shape[0] !== rows || down.data.length !== rank * cols) {
    throw fail(`${source}: layer ${change.name}: down [${down.shape}] and up [${up.shape}] do not fit its weight [${shape}] (a LoRA made for another model?)`);
  }
  const out = Float32Array.from(base);
  const k = scale * change.factor;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < rank; j++) {
      const a = k * up.data[r * rank + j];
      if (a === 0) continue;
      const row = down.data.subarray(j * cols, (j + 1) * cols);
      for (let c = 0; c < cols; c++) out[r * cols + c] += a * row[c];
    }
  }
  return out;
}
