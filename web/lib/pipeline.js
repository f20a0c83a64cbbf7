// Prompt to image on an open ModelSession: tokenize, encode, run the sampler loop (the
// tables' coefficients through the compiled `scheduler_step`), decode, pack RGBA.
// The loop's bookkeeping is wsd/schedulers.py's LoopState, step for step.
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

export function checkOptions(options, manifest) {
  const o = { negativePrompt: "", guidance: 7.5, seed: 0, scheduler: manifest.default_scheduler, previewEvery: 0, ...options };
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
  return o;
}

function count(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

// options: {prompt, negativePrompt, steps, seed, guidance, scheduler, previewEvery, noise?}
// hooks: {onProgress({stage, step, steps, itPerSec}), onPreview({rgba, width, height, step})}
export async function generate(session, options, hooks = {}) {
  const manifest = session.manifest;
  const o = checkOptions(options, manifest);
  const progress = hooks.onProgress || (() => {});
  const tokenizer = await session.tokenizer();
  const table = await session.table(o.scheduler, o.steps);
  const shape = manifest.latent_shape;
  // `noise` (unscaled, as diffusers' `latents=`) overrides the seed: the harness passes its own.
  const noise = o.noise ? Float32Array.from(o.noise) : gaussianNoise(o.seed, count(shape));
  if (noise.length !== count(shape)) throw new WsdError("WSD_INPUT", `noise: ${noise.length} values, the model's latents are ${shape}`);
  const initial = noise.map((v) => v * table.init_noise_sigma);
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
      progress({ stage: "text", step: 0, steps: o.steps });
      tvm.beginScope();
      let embeddings;
      try {
        const ids = (enc) => session.upload({ data: enc.ids, shape: [1, enc.ids.length], dtype: "int32" });
        const u = await session.download(session.call("clip", ids(uncond))[0]);
        const c = await session.download(session.call("clip", ids(cond))[0]);
        const both = new Float32Array(u.data.length * 2);
        both.set(u.data, 0);
        both.set(c.data, u.data.length);
        embeddings = keep(session.upload({ data: both, shape: [2, ...u.shape.slice(1)], dtype: "float32" }));
      } finally {
        tvm.endScope();
      }
      timings.text_ms = performance.now() - t0;
      tvm.beginScope();
      let latents, cur, history;
      try {
        latents = keep(session.upload({ data: initial, shape, dtype: "float32" }));
        const zeros = () => keep(session.upload({ data: new Float32Array(count(shape)), shape, dtype: "float32" }));
        history = Array.from({ length: table.history }, zeros);
        cur = zeros();
      } finally {
        tvm.endScope();
      }
      for (let i = 0; i < table.timesteps.length; ++i) {
        const ts = performance.now();
        tvm.beginScope();
        try {
          const scale = table.input_scale[i];
          const input = scale === 1 ? latents : session.call("scale_model_input", latents, session.scalar(scale))[0];
          const eps = session.call("unet", input, session.scalar(table.timesteps[i]), embeddings, session.scalar(o.guidance))[0];
          if (table.save_cur[i]) cur = latents;
          const coeffs = session.upload({ data: Float32Array.from(table.coeffs[i]), shape: [8], dtype: "float32" });
          const [prev, stored] = session.call("scheduler_step", latents, eps, ...history, cur, coeffs);
          if (table.push[i]) history = [keep(stored), ...history.slice(0, -1)];
          latents = keep(prev);
          await tvm.webgpu().sync();
        } finally {
          tvm.endScope();
        }
        release([embeddings, latents, cur, ...history]);
        session.checkGpu();
        timings.steps_ms.push(performance.now() - ts);
        const elapsed = timings.steps_ms.reduce((a, b) => a + b, 0) / 1000;
        progress({ stage: "denoise", step: i + 1, steps: table.timesteps.length, itPerSec: (i + 1) / elapsed });
        if (o.previewEvery && (i + 1) % o.previewEvery === 0 && i + 1 < table.timesteps.length && hooks.onPreview) {
          hooks.onPreview({ ...(await decode(session, latents)), step: i + 1 });
        }
      }
      progress({ stage: "decode", step: o.steps, steps: o.steps });
      const td = performance.now();
      const image = await decode(session, latents);
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

// latents -> {rgba: Uint8ClampedArray (H*W*4), width, height}; the caller holds the session.
async function decode(session, latents) {
  const tvm = session.tvm;
  tvm.beginScope();
  try {
    const image = session.call("vae", latents)[0];
    const packed = session.call("image_to_rgba", image)[0];
    const host = await session.download(packed);
    session.checkGpu();
    const [height, width] = host.shape;
    return { rgba: new Uint8ClampedArray(host.data.buffer, host.data.byteOffset, height * width * 4), width, height };
  } finally {
    tvm.endScope();
  }
}
