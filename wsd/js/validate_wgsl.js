// Validates WGSL shaders with Dawn (npm `webgpu`): node validate_wgsl.js <shaders.json> [pipelines]
// shaders.json maps kernel name -> WGSL source (entry point = kernel name).
// Prints one JSON object: {adapter, ms, results: [{name, ok, messages}]}.
"use strict";
const fs = require("fs");
const path = require("path");

const addon = path.join(process.env.WSD_DAWN_MODULES, "webgpu", "dist", `${process.platform}-${process.arch}`, "dawn.node");

async function validate(device, name, code, pipelines, hasF16) {
  if (!hasF16 && /^\s*enable\s+f16\s*;/m.test(code)) {
    // An fp16 shader needs a device with shader-f16 (SwiftShader has none): say so, do not guess.
    return { name, ok: true, skipped: "adapter lacks shader-f16", messages: [] };
  }
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

async function main() {
  const dawn = require(addon);
  const shaders = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const pipelines = process.argv[3] === "pipelines";
  Object.assign(globalThis, dawn.globals);
  // Keep the GPU instance referenced for the whole run: once it is garbage-collected, Dawn
  // tears the instance down under the live device (futex errors, segfaults, stalls).
  globalThis.wsdGpu = dawn.create([]);
  const adapter = await globalThis.wsdGpu.requestAdapter();
  if (!adapter) throw new Error("Dawn found no WebGPU adapter (is a Vulkan driver or SwiftShader ICD visible?)");
  const limits = {};
  for (const key of ["maxComputeWorkgroupStorageSize", "maxComputeInvocationsPerWorkgroup", "maxStorageBuffersPerShaderStage"]) {
    limits[key] = adapter.limits[key];
  }
  const hasF16 = adapter.features.has("shader-f16");
  const device = await adapter.requestDevice({ requiredLimits: limits, requiredFeatures: hasF16 ? ["shader-f16"] : [] });
  const t0 = Date.now();
  const results = [];
  for (const [name, code] of Object.entries(shaders)) results.push(await validate(device, name, code, pipelines, hasF16));
  const info = adapter.info || {};
  const adapterInfo = { vendor: info.vendor, architecture: info.architecture, features: Array.from(adapter.features).sort() };
  process.stdout.write(JSON.stringify({ adapter: adapterInfo, ms: Date.now() - t0, results }));
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(String((e && e.stack) || e) + "\n");
  process.exit(3);
});
