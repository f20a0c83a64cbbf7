// What a build ships besides the wasm and the weights, read through the verified store
// (lib/integrity.js): the manifest, the tokenizer files, the sampler tables, and the GEMM shaders
// of a --subgroup-matrix build (tensor-core and tiled).
import { WsdError } from "./errors.js";
import { shaderOverLimits } from "./gpu.js";
import { ClipTokenizer } from "./tokenizer.js";
import { checkManifest, checkSamplerTable } from "./validate.js";

// Dawn's name for subgroup matrices (tensor cores): --subgroup-matrix builds use it where present
export const SUBGROUP_MATRIX = "chromium-experimental-subgroup-matrix";

export function folderUrl(url) {
  const href = new URL(url, globalThis.location ? globalThis.location.href : undefined).href;
  return href.endsWith("/") ? href : `${href}/`;
}

// manifest.json is the root of trust: fetched fresh (the service worker falls back to its
// cached copy when offline), never from an HTTP cache that could hold an older build's.
export async function fetchManifest(base, fetcher = globalThis.fetch.bind(globalThis)) {
  let response;
  try {
    response = await fetcher(new URL("manifest.json", base).href, { cache: "no-cache" });
  } catch (err) {
    throw new WsdError("WSD_FETCH", `manifest.json of ${base}: ${err.message || err}`);
  }
  if (!response.ok) throw new WsdError("WSD_FETCH", `manifest.json of ${base}: HTTP ${response.status}`);
  let manifest;
  try {
    manifest = await response.json();
  } catch (err) {
    throw new WsdError("WSD_MODEL", `manifest.json of ${base} is not valid JSON: ${err.message || err}`);
  }
  checkManifest(manifest, `manifest.json of ${base}`);
  if (manifest.target !== "webgpu") {
    throw new WsdError("WSD_MODEL", `${manifest.model} at ${base} was built for ${manifest.target}, not webgpu.`);
  }
  return manifest;
}

// The build's tokenizers in the generation plan's order (SDXL has two); each pads with its own token.
export async function loadTokenizers(store, manifest) {
  const plans = manifest.generation?.text?.tokenizers || [{ path: "tokenizer", pad: "<|endoftext|>", max_length: manifest.max_tokens || 77 }];
  const out = [];
  for (const t of plans) {
    try {
      const vocab = await store.json(`${t.path}/vocab.json`);
      const merges = await store.text(`${t.path}/merges.txt`);
      out.push(new ClipTokenizer(vocab, merges, { maxLength: t.max_length, pad: t.pad }));
    } catch (err) {
      throw new WsdError("WSD_TOKENIZER", `the tokenizer in ${t.path}/ could not be loaded: ${err.message || err}`);
    }
  }
  return out;
}

export function stepChoices(manifest, scheduler) {
  const steps = (manifest.scheduler_steps || {})[scheduler];
  if (!steps) throw new WsdError("WSD_INPUT", `scheduler ${JSON.stringify(scheduler)} is not in this build; it has ${manifest.schedulers}`);
  return steps;
}

export async function loadSamplerTable(store, manifest, scheduler, steps) {
  const choices = stepChoices(manifest, scheduler);
  if (!choices.includes(steps)) throw new WsdError("WSD_INPUT", `steps must be one of ${choices.join(", ")} for ${scheduler} (the tables this build wrote), not ${steps}`);
  const name = `schedulers/${scheduler}-${steps}.json`;
  return checkSamplerTable(await store.json(name), name);
}

// Why this device cannot run a --subgroup-matrix build's tensor-core WGSL (null when it can): the
// WGSL assumes the feature, f16 fragments of the manifest's shape with f32 results, subgroups of
// exactly `subgroup_size` invocations (its 4 subgroups per workgroup are found by subgroup_id) and
// the workgroup memory it declares. A browser that does not report a property is not refused for it.
export function tensorCoreRefusal(info, device, sg) {
  for (const feature of [SUBGROUP_MATRIX, "subgroups"]) {
    if (!device.features.has(feature)) return `the device lacks ${feature}`;
  }
  const [m, n, k] = sg.fragment || [16, 16, 16];
  const configs = info?.subgroupMatrixConfigs;
  const fits = (c) => c.M === m && c.N === n && c.K === k && c.componentType === "f16" && c.resultComponentType === "f32";
  if (configs && ![...configs].some(fits)) return `no f16 -> f32 ${m}x${n}x${k} subgroup matrix among the adapter's configurations`;
  const size = sg.subgroup_size;
  const [least, most] = [info?.subgroupMinSize, info?.subgroupMaxSize];
  if (size && typeof least === "number" && typeof most === "number" && (least !== size || most !== size)) {
    return `subgroups of ${least}-${most} invocations; the tensor-core kernels assume exactly ${size}`;
  }
  if ((sg.workgroup_storage || 0) > device.limits.maxComputeWorkgroupStorageSize) {
    return `the kernels use ${sg.workgroup_storage} bytes of workgroup memory; the device allows ${device.limits.maxComputeWorkgroupStorageSize}`;
  }
  return null;
}

// A --subgroup-matrix build ships, per GEMM kernel, two WGSL replacements with the same bindings
// and grid as TVM's kernel: one on tensor cores (subgroup matrices) and one register-tiled on plain
// invocations (requirements.tiled_gemm), for devices without them. Which set this device runs:
// { path: "tensor cores" | "tiled" | "", section, refused (why not tensor cores) }; "" where
// neither fits (TVM's own kernels run: correct, slow) or the build has no GEMM shaders.
// `prefer` ("tiled" or "tvm") rules out the faster paths, so that the gate and the benchmarks
// can run each path a device offers.
export const GEMM_PATHS = ["auto", "tiled", "tvm"];
export function gemmPath(info, device, requirements, prefer = "auto") {
  if (!GEMM_PATHS.includes(prefer)) throw new WsdError("WSD_INPUT", `gemmPath must be one of ${GEMM_PATHS.join(", ")}, not ${prefer}`);
  const sg = requirements?.subgroup_matrix;
  const tiled = requirements?.tiled_gemm;
  if (!sg?.kernels && !tiled?.kernels) return { path: "", section: null, refused: null };
  if (prefer === "tvm") return { path: "", section: null, refused: "TVM's kernels asked for" };
  // an fp32 build has tiled GEMMs only: tensor cores take f16
  let refused = sg?.kernels ? tensorCoreRefusal(info, device, sg) : "the build's GEMMs are fp32";
  if (!refused && prefer === "tiled") refused = "tiled GEMMs asked for";
  if (!refused) return { path: "tensor cores", section: sg, refused: null };
  // a tiled kernel whose workgroup memory the device lacks keeps TVM's (swapGemmShaders)
  return tiled?.kernels ? { path: "tiled", section: tiled, refused } : { path: "", section: null, refused };
}

// The tiled kernels a device can run: those within its limits (a 128x128 tile takes 18.5 KiB of
// workgroup memory in fp16, over WebGPU's default 16 KiB; smaller tiles fit). The rest keep TVM's.
export function fittingShaders(swaps, limits) {
  return Object.fromEntries(Object.entries(swaps).filter(([, code]) => shaderOverLimits(code, limits).length === 0));
}

// Swaps the chosen set in as the pipelines are created. Returns gemmPath's answer and how many
// kernels were swapped (tiled: those the device's limits allow).
export async function swapGemmShaders(webGPUContext, adapter, device, store, manifest, prefer = "auto") {
  const chosen = gemmPath(adapter.info, device, manifest.requirements, prefer);
  if (!chosen.section) return { ...chosen, kernels: 0 };
  let swaps = await store.json(chosen.section.shaders);
  if (chosen.path === "tiled") swaps = fittingShaders(swaps, device.limits);
  const { kernels, fallbacks } = replaceShaders(webGPUContext, swaps);
  return { ...chosen, kernels, fallbacks };
}

// From now on the pipelines of the entry points in `swaps` (entry -> WGSL) are made from that
// WGSL instead of the module's own. A replacement this device refuses (its WGSL or its pipeline)
// falls back to the module's own kernel, and `fallbacks` (filled as the pipelines are made) says
// which and why: a driver that cannot take the tiled WGSL leaves the model slower, not broken.
// (The fallback is on the asynchronous path, the one tvmjs's pipeline loader takes; the
// synchronous createShader swaps without one.)
export function replaceShaders(webGPUContext, swaps) {
  const table = new Map(Object.entries(swaps || {}));
  const fallbacks = [];
  const device = webGPUContext.device;
  const makeSync = webGPUContext.createShader.bind(webGPUContext);
  const makeAsync = webGPUContext.createShaderAsync.bind(webGPUContext);
  webGPUContext.createShader = (finfo, code) => makeSync(finfo, table.get(finfo.name) ?? code);
  webGPUContext.createShaderAsync = async (finfo, code) => {
    const swapped = table.get(finfo.name);
    if (swapped === undefined) return makeAsync(finfo, code);
    // the module is made in the call's synchronous part: the scope catches its errors alone
    device.pushErrorScope("validation");
    const made = makeAsync(finfo, swapped).then((func) => ({ func }), (error) => ({ error }));
    const scoped = device.popErrorScope();
    const [result, error] = await Promise.all([made, scoped]);
    if (result.func && !error) return result.func;
    fallbacks.push({ kernel: finfo.name, reason: String(error?.message ?? result.error?.message ?? result.error) });
    return makeAsync(finfo, code);
  };
  return { kernels: table.size, fallbacks };
}
