// Validates WGSL shaders with Dawn (npm `webgpu`): node validate_wgsl.js <shaders.json> [pipelines]
// shaders.json maps kernel name -> WGSL source (entry point = kernel name).
// Prints one JSON object: {adapter, ms, results: [{name, ok, messages}]}.
"use strict";
const fs = require("fs");
const path = require("path");

const addon = path.join(process.env.WSD_DAWN_MODULES, "webgpu", "dist", `${process.platform}-${process.arch}`, "dawn.node");

// The features a shader's `enable` directives ask of the device.
const ENABLES = { f16: "shader-f16", subgroups: "subgroups", chromium_experimental_subgroup_matrix: "chromium-experimental-subgroup-matrix" };
function featuresOf(code) {
  return [...code.matchAll(/^\s*enable\s+(\w+)\s*;/gm)].map((m) => ENABLES[m[1]] || m[1]);
}

async function validate(device, name, code, pipelines) {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const messages = info.messages.filter((m) => m.type === "error").map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
  if (pipelines && messages.length === 0) {
    try {
      await device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: name } });
    } catch (e) {
      messages.push(String(e.message || e));
    }
  }
  const scoped = await device.popErrorScope();
  if (scoped && messages.length === 0) messages.push(scoped.message);
  return { name, ok: messages.length === 0, messages };
}

async function deviceOf(gpu) {
  const adapter = await gpu.requestAdapter();
  if (!adapter) return null;
  const limits = {};
  for (const key of ["maxComputeWorkgroupStorageSize", "maxComputeInvocationsPerWorkgroup", "maxStorageBuffersPerShaderStage"]) {
    limits[key] = adapter.limits[key];
  }
  const features = Object.values(ENABLES).filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits: limits, requiredFeatures: features });
  return { adapter, device, has: (needed) => needed.every((f) => device.features.has(f)) };
}

async function main() {
  const dawn = require(addon);
  const shaders = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const pipelines = process.argv[3] === "pipelines";
  Object.assign(globalThis, dawn.globals);
  // Keep the GPU instances referenced for the whole run: once one is garbage-collected, Dawn
  // tears the instance down under the live device (futex errors, segfaults, stalls).
  globalThis.wsdGpu = dawn.create([]);
  const real = await deviceOf(globalThis.wsdGpu);
  if (!real) throw new Error("Dawn found no WebGPU adapter (is a Vulkan driver or SwiftShader ICD visible?)");
  // Shaders whose features the adapter lacks (fp16 on SwiftShader, subgroup matrices without
  // allow_unsafe_apis) go to Dawn's null adapter: Tint's front end parses, resolves and
  // validates them and the pipeline's layout; no backend compiles them.
  let nul;
  const t0 = Date.now();
  const results = [];
  for (const [name, code] of Object.entries(shaders)) {
    const needed = featuresOf(code);
    if (real.has(needed)) {
      results.push(await validate(real.device, name, code, pipelines));
      continue;
    }
    if (nul === undefined) {
      globalThis.wsdNullGpu = dawn.create(["backend=null", "enable-dawn-features=allow_unsafe_apis"]);
      nul = await deviceOf(globalThis.wsdNullGpu);
    }
    if (!nul || !nul.has(needed)) {
      results.push({ name, ok: true, skipped: `no adapter here has ${needed.join(", ")}`, messages: [] });
      continue;
    }
    results.push({ ...(await validate(nul.device, name, code, pipelines)), front_end_only: true });
  }
  const info = real.adapter.info || {};
  const adapterInfo = { vendor: info.vendor, architecture: info.architecture, features: Array.from(real.adapter.features).sort() };
  process.stdout.write(JSON.stringify({ adapter: adapterInfo, ms: Date.now() - t0, results }));
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(String((e && e.stack) || e) + "\n");
  process.exit(3);
});
