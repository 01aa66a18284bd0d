import { QllamaError } from '../errors.js';
import { halfToFloat } from './half.js';
import type { SafetensorsDType } from './safetensors.js';

/**
 * Typed views over raw little-endian tensor bytes. A typed array needs its byte offset to be a
 * multiple of the element size; a Buffer slice may not be, so we copy into a fresh, aligned
 * array only then. Views share memory with the Buffer (callers that keep data long-term and
 * got a pooled Buffer should `.slice()`).
 */

/** The byte count is not a whole number of elements of the dtype. */
export class TensorByteLengthError extends QllamaError {}

type Ctor<T> = { new (buffer: ArrayBuffer, byteOffset: number, length: number): T; readonly BYTES_PER_ELEMENT: number };

function view<T>(C: Ctor<T>, buf: Uint8Array): T {
  const size = C.BYTES_PER_ELEMENT;
  if (buf.byteLength % size !== 0) {
    throw new TensorByteLengthError(`${buf.byteLength} bytes is not a whole number of ${size}-byte elements: the tensor data is corrupt`);
  }
  if (buf.byteOffset % size === 0) return new C(buf.buffer as ArrayBuffer, buf.byteOffset, buf.byteLength / size);
  const copy = new ArrayBuffer(buf.byteLength);
  new Uint8Array(copy).set(buf);
  return new C(copy, 0, buf.byteLength / size);
}

export function asUint16(buf: Uint8Array): Uint16Array {
  return view(Uint16Array, buf);
}

export function asInt32(buf: Uint8Array): Int32Array {
  return view(Int32Array, buf);
}

export function asFloat32(buf: Uint8Array): Float32Array {
  return view(Float32Array, buf);
}

/** Any numeric dtype to a fresh f32 array: fp16/bf16 exactly, f64 and integers by value (I64 beyond 2^24 loses precision). */
export function toFloat32(dtype: SafetensorsDType, buf: Uint8Array): Float32Array {
  switch (dtype) {
    case 'F32': return asFloat32(buf).slice();
    case 'F16': {
      const h = asUint16(buf);
      const out = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) out[i] = halfToFloat(h[i]);
      return out;
    }
    case 'BF16': {
      // bf16 is the top half of an f32: shift the bits into place
      const h = asUint16(buf);
      const out = new Float32Array(h.length);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < h.length; i++) bits[i] = h[i] << 16;
      return out;
    }
    case 'F64': return Float32Array.from(view(Float64Array, buf));
    case 'I8': return Float32Array.from(new Int8Array(buf.buffer, buf.byteOffset, buf.byteLength));
    case 'U8': case 'BOOL': return Float32Array.from(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
    case 'I16': return Float32Array.from(view(Int16Array, buf));
    case 'I32': return Float32Array.from(asInt32(buf));
    case 'I64': return Float32Array.from(view(BigInt64Array, buf), (v) => Number(v));
  }
}
