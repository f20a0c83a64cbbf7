import assert from "node:assert/strict";
import { test } from "node:test";
import { explain, WsdError } from "../lib/errors.js";
import { checkAdapter, diagnoseShaders, shaderOverLimits } from "../lib/gpu.js";
import { checkOptions, gaussianNoise, stepNoise } from "../lib/pipeline.js";

const adapter = (limits, features = []) => ({ limits, features: new Set(features) });

test("every code has a title and advice; unknown errors are 'unexpected'", () => {
  for (const code of ["WSD_NO_WEBGPU", "WSD_NO_ADAPTER", "WSD_LIMIT", "WSD_NO_F16", "WSD_FETCH", "WSD_INTEGRITY", "WSD_TOKENIZER", "WSD_MODEL", "WSD_INPUT", "WSD_SHADER", "WSD_GPU_ERROR"]) {
    const info = explain(new WsdError(code, "x"));
    assert.equal(info.code, code);
    assert.ok(info.title.length > 5 && info.advice.length > 20, code);
  }
  assert.equal(explain(new Error("boom")).code, "WSD_UNEXPECTED");
  assert.equal(explain("WSD_FETCH: from a string").code, "WSD_FETCH");
});

test("no WebGPU names the browsers and flags", () => {
  assert.match(explain(new WsdError("WSD_NO_WEBGPU", "")).advice, /Chrome.*113.*--enable-unsafe-webgpu/);
});

test("a limit below the model's need names the limit, the need and the value present", () => {
  assert.throws(
    () => checkAdapter(adapter({ maxStorageBufferBindingSize: 134217728 }), { limits: { maxStorageBufferBindingSize: 1 << 30 } }),
    /WSD_LIMIT: adapter limit maxStorageBufferBindingSize is 134217728; this model needs at least 1073741824/
  );
  checkAdapter(adapter({ maxStorageBufferBindingSize: 1 << 30 }), { limits: { maxStorageBufferBindingSize: 1 << 30 } });
});

test("an fp16 build on an adapter without shader-f16 is WSD_NO_F16", () => {
  assert.throws(() => checkAdapter(adapter({}), { features: ["shader-f16"] }), /WSD_NO_F16/);
  checkAdapter(adapter({}, ["shader-f16"]), { features: ["shader-f16"] });
});

const manifest = { schedulers: ["dpm-solver++", "euler"], default_scheduler: "dpm-solver++", scheduler_steps: { "dpm-solver++": [4, 20], euler: [4] } };

test("settings are checked with the field named", () => {
  assert.equal(checkOptions({ prompt: "x" }, manifest).steps, 20);
  assert.throws(() => checkOptions({ prompt: "x", steps: 7 }, manifest), /WSD_INPUT: steps: must be one of 4, 20/);
  assert.throws(() => checkOptions({ prompt: "x", seed: -1 }, manifest), /WSD_INPUT: seed/);
  assert.throws(() => checkOptions({ prompt: "x", guidance: NaN }, manifest), /WSD_INPUT: guidance/);
  assert.throws(() => checkOptions({ prompt: "x", scheduler: "lms" }, manifest), /WSD_INPUT: scheduler/);
  assert.throws(() => checkOptions({ prompt: 3 }, manifest), /WSD_INPUT: prompt/);
});

test("seeded noise is deterministic and standard normal", () => {
  const a = gaussianNoise(1, 20000);
  assert.deepEqual(a, gaussianNoise(1, 20000));
  assert.notDeepEqual(a, gaussianNoise(2, 20000));
  const mean = a.reduce((s, v) => s + v, 0) / a.length;
  const variance = a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length;
  assert.ok(Math.abs(mean) < 0.03 && Math.abs(variance - 1) < 0.05, `${mean} ${variance}`);
  assert.ok(a.every(Number.isFinite));
});

test("each denoising step has its own seeded noise, apart from the initial noise", () => {
  const first = stepNoise(1, 0, 4096);
  assert.deepEqual(first, stepNoise(1, 0, 4096));
  assert.notDeepEqual(first, stepNoise(1, 1, 4096));
  assert.notDeepEqual(first, stepNoise(2, 0, 4096));
  assert.notDeepEqual(first, gaussianNoise(1, 4096));
  const mean = first.reduce((s, v) => s + v, 0) / first.length;
  assert.ok(Math.abs(mean) < 0.06 && first.every(Number.isFinite), `${mean}`);
});

const LIMITS = { maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 256 };

test("a shader over the device's workgroup limits is named from its WGSL", () => {
  const ok = "var<workgroup> a : array<f32, 256>;\n@compute @workgroup_size(8, 8, 1)\nfn k() {}";
  assert.deepEqual(shaderOverLimits(ok, LIMITS), []);
  const big = "var<workgroup> a : array<f32, 10000>;\nvar<workgroup> b : array<f16, 2>;\n@compute @workgroup_size(16, 32)\nfn k() {}";
  const problems = shaderOverLimits(big, LIMITS);
  assert.equal(problems.length, 2);
  assert.match(problems[0], /40004 bytes of workgroup memory; the device allows 32768/);
  assert.match(problems[1], /512 invocations per workgroup; the device allows 256/);
});

test("diagnoseShaders names the kernel whose shader does not compile, else the one whose pipeline fails", async () => {
  const device = {
    limits: LIMITS,
    scopes: [],
    createShaderModule: ({ code }) => ({
      getCompilationInfo: async () => ({ messages: code.includes("i8") ? [{ type: "error", lineNum: 1, linePos: 9, message: "unresolved type 'i8'" }] : [] }),
      code,
    }),
    pushErrorScope() {},
    popErrorScope: async () => null,
    createComputePipelineAsync: async ({ compute }) => {
      if (compute.module.code.includes("broken")) throw new Error("pipeline refused");
    },
  };
  const compileFault = await diagnoseShaders(device, { take_kernel: "var<storage> x : array<i8>;", add_kernel: "fine", mm_kernel_1: "broken" });
  assert.deepEqual(compileFault.map((f) => f.kernel), ["take"]);
  assert.match(compileFault[0].message, /1:9 unresolved type 'i8'/);
  const pipelineFault = await diagnoseShaders(device, { add_kernel: "fine", mm_kernel_1: "broken" });
  assert.deepEqual(pipelineFault, [{ kernel: "mm", shader: "mm_kernel_1", message: "pipeline refused" }]);
});
