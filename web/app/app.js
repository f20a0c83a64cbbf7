// The page a person opens: pick a model from /models/, type a prompt, press Generate.
// A model is loaded once and kept; errors show what failed and what to do about it.
import { explain, WsdError } from "/lib/errors.js";
import { checkOptions, generate } from "/lib/pipeline.js";
import { ModelSession } from "/lib/session.js";

const $ = (id) => document.getElementById(id);

// Few-step presets, offered where the build has the sampler: LCM at low guidance (LCM-LoRA's
// recipe) and Euler Ancestral at guidance 0 (SD-Turbo's). A folder not distilled for them still
// runs them (and the gate checks them); it just does not look good in so few steps.
const PRESETS = {
  lcm: { label: "Few steps: LCM (4 steps)", scheduler: "lcm", steps: 4, guidance: 1 },
  turbo: { label: "Few steps: Turbo (Euler Ancestral, 1 step, guidance 0)", scheduler: "euler-a", steps: 1, guidance: 0 },
};
let session = null;
let busy = false;
let initImage = null; // {width, height, rgba}: img2img's start image, as the file's own pixels
let initBitmap = null; // the same picture, to draw under the mask
let mask = null; // a canvas of the image's size: white where an inpainting model repaints
let lora = null; // {name, bytes}: the chosen LoRA file
let loraApplied = null; // {name, scale} of the LoRA merged into the open model's weights, or null

// The chosen picture's pixels, unscaled and without colour conversion (the gate feeds the encoder
// PIL's pixels of the same file); one of another size than the model's is refused at Generate.
async function loadInitImage(file) {
  clearError();
  const bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  initImage = { width: bitmap.width, height: bitmap.height, rgba: ctx.getImageData(0, 0, bitmap.width, bitmap.height).data };
  const preview = $("init-preview");
  preview.getContext("2d").drawImage(bitmap, 0, 0, preview.width, preview.height);
  $("init-row").hidden = false;
  $("init-hint").textContent = `${file.name}: ${bitmap.width}x${bitmap.height}`;
  window.wsdApp.initImage = { width: bitmap.width, height: bitmap.height };
  initBitmap = bitmap;
  resetMask(bitmap.width, bitmap.height);
}

// The mask lives at the image's own size; the visible canvas shows image + red wash, scaled.
function resetMask(width, height) {
  mask = document.createElement("canvas");
  mask.width = width;
  mask.height = height;
  const ctx = mask.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, width, height);
  drawMask();
}

function drawMask() {
  const view = $("mask-canvas");
  const ctx = view.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, view.width, view.height);
  if (initBitmap) ctx.drawImage(initBitmap, 0, 0, view.width, view.height);
  if (!mask) return;
  const wash = document.createElement("canvas");
  wash.width = mask.width;
  wash.height = mask.height;
  const w = wash.getContext("2d");
  const data = mask.getContext("2d").getImageData(0, 0, mask.width, mask.height);
  for (let p = 0; p < data.data.length; p += 4) {
    const on = data.data[p] >= 128;
    data.data.set(on ? [230, 40, 40, 150] : [0, 0, 0, 0], p);
  }
  w.putImageData(data, 0, 0);
  ctx.drawImage(wash, 0, 0, view.width, view.height);
}

// The share of the image the model will repaint (the e2e tests read it; a person sees the wash).
function maskCoverage() {
  if (!mask) return 0;
  const data = mask.getContext("2d").getImageData(0, 0, mask.width, mask.height).data;
  let on = 0;
  for (let p = 0; p < data.length; p += 4) on += data[p] >= 128 ? 1 : 0;
  return on / (mask.width * mask.height);
}

function maskPixels() {
  return { width: mask.width, height: mask.height, rgba: mask.getContext("2d").getImageData(0, 0, mask.width, mask.height).data };
}

async function loadMaskImage(file) {
  const bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  if (!mask) resetMask(bitmap.width, bitmap.height);
  if (bitmap.width !== mask.width || bitmap.height !== mask.height) throw new WsdError("WSD_INPUT", `maskImage: ${bitmap.width}x${bitmap.height}, the start image is ${mask.width}x${mask.height}`, { field: "maskImage" });
  mask.getContext("2d").drawImage(bitmap, 0, 0);
  drawMask();
  window.wsdApp.maskImage = { width: bitmap.width, height: bitmap.height };
}

function wireMaskBrush() {
  const view = $("mask-canvas");
  let painting = false;
  const paint = (e) => {
    if (!painting || !mask) return;
    const box = view.getBoundingClientRect();
    const x = ((e.clientX - box.left) / box.width) * mask.width;
    const y = ((e.clientY - box.top) / box.height) * mask.height;
    const ctx = mask.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.beginPath();
    ctx.arc(x, y, (Number($("brush").value) / 256) * mask.width, 0, 2 * Math.PI);
    ctx.fill();
    drawMask();
  };
  view.addEventListener("pointerdown", (e) => {
    painting = true;
    view.setPointerCapture(e.pointerId);
    paint(e);
  });
  view.addEventListener("pointermove", paint);
  view.addEventListener("pointerup", () => (painting = false));
  $("mask-clear").onclick = () => mask && resetMask(mask.width, mask.height);
  $("mask-image").onchange = () => $("mask-image").files[0] && loadMaskImage($("mask-image").files[0]).catch(showError);
}

function clearInitImage() {
  initImage = null;
  initBitmap = null;
  mask = null;
  drawMask();
  $("init-image").value = "";
  $("init-row").hidden = true;
  $("init-hint").textContent = "Drop or choose a picture of the model's size; without one the image starts from noise.";
  window.wsdApp.initImage = null;
}

function wireInitImage() {
  $("init-image").onchange = () => $("init-image").files[0] && loadInitImage($("init-image").files[0]).catch(showError);
  $("init-clear").onclick = clearInitImage;
  $("strength").oninput = () => ($("strength-value").textContent = $("strength").value);
  const drop = $("image-drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("dragging");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("dragging");
    const file = e.dataTransfer.files[0];
    if (file) loadInitImage(file).catch(showError);
  });
}

// The open model's weights follow the chosen LoRA and scale: merged (or restored) only when they
// changed since the last generation (lib/session.js setLora keeps the build's weights to return to).
async function syncLora() {
  const want = lora ? { name: lora.name, scale: Number($("lora-scale").value) } : null;
  if (JSON.stringify(want) === JSON.stringify(loraApplied)) return;
  status(want ? `merging LoRA ${want.name} at ${want.scale}` : "removing LoRA");
  const changed = await session.setLora(lora ? lora.bytes : null, want ? want.scale : 1, want?.name);
  loraApplied = want;
  window.wsdApp.lora = want && { ...want, weights: changed.weights, layers: changed.layers };
  if (want) $("lora-hint").textContent = `${want.name}: ${changed.layers} layers of this model`;
}

function clearLora() {
  lora = null;
  $("lora-file").value = "";
  $("lora-clear").hidden = true;
  $("lora-hint").textContent = "A .safetensors LoRA for this model (diffusers/PEFT or kohya keys), merged into the loaded weights: no rebuild.";
}

function wireLora() {
  $("lora-file").onchange = async () => {
    const file = $("lora-file").files[0];
    if (!file) return;
    clearError();
    lora = { name: file.name, bytes: new Uint8Array(await file.arrayBuffer()) };
    $("lora-clear").hidden = false;
    try {
      await syncLora(); // at once: a LoRA that does not fit is named now, not at Generate
      status(`LoRA ${file.name} merged at ${$("lora-scale").value}`);
    } catch (err) {
      clearLora();
      window.wsdApp.lora = null;
      showError(err);
    }
  };
  $("lora-scale").oninput = () => ($("lora-scale-value").textContent = $("lora-scale").value);
  $("lora-clear").onclick = () => {
    clearLora();
    syncLora().then(() => status("LoRA removed"), showError);
  };
}

function status(text, fraction) {
  $("status").textContent = text;
  if (fraction !== undefined) $("progress").value = fraction;
}

function showError(err) {
  const info = explain(err);
  $("error-title").textContent = info.title;
  $("error-advice").textContent = info.advice;
  $("error-message").textContent = info.message;
  $("error").hidden = false;
  $("error").dataset.code = info.code;
  status(`error: ${info.code}`);
  window.wsdApp.lastError = info;
}

function clearError() {
  $("error").hidden = true;
  delete $("error").dataset.code;
}

function fillSelect(select, values, chosen) {
  select.replaceChildren(...values.map((v) => new Option(String(v), String(v), false, String(v) === String(chosen))));
}

async function listModels() {
  const response = await fetch("/models/index.json", { cache: "no-cache" });
  if (!response.ok) throw new WsdError("WSD_FETCH", `/models/index.json: HTTP ${response.status}`);
  return (await response.json()).models;
}

function fillOptions() {
  const m = session.manifest;
  fillSelect($("scheduler"), m.schedulers, m.default_scheduler);
  const steps = (chosen = 20) => fillSelect($("steps"), m.scheduler_steps[$("scheduler").value], chosen);
  $("scheduler").onchange = () => {
    $("preset").value = "";
    steps();
  };
  steps();
  // Each family's own default guidance (SD 1.5: 7.5, SDXL: 5.0), from the generation plan.
  $("guidance").value = String(m.generation?.default_guidance ?? 7.5);
  const offered = Object.entries(PRESETS).filter(([, p]) => m.schedulers.includes(p.scheduler) && m.scheduler_steps[p.scheduler].includes(p.steps));
  $("preset").replaceChildren(new Option("Custom", ""), ...offered.map(([key, p]) => new Option(p.label, key)));
  $("preset").onchange = () => {
    const preset = PRESETS[$("preset").value];
    if (!preset) return;
    $("scheduler").value = preset.scheduler;
    steps(preset.steps);
    $("guidance").value = String(preset.guidance);
  };
}

async function openModel(name) {
  clearError();
  $("generate").disabled = true;
  status(`loading ${name}`, 0);
  session = await ModelSession.open(`/models/${name}/`, {
    reuse: session,
    onProgress: (p) => status(p.text, p.fraction),
  });
  loraApplied = null; // the weights are the build's own after an open; the chosen LoRA is merged at Generate
  fillOptions();
  // an inpainting model takes a mask beside its start image (and needs both)
  $("mask-row").hidden = !session.manifest.generation?.inpaint;
  $("strength").value = session.manifest.generation?.inpaint ? "1" : "0.8"; // the diffusers pipelines' defaults
  $("strength-value").textContent = $("strength").value;
  // The open model's manifest joins the offline shell (sw.js; lib/integrity.js caches its files).
  navigator.serviceWorker?.ready.then((reg) => reg.active?.postMessage({ keep: `/models/${name}/manifest.json` })).catch(() => {});
  const path = session.kernelPath(); // a --subgroup-matrix build: tensor cores or why not
  status(`${name} ready (pipelines ${(session.timings.pipelines_ms / 1000).toFixed(1)} s${path ? `; ${path}` : ""})`, 1);
  $("generate").disabled = false;
}

function optionsFromForm() {
  return {
    prompt: $("prompt").value,
    negativePrompt: $("negative").value,
    scheduler: $("scheduler").value,
    steps: Number($("steps").value),
    seed: Number($("seed").value),
    guidance: Number($("guidance").value),
    previewEvery: Number($("preview").value),
    ...(initImage ? { initImage, strength: Number($("strength").value) } : {}),
    ...(initImage && session.manifest.generation?.inpaint ? { maskImage: maskPixels() } : {}),
  };
}

function draw(image) {
  const canvas = $("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  canvas.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(image.rgba), image.width, image.height), 0, 0);
}

async function onGenerate(event) {
  event.preventDefault();
  if (busy || !session) return;
  busy = true;
  $("generate").disabled = true;
  clearError();
  try {
    const options = checkOptions(optionsFromForm(), session.manifest);
    await syncLora();
    const image = await generate(session, options, {
      onProgress: (p) => {
        const rate = p.itPerSec ? `, ${p.itPerSec.toFixed(2)} it/s` : "";
        status(`${p.stage}: step ${p.step}/${p.steps}${rate}`, p.steps ? p.step / p.steps : 0);
      },
      onPreview: draw,
    });
    draw(image);
    const link = $("download");
    link.href = $("canvas").toDataURL("image/png");
    link.download = `wsd-${session.manifest.model}-seed${options.seed}.png`;
    link.hidden = false;
    const note = image.tokens.truncated ? ` (prompt cut to ${image.tokens.limit} tokens)` : "";
    status(`done in ${(image.timings.total_ms / 1000).toFixed(1)} s${note}`, 1);
    const mem = session.memory();
    $("memory").textContent = `GPU: ${mem.buffers} buffers, ${(mem.bytes / 2 ** 20).toFixed(1)} MiB`;
    window.wsdApp.generations += 1;
    window.wsdApp.last = { width: image.width, height: image.height, tokens: image.tokens, timings: image.timings };
  } catch (err) {
    showError(err);
  } finally {
    busy = false;
    $("generate").disabled = !session;
  }
}

async function start() {
  window.wsdApp = { generations: 0, memory: () => (session ? session.memory() : null), lastError: null, initImage: null, maskImage: null, lora: null, maskCoverage };
  $("form").addEventListener("submit", onGenerate);
  wireInitImage();
  wireMaskBrush();
  wireLora();
  if ("serviceWorker" in navigator) {
    try {
      await navigator.serviceWorker.register("/sw.js");
    } catch (err) {
      console.warn("no offline cache:", err); // the page still works online
    }
  }
  try {
    const models = await listModels();
    if (!models.length) throw new WsdError("WSD_MODEL", "no built model under /models/: run `wsd build` first");
    const wanted = new URLSearchParams(location.search).get("model");
    const first = models.includes(wanted) ? wanted : models[0];
    fillSelect($("model"), models, first);
    $("model").onchange = () => openModel($("model").value).catch(showError);
    await openModel(first);
  } catch (err) {
    showError(err);
  }
  window.wsdApp.ready = true;
}

start();
