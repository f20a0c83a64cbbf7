import assert from "node:assert/strict";
import { test } from "node:test";
import { SUBGROUP_MATRIX, fittingShaders, gemmPath, tensorCoreRefusal } from "../lib/assets.js";

// What an H100 reports through Dawn (benchmarks/results/gpu-2026-12-05-subgroup-matrix-probe.json).
const h100 = {
  subgroupMinSize: 32,
  subgroupMaxSize: 32,
  subgroupMatrixConfigs: [
    { M: 16, N: 16, K: 16, componentType: "f16", resultComponentType: "f16" },
    { M: 16, N: 16, K: 16, componentType: "f16", resultComponentType: "f32" },
  ],
};
const sg = { kernels: 40, fragment: [16, 16, 16], subgroup_size: 32, workgroup_storage: 23040 };
const device = (features, storage = 32768) => ({ features: new Set(features), limits: { maxComputeWorkgroupStorageSize: storage } });

test("an adapter like the H100 takes the tensor-core kernels", () => {
  assert.equal(tensorCoreRefusal(h100, device([SUBGROUP_MATRIX, "subgroups"]), sg), null);
});

test("each thing the WGSL assumes is checked, and the refusal says which", () => {
  assert.match(tensorCoreRefusal(h100, device(["subgroups"]), sg), /lacks chromium-experimental-subgroup-matrix/);
  assert.match(tensorCoreRefusal(h100, device([SUBGROUP_MATRIX]), sg), /lacks subgroups/);
  const apple = { ...h100, subgroupMatrixConfigs: [{ M: 8, N: 8, K: 8, componentType: "f16", resultComponentType: "f32" }] };
  assert.match(tensorCoreRefusal(apple, device([SUBGROUP_MATRIX, "subgroups"]), sg), /no f16 -> f32 16x16x16/);
  const wide = { ...h100, subgroupMinSize: 64, subgroupMaxSize: 64 };
  assert.match(tensorCoreRefusal(wide, device([SUBGROUP_MATRIX, "subgroups"]), sg), /64-64 invocations; .* exactly 32/);
  assert.match(tensorCoreRefusal(h100, device([SUBGROUP_MATRIX, "subgroups"], 16384), sg), /23040 bytes .* allows 16384/);
});

test("a browser that does not report a property is not refused for it", () => {
  assert.equal(tensorCoreRefusal({}, device([SUBGROUP_MATRIX, "subgroups"]), sg), null);
});

test("without tensor cores a build's tiled GEMMs are chosen, where their workgroup memory fits", () => {
  const tiled = { shaders: "shaders/tiled-gemm.json", kernels: 40, workgroup_storage: 18944 };
  const requirements = { subgroup_matrix: { ...sg, shaders: "shaders/subgroup-matrix.json" }, tiled_gemm: tiled };
  assert.equal(gemmPath(h100, device([SUBGROUP_MATRIX, "subgroups"]), requirements).path, "tensor cores");
  const plain = gemmPath(h100, device([]), requirements);
  assert.equal(plain.path, "tiled");
  assert.equal(plain.section, tiled);
  assert.match(plain.refused, /lacks chromium-experimental-subgroup-matrix/);
  // little workgroup memory: still the tiled path (fittingShaders keeps the kernels that fit)
  assert.equal(gemmPath(h100, device([], 16384), requirements).path, "tiled");
  // a build from before the tiled kernels, and a build without GEMM shaders
  assert.equal(gemmPath(h100, device([]), { subgroup_matrix: requirements.subgroup_matrix }).path, "");
  assert.deepEqual(gemmPath(h100, device([]), {}), { path: "", section: null, refused: null });
  // an fp32 build: tiled GEMMs only, even where the device has tensor cores
  const fp32 = gemmPath(h100, device([SUBGROUP_MATRIX, "subgroups"]), { subgroup_matrix: { kernels: 0 }, tiled_gemm: tiled });
  assert.deepEqual([fp32.path, fp32.refused], ["tiled", "the build's GEMMs are fp32"]);
});

test("a slower GEMM path can be asked for, and a wrong name is refused", () => {
  const tiled = { shaders: "shaders/tiled-gemm.json", kernels: 40, workgroup_storage: 18944 };
  const requirements = { subgroup_matrix: { ...sg, shaders: "shaders/subgroup-matrix.json" }, tiled_gemm: tiled };
  const h100dev = device([SUBGROUP_MATRIX, "subgroups"]);
  assert.deepEqual([gemmPath(h100, h100dev, requirements, "tiled").path, gemmPath(h100, h100dev, requirements, "tiled").refused], ["tiled", "tiled GEMMs asked for"]);
  assert.deepEqual(gemmPath(h100, h100dev, requirements, "tvm"), { path: "", section: null, refused: "TVM's kernels asked for" });
  assert.equal(gemmPath(h100, h100dev, requirements, "auto").path, "tensor cores");
  assert.throws(() => gemmPath(h100, h100dev, requirements, "fastest"), /WSD_INPUT: gemmPath must be one of auto, tiled, tvm/);
});

test("a tiled kernel over the device's workgroup memory keeps TVM's; the others are swapped", () => {
  const wgsl = (halves) => `var<workgroup> As : array<f16, ${halves}>;\n@compute @workgroup_size(256, 1, 1)\nfn k() {}`;
  const swaps = { big_kernel: wgsl(9472), small_kernel: wgsl(4096) }; // 18944 and 8192 bytes
  const limits = { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256 };
  assert.deepEqual(Object.keys(fittingShaders(swaps, limits)), ["small_kernel"]);
  assert.deepEqual(Object.keys(fittingShaders(swaps, { ...limits, maxComputeWorkgroupStorageSize: 32768 })), ["big_kernel", "small_kernel"]);
  assert.deepEqual(fittingShaders(swaps, { ...limits, maxComputeInvocationsPerWorkgroup: 128 }), {});
});
