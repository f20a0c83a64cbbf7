// The page the harness drives. window.wsd exposes:
//   adapterInfo()            -> the WebGPU adapter (vendor, architecture, features, limits)
//   runModule(spec)          -> load a compiled .wasm, run one entry point, return outputs (smoke module)
//   open({url})              -> load a `wsd build` model once (reused while its wasm is the same)
//   run({entry, inputs})     -> one entry point of the open model on base64 arrays
//   runKernels({kernels})    -> compiled kernels one by one (localization)
//   tokenize({prompts})      -> the page's CLIP tokenizer on the open model's vocabulary
//   generate(options)        -> prompt to image (lib/pipeline.js), image and latents as base64
//   memory()                 -> GPU buffers and bytes the runtime holds
// Errors are Error objects whose message starts with a stable code ("WSD_NO_WEBGPU: ...").
import { WsdError } from "/lib/errors.js";
import { createDevice, describeAdapter, requestAdapter } from "/lib/gpu.js";
import { generate as generateImage } from "/lib/pipeline.js";
import { ModelSession, TYPED } from "/lib/session.js";

const statusEl = document.getElementById("status");
let session = null;

function setStatus(text) {
  statusEl.textContent = text;
}

async function adapterInfo() {
  return describeAdapter(await requestAdapter());
}

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
  const bytes = decodeBase64(item.data);
  const Typed = TYPED[item.dtype] || Uint8Array;
  return { data: new Typed(bytes.buffer, 0, bytes.byteLength / Typed.BYTES_PER_ELEMENT), shape: item.shape, dtype: item.dtype };
}

function toWire(host) {
  return { data: encodeBase64(host.data), shape: host.shape, dtype: host.dtype };
}

function requireSession() {
  if (!session) throw new WsdError("WSD_MODEL", "no model is open: call wsd.open({url}) first");
  return session;
}

async function open(spec) {
  setStatus(`opening ${spec.url}`);
  const t0 = performance.now();
  session = await ModelSession.open(spec.url, { reuse: session, onProgress: (p) => setStatus(p.text) });
  setStatus(`open ${session.manifest.model}`);
  return { model: session.manifest.model, adapter: session.adapterInfo(), timings: { ...session.timings, open_ms: performance.now() - t0 } };
}

async function run(spec) {
  const result = await requireSession().run(spec.entry, spec.inputs.map(fromWire));
  return { outputs: result.outputs.map(toWire), ms: result.ms };
}

async function runKernels(spec) {
  const results = await requireSession().runKernels(spec.kernels.map((k) => ({ ...k, args: k.args.map(fromWire) })));
  return results.map((outs) => (Array.isArray(outs) ? outs.map(toWire) : outs));
}

async function tokenize(spec) {
  const tokenizer = await requireSession().tokenizer();
  return spec.prompts.map((p) => Array.from(tokenizer.encode(p).ids));
}

async function generate(options) {
  const opts = { ...options };
  if (opts.noise) opts.noise = fromWire(opts.noise).data;
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

window.wsd = { adapterInfo, runModule, open, run, runKernels, tokenize, generate, memory, ready: true };
// The hook exists only when the driver asks for it (index.html?test=1).
if (new URLSearchParams(window.location.search).has("test")) window.wsd.testScenario = testScenario;
setStatus("ready");
