import type { KernelExports, QuantBits } from './kernels.js';
import { JOB, JOB_WORDS } from './pool.js';

/**
 * The jobs the thread pool runs, encoded in a small shared Int32Array so the main thread and the
 * workers execute the same code on their share of the output blocks (`blockRange`).
 * Layout: [the pool's words (GEN, DONE, READY, OP = JOB), NT, args...]
 */
export const OP = JOB, NT = JOB_WORDS, ARGS = JOB_WORDS + 1;
export const CTRL_INTS = ARGS + 20;

/** Stop is the pool's STOP */
export const enum Op { Stop = 0, Gemm = 1, Gemv = 2, QGemm = 3, Read = 4, GemvQ8 = 5, GemvQ8Rows = 6 }

/** Output blocks [b0, b1) of thread `ti` of `nt` when `nb` blocks are split evenly. */
export function blockRange(nb: number, ti: number, nt: number): [number, number] {
  return [Math.floor((nb * ti) / nt), Math.floor((nb * (ti + 1)) / nt)];
}

export function execute(k: KernelExports, c: Int32Array, ti: number, nt: number): void {
  const a = ARGS;
  switch (c[OP]) {
    case Op.Gemm: {
      // x, xStride, w, wStride, out, outStride, bias, K, NB, rows, accumulate
      const [b0, b1] = blockRange(c[a + 8], ti, nt);
      if (b1 > b0) k.gemm(c[a], c[a + 1], c[a + 2], c[a + 3], c[a + 4], c[a + 5], c[a + 6], c[a + 7], b0, b1, c[a + 9], c[a + 10]);
      return;
    }
    case Op.Gemv: {
      // bits, x, w, scales, negzs, sumx, out, groups, rowsPerGroup, NB, accumulate, bias
      const bits = c[a] as QuantBits;
      const groups = c[a + 7], rpg = c[a + 8];
      const [b0, b1] = blockRange(c[a + 9], ti, nt);
      if (b1 > b0) {
        k.gemv(bits)(c[a + 1], c[a + 2], c[a + 3], c[a + 4], c[a + 5], c[a + 6], groups, rpg, b0, b1, c[a + 10], c[a + 11],
          groups * rpg * 32, groups * 32);
      }
      return;
    }
    case Op.GemvQ8: {
      // bits, xq (i16), dx, sumx, w, scales, negzs, out, groups, blocksPerGroup, chunksPerBlock, NB, accumulate, bias
      const bits = c[a] as QuantBits;
      const groups = c[a + 8], bpg = c[a + 9], cpb = c[a + 10];
      const [b0, b1] = blockRange(c[a + 11], ti, nt);
      if (b1 > b0) {
        k.gemvq(bits)(c[a + 1], c[a + 2], c[a + 3], c[a + 4], c[a + 5], c[a + 6], c[a + 7], groups, bpg, cpb, b0, b1,
          c[a + 12], c[a + 13], groups * bpg * cpb * 32, groups * 32);
      }
      return;
    }
    case Op.GemvQ8Rows: {
      // bits, rows, xq (i16, rows interleaved), dx, sumx, w, scales, negzs, out, outStride, groups, blocksPerGroup,
      // chunksPerBlock, NB, accumulate, bias, scratch (rows·64 bytes per thread)
      const bits = c[a] as QuantBits, rows = c[a + 1];
      const groups = c[a + 10], bpg = c[a + 11], cpb = c[a + 12];
      const [b0, b1] = blockRange(c[a + 13], ti, nt);
      if (b1 > b0) {
        k.gemvqRows(bits, rows)(c[a + 2], c[a + 3], c[a + 4], c[a + 5], c[a + 6], c[a + 7], c[a + 8], c[a + 9], groups, bpg, cpb,
          b0, b1, c[a + 14], c[a + 15], groups * bpg * cpb * 32, groups * 32, c[a + 16] + ti * rows * 64);
      }
      return;
    }
    case Op.QGemm: {
      // bits, x, xStride, w, scales, negzs, out, outStride, bias, groups, rowsPerGroup, NB, rows, accumulate, scratch
      const bits = c[a] as QuantBits;
      const groups = c[a + 9], rpg = c[a + 10];
      const K = groups * rpg * (32 / bits);
      const wBlock = groups * rpg * 32, sBlock = groups * 32;
      const scratch = c[a + 14] + ti * K * 32;
      const dq = k.dequant(bits);
      const [b0, b1] = blockRange(c[a + 11], ti, nt);
      for (let nb = b0; nb < b1; nb++) {
        dq(c[a + 3] + nb * wBlock, c[a + 4] + nb * sBlock, c[a + 5] + nb * sBlock, scratch, groups, rpg);
        k.gemm(c[a + 1], c[a + 2], scratch, 0, c[a + 6], c[a + 7], c[a + 8], K, nb, nb + 1, c[a + 12], c[a + 13]);
      }
      return;
    }
    case Op.Read: {
      // ptr, chunks of 64 KiB, sink (16 bytes per thread)
      const [b0, b1] = blockRange(c[a + 1], ti, nt);
      if (b1 > b0) k.read(c[a] + b0 * 65536, (b1 - b0) * 65536, c[a + 2] + ti * 16);
      return;
    }
    default:
      return;
  }
}
