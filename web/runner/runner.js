// The page the harness drives. It exposes window.wsd with three calls:
//   adapterInfo()        -> what the WebGPU adapter is (vendor, architecture, features, limits)
//   runModule(spec)      -> load a compiled .wasm, run one entry point, return outputs
// Errors are thrown as Error objects whose message starts with a stable code
// ("WSD_NO_WEBGPU: ...") so the Python driver can name what failed.

const statusEl = document.getElementById("status");

function setStatus(text) {
  statusEl.textContent = text;
}

function fail(code, message) {
  return new Error(`${code}: ${message}`);
}

// Plain-object copy of a GPUSupportedLimits (its fields are getters, not own properties).
function limitsToObject(limits) {
  const entries = [];
  for (const key in limits) {
    const value = Reflect.get(limits, key);
    if (typeof value === "number") entries.push([key, value]);
  }
  return Object.fromEntries(entries);
}

async function requestAdapter() {
  if (typeof navigator === "undefined" || navigator.gpu === undefined) {
    throw fail(
      "WSD_NO_WEBGPU",
      "navigator.gpu is missing: this browser has no WebGPU. Use Chrome/Chromium 113+ " +
        "(headless needs --enable-unsafe-webgpu; without a GPU also --enable-unsafe-swiftshader " +
        "--use-webgpu-adapter=swiftshader)."
    );
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (adapter === null) {
    throw fail("WSD_NO_ADAPTER", "navigator.gpu.requestAdapter() returned null: no usable GPU adapter.");
  }
  return adapter;
}

function describeAdapter(adapter) {
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

async function adapterInfo() {
  return describeAdapter(await requestAdapter());
}

function decodeBase64(text) {
  const raw = atob(text);
  return Uint8Array.from(raw, (ch) => ch.charCodeAt(0));
}

function encodeBase64(bytes) {
  let raw = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    raw += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  }
  return btoa(raw);
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw fail("WSD_FETCH", `${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

// Requests the adapter's own limits for the device, so large models are not capped
// at the WebGPU defaults.
async function createDevice(adapter) {
  const wanted = ["maxBufferSize", "maxStorageBufferBindingSize", "maxComputeWorkgroupStorageSize",
    "maxComputeInvocationsPerWorkgroup", "maxComputeWorkgroupSizeX", "maxStorageBuffersPerShaderStage"];
  const requiredLimits = Object.fromEntries(wanted.map((key) => [key, Reflect.get(adapter.limits, key)]));
  const device = await adapter.requestDevice({ requiredLimits });
  const errors = [];
  device.addEventListener("uncapturederror", (event) => errors.push(event.error.message));
  device.lost.then((info) => errors.push(`device lost: ${info.message}`));
  return { device, errors };
}

// The entry's weights from a tvmjs tensor cache (a `wsd build` folder), as the one
// tuple argument every built entry point takes last. spec: {cache: url, prefix, count}.
async function loadParams(tvm, spec) {
  if (!spec) return null;
  if (spec.count === 0) return tvm.makeTVMArray([]);
  const t0 = performance.now();
  await tvm.fetchTensorCache(new URL(spec.cache, window.location.href).href, tvm.webgpu(), "wsd-runner");
  const params = tvm.getParamsFromCache(spec.prefix, spec.count);
  setStatus(`params ${spec.prefix}: ${(performance.now() - t0).toFixed(0)} ms`);
  return params;
}

// spec: {wasm: url, entry: name, params: {cache, prefix, count} | undefined, device: "webgpu", inputs: [{data: base64, shape, dtype}], repeat}
async function runModule(spec) {
  setStatus(`running ${spec.entry}`);
  const adapter = await requestAdapter();
  const { device, errors } = await createDevice(adapter);
  const wasmBytes = await fetchBytes(spec.wasm);
  const tvm = await tvmjs.instantiate(wasmBytes.buffer, tvmjs.createPolyfillWASI(), () => {});
  const timings = {};
  tvm.beginScope();
  try {
    tvm.initWebGPU(device);
    let t0 = performance.now();
    try {
      await tvm.asyncLoadWebGPUPipelines(tvm.systemLib());
    } catch (err) {
      // Dawn reports the root cause (a bad layout, a shader it refuses) as an earlier
      // uncaptured error; let it arrive, then report it with the exception.
      await new Promise((resolve) => setTimeout(resolve, 50));
      throw fail("WSD_SHADER", [...errors, String(err.message || err)].join("\n"));
    }
    timings.pipelines_ms = performance.now() - t0;
    if (errors.length) throw fail("WSD_SHADER", errors.join("\n"));
    const dev = tvm.webgpu();
    const vm = tvm.createVirtualMachine(dev);
    const fn = vm.getFunction(spec.entry);
    const params = await loadParams(tvm, spec.params);
    const args = spec.inputs.map((input) => {
      const cpu = tvm.empty(input.shape, input.dtype, tvm.cpu());
      cpu.copyFromRawBytes(decodeBase64(input.data));
      const gpu = tvm.empty(input.shape, input.dtype, dev);
      gpu.copyFrom(cpu);
      return gpu;
    });
    const runs = [];
    let result = null;
    for (let i = 0; i < (spec.repeat || 1); ++i) {
      t0 = performance.now();
      result = params === null ? fn(...args) : fn(...args, params);
      await tvm.webgpu().sync();
      runs.push(performance.now() - t0);
    }
    if (errors.length) throw fail("WSD_GPU_ERROR", errors.join("\n"));
    const outputs = [];
    const list = result.size !== undefined && result.get !== undefined ? result : null;
    const tensors = list ? Array.from({ length: list.size() }, (_, i) => list.get(i)) : [result];
    for (const tensor of tensors) {
      const cpu = tvm.empty(tensor.shape, tensor.dtype, tvm.cpu());
      cpu.copyFrom(tensor);
      await tvm.webgpu().sync();
      outputs.push({ data: encodeBase64(cpu.toRawBytes()), shape: tensor.shape, dtype: tensor.dtype });
    }
    timings.run_ms = runs;
    setStatus(`done ${spec.entry}`);
    return { outputs, timings, adapter: describeAdapter(adapter) };
  } finally {
    tvm.endScope();
    tvm.dispose();
    device.destroy();
  }
}

// Fixed scenarios for the driver's own tests (never arbitrary code): a page that
// throws, and a page whose main thread never returns.
function testScenario(name) {
  if (name === "throw") throw new Error("deliberate test exception");
  if (name === "hang") {
    for (;;) {
      // a busy main thread: only a deadline enforced from outside the page ends this
    }
  }
  return name;
}

window.wsd = { adapterInfo, runModule, ready: true };
// The hook exists only when the driver asks for it (index.html?test=1).
if (new URLSearchParams(window.location.search).has("test")) window.wsd.testScenario = testScenario;
setStatus("ready");
