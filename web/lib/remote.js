// What the harness calls on a loaded model, the same in the browser runner page
// (web/runner/runner.js) and in Node over Dawn (web/tools/dawn_runner.mjs): open a build,
// run entry points and kernels, tokenize, generate. Arrays cross the wire as base64.
//   adapterInfo()            -> the WebGPU adapter (vendor, architecture, features, limits)
//   runModule(spec)          -> load a compiled .wasm, run one entry point, return outputs (smoke module;
//                            spec.shaders: entry -> WGSL made into pipelines instead of the module's)
//   open({url, profile, overlap, gemmPath}) -> load a `wsd build` model once (reused while its wasm is
//                            the same); overlap false: the weights after the pipelines, not beside them
//                            (benchmarks); gemmPath "tiled"/"tvm": that GEMM path, not the fastest
//   run({entry, inputs})     -> one entry point of the open model on base64 arrays
//   runKernels({kernels})    -> compiled kernels one by one (localization)
//   runChain({buffers, calls, upto, fetch}) -> kernels chained on GPU buffers (localization)
//   bench({entry, inputs, repeat, flushEvery, profileRuns, warmupMs}) -> wall ms per call, per-kernel GPU ms
//                            (profileRuns calls) when opened with {profile: true}
//   tokenize({prompts, index}) -> the page's CLIP tokenizer (the build's index-th) on its vocabulary
//   generate(options)        -> prompt to image (lib/pipeline.js), image and latents as base64
//   setLora({data, scale, name}) -> a LoRA file (base64 safetensors) merged into the open model; data null: none
//   memory()                 -> GPU buffers and bytes the runtime holds
// Errors are Error objects whose message starts with a stable code ("WSD_NO_WEBGPU: ...").
import { replaceShaders } from "./assets.js";
import { WsdError } from "./errors.js";
import { createDevice, describeAdapter, requestAdapter } from "./gpu.js";
import { generate as generateImage } from "./pipeline.js";
import * as probes from "./probes.js";
import { ModelSession } from "./session.js";
import { hostArray } from "./tensors.js";

function decodeBase64(text) {
  const raw = atob(text);
  return Uint8Array.from(raw, (ch) => ch.charCodeAt(0));
}

function encodeBase64(view) {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  let raw = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    raw += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  }
  return btoa(raw);
}

function fromWire(item) {
  return hostArray(decodeBase64(item.data), item.shape, item.dtype);
}

function toWire(host) {
  return { data: encodeBase64(host.data), shape: host.shape, dtype: host.dtype };
}

export function createRemote({ onStatus = () => {}, sessionOptions = {} } = {}) {
  let session = null;
  const setStatus = onStatus;

  async function adapterInfo() {
    return describeAdapter(await requestAdapter());
  }

  function requireSession() {
    if (!session) throw new WsdError("WSD_MODEL", "no model is open: call wsd.open({url}) first");
    return session;
  }

  async function open(spec) {
    setStatus(`opening ${spec.url}`);
    const t0 = performance.now();
    if (spec.profile && session && !session.profiler) {
      session.dispose(); // a profiled session needs its own device (timestamp-query) from the start
      session = null;
    }
    const options = { ...sessionOptions, profile: Boolean(spec.profile), reuse: session, overlapOpen: spec.overlap !== false };
    if (spec.gemmPath) options.gemmPath = spec.gemmPath; // "tiled" or "tvm": that GEMM path, not the fastest
    session = await ModelSession.open(spec.url, { ...options, onProgress: (p) => setStatus(p.text) });
    setStatus(`open ${session.manifest.model}`);
    return {
      model: session.manifest.model,
      adapter: session.adapterInfo(),
      subgroup_matrix_kernels: session.subgroupKernels, // GEMM kernels on tensor cores (--subgroup-matrix builds)
      subgroup_matrix_refused: session.tensorCoreRefusal || null, // why not, where a build has them
      tiled_gemm_kernels: session.tiledKernels || 0, // GEMM kernels as tiled WGSL (no tensor cores)
      gemm_fallbacks: session.gemmFallbacks || [], // replacements the device refused, each on TVM's kernel
      timings: { ...session.timings, open_ms: performance.now() - t0 },
    };
  }

  async function run(spec) {
    const result = await requireSession().run(spec.entry, spec.inputs.map(fromWire));
    return { outputs: result.outputs.map(toWire), ms: result.ms };
  }

  async function runKernels(spec) {
    const results = await probes.runKernels(requireSession(), spec.kernels.map((k) => ({ ...k, args: k.args.map(fromWire) })));
    return results.map((outs) => (Array.isArray(outs) ? outs.map(toWire) : outs));
  }

  async function runChain(spec) {
    const buffers = spec.buffers.map((b) => (b.init ? { ...b, init: fromWire(b.init) } : b));
    const calls = spec.calls.map((c) => (c.fill ? { fill: c.fill.map(([i, host]) => [i, fromWire(host)]) } : c));
    const outs = await probes.runChain(requireSession(), { ...spec, buffers, calls });
    return outs.map(toWire);
  }

  async function bench(spec) {
    const { entry, inputs, repeat, flushEvery, profileRuns, warmupMs } = spec;
    return probes.bench(requireSession(), entry, inputs.map(fromWire), repeat || 10, flushEvery, profileRuns || 1, warmupMs || 0);
  }

  async function tokenize(spec) {
    const tokenizer = await requireSession().tokenizer(spec.index || 0);
    return spec.prompts.map((p) => Array.from(tokenizer.encode(p).ids));
  }

  async function generate(options) {
    const opts = { ...options };
    if (opts.noise) opts.noise = fromWire(opts.noise).data;
    if (opts.stepNoise) opts.stepNoise = fromWire(opts.stepNoise).data;
    for (const key of ["posteriorNoise", "maskedNoise"]) if (opts[key]) opts[key] = fromWire(opts[key]).data;
    for (const key of ["initImage", "maskImage"]) {
      if (!opts[key]) continue;
      const pixels = fromWire(opts[key]); // (H, W, 3) in 0..255
      opts[key] = { height: pixels.shape[0], width: pixels.shape[1], rgb: pixels.data };
    }
    const t0 = performance.now();
    const out = await generateImage(requireSession(), opts, { onProgress: (p) => setStatus(`${p.stage} ${p.step}/${p.steps}`) });
    const shape = requireSession().manifest.latent_shape;
    return {
      rgba: encodeBase64(out.rgba),
      width: out.width,
      height: out.height,
      latents: toWire({ data: out.latents, shape, dtype: "float32" }),
      noise: toWire({ data: out.noise, shape, dtype: "float32" }),
      tokens: out.tokens,
      timings: { ...out.timings, wall_ms: performance.now() - t0 },
    };
  }

  function setLora(spec) {
    const file = spec.data ? decodeBase64(spec.data) : null;
    return requireSession().setLora(file, spec.scale ?? 1, spec.name || "LoRA file");
  }

  function memory() {
    return requireSession().memory();
  }

  // The smoke module's one-shot path (wsd smoke): a bare .wasm without a manifest.
  async function runModule(spec) {
    setStatus(`running ${spec.entry}`);
    const adapter = await requestAdapter();
    const { device, errors } = await createDevice(adapter);
    const response = await fetch(spec.wasm);
    if (!response.ok) throw new WsdError("WSD_FETCH", `${spec.wasm}: HTTP ${response.status}`);
    const tvm = await tvmjs.instantiate(await response.arrayBuffer(), tvmjs.createPolyfillWASI(), () => {});
    const timings = {};
    tvm.beginScope();
    try {
      tvm.initWebGPU(device);
      const { fallbacks } = replaceShaders(tvm.lib.webGPUContext, spec.shaders); // WGSL in place of the module's (tests)
      let t0 = performance.now();
      try {
        await tvm.asyncLoadWebGPUPipelines(tvm.systemLib());
      } catch (err) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        throw new WsdError("WSD_SHADER", [...errors, String(err.message || err)].join("\n"));
      }
      timings.pipelines_ms = performance.now() - t0;
      if (errors.length) throw new WsdError("WSD_SHADER", errors.join("\n"));
      const dev = tvm.webgpu();
      const fn = tvm.createVirtualMachine(dev).getFunction(spec.entry);
      const args = spec.inputs.map((input) => {
        const gpu = tvm.empty(input.shape, input.dtype, dev);
        gpu.copyFromRawBytes(decodeBase64(input.data));
        return gpu;
      });
      const runs = [];
      let result = null;
      for (let i = 0; i < (spec.repeat || 1); ++i) {
        t0 = performance.now();
        result = fn(...args);
        await tvm.webgpu().sync();
        runs.push(performance.now() - t0);
      }
      if (errors.length) throw new WsdError("WSD_GPU_ERROR", errors.join("\n"));
      const list = result.size !== undefined && result.get !== undefined ? result : null;
      const tensors = list ? Array.from({ length: list.size() }, (_, i) => list.get(i)) : [result];
      const outputs = [];
      for (const tensor of tensors) {
        const cpu = tvm.empty(tensor.shape, tensor.dtype, tvm.cpu());
        cpu.copyFrom(tensor);
        await tvm.webgpu().sync();
        outputs.push({ data: encodeBase64(cpu.toRawBytes()), shape: tensor.shape, dtype: tensor.dtype });
      }
      timings.run_ms = runs;
      setStatus(`done ${spec.entry}`);
      return { outputs, timings, adapter: describeAdapter(adapter), shader_fallbacks: fallbacks };
    } finally {
      tvm.endScope();
      tvm.dispose();
      device.destroy();
    }
  }

  return { adapterInfo, runModule, open, run, runKernels, runChain, bench, tokenize, generate, setLora, memory };
}
