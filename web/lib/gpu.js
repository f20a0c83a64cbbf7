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

export async function createDevice(adapter, requirements = {}) {
  checkAdapter(adapter, requirements);
  const requiredLimits = Object.fromEntries(WANTED_LIMITS.map((key) => [key, Reflect.get(adapter.limits, key)]));
  const requiredFeatures = (requirements.features || []).filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  const errors = [];
  device.addEventListener("uncapturederror", (event) => errors.push(event.error.message));
  device.lost.then((info) => errors.push(`device lost: ${info.message}`));
  return { device, errors };
}
