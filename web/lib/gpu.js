// The WebGPU adapter and device, checked against what a model's manifest says it needs.
import { WsdError } from "./errors.js";

// Plain-object copy of a GPUSupportedLimits (its fields are getters, not own properties).
export function limitsToObject(limits) {
  const entries = [];
  for (const key in limits) {
    const value = Reflect.get(limits, key);
    if (typeof value === "number") entries.push([key, value]);
  }
  return Object.fromEntries(entries);
}

export async function requestAdapter(gpu = globalThis.navigator && globalThis.navigator.gpu) {
  if (gpu === undefined || gpu === null) {
    throw new WsdError(
      "WSD_NO_WEBGPU",
      "navigator.gpu is missing: this browser has no WebGPU. Use Chrome/Edge 113+ " +
        "(headless Chromium needs --enable-unsafe-webgpu; without a GPU also --enable-unsafe-swiftshader " +
        "--use-webgpu-adapter=swiftshader)."
    );
  }
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (adapter === null) throw new WsdError("WSD_NO_ADAPTER", "navigator.gpu.requestAdapter() returned null.");
  return adapter;
}

export function describeAdapter(adapter) {
  const info = adapter.info || {};
  return {
    vendor: info.vendor || "",
    architecture: info.architecture || "",
    device: info.device || "",
    description: info.description || "",
    features: Array.from(adapter.features).sort(),
    limits: limitsToObject(adapter.limits),
  };
}

// requirements: the manifest's {"features": [...], "limits": {name: minimum}}. Throws the
// first shortfall, naming the limit, the value needed and the value the adapter has.
export function checkAdapter(adapter, requirements = {}) {
  for (const feature of requirements.features || []) {
    if (!adapter.features.has(feature)) {
      if (feature === "shader-f16") throw new WsdError("WSD_NO_F16", "the adapter lacks the shader-f16 feature this float16 build needs.");
      throw new WsdError("WSD_LIMIT", `the adapter lacks the feature ${feature}.`, { feature });
    }
  }
  for (const [name, needed] of Object.entries(requirements.limits || {})) {
    const present = Reflect.get(adapter.limits, name);
    if (typeof present !== "number") continue; // a limit this browser does not know: nothing to compare
    if (present < needed) {
      throw new WsdError("WSD_LIMIT", `adapter limit ${name} is ${present}; this model needs at least ${needed}.`, { name, needed, present });
    }
  }
}

// The device asks for the adapter's own limits (not the WebGPU defaults) for what models use.
const WANTED_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxStorageBuffersPerShaderStage",
];

// `optional` features are asked for where the adapter has them (timestamp-query for profiling).
export async function createDevice(adapter, requirements = {}, optional = []) {
  checkAdapter(adapter, requirements);
  const requiredLimits = Object.fromEntries(WANTED_LIMITS.map((key) => [key, Reflect.get(adapter.limits, key)]));
  const requiredFeatures = [...(requirements.features || []), ...optional].filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  const errors = [];
  device.addEventListener("uncapturederror", (event) => errors.push(event.error.message));
  device.lost.then((info) => errors.push(`device lost: ${info.message}`));
  return { device, errors };
}

// What a shader asks of the device beyond its limits, read from its WGSL text: workgroup
// memory, invocations and workgroup size (what TVM's codegen emits, not arbitrary WGSL).
const SCALAR_BYTES = { f32: 4, i32: 4, u32: 4, f16: 2 };
export function shaderOverLimits(code, limits) {
  const problems = [];
  let shared = 0;
  for (const m of code.matchAll(/var<workgroup>\s+\w+\s*:\s*array<\s*(\w+)\s*,\s*(\d+)\s*>/g)) {
    shared += (SCALAR_BYTES[m[1]] || 4) * Number(m[2]);
  }
  if (shared > limits.maxComputeWorkgroupStorageSize) {
    problems.push(`uses ${shared} bytes of workgroup memory; the device allows ${limits.maxComputeWorkgroupStorageSize} (maxComputeWorkgroupStorageSize)`);
  }
  const size = /@workgroup_size\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?(?:,\s*(\d+)\s*)?\)/.exec(code);
  if (size) {
    const [x, y, z] = [size[1], size[2] || 1, size[3] || 1].map(Number);
    if (x * y * z > limits.maxComputeInvocationsPerWorkgroup) {
      problems.push(`runs ${x * y * z} invocations per workgroup; the device allows ${limits.maxComputeInvocationsPerWorkgroup}`);
    }
  }
  return problems;
}

// Which shaders fail to become pipelines on this device, and why: run when loading the
// pipelines failed, because Dawn's message does not say which of hundreds of kernels broke.
// Cheap checks first (compilation, limits read from the WGSL); pipelines are created one
// by one only when those find nothing. `shaders` maps an entry point to its WGSL (the
// build's shaders/wgsl.json).
export async function diagnoseShaders(device, shaders) {
  const kernelOf = (name) => name.replace(/_kernel(?:_[0-9]+)?$/, "");
  const failing = [];
  const modules = new Map();
  for (const [name, code] of Object.entries(shaders)) {
    const module = device.createShaderModule({ code });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error").map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
    errors.push(...shaderOverLimits(code, device.limits));
    if (errors.length) failing.push({ kernel: kernelOf(name), shader: name, message: errors.join("; ") });
    else modules.set(name, module);
  }
  if (failing.length) return failing;
  for (const [name, module] of modules) {
    device.pushErrorScope("validation");
    let message = null;
    try {
      await device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: name } });
    } catch (err) {
      message = String(err.message || err);
    }
    const scoped = await device.popErrorScope();
    if (message === null && scoped) message = scoped.message;
    if (message !== null) failing.push({ kernel: kernelOf(name), shader: name, message });
  }
  return failing;
}
