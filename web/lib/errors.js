// Errors a person can act on. Every failure the page can meet is a WsdError whose message
// starts with a stable code ("WSD_LIMIT: ..."), so the harness's driver (wsd/host/browser.py)
// and the app's error panel both know what failed; explain() adds what to do about it.

export class WsdError extends Error {
  constructor(code, message, detail = {}) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = detail;
  }
}

const ADVICE = {
  WSD_NO_WEBGPU: {
    title: "This browser has no WebGPU",
    advice:
      "Use Chrome or Edge 113+ (desktop), or Chrome 121+ on Android. Firefox Nightly and Safari " +
      "Technology Preview need WebGPU enabled in their settings. Headless Chromium needs " +
      "--enable-unsafe-webgpu, and without a GPU also --enable-unsafe-swiftshader --use-webgpu-adapter=swiftshader.",
  },
  WSD_NO_ADAPTER: {
    title: "No GPU adapter",
    advice: "WebGPU is present but offered no adapter: update the GPU driver, enable hardware acceleration, or check chrome://gpu.",
  },
  WSD_LIMIT: {
    title: "The GPU's limits are too small for this model",
    advice: "Try a smaller model build, or another GPU/browser whose adapter reports a larger limit.",
  },
  WSD_NO_F16: {
    title: "This model needs shader-f16",
    advice: "This is a float16 build and the adapter lacks the shader-f16 feature: use the float32 build of the model, or a GPU/browser with shader-f16.",
  },
  WSD_FETCH: {
    title: "A model file could not be fetched",
    advice: "Check that the server is running and the model folder is complete (`wsd verify dist/<model>`), then reload.",
  },
  WSD_INTEGRITY: {
    title: "A model file does not match its manifest",
    advice: "The file was refused and not used. Rebuild the model or restore the file (`wsd verify dist/<model>` names every altered file).",
  },
  WSD_TOKENIZER: {
    title: "The tokenizer could not be loaded",
    advice: "The model's tokenizer/vocab.json or tokenizer/merges.txt is missing or malformed: rebuild the model.",
  },
  WSD_MODEL: {
    title: "This is not a model the page can run",
    advice: "Pick a `wsd build` output built for webgpu (its manifest.json says target \"webgpu\").",
  },
  WSD_INPUT: {
    title: "The settings are not valid",
    advice: "Change the highlighted setting and try again.",
  },
  WSD_LORA: {
    title: "This LoRA does not fit the model",
    advice: "Pick a LoRA made for this model's family (SD 1.5 or SDXL) in the diffusers/PEFT or kohya safetensors layout; the message names the key or layer that does not fit.",
  },
  WSD_SHADER: {
    title: "The GPU refused a shader",
    advice: "Report this with the error text: the compiler produced WGSL this browser rejects.",
  },
  WSD_GPU_ERROR: {
    title: "The GPU reported an error",
    advice: "Reload the page; if it repeats, report it with the error text. A lost device usually means the GPU ran out of memory.",
  },
};

export function explain(err) {
  const code = err && err.code ? err.code : String((err && err.message) || err).split(":", 1)[0];
  const known = Object.hasOwn(ADVICE, code) ? ADVICE[code] : null;
  const message = String((err && err.message) || err);
  if (!known) return { code: "WSD_UNEXPECTED", title: "Unexpected error", advice: "Reload the page; if it repeats, report it with the error text.", message };
  return { code, title: known.title, advice: known.advice, message };
}
