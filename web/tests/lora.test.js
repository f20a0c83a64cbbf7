import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { floatToHalf, halfToFloat, mergeLayer, parseSafetensors, planLora } from "../lib/lora.js";

// A safetensors file of float32 tensors (and metadata), as the format's spec lays it out.
function safetensors(tensors, metadata) {
  const header = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const [name, { shape, data }] of Object.entries(tensors)) {
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + data.length * 4] };
    offset += data.length * 4;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const { data } of Object.values(tensors)) {
    out.set(new Uint8Array(Float32Array.from(data).buffer), at);
    at += data.length * 4;
  }
  return out;
}

const TABLE = {
  targets: "linear and conv2d weights",
  layers: [
    { name: "unet.attn.to_q", keys: ["unet.attn.to_q", "lora_unet_attn_to_q"], params: ["unet_3", "unet_inpaint_3"] },
    { name: "text_encoder.q_proj", keys: ["text_encoder.q_proj", "lora_te_text_model_q_proj"], params: ["clip_1"] },
  ],
};
const down = { shape: [2, 3], data: [1, 2, 3, 4, 5, 6] }; // rank 2, in 3
const up = { shape: [2, 2], data: [1, 0, 0, 1] }; // out 2

test("a PEFT file merges as W + scale * alpha/rank * up @ down, alpha from diffusers' metadata", () => {
  const meta = { lora_adapter_metadata: JSON.stringify({ "unet.lora_alpha": 1, "unet.r": 2 }) };
  const file = parseSafetensors(safetensors({ "unet.attn.to_q.lora_A.weight": down, "unet.attn.to_q.lora_B.weight": up }, meta));
  const [change, ...rest] = planLora(TABLE, file);
  assert.equal(rest.length, 0);
  assert.deepEqual(change.params, ["unet_3", "unet_inpaint_3"]);
  assert.equal(change.factor, 0.5);
  const merged = mergeLayer(new Float32Array(6).fill(1), [2, 3], change, 2);
  assert.deepEqual(Array.from(merged), [2, 3, 4, 5, 6, 7]); // 1 + 2 * 0.5 * (up @ down)
});

test("kohya keys with their alpha merge the same layer; rsLoRA divides by sqrt(rank)", () => {
  const file = parseSafetensors(safetensors({ "lora_te_text_model_q_proj.lora_down.weight": down, "lora_te_text_model_q_proj.lora_up.weight": up, "lora_te_text_model_q_proj.alpha": { shape: [], data: [4] } }));
  assert.equal(planLora(TABLE, file)[0].factor, 2);
  const rs = { lora_adapter_metadata: JSON.stringify({ "text_encoder.lora_alpha": 4, "text_encoder.use_rslora": true }) };
  const peft = parseSafetensors(safetensors({ "text_encoder.q_proj.lora_A.weight": down, "text_encoder.q_proj.lora_B.weight": up }, rs));
  assert.equal(planLora(TABLE, peft)[0].factor, 4 / Math.SQRT2);
});

test("keys and shapes that do not fit are named", () => {
  const plan = (tensors, meta) => planLora(TABLE, parseSafetensors(safetensors(tensors, meta)), "x.safetensors");
  assert.throws(() => plan({ "unet.attn.to_v.lora_A.weight": down }), /WSD_LORA: x.safetensors: key unet.attn.to_v.lora_A.weight names no layer/);
  assert.throws(() => plan({ "unet.attn.to_q.lora_A.weight": down }), /layer unet.attn.to_q has no up matrix/);
  assert.throws(() => plan({ "unet.attn.to_q.lora_A.weight": down, "unet.attn.to_q.lora_B.weight": { shape: [2, 3], data: [0, 0, 0, 0, 0, 0] } }), /does not follow down/);
  const meta = { lora_adapter_metadata: JSON.stringify({ "unet.rank_pattern": { to_q: 8 } }) };
  assert.throws(() => plan({ "unet.attn.to_q.lora_A.weight": down, "unet.attn.to_q.lora_B.weight": up }, meta), /unet.rank_pattern is set/);
  const [change] = plan({ "unet.attn.to_q.lora_A.weight": down, "unet.attn.to_q.lora_B.weight": up });
  assert.throws(() => mergeLayer(new Float32Array(8), [2, 4], change, 1), /do not fit its weight \[2,4\]/);
  assert.throws(() => planLora(undefined, { tensors: new Map(), metadata: {} }), /built before LoRA support/);
});

test("damaged files are refused by name", () => {
  const good = safetensors({ "unet.attn.to_q.lora_A.weight": down });
  assert.throws(() => parseSafetensors(good.subarray(0, 5)), /WSD_LORA: LoRA file: not a safetensors file/);
  assert.throws(() => parseSafetensors(good.subarray(0, good.length - 4)), /lies outside the file/);
  const bad = good.slice();
  bad[8] = "!".charCodeAt(0);
  assert.throws(() => parseSafetensors(bad), /header is not JSON/);
});

test("float16 words round-trip every float32 as numpy's astype(float16) does", () => {
  assert.deepEqual(Array.from(floatToHalf([0, 1, -2, 65504, 1e-8, 70000, 0.1])), [0, 0x3c00, 0xc000, 0x7bff, 0, 0x7c00, 0x2e66]);
  assert.deepEqual(Array.from(halfToFloat(Uint16Array.of(0x3c00, 0x0001, 0xfc00))), [1, 2 ** -24, -Infinity]);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffff }), (word) => {
      const exp = (word >> 10) & 0x1f;
      if (exp === 31 && word & 0x3ff) return true; // NaN payloads
      return floatToHalf(halfToFloat(Uint16Array.of(word)))[0] === word;
    })
  );
});
