// What the GPU probes share (probe_subgroup_matrix.mjs, probe_gemm_tiles.mjs): fp16 bits, a compute
// pipeline with its compile errors, and a kernel's time per dispatch.

// An fp16 bit pattern of x (the probes' inputs are small integers: normal numbers only)
export function halfBits(x) {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  f[0] = x;
  const b = u[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = ((b >>> 23) & 0xff) - 127 + 15;
  if (x === 0) return sign;
  if (exp <= 0 || exp >= 31) throw new Error(`value out of simple f16 range: ${x}`);
  return sign | (exp << 10) | ((b & 0x7fffff) >>> 13);
}

export function halfToFloat(v) {
  const sign = v & 0x8000 ? -1 : 1;
  const e = (v >> 10) & 0x1f;
  const m = v & 0x3ff;
  return e === 0 ? sign * m * 2 ** -24 : sign * (1 + m / 1024) * 2 ** (e - 15);
}

// n values of a GPU buffer ("f32" or "f16") as floats
export async function readBack(device, buf, n, type) {
  const bytes = n * (type === "f32" ? 4 : 2);
  const size = Math.max(16, Math.ceil(bytes / 16) * 16);
  const rb = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buf, 0, rb, 0, size);
  device.queue.submit([enc.finish()]);
  await rb.mapAsync(GPUMapMode.READ);
  const raw = rb.getMappedRange().slice(0);
  rb.unmap();
  rb.destroy();
  if (type === "f32") return new Float32Array(raw, 0, n);
  return Float32Array.from(new Uint16Array(raw, 0, n), halfToFloat);
}

// {pipeline, msgs}: the pipeline for WGSL `code` (entry point "main"), or null and the errors
export async function compile(device, code) {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code });
  const msgs = (await module.getCompilationInfo()).messages.filter((m) => m.type === "error").map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
  let pipeline = null;
  if (!msgs.length) {
    try {
      pipeline = await device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: "main" } });
    } catch (e) {
      msgs.push(String(e.message || e));
    }
  }
  const scoped = await device.popErrorScope();
  if (scoped) msgs.push(scoped.message);
  return { pipeline, msgs };
}

// ms per dispatch: the median of 5 batches of 20 dispatches, after 3 warm-up dispatches
export async function dispatchMs(device, pipeline, group, grid) {
  const run = async (reps) => {
    const enc = device.createCommandEncoder();
    for (let r = 0; r < reps; r++) {
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(...grid);
      pass.end();
    }
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  await run(3);
  const samples = [];
  for (let s = 0; s < 5; s++) samples.push((await run(20)) / 20);
  samples.sort((x, y) => x - y);
  return samples[2];
}
