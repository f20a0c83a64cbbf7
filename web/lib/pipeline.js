// Prompt to image on an open ModelSession: tokenize, encode, run the sampler loop (the
// tables' coefficients through the compiled `scheduler_step`), decode, pack RGBA.
// The loop's bookkeeping is wsd/schedulers.py's LoopState, step for step. What differs per
// family (tokenizers, text outputs, UNet conditioning) is the manifest's generation plan
// (wsd/generation.py): the UNet's inputs are bound by name, so SDXL adds no code here.
import { WsdError } from "./errors.js";

// A seeded standard normal (mulberry32 + Box-Muller): the page's initial noise.
export function gaussianNoise(seed, count) {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967297; // in (0, 1): log() stays finite
  };
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(uniform()));
    const angle = 2 * Math.PI * uniform();
    out[i] = radius * Math.cos(angle);
    if (i + 1 < count) out[i + 1] = radius * Math.sin(angle);
  }
  return out;
}

// The seeded noise of denoising step `step` for the stochastic samplers (Euler Ancestral, LCM):
// its own stream, so the initial noise of a seed is the same whichever sampler runs.
export function stepNoise(seed, step, count) {
  return gaussianNoise((seed ^ Math.imul(step + 1, 0x9e3779b1)) >>> 0, count);
}

// img2img's posterior sample noise (the VAE encoder's latent_dist.sample): a stream of its own.
export function posteriorNoise(seed, count) {
  return gaussianNoise((seed ^ 0x85ebca6b) >>> 0, count);
}

// Inpainting's masked image posterior noise: a stream of its own.
export function maskedNoise(seed, count) {
  return gaussianNoise((seed ^ 0xc2b2ae35) >>> 0, count);
}

// An inpainting mask as diffusers' mask processor reads a picture: PIL's luma of each pixel,
// binarized at half; 1 where the model repaints (wsd/generation.py pixel_mask).
export function pixelMask(bytes, channels) {
  const n = bytes.length / channels;
  const out = new Float32Array(n);
  for (let p = 0; p < n; ++p) {
    const [r, g, b] = channels === 1 ? [bytes[p], bytes[p], bytes[p]] : [bytes[p * channels], bytes[p * channels + 1], bytes[p * channels + 2]];
    const luma = channels === 1 ? r : (r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16;
    out[p] = luma >= 128 ? 1 : 0;
  }
  return out;
}

// The row an image-to-image loop starts at, as diffusers' img2img pipelines compute it
// (get_timesteps); wsd/schedulers.py begin_for_strength.
export function beginForStrength(steps, strength) {
  const init = Math.min(Math.floor(steps * strength), steps);
  if (init < 1) throw new WsdError("WSD_INPUT", `strength: ${strength} leaves no denoising step of ${steps}; use at least ${1 / steps}`, { field: "strength" });
  return Math.max(steps - init, 0);
}

const ROW_FIELDS = ["input_scale", "coeffs", "push", "save_cur", "noise"];

// A sampler table for a loop that starts at row `begin` (wsd/schedulers.py from_step): the rows
// from there, a restart's own rows first, and that row's add_noise (a, b).
export function fromStep(table, begin) {
  if (!Array.isArray(table.add_noise)) throw new WsdError("WSD_MODEL", `sampler ${table.name} has no add_noise rows (an older build); rebuild the model for img2img.`);
  const out = { ...table, timesteps: table.timesteps.slice(begin), add_noise: table.add_noise[begin], restarts: {} };
  const restart = (table.restarts || {})[String(begin)] || {};
  for (const key of ROW_FIELDS) {
    if (!(key in table)) continue;
    const head = restart[key] || [];
    out[key] = [...head, ...table[key].slice(begin + head.length)];
  }
  return out;
}

// The init image as the encoder takes it: (1, H, W, 3) floats in 0..255 from RGBA or RGB bytes.
function imagePixels(image, size, field = "initImage") {
  const bad = (why) => new WsdError("WSD_INPUT", `${field}: ${why}`, { field });
  if (!image || !Number.isInteger(image.width) || !Number.isInteger(image.height)) throw bad("must be {width, height, rgba or rgb}");
  if (image.width !== size || image.height !== size) throw bad(`${image.width}x${image.height}, the model makes ${size}x${size} images; resize or crop it to ${size}x${size}`);
  const channels = image.rgba ? 4 : 3;
  const bytes = image.rgba || image.rgb;
  if (!bytes || bytes.length !== size * size * channels) throw bad(`${bytes ? bytes.length : 0} values for ${size}x${size} ${channels === 4 ? "RGBA" : "RGB"}`);
  const out = new Float32Array(size * size * 3);
  for (let p = 0; p < size * size; ++p) for (let c = 0; c < 3; ++c) out[p * 3 + c] = bytes[p * channels + c];
  return out;
}

export function checkOptions(options, manifest) {
  const guidance = manifest.generation?.default_guidance ?? 7.5;
  const o = { negativePrompt: "", guidance, seed: 0, scheduler: manifest.default_scheduler, previewEvery: 0, ...options };
  const bad = (field, why) => new WsdError("WSD_INPUT", `${field}: ${why}`, { field });
  if (typeof o.prompt !== "string") throw bad("prompt", "must be text");
  if (typeof o.negativePrompt !== "string") throw bad("negativePrompt", "must be text");
  if (!(manifest.schedulers || []).includes(o.scheduler)) throw bad("scheduler", `must be one of ${manifest.schedulers}`);
  const choices = (manifest.scheduler_steps || {})[o.scheduler] || [];
  if (o.steps === undefined) o.steps = choices.includes(20) ? 20 : choices[0];
  if (!choices.includes(o.steps)) throw bad("steps", `must be one of ${choices.join(", ")} for ${o.scheduler}`);
  if (!Number.isInteger(o.seed) || o.seed < 0 || o.seed > 0xffffffff) throw bad("seed", "must be a whole number from 0 to 4294967295");
  if (typeof o.guidance !== "number" || !Number.isFinite(o.guidance) || o.guidance < 0 || o.guidance > 50) throw bad("guidance", "must be a number from 0 to 50");
  if (!Number.isInteger(o.previewEvery) || o.previewEvery < 0) throw bad("previewEvery", "must be 0 (off) or a whole number of steps");
  if (manifest.generation?.text?.cfg === false && o.negativePrompt !== "") throw bad("negativePrompt", `${manifest.model} embeds guidance in its UNet (LCM-distilled): it takes no negative prompt`);
  // LCM's image-to-image pipeline is not gated (no case checks it against diffusers): refused, not guessed
  if (manifest.generation?.text?.cfg === false && o.initImage) throw bad("initImage", `${manifest.model} is LCM-distilled: image to image is not supported for it yet`);
  const inpaints = Boolean(manifest.generation?.inpaint);
  if (inpaints && !(o.initImage && o.maskImage)) throw bad(o.initImage ? "maskImage" : "initImage", `${manifest.model} is an inpainting model: give it an image and a mask (white repaints)`);
  if (o.maskImage && !inpaints) throw bad("maskImage", `${manifest.model} is not an inpainting model (its UNet takes no mask); build an inpainting folder`);
  if (o.initImage) {
    if (o.strength === undefined) o.strength = inpaints ? 1.0 : 0.8; // the diffusers pipelines' defaults
    if (typeof o.strength !== "number" || !(o.strength > 0 && o.strength <= 1)) throw bad("strength", "must be a number in (0, 1]");
    if (!manifest.generation?.encode || !manifest.entry_points?.[manifest.generation.encode]) throw bad("initImage", `${manifest.model} was built without an image encoder; rebuild it with \`wsd build\` for img2img`);
    beginForStrength(o.steps, o.strength);
  }
  return o;
}

function count(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

export function generationPlan(manifest) {
  const plan = manifest.generation;
  if (!plan) throw new WsdError("WSD_MODEL", `${manifest.model} has no generation plan in its manifest; rebuild it with \`wsd build\`.`);
  return plan;
}

// Batched [negative, prompt] text outputs by name (each (1, ...) -> (2, ...)), on the GPU.
// With zero_empty_negative (SDXL) an empty negative prompt is zeros, not its encoding.
async function encodeText(session, plan, prompt, negative, upload) {
  const tokenizers = await session.tokenizers();
  const entry = plan.text.entry;
  const encode = async (text) => {
    const ids = tokenizers.map((t) => t.encode(text).ids);
    const outs = session.call(entry, ...ids.map((data) => session.upload({ data, shape: [1, data.length], dtype: "int32" })));
    const hosts = [];
    for (const t of outs) hosts.push(await session.download(t));
    return hosts;
  };
  const cond = await encode(prompt);
  const named = {};
  if (plan.text.cfg === false) {
    // a guidance-embedded UNet (LCM) takes the prompt alone
    session.manifest.entry_points[entry].outputs.forEach((spec, k) => (named[spec.name] = upload(cond[k])));
    return named;
  }
  const uncond = negative === "" && plan.text.zero_empty_negative ? cond.map((h) => ({ ...h, data: new Float32Array(h.data.length) })) : await encode(negative);
  session.manifest.entry_points[entry].outputs.forEach((spec, k) => {
    const both = new Float32Array(cond[k].data.length * 2);
    both.set(uncond[k].data, 0);
    both.set(cond[k].data, cond[k].data.length);
    named[spec.name] = upload({ data: both, shape: [2, ...cond[k].shape.slice(1)], dtype: "float32" });
  });
  return named;
}

// The denoising entry's arguments, by the names in its signature.
function bindInputs(session, entry, env) {
  return session.manifest.entry_points[entry].inputs.map((spec) => {
    if (!(spec.name in env)) throw new WsdError("WSD_MODEL", `${entry} takes ${spec.name}, which the generation plan does not provide; rebuild the model.`);
    return env[spec.name];
  });
}

// options: {prompt, negativePrompt, steps, seed, guidance, scheduler, previewEvery, noise?, stepNoise?,
//   initImage?: {width, height, rgba | rgb}, strength?, posteriorNoise?, (img2img with initImage)
//   maskImage?: {width, height, rgba | rgb}, maskedNoise?} (an inpainting model: white repaints)
// (`stepNoise`: steps x latents values, step i's at i * latents; the harness passes the draws
// diffusers' generator makes, as it passes `noise`; `syncEachStep`: wait for every step before
// recording the next, the loop as it was before steps overlapped, for comparison)
// hooks: {onProgress({stage, step, steps, itPerSec}), onPreview({rgba, width, height, step})}
export async function generate(session, options, hooks = {}) {
  const manifest = session.manifest;
  const o = checkOptions(options, manifest);
  const progress = hooks.onProgress || (() => {});
  const tokenizer = await session.tokenizer();
  const fullTable = await session.table(o.scheduler, o.steps);
  const table = o.initImage ? fromStep(fullTable, beginForStrength(o.steps, o.strength)) : fullTable;
  const shape = manifest.latent_shape;
  // `noise` (unscaled, as diffusers' `latents=`) overrides the seed: the harness passes its own.
  const noise = o.noise ? Float32Array.from(o.noise) : gaussianNoise(o.seed, count(shape));
  if (noise.length !== count(shape)) throw new WsdError("WSD_INPUT", `noise: ${noise.length} values, the model's latents are ${shape}`);
  const size = count(shape);
  if (o.stepNoise && o.stepNoise.length < table.timesteps.length * size) {
    throw new WsdError("WSD_INPUT", `stepNoise: ${o.stepNoise.length} values, ${table.timesteps.length} steps of ${shape} need ${table.timesteps.length * size}`);
  }
  const freshNoise = (i) => (o.stepNoise ? Float32Array.from(o.stepNoise.slice(i * size, (i + 1) * size)) : stepNoise(o.seed, i, size));
  const initial = noise.map((v) => v * table.init_noise_sigma);
  const plan = generationPlan(manifest);
  const cond = tokenizer.encode(o.prompt);
  const uncond = tokenizer.encode(o.negativePrompt);
  return session.exclusive(async () => {
    const tvm = session.tvm;
    const owned = new Set(); // tensors kept across steps, detached from the step scopes
    const keep = (t) => (owned.add(tvm.detachFromCurrentScope(t)), t);
    const release = (needed) => {
      for (const t of owned) {
        if (!needed.includes(t)) {
          t.dispose();
          owned.delete(t);
        }
      }
    };
    const t0 = performance.now();
    const timings = { steps_ms: [] };
    try {
      progress({ stage: "text", step: 0, steps: table.timesteps.length });
      tvm.beginScope();
      let conditioning; // the UNet's inputs that stay fixed over the steps, by name
      try {
        conditioning = await encodeText(session, plan, o.prompt, o.negativePrompt, (h) => keep(session.upload(h)));
        for (const [name, c] of Object.entries(plan.constants || {})) {
          conditioning[name] = keep(session.upload({ data: Float32Array.from(c.data), shape: c.shape, dtype: c.dtype }));
        }
      } finally {
        tvm.endScope();
      }
      timings.text_ms = performance.now() - t0;
      tvm.beginScope();
      let latents, cur, history;
      try {
        const zeros = () => keep(session.upload({ data: new Float32Array(count(shape)), shape, dtype: "float32" }));
        const start = o.initImage ? startLatents(session, plan, o, table, noise, zeros) : null;
        latents = keep(start ? start.latents : session.upload({ data: initial, shape, dtype: "float32" }));
        for (const [name, t] of Object.entries(start ? start.conditioning : {})) conditioning[name] = keep(t);
        history = Array.from({ length: table.history }, zeros);
        cur = zeros();
      } finally {
        tvm.endScope();
      }
      let inFlight = null; // the previous step's completion, while the GPU may still run it
      for (let i = 0; i < table.timesteps.length; ++i) {
        const ts = performance.now();
        tvm.beginScope();
        try {
          const scale = table.input_scale[i];
          const input = scale === 1 ? latents : session.call(plan.denoise.scale_entry, latents, session.scalar(scale))[0];
          const env = { ...conditioning, latents: input, timestep: session.scalar(table.timesteps[i]), guidance_scale: session.scalar(o.guidance) };
          const eps = session.call(plan.denoise.entry, ...bindInputs(session, plan.denoise.entry, env))[0];
          if (table.save_cur[i]) cur = latents;
          // a stochastic sampler's step takes fresh noise in history slot 1 (wsd/schedulers.py)
          if (table.noise?.[i]) history = [keep(session.upload({ data: freshNoise(i), shape, dtype: "float32" })), ...history.slice(1)];
          const coeffs = session.upload({ data: Float32Array.from(table.coeffs[i]), shape: [8], dtype: "float32" });
          const [prev, stored] = session.call(plan.denoise.step_entry, latents, eps, ...history, cur, coeffs);
          if (table.push[i]) history = [keep(stored), ...history.slice(0, -1)];
          latents = keep(prev);
          const waitHere = o.syncEachStep || i + 1 === table.timesteps.length || (o.previewEvery && (i + 1) % o.previewEvery === 0);
          if (waitHere) {
            await tvm.webgpu().sync();
            inFlight = null;
          } else {
            inFlight = await stepSubmitted(session, inFlight);
          }
        } finally {
          tvm.endScope();
        }
        release([...Object.values(conditioning), latents, cur, ...history]);
        session.checkGpu();
        timings.steps_ms.push(performance.now() - ts);
        const elapsed = timings.steps_ms.reduce((a, b) => a + b, 0) / 1000;
        progress({ stage: "denoise", step: i + 1, steps: table.timesteps.length, itPerSec: (i + 1) / elapsed });
        if (o.previewEvery && (i + 1) % o.previewEvery === 0 && i + 1 < table.timesteps.length && hooks.onPreview) {
          hooks.onPreview({ ...(await decode(session, latents, plan)), step: i + 1 });
        }
      }
      progress({ stage: "decode", step: table.timesteps.length, steps: table.timesteps.length });
      const td = performance.now();
      const image = await decode(session, latents, plan);
      timings.decode_ms = performance.now() - td;
      tvm.beginScope();
      let finalLatents;
      try {
        finalLatents = (await session.download(latents)).data;
      } finally {
        tvm.endScope();
      }
      timings.total_ms = performance.now() - t0;
      return {
        ...image,
        latents: finalLatents,
        noise,
        timesteps: table.timesteps,
        tokens: { prompt: cond.tokens, negative: uncond.tokens, truncated: cond.truncated || uncond.truncated, limit: tokenizer.maxLength - 2 },
        timings,
      };
    } finally {
      release([]);
    }
  });
}

// Steps overlap: step i's commands are submitted, then the loop waits for step i-1 only, so the
// CPU records step i+1 (~1,000 dispatches) while the GPU runs step i. Waiting for each step
// instead left the GPU idle while the next one was recorded. At most two steps are queued, so
// their buffers stay bounded. tvmjs builds without flushCommands submit every dispatch at once.
// Returns {done} (a promise returned bare from an async function would be awaited with it).
export async function stepSubmitted(session, previous) {
  session.tvm.lib.webGPUContext?.flushCommands?.();
  const done = session.device.queue.onSubmittedWorkDone();
  if (previous) await previous.done;
  return { done };
}

// The first latents from a start image (wsd's native twin: conformance/backends.py start_latents):
// img2img encodes it (with its posterior noise) and noises it to the starting row with that row's
// add_noise as one scheduler_step (a*clean + b*noise); an inpainting model starts from noise at
// strength 1, as diffusers' inpainting pipeline does, and also gets the latent-size mask and the
// masked image's latents (masked pixels 127.5: 0 after the encoder's x/255*2-1).
function startLatents(session, plan, o, table, noise, zeros) {
  const shape = session.manifest.latent_shape;
  const size = session.manifest.image_size;
  const pixels = imagePixels(o.initImage, size);
  const encode = (data, drawn, field) => {
    if (drawn.length !== count(shape)) throw new WsdError("WSD_INPUT", `${field}: ${drawn.length} values, the model's latents are ${shape}`);
    return session.call(plan.encode, session.upload({ data, shape: [1, size, size, 3], dtype: "float32" }), session.upload({ data: drawn, shape, dtype: "float32" }))[0];
  };
  let latents;
  if (plan.inpaint && o.strength === 1) {
    latents = session.upload({ data: noise.map((v) => v * table.init_noise_sigma), shape, dtype: "float32" });
  } else {
    const clean = encode(pixels, o.posteriorNoise ? Float32Array.from(o.posteriorNoise) : posteriorNoise(o.seed, count(shape)), "posteriorNoise");
    const coeffs = session.upload({ data: Float32Array.from([...table.add_noise, 0, 0, 0, 0, 0, 0]), shape: [8], dtype: "float32" });
    const z = zeros();
    latents = session.call(plan.denoise.step_entry, clean, session.upload({ data: noise, shape, dtype: "float32" }), z, z, z, z, coeffs)[0];
  }
  if (!plan.inpaint) return { latents, conditioning: {} };
  const maskPixels = imagePixels(o.maskImage, size, "maskImage");
  const repaint = pixelMask(maskPixels, 3);
  const masked = pixels.map((v, k) => (repaint[Math.floor(k / 3)] >= 0.5 ? 127.5 : v));
  const side = shape[3];
  const every = size / side;
  const small = new Float32Array(side * side);
  for (let y = 0; y < side; ++y) for (let x = 0; x < side; ++x) small[y * side + x] = repaint[y * every * size + x * every]; // nearest, as F.interpolate
  const drawn = o.maskedNoise ? Float32Array.from(o.maskedNoise) : maskedNoise(o.seed, count(shape));
  return {
    latents,
    conditioning: {
      mask: session.upload({ data: small, shape: [1, 1, side, side], dtype: "float32" }),
      masked_image_latents: encode(masked, drawn, "maskedNoise"),
    },
  };
}

// latents -> {rgba: Uint8ClampedArray (H*W*4), width, height}; the caller holds the session.
async function decode(session, latents, plan) {
  const tvm = session.tvm;
  const [vae, rgba] = plan.decode;
  tvm.beginScope();
  try {
    const image = session.call(vae, latents)[0];
    const packed = session.call(rgba, image)[0];
    const host = await session.download(packed);
    session.checkGpu();
    const [height, width] = host.shape;
    return { rgba: new Uint8ClampedArray(host.data.buffer, host.data.byteOffset, height * width * 4), width, height };
  } finally {
    tvm.endScope();
  }
}
