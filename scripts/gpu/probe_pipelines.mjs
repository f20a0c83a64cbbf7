// Probe: where a build's open spends its pipeline time on this GPU (issue 35, target 4).
//
//   node probe_pipelines.mjs DIST out.json     (WSD_DAWN_MODULES names npm `webgpu`'s node_modules)
//
// Creates every compute pipeline of a build (TVM's WGSL with the tensor-core overrides in place, as
// the page does) on a fresh device each time, several ways, and times each:
//   modules      createShaderModule + getCompilationInfo only (Tint's front end, no driver)
//   async-all    every createComputePipelineAsync at once (what tvmjs does)
//   sync-serial  createComputePipeline one after the other
//   async-N      at most N pipelines in flight
// Run with __GL_SHADER_DISK_CACHE=0 to keep the NVIDIA driver's disk cache out of the comparison.
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const dawn = require(path.join(process.env.WSD_DAWN_MODULES, "webgpu", "dist", "linux-x64", "dawn.node"));
Object.assign(globalThis, dawn.globals);
const gpu = dawn.create(["enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia"]);
const [dist, outPath] = process.argv.slice(2);

const shaders = JSON.parse(fs.readFileSync(path.join(dist, "shaders", "wgsl.json"), "utf8"));
const overridesPath = path.join(dist, "shaders", "subgroup-matrix.json");
const overrides = fs.existsSync(overridesPath) ? JSON.parse(fs.readFileSync(overridesPath, "utf8")) : {};
const kernels = Object.entries({ ...shaders, ...overrides });

async function freshDevice() {
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  const wanted = ["shader-f16", "subgroups", "chromium-experimental-subgroup-matrix"].filter((f) => adapter.features.has(f));
  const limits = {};
  for (const k of ["maxStorageBuffersPerShaderStage", "maxComputeWorkgroupStorageSize", "maxComputeInvocationsPerWorkgroup", "maxComputeWorkgroupSizeX", "maxStorageBufferBindingSize", "maxBufferSize"]) limits[k] = adapter.limits[k];
  return adapter.requestDevice({ requiredFeatures: wanted, requiredLimits: limits });
}

const descriptor = (device, name, code) => ({ layout: "auto", compute: { module: device.createShaderModule({ code }), entryPoint: name } });

const ways = {
  async modules(device) {
    for (const [, code] of kernels) await device.createShaderModule({ code }).getCompilationInfo();
  },
  async "async-all"(device) {
    await Promise.all(kernels.map(([name, code]) => device.createComputePipelineAsync(descriptor(device, name, code))));
  },
  async "sync-serial"(device) {
    for (const [name, code] of kernels) device.createComputePipeline(descriptor(device, name, code));
    await device.queue.onSubmittedWorkDone();
  },
  async "async-4"(device) {
    await inFlight(device, 4);
  },
  async "async-16"(device) {
    await inFlight(device, 16);
  },
};

async function inFlight(device, n) {
  let next = 0;
  const worker = async () => {
    while (next < kernels.length) {
      const [name, code] = kernels[next++];
      await device.createComputePipelineAsync(descriptor(device, name, code));
    }
  };
  await Promise.all(Array.from({ length: n }, worker));
}

const results = { kernels: kernels.length, overrides: Object.keys(overrides).length, disk_cache: process.env.__GL_SHADER_DISK_CACHE ?? "default", ms: {} };
for (const way of (process.env.WSD_PROBE_WAYS || "modules,async-all,sync-serial,async-4,async-16").split(",")) {
  const device = await freshDevice();
  device.pushErrorScope("validation");
  const t0 = performance.now();
  await ways[way](device);
  const ms = performance.now() - t0;
  const err = await device.popErrorScope();
  results.ms[way] = Math.round(ms);
  console.log(`${way.padEnd(12)} ${(ms / 1000).toFixed(2)} s for ${kernels.length} pipelines${err ? `  (error: ${err.message.slice(0, 200)})` : ""}`);
  device.destroy();
}
fs.writeFileSync(outPath, JSON.stringify(results, null, 1));
