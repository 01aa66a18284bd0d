import type { QuantBits } from './kernels.js';
import type { FnBuilder } from './wasmAsm.js';

/**
 * The field extraction shared by the int8 GEMV kernels (gemvq in kernels.ts, gemvqRows): the i16
 * masks that isolate field m of each i16 lane of a repacked weight vector, in place.
 */
export const Q8_MASKS: Readonly<Record<QuantBits, readonly number[]>> = {
  2: [0x3, 0xc, 0x30, 0xc0],
  4: [0x000f, 0x00f0, 0x0f00],
  8: [0xff],
};

/**
 * Pushes field m of the i16x8 `v` (per i16 lane: bits m·bits.. of the lane, for 2-bit fields 4..7
 * of `v` already shifted right by 8), masked in place, or shifted down where the top field
 * would read as negative.
 */
export function field16(f: FnBuilder, v: number, masks: readonly number[], bits: QuantBits, m: number): void {
  f.get(v);
  if (bits === 4 && m === 3) f.i32(12).i16x8ShrU();
  else if (bits === 8 && m === 1) f.i32(8).i16x8ShrU();
  else f.get(masks[bits === 2 ? m & 3 : m]).v128And();
}
