// Per-kernel GPU time from timestamp queries. tvmjs opens one compute pass per dispatch, so a
// pass's begin/end timestamps time exactly one kernel; this wraps the device's encoders to add
// `timestampWrites` to each pass while a recording is active and remembers which pipeline
// (entry point = kernel) each pass ran. Needs the device's `timestamp-query` feature; Dawn
// quantizes timestamps unless its `timestamp_quantization` toggle is disabled.
const CAPACITY = 4096; // queries per set (WebGPU's maximum): 2048 dispatches per recording

export class KernelProfiler {
  constructor(device) {
    if (!device.features.has("timestamp-query")) throw new Error("WSD_GPU_ERROR: the device lacks timestamp-query");
    this.device = device;
    this.names = new WeakMap(); // pipeline -> its entry point
    this.active = false;
    this.querySet = device.createQuerySet({ type: "timestamp", count: CAPACITY });
    this.resolve = device.createBuffer({ size: CAPACITY * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    this.readback = device.createBuffer({ size: CAPACITY * 8, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
    this.wrapDevice();
  }

  wrapDevice() {
    const device = this.device;
    const names = this.names;
    const makeSync = device.createComputePipeline.bind(device);
    const makeAsync = device.createComputePipelineAsync.bind(device);
    device.createComputePipeline = (desc) => {
      const pipeline = makeSync(desc);
      names.set(pipeline, desc.compute.entryPoint);
      return pipeline;
    };
    device.createComputePipelineAsync = async (desc) => {
      const pipeline = await makeAsync(desc);
      names.set(pipeline, desc.compute.entryPoint);
      return pipeline;
    };
    const makeEncoder = device.createCommandEncoder.bind(device);
    device.createCommandEncoder = (desc) => this.wrapEncoder(makeEncoder(desc));
  }

  wrapEncoder(encoder) {
    const begin = encoder.beginComputePass.bind(encoder);
    encoder.beginComputePass = (desc = {}) => {
      if (!this.active || this.kernels.length * 2 >= CAPACITY) return begin(desc);
      const index = this.kernels.length;
      this.kernels.push(null);
      const pass = begin({ ...desc, timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 2 * index, endOfPassWriteIndex: 2 * index + 1 } });
      const setPipeline = pass.setPipeline.bind(pass);
      pass.setPipeline = (pipeline) => {
        this.kernels[index] = this.names.get(pipeline) || "unknown";
        return setPipeline(pipeline);
      };
      return pass;
    };
    return encoder;
  }

  start() {
    this.kernels = [];
    this.active = true;
  }

  // Stops recording; resolves to [{kernel, ms}] in dispatch order (after the GPU finished them).
  async stop() {
    this.active = false;
    const count = this.kernels.length;
    if (count === 0) return [];
    const encoder = this.device.createCommandEncoder();
    encoder.resolveQuerySet(this.querySet, 0, 2 * count, this.resolve, 0);
    encoder.copyBufferToBuffer(this.resolve, 0, this.readback, 0, 16 * count);
    this.device.queue.submit([encoder.finish()]);
    await this.readback.mapAsync(GPUMapMode.READ, 0, 16 * count);
    const stamps = new BigInt64Array(this.readback.getMappedRange(0, 16 * count).slice(0));
    this.readback.unmap();
    return this.kernels.map((name, i) => ({
      kernel: (name || "unknown").replace(/_kernel(?:_[0-9]+)?$/, ""),
      ms: Number(stamps[2 * i + 1] - stamps[2 * i]) / 1e6,
    }));
  }
}
