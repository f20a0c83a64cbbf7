// Probe: what Dawn's subgroup matrices (chromium-experimental-subgroup-matrix, tensor cores on
// NVIDIA through VK_KHR_cooperative_matrix) give an fp16 GEMM over WebGPU, at SD 1.5 UNet shapes.
//
//   node probe_subgroup_matrix.mjs probe.json     (WSD_DAWN_MODULES names npm `webgpu`'s node_modules)
//
// Prints the adapter's subgroup-matrix configurations, checks each kernel variant against a CPU
// GEMM on a small case, then times each variant at the UNet's conv/matmul GEMM shapes (M x N x K).
// Variants: "global" loads every fragment from the storage buffers; "staged" copies A and B tiles
// into workgroup memory first (what a compiler schedule would do). A plain fp16 tiled kernel
// (scalar FMAs, the way our TVM schedules compute) is timed beside them.
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { compile as compileCode, dispatchMs, halfBits, readBack } from "./probe_common.mjs";

const require = createRequire(import.meta.url);
const dawn = require(path.join(process.env.WSD_DAWN_MODULES, "webgpu", "dist", "linux-x64", "dawn.node"));
Object.assign(globalThis, dawn.globals);
const gpu = dawn.create(["enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia"]);
const SG = "chromium-experimental-subgroup-matrix";

// result<T, cols, rows>, left<T, K, M>, right<T, N, K>: M x K times K x N
function sgKernel({ M, N, K, acc, staged, fm, fn, sgRows, sgCols, kt, diag, sgid }) {
  const F = 16;
  const WM = sgRows * fm * F; // workgroup tile rows
  const WN = sgCols * fn * F;
  const threads = 32 * sgRows * sgCols;
  const L = `subgroup_matrix_left<f16, ${F}, ${F}>`;
  const R = `subgroup_matrix_right<f16, ${F}, ${F}>`;
  const C = `subgroup_matrix_result<${acc}, ${F}, ${F}>`;
  const lines = ["enable f16;", "enable chromium_experimental_subgroup_matrix;"];
  // Tint's uniformity analysis is per workgroup: offsets that differ between a workgroup's
  // subgroups are flagged unless the rule is off (one subgroup per workgroup needs no waiver)
  if (diag) lines.push("diagnostic(off, subgroup_uniformity);");
  if (sgid) lines.push("enable subgroups;");
  lines.push("@group(0) @binding(0) var<storage, read> A : array<f16>;");
  lines.push("@group(0) @binding(1) var<storage, read> B : array<f16>;");
  lines.push(`@group(0) @binding(2) var<storage, read_write> Cm : array<${acc}>;`);
  if (staged) {
    lines.push(`var<workgroup> As : array<f16, ${WM * kt}>;`);
    lines.push(`var<workgroup> Bs : array<f16, ${kt * WN}>;`);
  }
  lines.push(`@compute @workgroup_size(32, ${sgRows * sgCols}, 1)`);
  const extra = sgid ? ", @builtin(subgroup_id) sgid : u32" : "";
  lines.push(`fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_index) li : u32, @builtin(local_invocation_id) lid : vec3<u32>${extra}) {`);
  // one subgroup per workgroup: every offset derives from the workgroup id alone (uniform)
  lines.push(`  let sg = ${sgRows * sgCols === 1 ? "0u" : sgid ? "sgid" : "lid.y"};`);
  lines.push(`  let r0 = wg.y * ${WM}u + (sg / ${sgCols}u) * ${fm * F}u;`);
  lines.push(`  let c0 = wg.x * ${WN}u + (sg % ${sgCols}u) * ${fn * F}u;`);
  for (let i = 0; i < fm; i++) for (let j = 0; j < fn; j++) lines.push(`  var c${i}${j} = ${C}();`);
  if (!staged) {
    lines.push(`  for (var k = 0u; k < ${K}u; k += ${F}u) {`);
    for (let i = 0; i < fm; i++) lines.push(`    let a${i} = subgroupMatrixLoad<${L}>(&A, (r0 + ${i * F}u) * ${K}u + k, false, ${K}u);`);
    for (let j = 0; j < fn; j++) lines.push(`    let b${j} = subgroupMatrixLoad<${R}>(&B, k * ${N}u + c0 + ${j * F}u, false, ${N}u);`);
    for (let i = 0; i < fm; i++) for (let j = 0; j < fn; j++) lines.push(`    c${i}${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, c${i}${j});`);
    lines.push("  }");
  } else {
    const lr0 = `(sg / ${sgCols}u) * ${fm * F}u`;
    const lc0 = `(sg % ${sgCols}u) * ${fn * F}u`;
    lines.push(`  for (var k0 = 0u; k0 < ${K}u; k0 += ${kt}u) {`);
    lines.push(`    for (var e = li; e < ${WM * kt}u; e += ${threads}u) { As[e] = A[(wg.y * ${WM}u + e / ${kt}u) * ${K}u + k0 + e % ${kt}u]; }`);
    lines.push(`    for (var e = li; e < ${kt * WN}u; e += ${threads}u) { Bs[e] = B[(k0 + e / ${WN}u) * ${N}u + wg.x * ${WN}u + e % ${WN}u]; }`);
    lines.push("    workgroupBarrier();");
    lines.push(`    for (var k = 0u; k < ${kt}u; k += ${F}u) {`);
    for (let i = 0; i < fm; i++) lines.push(`      let a${i} = subgroupMatrixLoad<${L}>(&As, (${lr0} + ${i * F}u) * ${kt}u + k, false, ${kt}u);`);
    for (let j = 0; j < fn; j++) lines.push(`      let b${j} = subgroupMatrixLoad<${R}>(&Bs, k * ${WN}u + ${lc0} + ${j * F}u, false, ${WN}u);`);
    for (let i = 0; i < fm; i++) for (let j = 0; j < fn; j++) lines.push(`      c${i}${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, c${i}${j});`);
    lines.push("    }");
    lines.push("    workgroupBarrier();");
    lines.push("  }");
  }
  for (let i = 0; i < fm; i++)
    for (let j = 0; j < fn; j++) lines.push(`  subgroupMatrixStore(&Cm, (r0 + ${i * F}u) * ${N}u + c0 + ${j * F}u, c${i}${j}, false, ${N}u);`);
  lines.push("}");
  return { code: lines.join("\n"), grid: [N / WN, M / WM, 1], tile: [WM, WN] };
}

// The baseline: 64x64 tiles, 16x16 threads, 4x4 outputs each, fp16 FMAs, workgroup-staged.
function plainKernel({ M, N, K, acc }) {
  const kt = 16;
  const code = `enable f16;
@group(0) @binding(0) var<storage, read> A : array<f16>;
@group(0) @binding(1) var<storage, read> B : array<f16>;
@group(0) @binding(2) var<storage, read_write> Cm : array<${acc}>;
var<workgroup> As : array<f16, ${64 * kt}>;
var<workgroup> Bs : array<f16, ${kt * 64}>;
@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_id) lid : vec3<u32>, @builtin(local_invocation_index) li : u32) {
  var acc : array<f16, 16>;
  for (var k0 = 0u; k0 < ${K}u; k0 += ${kt}u) {
    for (var e = li; e < ${64 * kt}u; e += 256u) { As[e] = A[(wg.y * 64u + e / ${kt}u) * ${K}u + k0 + e % ${kt}u]; }
    for (var e = li; e < ${kt * 64}u; e += 256u) { Bs[e] = B[(k0 + e / 64u) * ${N}u + wg.x * 64u + e % 64u]; }
    workgroupBarrier();
    for (var k = 0u; k < ${kt}u; k++) {
      for (var i = 0u; i < 4u; i++) {
        let a = As[(lid.y + 16u * i) * ${kt}u + k];
        for (var j = 0u; j < 4u; j++) { acc[i * 4u + j] = fma(a, Bs[k * 64u + lid.x + 16u * j], acc[i * 4u + j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) { for (var j = 0u; j < 4u; j++) {
    Cm[(wg.y * 64u + lid.y + 16u * i) * ${N}u + wg.x * 64u + lid.x + 16u * j] = ${acc}(acc[i * 4u + j]);
  } }
}`;
  return { code, grid: [N / 64, M / 64, 1], tile: [64, 64] };
}

async function main() {
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  const info = adapter.info || {};
  const out = {
    adapter: { vendor: info.vendor, architecture: info.architecture, description: info.description },
    features: [...adapter.features].sort(),
    subgroupMatrixConfigs: info.subgroupMatrixConfigs
      ? [...info.subgroupMatrixConfigs].map((c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`)
      : "not exposed",
    checks: [],
    timings: [],
  };
  const want = ["shader-f16", "subgroups", SG].filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    requiredFeatures: want,
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
      maxComputeInvocationsPerWorkgroup: 256,
      maxComputeWorkgroupSizeX: 256,
      maxComputeWorkgroupSizeY: 256,
      maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
    },
  });
  device.onuncapturederror = (e) => out.checks.push({ uncaptured: e.error.message });
  if (!adapter.features.has(SG)) {
    out.error = `adapter lacks ${SG}`;
    fs.writeFileSync(process.argv[2], JSON.stringify(out, null, 1));
    return;
  }

  function buffer(bytes, usage) {
    return device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage });
  }
  const compile = (k) => compileCode(device, k.code);
  function bind(pipeline, a, b, c) {
    return device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [a, b, c].map((buf, i) => ({ binding: i, resource: { buffer: buf } })),
    });
  }
  const readC = (buf, n, acc) => readBack(device, buf, n, acc);

  const variants = [
    { name: "global-1sg-32x32-f32", acc: "f32", staged: false, fm: 2, fn: 2, sgRows: 1, sgCols: 1 },
    { name: "global-1sg-32x32-f16", acc: "f16", staged: false, fm: 2, fn: 2, sgRows: 1, sgCols: 1 },
    { name: "global-1sg-64x64-f16", acc: "f16", staged: false, fm: 4, fn: 4, sgRows: 1, sgCols: 1 },
    { name: "staged-1sg-64x64-kt32-f16", acc: "f16", staged: true, fm: 4, fn: 4, sgRows: 1, sgCols: 1, kt: 32 },
    { name: "staged-1sg-64x64-kt32-f32", acc: "f32", staged: true, fm: 4, fn: 4, sgRows: 1, sgCols: 1, kt: 32 },
    { name: "staged-1sg-32x64-kt32-f16", acc: "f16", staged: true, fm: 2, fn: 4, sgRows: 1, sgCols: 1, kt: 32 },
    { name: "staged-4sg-64x64-sgid-f16", acc: "f16", staged: true, fm: 2, fn: 2, sgRows: 2, sgCols: 2, kt: 32, sgid: true },
    { name: "staged-4sg-128x128-sgid-f16", acc: "f16", staged: true, fm: 4, fn: 4, sgRows: 2, sgCols: 2, kt: 32, sgid: true },
    { name: "staged-4sg-64x64-diag-f16", acc: "f16", staged: true, fm: 2, fn: 2, sgRows: 2, sgCols: 2, kt: 32, sgid: true, diag: true },
    { name: "plain-f16", acc: "f16", plain: true },
  ];
  const make = (v, shape) => (v.plain ? plainKernel({ ...shape, acc: v.acc }) : sgKernel({ ...shape, ...v }));

  // correctness: small integers, exact in fp16 and in the sums
  const small = { M: 128, N: 128, K: 64 };
  const a = Float32Array.from({ length: small.M * small.K }, (_, i) => ((i * 7) % 5) - 2);
  const b = Float32Array.from({ length: small.K * small.N }, (_, i) => ((i * 3) % 5) - 2);
  const ref = new Float32Array(small.M * small.N);
  for (let i = 0; i < small.M; i++) for (let k = 0; k < small.K; k++) for (let j = 0; j < small.N; j++) ref[i * small.N + j] += a[i * small.K + k] * b[k * small.N + j];
  const upload = (arr) => {
    const buf = buffer(arr.length * 2, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    const h = new Uint16Array(Math.ceil(arr.length / 8) * 8);
    arr.forEach((x, i) => (h[i] = halfBits(x)));
    device.queue.writeBuffer(buf, 0, h);
    return buf;
  };
  const A = upload(a);
  const B = upload(b);
  const ok = {};
  for (const v of variants) {
    const k = make(v, small);
    const { pipeline, msgs } = await compile(k);
    if (!pipeline) {
      out.checks.push({ variant: v.name, compiled: false, msgs: msgs.map((m) => m.split("\n").filter((l) => !/warning|\^|^\s*$|subgroupMatrix(Load|Store)</.test(l)).join("\n").slice(0, 600)) });
      continue;
    }
    const C = buffer(small.M * small.N * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind(pipeline, A, B, C));
    pass.dispatchWorkgroups(...k.grid);
    pass.end();
    device.queue.submit([enc.finish()]);
    const got = await readC(C, small.M * small.N, v.acc);
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]));
    ok[v.name] = worst === 0;
    out.checks.push({ variant: v.name, compiled: true, maxAbsErr: worst, sample: [got[0], ref[0], got[ref.length - 1], ref[ref.length - 1]] });
  }

  // timings at the UNet's GEMM shapes (batch 2 with CFG, 64x64 latents): conv 3x3 at each level,
  // a 1x1/linear, the attention projections; plus one square for the peak
  const shapes = [
    { M: 8192, N: 320, K: 2880, what: "conv3x3 320->320 @64x64" },
    { M: 2048, N: 640, K: 5760, what: "conv3x3 640->640 @32x32" },
    { M: 512, N: 1280, K: 11520, what: "conv3x3 1280->1280 @16x16" },
    { M: 8192, N: 1280, K: 320, what: "geglu proj 320->1280 (x2 wide)" },
    { M: 4096, N: 4096, K: 4096, what: "square (peak)" },
  ];
  for (const shape of shapes) {
    const bytesA = shape.M * shape.K * 2;
    const bytesB = shape.K * shape.N * 2;
    const GA = buffer(bytesA, GPUBufferUsage.STORAGE);
    const GB = buffer(bytesB, GPUBufferUsage.STORAGE);
    const GC = buffer(shape.M * shape.N * 4, GPUBufferUsage.STORAGE);
    const row = { ...shape, ms: {}, tflops: {} };
    for (const v of variants) {
      if (!ok[v.name]) continue;
      const k = make(v, shape);
      if (shape.M % k.tile[0] || shape.N % k.tile[1]) continue;
      const { pipeline } = await compile(k);
      if (!pipeline) continue;
      const group = bind(pipeline, GA, GB, GC);
      const ms = await dispatchMs(device, pipeline, group, k.grid);
      row.ms[v.name] = +ms.toFixed(4);
      row.tflops[v.name] = +((2 * shape.M * shape.N * shape.K) / (ms * 1e9)).toFixed(1);
    }
    out.timings.push(row);
    for (const g of [GA, GB, GC]) g.destroy();
  }
  // a file, not stdout: Dawn prints shader warnings (the builtins' deprecation) on stdout
  fs.writeFileSync(process.argv[2], JSON.stringify(out, null, 1));
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err && err.stack ? err.stack : err);
    process.exit(1);
  },
);
