/** A table computed per quantization bit width, on first use. */
import type { QuantBits } from './kernels.js';

/** `make(bits)`, computed once per bit width. */
export function perBits<T>(make: (bits: QuantBits) => T): (bits: QuantBits) => T {
  const cache = new Map<QuantBits, T>();
  return (bits) => {
    let v = cache.get(bits);
    if (v === undefined) {
      v = make(bits);
      cache.set(bits, v);
    }
    return v;
  };
}
