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
