// Submission pacing. tvmjs (≥ 0.27) records every dispatch of a VM call into one command
// encoder and submits it only at a sync or a copy, so the GPU idles while the CPU records the
// whole call (~1100 dispatches, ~60 ms for SD 1.5's UNet on an H200) and only then starts.
// Submitting every `every` compute passes lets the GPU run while the CPU records the rest.
// tvmjs builds without `flushCommands` (they submit each dispatch already) are left as they are.
export const DEFAULT_FLUSH_EVERY = 64;

export class SubmissionPacer {
  // `context` is tvmjs's WebGPUContext (tvm.lib.webGPUContext): its flushCommands() finishes
  // and submits the pending encoder. `every` = 0 turns pacing off (one submit per sync).
  constructor(device, context, every = DEFAULT_FLUSH_EVERY) {
    this.context = context;
    this.every = every;
    this.passes = 0; // compute passes ended since the last flush
    this.flushes = 0;
    this.supported = typeof context?.flushCommands === "function";
    if (this.supported) this.wrapDevice(device);
  }

  wrapDevice(device) {
    const makeEncoder = device.createCommandEncoder.bind(device);
    device.createCommandEncoder = (desc) => {
      const encoder = makeEncoder(desc);
      const begin = encoder.beginComputePass.bind(encoder);
      encoder.beginComputePass = (passDesc) => {
        const pass = begin(passDesc);
        const end = pass.end.bind(pass);
        pass.end = () => {
          end();
          this.passEnded(encoder);
        };
        return pass;
      };
      return encoder;
    };
  }

  // Only tvmjs's own pending encoder is flushed: a pass on any other encoder (the profiler's,
  // a caller's) is not tvmjs's to submit.
  passEnded(encoder) {
    if (!this.every || this.context.pendingEncoder !== encoder) return;
    this.passes += 1;
    if (this.passes >= this.every) {
      this.passes = 0;
      this.flushes += 1;
      this.context.flushCommands();
    }
  }
}
