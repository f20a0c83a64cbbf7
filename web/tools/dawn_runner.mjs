// The harness's runner without a browser: Dawn for Node (the WebGPU implementation Chrome
// uses) driving lib/remote.js, the same code the runner page runs. Used where Chromium has no
// GPU (a headless server with an NVIDIA card: Dawn over its Vulkan driver) and on SwiftShader.
//
//   node dawn_runner.mjs <tvmjs.bundle.js>
//
// Requests are JSON lines on stdin: {"id", "method", "arg"}; each reply is one line on stdout,
// "\u001eWSD " + {"id", "result"} or {"id", "error"} (other output, tvmjs's logging included,
// is never mistaken for a reply). Environment: WSD_DAWN_MODULES (node_modules holding the
// `webgpu` package), WSD_DAWN_FLAGS (Dawn options, ";"-separated, e.g.
// "enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia").
import { createRequire } from "node:module";
import path from "node:path";
import readline from "node:readline";

const require = createRequire(import.meta.url);
const REPLY = "\u001eWSD ";

function loadDawn() {
  const addon = path.join(process.env.WSD_DAWN_MODULES || "", "webgpu", "dist", `${process.platform}-${process.arch}`, "dawn.node");
  const dawn = require(addon);
  Object.assign(globalThis, dawn.globals);
  const flags = (process.env.WSD_DAWN_FLAGS || "").split(";").filter(Boolean);
  // Kept referenced for the whole run: a collected GPU instance tears Dawn down under a live device.
  globalThis.wsdGpu = dawn.create(flags);
  Object.defineProperty(globalThis, "navigator", { value: { gpu: globalThis.wsdGpu }, configurable: true });
}

async function main() {
  loadDawn();
  globalThis.tvmjs = require(path.resolve(process.argv[2]));
  const { createRemote } = await import("../lib/remote.js");
  const remote = createRemote({ onStatus: (text) => process.stderr.write(`[dawn] ${text}\n`) });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let request;
    try {
      request = JSON.parse(line);
    } catch (err) {
      process.stdout.write(`${REPLY}${JSON.stringify({ id: null, error: `WSD_INPUT: not JSON: ${err.message}` })}\n`);
      continue;
    }
    let reply;
    try {
      const method = Object.hasOwn(remote, request.method) ? remote[request.method] : null;
      if (typeof method !== "function") throw new Error(`WSD_INPUT: no method ${JSON.stringify(request.method)}`);
      reply = { id: request.id, result: await method(request.arg) };
    } catch (err) {
      reply = { id: request.id, error: String((err && err.message) || err) };
    }
    process.stdout.write(`${REPLY}${JSON.stringify(reply)}\n`);
  }
}

main().catch((err) => {
  process.stderr.write(`dawn runner failed: ${(err && err.stack) || err}\n`);
  process.exit(3);
});
