// Host arrays ({data: TypedArray, shape, dtype}) and the one table from a dtype to its array
// class, shared by the session (GPU upload/download) and the remote wire format.

// float16 travels as its raw 16-bit words: JS has no Float16Array everywhere yet
export const TYPED = { float32: Float32Array, int32: Int32Array, uint32: Uint32Array, float16: Uint16Array, uint8: Uint8Array };

// A host array over `bytes` (a Uint8Array) of the given dtype; unknown dtypes stay bytes.
export function hostArray(bytes, shape, dtype) {
  const Typed = TYPED[dtype] || Uint8Array;
  return { data: new Typed(bytes.buffer, bytes.byteOffset, bytes.byteLength / Typed.BYTES_PER_ELEMENT), shape: Array.from(shape), dtype };
}

export function rawBytes(host) {
  const view = host.data;
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

// The device tvmjs uploads weights through, waiting for the GPU once per `every` bytes instead of
// after every tensor: tvmjs's fetchTensorCache syncs per record (1,100 round trips for SD 1.5;
// H100: the weights phase 7.2 -> 6.9 s, the fetch and hash are the rest). `recordBytes` are the
// records' sizes in tvmjs's order (one sync call each); staging stays within `every` plus a record.
export function batchedSync(device, recordBytes, every = 256 << 20) {
  let record = 0;
  let pending = 0;
  const batched = Object.create(device);
  batched.sync = () => {
    pending += recordBytes[record++] ?? every;
    if (pending < every) return Promise.resolve();
    pending = 0;
    return device.sync();
  };
  return batched;
}
