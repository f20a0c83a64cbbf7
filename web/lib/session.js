// The session core: one model loaded once (the wasm instantiated, every WebGPU pipeline created,
// the weights uploaded), then entry points run as often as wanted, one at a time; each run's
// temporaries live in a tvmjs scope that ends with the run, so GPU memory stays flat across runs.
// What the build ships besides: lib/assets.js; what only the harness asks: lib/probes.js.
import { fetchManifest, folderUrl, loadSamplerTable, loadTokenizers, stepChoices, swapGemmShaders } from "./assets.js";
import { WsdError } from "./errors.js";
import { createDevice, describeAdapter, diagnoseShaders, requestAdapter } from "./gpu.js";
import { VerifiedStore } from "./integrity.js";
import { floatToHalf, halfToFloat, mergeLayer, parseSafetensors, planLora } from "./lora.js";
import { KernelProfiler } from "./profile.js";
import { DEFAULT_FLUSH_EVERY, SubmissionPacer } from "./pacing.js";
import { batchedSync, hostArray, rawBytes } from "./tensors.js";
import { checkTensorCache } from "./validate.js";

export { fetchManifest, folderUrl };

export class ModelSession {
  constructor(tvmjs, base, manifest, adapter, device, errors, options) {
    Object.assign(this, { tvmjs, base, manifest, adapter, device, gpuErrors: errors, options });
    this.store = new VerifiedStore(base, manifest, options.store || {});
    this.params = new Map();
    this.functions = new Map();
    this.timings = {};
    this.queue = Promise.resolve();
  }

  // Opens the model at `url`; with `reuse` (an open session of the same wasm) only the
  // weights and tables are swapped, keeping the instance and its compiled pipelines.
  static async open(url, options = {}) {
    const tvmjs = options.tvmjs || globalThis.tvmjs;
    const progress = options.onProgress || (() => {});
    const base = folderUrl(url);
    progress({ stage: "manifest", text: "reading manifest.json" });
    const manifest = await fetchManifest(base, options.fetcher);
    const reuse = options.reuse;
    if (reuse && !reuse.disposed && reuse.wasmSha() === manifest.files[manifest.library]?.sha256) {
      await reuse.swapWeights(base, manifest, progress);
      return reuse;
    }
    if (reuse) reuse.dispose();
    const adapter = await requestAdapter(options.gpu);
    const optional = [...(manifest.requirements?.optional_features || []), ...(options.profile ? ["timestamp-query"] : [])];
    const { device, errors } = await createDevice(adapter, manifest.requirements || {}, optional);
    const session = new ModelSession(tvmjs, base, manifest, adapter, device, errors, options);
    // Installed before the pipelines are created: it learns each pipeline's kernel name then.
    if (options.profile && device.features.has("timestamp-query")) session.profiler = new KernelProfiler(device);
    try {
      await session.load(progress);
    } catch (err) {
      session.dispose();
      throw err;
    }
    return session;
  }

  wasmSha() {
    return this.manifest.files[this.manifest.library].sha256;
  }

  // Which GEMM kernels this open runs, in words (empty for a build without tensor-core shaders).
  kernelPath() {
    const { subgroup_matrix: sg, tiled_gemm: tiled } = this.manifest.requirements || {};
    if (!sg?.kernels && !tiled?.kernels) return "";
    if (this.subgroupKernels) return `${this.subgroupKernels} GEMMs on tensor cores`;
    const how = this.tiledKernels ? `${this.tiledKernels} GEMMs tiled` : "TVM's GEMM kernels";
    return `${how}, no tensor cores: ${this.tensorCoreRefusal}`;
  }

  adapterInfo() {
    return describeAdapter(this.adapter);
  }

  async load(progress) {
    const t0 = performance.now();
    progress({ stage: "wasm", text: `fetching ${this.manifest.library}` });
    const wasm = await this.store.bytes(this.manifest.library);
    await this.smallFiles(); // a missing tokenizer or tensor-cache index fails in seconds
    const tFetched = performance.now();
    this.tvm = await this.tvmjs.instantiate(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength), this.tvmjs.createPolyfillWASI(), (msg) => console.error(msg));
    this.tvm.initWebGPU(this.device);
    this.pacer = new SubmissionPacer(this.device, this.tvm.lib.webGPUContext, this.options.flushEvery ?? DEFAULT_FLUSH_EVERY);
    const tInstantiated = performance.now();
    // tensor-core WGSL in place of TVM's GEMM kernels where the device has subgroup matrices, tiled elsewhere
    const prefer = this.options.gemmPath ?? "auto"; // "tiled" or "tvm": a slower path on purpose (gate, benchmarks)
    const gemms = await swapGemmShaders(this.tvm.lib.webGPUContext, this.adapter, this.device, this.store, this.manifest, prefer);
    this.subgroupKernels = gemms.path === "tensor cores" ? gemms.kernels : 0;
    this.tiledKernels = gemms.path === "tiled" ? gemms.kernels : 0;
    this.gemmFallbacks = gemms.fallbacks ?? []; // replacements the device refused: TVM's kernel runs there
    this.tensorCoreRefusal = gemms.refused; // why a --subgroup-matrix build's GEMMs are not on tensor cores here
    // wasm_ms is these three: fetch and verify the files other than the weights, instantiate, swap
    this.timings = { fetch_ms: tFetched - t0, instantiate_ms: tInstantiated - tFetched, swap_ms: performance.now() - tInstantiated };
    this.tvm.beginScope(); // tvmjs hands out objects only inside a scope; kept ones are detached
    try {
      await this.loadInScope(progress, t0);
    } finally {
      this.tvm.endScope();
    }
  }

  // The GPU driver compiles the pipelines on its own threads while the weights stream in (each
  // shard fetched, verified and uploaded once): an open costs the longer of the two, not the sum.
  // `overlapOpen: false` loads the weights after the last pipeline instead (for benchmarks).
  async loadInScope(progress, t0) {
    const t1 = performance.now();
    progress({ stage: "shaders", text: "compiling GPU pipelines" });
    const compiled = this.tvm.asyncLoadWebGPUPipelines(this.tvm.systemLib()).then(() => performance.now());
    compiled.catch(() => {}); // awaited below, after the weights: a weights error comes first
    const overlap = this.options.overlapOpen !== false;
    const tStart = overlap ? t1 : await this.pipelinesCompiled(compiled);
    await this.loadWeights(progress);
    const tWeights = performance.now();
    if (overlap) progress({ stage: "shaders", text: "compiling GPU pipelines" }); // what is left to wait for
    const tCompiled = await this.pipelinesCompiled(compiled);
    this.vm = this.tvm.detachFromCurrentScope(this.tvm.createVirtualMachine(this.tvm.webgpu()));
    // overlapped, pipelines_ms and params_ms count from the same start
    this.timings = { ...this.timings, wasm_ms: t1 - t0, pipelines_ms: tCompiled - t1, params_ms: tWeights - tStart, overlap };
  }

  // When the last pipeline compiled, or the compile error naming the failing kernels.
  async pipelinesCompiled(compiled) {
    let t;
    try {
      t = await compiled;
    } catch (err) {
      // Dawn reports the root cause as an earlier uncaptured error; let it arrive first.
      await new Promise((resolve) => setTimeout(resolve, 50));
      throw await this.shaderError([...this.gpuErrors, String(err.message || err)].join("\n"));
    }
    this.checkGpu("WSD_SHADER");
    return t;
  }

  // A pipeline failed to compile: name the kernel(s), from the WGSL the build ships beside the wasm.
  async shaderError(raw) {
    let failing;
    try {
      failing = await diagnoseShaders(this.device, await this.store.json("shaders/wgsl.json"));
    } catch (err) {
      return new WsdError("WSD_SHADER", `${raw}\n(the failing kernel could not be found: ${err.message || err})`);
    }
    if (!failing.length) return new WsdError("WSD_SHADER", raw);
    const named = failing.map((f) => `kernel ${f.kernel} (shader ${f.shader}): ${f.message}`).join("\n");
    return new WsdError("WSD_SHADER", `${failing.length} GPU pipeline(s) do not compile on this adapter:\n${named}`, { kernels: failing.map((f) => f.kernel) });
  }

  // The index of the weights (checked before tvmjs reads it) and the tokenizers, verified; the
  // shards stream in later (loadWeights).
  async smallFiles() {
    this.tensorCache = checkTensorCache(await this.store.json("tensor-cache.json"), this.manifest);
    await this.tokenizers();
  }

  async loadWeights(progress) {
    progress({ stage: "weights", text: "fetching weights" });
    this.tvm.registerInitProgressCallback?.((report) => progress({ stage: "weights", text: report.text, fraction: report.progress }));
    this.tvm.beginScope();
    try {
      const gpu = this.tvm.webgpu();
      const shards = this.tensorCache.records;
      const recordBytes = shards.flatMap((shard) => shard.records.map((r) => r.nbytes));
      const artifactCache = this.store.asArtifactCache(shards.map((shard) => shard.dataPath));
      await this.tvm.fetchTensorCache(this.base, batchedSync(gpu, recordBytes), { artifactCache });
      await gpu.sync(); // the last batch
      for (const [name, entry] of Object.entries(this.manifest.entry_points)) {
        const { prefix, count } = entry.params;
        const params = count === 0 ? this.tvm.makeTVMArray([]) : this.tvm.getParamsFromCache(prefix, count);
        this.params.set(name, this.tvm.detachFromCurrentScope(params));
      }
    } finally {
      this.tvm.endScope();
    }
  }

  async swapWeights(base, manifest, progress) {
    await this.exclusive(async () => {
      for (const params of this.params.values()) params.dispose();
      this.params.clear();
      this.tvm.tensorCacheClear();
      this.loraParams = [];
      this.base = base;
      this.manifest = manifest;
      this.store = new VerifiedStore(base, manifest, this.options.store || {});
      this.tokenizerPromise = null;
      const t0 = performance.now();
      await this.smallFiles();
      await this.loadWeights(progress);
      this.timings = { ...this.timings, params_ms: performance.now() - t0, reused: true };
    });
  }

  // A LoRA file (bytes) merged into the open model's weights at `scale` (lib/lora.js), or, with
  // null, the build's own weights again; switchable between generations, nothing else reloads.
  // Every merged weight is computed before any is written: a LoRA that does not fit changes nothing.
  setLora(file, scale = 1, source = "LoRA file") {
    return this.exclusive(async () => {
      const changes = file ? planLora(this.manifest.lora, parseSafetensors(file, source), source) : [];
      const records = await this.paramRecords();
      const merged = new Map();
      for (const change of changes) {
        for (const param of change.params) {
          const rec = records.get(param);
          const raw = await this.storedParam(rec);
          const base = rec.dtype === "float16" ? halfToFloat(new Uint16Array(raw.buffer)) : new Float32Array(raw.buffer);
          const values = mergeLayer(base, rec.shape, change, scale, source);
          merged.set(param, rec.dtype === "float16" ? floatToHalf(values) : values);
        }
      }
      for (const param of new Set([...(this.loraParams || []), ...merged.keys()])) {
        const update = merged.get(param);
        this.writeParam(param, update ? new Uint8Array(update.buffer) : await this.storedParam(records.get(param)));
      }
      this.loraParams = [...merged.keys()];
      return { layers: changes.length, weights: merged.size };
    });
  }

  async paramRecords() {
    const cache = await this.store.json("tensor-cache.json");
    const out = new Map();
    for (const shard of cache.records) for (const rec of shard.records) out.set(rec.name, { ...rec, dataPath: shard.dataPath });
    return out;
  }

  // A weight's bytes as the build stored them (a copy, aligned for a typed array over it)
  async storedParam(rec) {
    const shard = await this.store.bytes(rec.dataPath);
    return shard.slice(rec.byteOffset, rec.byteOffset + rec.nbytes);
  }

  writeParam(name, bytes) {
    const cut = name.lastIndexOf("_");
    const entry = Object.keys(this.manifest.entry_points).find((e) => this.manifest.entry_points[e].params.prefix === name.slice(0, cut));
    this.tvm.beginScope();
    try {
      this.params.get(entry).get(Number(name.slice(cut + 1))).copyFromRawBytes(bytes);
    } finally {
      this.tvm.endScope();
    }
  }

  // Calls run one at a time: tvmjs scopes are a stack, so runs must not interleave.
  exclusive(work) {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => {});
    return next;
  }

  checkGpu(code = "WSD_GPU_ERROR") {
    if (this.gpuErrors.length) throw new WsdError(code, this.gpuErrors.splice(0).join("\n"));
  }

  fn(entry) {
    if (!this.functions.has(entry)) {
      if (!(entry in this.manifest.entry_points)) {
        throw new WsdError("WSD_MODEL", `${this.manifest.model} has no entry point ${entry}; it has ${Object.keys(this.manifest.entry_points)}`);
      }
      this.tvm.beginScope();
      try {
        this.functions.set(entry, this.tvm.detachFromCurrentScope(this.vm.getFunction(entry)));
      } finally {
        this.tvm.endScope();
      }
    }
    return this.functions.get(entry);
  }

  // Inside a scope: run an entry point on GPU tensors; returns a list of output tensors.
  call(entry, ...args) {
    const result = this.fn(entry)(...args, this.params.get(entry));
    if (result.size !== undefined && result.get !== undefined) return Array.from({ length: result.size() }, (_, i) => result.get(i));
    return [result];
  }

  upload(host) {
    const tensor = this.tvm.empty(host.shape, host.dtype, this.tvm.webgpu());
    tensor.copyFromRawBytes(rawBytes(host));
    return tensor;
  }

  scalar(value) {
    // A one-element tensor: the compiled entry points accept it for their scalar inputs.
    return this.upload({ data: Float32Array.of(value), shape: [1], dtype: "float32" });
  }

  async download(tensor) {
    const cpu = this.tvm.empty(tensor.shape, tensor.dtype, this.tvm.cpu());
    cpu.copyFrom(tensor);
    await this.tvm.webgpu().sync();
    return hostArray(cpu.toRawBytes(), tensor.shape, tensor.dtype);
  }

  // One entry point on host arrays ({data: TypedArray, shape, dtype}); the harness's call.
  run(entry, inputs) {
    return this.exclusive(async () => {
      this.tvm.beginScope();
      try {
        const args = inputs.map((x) => this.upload(x));
        const t0 = performance.now();
        const outputs = this.call(entry, ...args);
        await this.tvm.webgpu().sync();
        const ms = performance.now() - t0;
        const hosts = [];
        for (const tensor of outputs) hosts.push(await this.download(tensor));
        this.checkGpu();
        return { outputs: hosts, ms };
      } finally {
        this.tvm.endScope();
      }
    });
  }

  memory() {
    const ctx = this.tvm.lib.webGPUContext;
    return { buffers: ctx.bufferTable.filter((b) => b !== undefined).length, bytes: ctx.currAllocatedBytes, peak_bytes: ctx.peakAllocatedBytes };
  }

  // The build's tokenizers in the generation plan's order (SDXL has two), loaded once.
  tokenizers() {
    if (!this.tokenizerPromise) {
      this.tokenizerPromise = loadTokenizers(this.store, this.manifest);
      this.tokenizerPromise.catch(() => (this.tokenizerPromise = null));
    }
    return this.tokenizerPromise;
  }

  async tokenizer(index = 0) {
    return (await this.tokenizers())[index];
  }

  stepChoices(scheduler) {
    return stepChoices(this.manifest, scheduler);
  }

  table(scheduler, steps) {
    return loadSamplerTable(this.store, this.manifest, scheduler, steps);
  }

  dispose() {
    if (this.disposed) return;
    this.disposed = true;
    try {
      for (const params of this.params.values()) params.dispose();
      for (const fn of this.functions.values()) fn.dispose();
      this.vm?.dispose();
      this.tvm?.dispose();
    } finally {
      this.device.destroy();
    }
  }
}
