// Probe: which subgroup-matrix GEMM layout is fastest at the SD 1.5 UNet's own GEMMs (the
// orientation the build emits: out[b, M=channels, N=pixels] = W[M, K] x cols[b, K, N], and linear
// layers x[M=tokens, K] x W[N, K]^T), beside the one-subgroup kernel the build emits today.
//
//   node probe_gemm_tiles.mjs out.json     (WSD_DAWN_MODULES names npm `webgpu`'s node_modules)
//
// Layouts: "global" loads each 16x16 fragment from the storage buffers (several subgroups per
// workgroup share what they load through the L1 cache); "staged" copies the workgroup's A and B
// tiles into workgroup memory with 16-byte loads (padded rows), optionally prefetching the next
// K tile into registers while the tensor cores work on this one. `split` cuts K into parts
// written to separate partial outputs (their sum, an elementwise pass, is not timed here).
// `out16`: f32 accumulators written as f16 through a per-subgroup workgroup scratch tile.
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { compile as compileCode, dispatchMs, halfBits, readBack } from "./probe_common.mjs";

const require = createRequire(import.meta.url);
const dawn = require(path.join(process.env.WSD_DAWN_MODULES, "webgpu", "dist", "linux-x64", "dawn.node"));
Object.assign(globalThis, dawn.globals);
const gpu = dawn.create(["enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia"]);
const SG = "chromium-experimental-subgroup-matrix";
const F = 16;

// v: { mode, sgRows, sgCols, fm, fn, kt, pad, acc, out16, split, prefetch }
// shape: { M, N, K, batch, nk }  (nk: B stored [N, K], column-major K x N, shared by every batch)
function kernel(v, s) {
  const { sgRows, sgCols, fm, fn } = v;
  const acc = v.acc || "f16";
  const split = v.split || 1;
  const WM = sgRows * fm * F;
  const WN = sgCols * fn * F;
  const nsg = sgRows * sgCols;
  const threads = 32 * nsg;
  const Kp = s.K / split;
  const outT = acc === "f32" && !v.out16 ? "f32" : "f16";
  const L = `subgroup_matrix_left<f16, ${F}, ${F}>`;
  const R = `subgroup_matrix_right<f16, ${F}, ${F}>`;
  const C = `subgroup_matrix_result<${acc}, ${F}, ${F}>`;
  const staged = v.mode === "staged";
  const o = ["enable f16;", "enable subgroups;", "enable chromium_experimental_subgroup_matrix;"];
  o.push("diagnostic(off, subgroup_uniformity);");
  o.push("diagnostic(off, chromium.subgroup_matrix_uniformity);");
  o.push(`@group(0) @binding(0) var<storage, read> A : array<${staged ? "vec4<u32>" : "f16"}>;`);
  o.push(`@group(0) @binding(1) var<storage, read> B : array<${staged ? "vec4<u32>" : "f16"}>;`);
  o.push(`@group(0) @binding(2) var<storage, read_write> Cm : array<${outT}>;`);
  const kt = v.kt || 32;
  const AS = kt + (v.pad ?? 8); // A tile row stride (halves)
  const BS = s.nk ? kt + (v.pad ?? 8) : WN + (v.pad ?? 8); // B tile: [WN][kt] if nk else [kt][WN]
  if (staged) {
    o.push(`var<workgroup> As : array<f16, ${WM * AS}>;`);
    o.push(`var<workgroup> Bs : array<f16, ${s.nk ? WN * BS : kt * BS}>;`);
  }
  if (v.out16) o.push(`var<workgroup> Cs : array<f32, ${nsg * F * F}>;`);
  o.push(`@compute @workgroup_size(${threads}, 1, 1)`);
  o.push("fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_index) li : u32, @builtin(subgroup_id) sg : u32, @builtin(subgroup_invocation_id) lane : u32) {");
  o.push(`  let b = wg.z / ${split}u;`);
  o.push(`  let part = wg.z % ${split}u;`);
  o.push(`  let kbeg = part * ${Kp}u;`);
  o.push(`  let m0 = wg.y * ${WM}u;`);
  o.push(`  let n0 = wg.x * ${WN}u;`);
  o.push(`  let sr = (sg / ${sgCols}u) * ${fm * F}u;`);
  o.push(`  let sc = (sg % ${sgCols}u) * ${fn * F}u;`);
  o.push(`  let rbase = ${s.nk ? "0u" : `b * ${s.K * s.N}u`};`);
  for (let i = 0; i < fm; i++) for (let j = 0; j < fn; j++) o.push(`  var c${i}_${j} = ${C}();`);
  const mma = (ind, aAt, bAt) => {
    for (let i = 0; i < fm; i++) o.push(`${ind}let a${i} = subgroupMatrixLoad<${L}>(${aAt(i)});`);
    for (let j = 0; j < fn; j++) o.push(`${ind}let b${j} = subgroupMatrixLoad<${R}>(${bAt(j)});`);
    for (let i = 0; i < fm; i++) for (let j = 0; j < fn; j++) o.push(`${ind}c${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, c${i}_${j});`);
  };
  if (!staged) {
    o.push(`  for (var k = kbeg; k < kbeg + ${Kp}u; k += ${F}u) {`);
    mma(
      "    ",
      (i) => `&A, (m0 + sr + ${i * F}u) * ${s.K}u + k, false, ${s.K}u`,
      (j) => (s.nk ? `&B, (n0 + sc + ${j * F}u) * ${s.K}u + k, true, ${s.K}u` : `&B, rbase + k * ${s.N}u + n0 + sc + ${j * F}u, false, ${s.N}u`),
    );
    o.push("  }");
  } else {
    // 16-byte loads: A rows of kt halves = kt/8 vec4s; B rows of WN (kn) or kt (nk) halves
    const aVecs = (WM * kt) / 8;
    const bVecs = (kt * WN) / 8;
    const aPer = Math.ceil(aVecs / threads);
    const bPer = Math.ceil(bVecs / threads);
    const aIdx = (e) => `((m0 + (${e}) / ${kt / 8}u) * ${s.K}u + k0 + ((${e}) % ${kt / 8}u) * 8u) / 8u`;
    const aDst = (e) => `((${e}) / ${kt / 8}u) * ${AS}u + ((${e}) % ${kt / 8}u) * 8u`;
    const bIdx = s.nk
      ? (e) => `((n0 + (${e}) / ${kt / 8}u) * ${s.K}u + k0 + ((${e}) % ${kt / 8}u) * 8u) / 8u`
      : (e) => `(rbase + (k0 + (${e}) / ${WN / 8}u) * ${s.N}u + n0 + ((${e}) % ${WN / 8}u) * 8u) / 8u`;
    const bDst = s.nk
      ? (e) => `((${e}) / ${kt / 8}u) * ${BS}u + ((${e}) % ${kt / 8}u) * 8u`
      : (e) => `((${e}) / ${WN / 8}u) * ${BS}u + ((${e}) % ${WN / 8}u) * 8u`;
    const put = (ind, arr, dst, val) => {
      o.push(`${ind}{ let d = ${dst}; let v = ${val};`);
      for (let q = 0; q < 4; q++) o.push(`${ind}  let h${q} = bitcast<vec2<f16>>(v[${q}]); ${arr}[d + ${2 * q}u] = h${q}.x; ${arr}[d + ${2 * q + 1}u] = h${q}.y;`);
      o.push(`${ind}}`);
    };
    const loadRegs = (ind) => {
      for (let r = 0; r < aPer; r++) o.push(`${ind}ra${r} = A[${aIdx(`li + ${r * threads}u`)}];`);
      for (let r = 0; r < bPer; r++) o.push(`${ind}rb${r} = B[${bIdx(`li + ${r * threads}u`)}];`);
    };
    const storeRegs = (ind) => {
      for (let r = 0; r < aPer; r++) put(ind, "As", aDst(`li + ${r * threads}u`), `ra${r}`);
      for (let r = 0; r < bPer; r++) put(ind, "Bs", bDst(`li + ${r * threads}u`), `rb${r}`);
    };
    if (aVecs % threads || bVecs % threads) throw new Error("tile loads must divide the threads");
    for (let r = 0; r < aPer; r++) o.push(`  var ra${r} : vec4<u32>;`);
    for (let r = 0; r < bPer; r++) o.push(`  var rb${r} : vec4<u32>;`);
    const compute = (ind) => {
      o.push(`${ind}for (var kk = 0u; kk < ${kt}u; kk += ${F}u) {`);
      mma(
        ind + "  ",
        (i) => `&As, (sr + ${i * F}u) * ${AS}u + kk, false, ${AS}u`,
        (j) => (s.nk ? `&Bs, (sc + ${j * F}u) * ${BS}u + kk, true, ${BS}u` : `&Bs, kk * ${BS}u + sc + ${j * F}u, false, ${BS}u`),
      );
      o.push(`${ind}}`);
    };
    if (v.prefetch) {
      o.push("  { let k0 = kbeg;");
      loadRegs("    ");
      o.push("  }");
      o.push(`  for (var k0 = kbeg; k0 < kbeg + ${Kp}u; k0 += ${kt}u) {`);
      storeRegs("    ");
      o.push("    workgroupBarrier();");
      o.push(`    if (k0 + ${kt}u < kbeg + ${Kp}u) { let k0 = k0 + ${kt}u;`);
      loadRegs("      ");
      o.push("    }");
      compute("    ");
      o.push("    workgroupBarrier();");
      o.push("  }");
    } else {
      o.push(`  for (var k0 = kbeg; k0 < kbeg + ${Kp}u; k0 += ${kt}u) {`);
      loadRegs("    ");
      storeRegs("    ");
      o.push("    workgroupBarrier();");
      compute("    ");
      o.push("    workgroupBarrier();");
      o.push("  }");
    }
  }
  o.push(`  let obase = wg.z * ${s.M * s.N}u;`);
  for (let i = 0; i < fm; i++)
    for (let j = 0; j < fn; j++) {
      const at = `obase + (m0 + sr + ${i * F}u) * ${s.N}u + n0 + sc + ${j * F}u`;
      if (!v.out16) {
        o.push(`  subgroupMatrixStore(&Cm, ${at}, c${i}_${j}, false, ${s.N}u);`);
      } else {
        o.push(`  subgroupMatrixStore(&Cs, sg * ${F * F}u, c${i}_${j}, false, ${F}u);`);
        o.push(`  for (var e = lane; e < ${F * F}u; e += 32u) { Cm[${at} + (e / ${F}u) * ${s.N}u + e % ${F}u] = f16(Cs[sg * ${F * F}u + e]); }`);
      }
    }
  o.push("}");
  const code = o.filter((l) => l !== "").join("\n");
  return { code, grid: [s.N / WN, s.M / WM, (s.batch || 1) * split], tile: [WM, WN], outT, split, threads };
}

const variants = [
  { name: "today-1sg-32x32", mode: "global", sgRows: 1, sgCols: 1, fm: 2, fn: 2 },
  { name: "today-1sg-64x64", mode: "global", sgRows: 1, sgCols: 1, fm: 4, fn: 4 },
  { name: "global-4sg-128x128", mode: "global", sgRows: 2, sgCols: 2, fm: 4, fn: 4 },
  { name: "global-4sg-64x64", mode: "global", sgRows: 2, sgCols: 2, fm: 2, fn: 2 },
  { name: "global-8sg-128x128", mode: "global", sgRows: 4, sgCols: 2, fm: 2, fn: 4 },
  { name: "staged-4sg-128x128-kt32", mode: "staged", sgRows: 2, sgCols: 2, fm: 4, fn: 4, kt: 32 },
  { name: "staged-4sg-128x128-kt32-pf", mode: "staged", sgRows: 2, sgCols: 2, fm: 4, fn: 4, kt: 32, prefetch: true },
  { name: "staged-8sg-128x128-kt32-pf", mode: "staged", sgRows: 4, sgCols: 2, fm: 2, fn: 4, kt: 32, prefetch: true },
  { name: "staged-4sg-64x64-kt32-pf", mode: "staged", sgRows: 2, sgCols: 2, fm: 2, fn: 2, kt: 32, prefetch: true },
  { name: "staged-4sg-128x64-kt64-pf", mode: "staged", sgRows: 2, sgCols: 2, fm: 4, fn: 2, kt: 64, prefetch: true },
  { name: "staged-4sg-128x128-kt32-pf-f32out16", mode: "staged", sgRows: 2, sgCols: 2, fm: 4, fn: 4, kt: 32, prefetch: true, acc: "f32", out16: true },
  { name: "global-4sg-128x128-f32out16", mode: "global", sgRows: 2, sgCols: 2, fm: 4, fn: 4, acc: "f32", out16: true },
  { name: "staged-4sg-128x128-kt32-pf-split4", mode: "staged", sgRows: 2, sgCols: 2, fm: 4, fn: 4, kt: 32, prefetch: true, split: 4 },
  { name: "staged-4sg-64x64-kt32-pf-split4", mode: "staged", sgRows: 2, sgCols: 2, fm: 2, fn: 2, kt: 32, prefetch: true, split: 4 },
  { name: "global-4sg-64x64-split4", mode: "global", sgRows: 2, sgCols: 2, fm: 2, fn: 2, split: 4 },
];

// the UNet's GEMMs as the build emits them (batch 2: CFG), and one square for the peak
const shapes = [
  { what: "conv3x3 320 @64x64", M: 320, N: 4096, K: 2880, batch: 2, calls: 7 },
  { what: "conv3x3 640 @32x32", M: 640, N: 1024, K: 5760, batch: 2, calls: 6 },
  { what: "conv3x3 1280 @16x16", M: 1280, N: 256, K: 11520, batch: 2, calls: 7 },
  { what: "conv3x3 1280 @8x8", M: 1280, N: 64, K: 11520, batch: 2, calls: 12 },
  { what: "linear 320->2560 geglu @64x64", M: 8192, N: 2560, K: 320, batch: 1, nk: true, calls: 1 },
  { what: "linear 1280->1280 @16x16", M: 512, N: 1280, K: 1280, batch: 1, nk: true, calls: 30 },
  { what: "square 4096 (peak)", M: 4096, N: 4096, K: 4096, batch: 1, calls: 1 },
];

async function main() {
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  const out = { date: new Date().toISOString(), command: "node scripts/gpu/probe_gemm_tiles.mjs", adapter: adapter.info?.description, checks: [], timings: [] };
  if (!adapter.features.has(SG)) throw new Error(`adapter lacks ${SG}`);
  const device = await adapter.requestDevice({
    requiredFeatures: ["shader-f16", "subgroups", SG],
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
      maxComputeInvocationsPerWorkgroup: 256,
      maxComputeWorkgroupSizeX: 256,
      maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
    },
  });
  const buffer = (bytes, usage) => device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage });
  const compile = (k) => compileCode(device, k.code);
  const bind = (p, bufs) => device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: bufs.map((buffer, i) => ({ binding: i, resource: { buffer } })) });
  const upload = (arr) => {
    const buf = buffer(arr.length * 2, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    const h = new Uint16Array(Math.ceil(arr.length / 8) * 8);
    arr.forEach((x, i) => (h[i] = halfBits(x)));
    device.queue.writeBuffer(buf, 0, h);
    return buf;
  };
  const read = (buf, n, t) => readBack(device, buf, n, t);
  // correctness on small integers (exact in f16), both B layouts, batch 2, the split parts summed here
  const ok = {};
  for (const nk of [false, true]) {
    const s = { M: 256, N: 256, K: 256, batch: nk ? 1 : 2, nk };
    const a = Float32Array.from({ length: s.M * s.K }, (_, i) => ((i * 7) % 5) - 2);
    const bl = nk ? s.N * s.K : s.batch * s.K * s.N;
    const bv = Float32Array.from({ length: bl }, (_, i) => ((i * 3) % 5) - 2);
    const ref = new Float32Array(s.batch * s.M * s.N);
    for (let b = 0; b < s.batch; b++)
      for (let i = 0; i < s.M; i++)
        for (let j = 0; j < s.N; j++) {
          let t = 0;
          for (let k = 0; k < s.K; k++) t += a[i * s.K + k] * (nk ? bv[j * s.K + k] : bv[b * s.K * s.N + k * s.N + j]);
          ref[b * s.M * s.N + i * s.N + j] = t;
        }
    const A = upload(a);
    const B = upload(bv);
    for (const v of variants) {
      const k = kernel(v, s);
      const { pipeline, msgs } = await compile(k);
      const key = `${v.name}${nk ? " nk" : ""}`;
      if (!pipeline) {
        out.checks.push({ variant: key, compiled: false, msgs: msgs.map((m) => m.slice(0, 800)) });
        continue;
      }
      const n = s.batch * k.split * s.M * s.N;
      const Cb = buffer(n * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bind(pipeline, [A, B, Cb]));
      pass.dispatchWorkgroups(...k.grid);
      pass.end();
      device.queue.submit([enc.finish()]);
      const got = await read(Cb, n, k.outT);
      let worst = 0;
      for (let b = 0; b < s.batch; b++)
        for (let e = 0; e < s.M * s.N; e++) {
          let t = 0;
          for (let p = 0; p < k.split; p++) t += got[(b * k.split + p) * s.M * s.N + e];
          worst = Math.max(worst, Math.abs(t - ref[b * s.M * s.N + e]));
        }
      ok[key] = worst === 0;
      out.checks.push({ variant: key, compiled: true, maxAbsErr: worst });
    }
  }
  for (const c of out.checks) console.log("check", c.variant, c.compiled ? `maxAbsErr ${c.maxAbsErr}` : `FAILED ${c.msgs.join(" | ").slice(0, 400)}`);
  for (const s of shapes) {
    const GA = buffer(s.M * s.K * 2, GPUBufferUsage.STORAGE);
    const GB = buffer((s.nk ? 1 : s.batch) * s.K * s.N * 2, GPUBufferUsage.STORAGE);
    const GC = buffer(s.batch * 4 * s.M * s.N * 4, GPUBufferUsage.STORAGE);
    const row = { ...s, ms: {}, tflops: {} };
    for (const v of variants) {
      if (!ok[`${v.name}${s.nk ? " nk" : ""}`]) continue;
      let k;
      try {
        k = kernel(v, s);
      } catch {
        continue;
      }
      if (s.M % k.tile[0] || s.N % k.tile[1] || (s.K / k.split) % (v.kt || 16)) continue;
      const { pipeline } = await compile(k);
      if (!pipeline) continue;
      const group = bind(pipeline, [GA, GB, GC]);
      const ms = await dispatchMs(device, pipeline, group, k.grid);
      row.ms[v.name] = +ms.toFixed(4);
      row.tflops[v.name] = +((2 * s.batch * s.M * s.N * s.K) / (ms * 1e9)).toFixed(1);
    }
    out.timings.push(row);
    console.log(s.what, JSON.stringify(row.tflops));
    for (const g of [GA, GB, GC]) g.destroy();
  }
  fs.writeFileSync(process.argv[2], JSON.stringify(out, null, 1));
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err && err.stack ? err.stack : err);
    process.exit(1);
  },
);
