// What only the harness and the benchmarks ask of an open model (through lib/remote.js): kernels
// called alone and chained on GPU buffers (localization), and timed calls (benchmarks). The
// app never loads this file.
import { rawBytes } from "./tensors.js";

// Compiled kernels called alone (destination-passing style: outputs are arguments too);
// the harness's localization compares each with the native build's. A kernel that cannot
// be called alone yields {error} and the rest go on (the instance survives it).
export function runKernels(session, kernels) {
  const { tvm } = session;
  return session.exclusive(async () => {
    const results = [];
    for (const kernel of kernels) {
      tvm.beginScope();
      try {
        const args = kernel.args.map((x) => session.upload(x));
        tvm.systemLib().getFunction(kernel.name)(...args);
        await tvm.webgpu().sync();
        const outs = [];
        for (const index of kernel.outputs) outs.push(await session.download(args[index]));
        session.checkGpu();
        results.push(outs);
      } catch (err) {
        results.push({ error: `${kernel.name}: ${err.message || JSON.stringify(err)}` });
      } finally {
        tvm.endScope();
      }
    }
    return results;
  });
}

// Timing for benchmarks and the perf gate: the inputs uploaded once, warm-up calls (one, or as
// many as fill `warmupMs`: an idle GPU runs its first calls at lower clocks, measured on an H100 as
// a UNet call 41 ms in one process and 22 ms in the next), then `repeat` calls each waited for
// (wall ms); with a profiler, `profileRuns` more calls with every dispatch's GPU time (`kernels`:
// the first, `kernel_runs`: all of them). `record_ms`: the part of each timed call the CPU spent
// recording its dispatches (the GPU runs behind it where pacing submits early). `flushEvery` (a
// number) sets submission pacing for this and later calls (0: off).
export function bench(session, entry, inputs, repeat = 10, flushEvery = undefined, profileRuns = 1, warmupMs = 0) {
  const { tvm } = session;
  return session.exclusive(async () => {
    if (flushEvery !== undefined) session.pacer.every = flushEvery;
    tvm.beginScope();
    try {
      const args = inputs.map((x) => session.upload(x));
      const recordMs = []; // the CPU's part: until the call returns, every dispatch recorded
      const once = async () => {
        tvm.beginScope();
        try {
          const t0 = performance.now();
          session.call(entry, ...args);
          recordMs.push(performance.now() - t0);
          await tvm.webgpu().sync();
          return performance.now() - t0;
        } finally {
          tvm.endScope();
        }
      };
      const warm = performance.now();
      do {
        await once();
      } while (performance.now() - warm < warmupMs);
      recordMs.length = 0;
      const ms = [];
      for (let i = 0; i < repeat; ++i) ms.push(await once());
      const record_ms = recordMs.slice(0, repeat);
      const runs = [];
      for (let i = 0; session.profiler && i < profileRuns; ++i) {
        session.profiler.start();
        await once();
        runs.push(await session.profiler.stop());
      }
      session.checkGpu();
      const kernels = runs.length ? runs[0] : null;
      return { ms, record_ms, kernels, kernel_runs: runs.length ? runs : null, flush_every: session.pacer.supported ? session.pacer.every : null };
    } finally {
      tvm.endScope();
    }
  });
}

// Kernel calls chained on GPU buffers, the way the VM runs them: `buffers` are either
// {init} (uploaded) or {viewOf, shape, dtype} (another buffer's bytes seen with another
// shape); `calls` name a kernel and its arguments by buffer index, or {fill: [[index, host]]}.
// Runs calls[0..upto] and downloads the `fetch` buffers: the harness bisects the call list with it.
export function runChain(session, { buffers, calls, upto, fetch }) {
  const { tvm } = session;
  return session.exclusive(async () => {
    tvm.beginScope();
    try {
      const tensors = [];
      for (const b of buffers) tensors.push(b.init ? session.upload(b.init) : tensors.at(b.viewOf).view(b.shape, b.dtype));
      const lib = tvm.systemLib();
      for (const call of calls.slice(0, upto + 1)) {
        // a kernel that cannot be called alone: its outputs get the reference's values
        if (call.fill) for (const [i, host] of call.fill) tensors.at(i).copyFromRawBytes(rawBytes(host));
        else lib.getFunction(call.name)(...call.args.map((i) => tensors.at(i)));
      }
      await tvm.webgpu().sync();
      const outs = [];
      for (const i of fetch) outs.push(await session.download(tensors.at(i)));
      session.checkGpu();
      return outs;
    } finally {
      tvm.endScope();
    }
  });
}
