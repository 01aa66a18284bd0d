/**
 * Fast random fill for synthetic weights (xorshift128: speed matters more than quality here,
 * a 13B checkpoint is 1.8 G words) and random fp16 values drawn from a precomputed table.
 */
import { floatToHalf } from '../formats/safetensors.js';

export class Xorshift {
  private a: number; private b: number; private c: number; private d: number;
  constructor(seed: number) {
    this.a = seed | 1; this.b = 0x9e3779b9; this.c = 0x85ebca6b; this.d = 0xc2b2ae35;
    for (let i = 0; i < 16; i++) this.next();
  }

  next(): number {
    let t = this.d;
    const s = this.a;
    this.d = this.c; this.c = this.b; this.b = s;
    t ^= t << 11; t ^= t >>> 8;
    this.a = (t ^ s ^ (s >>> 19)) | 0;
    return this.a;
  }

  fillWords(out: Int32Array): void {
    for (let i = 0; i < out.length; i++) out[i] = this.next();
  }

  /** fp16 bits of values uniform in [lo, hi) (4096 levels). */
  fillHalves(out: Uint16Array, table: Uint16Array): void {
    for (let i = 0; i < out.length; i += 2) {
      const r = this.next();
      out[i] = table[r & 4095];
      if (i + 1 < out.length) out[i + 1] = table[(r >>> 16) & 4095];
    }
  }
}

export function halfTable(lo: number, hi: number): Uint16Array {
  return Uint16Array.from({ length: 4096 }, (_, i) => floatToHalf(lo + ((hi - lo) * (i + 0.5)) / 4096));
}
