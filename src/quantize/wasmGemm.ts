/**
 * The quantizer's one dense kernel, C (op)= A·Bᵀ in f32 with WebAssembly SIMD, assembled in
 * memory at startup (no toolchain, no install script). Both operands are row-major with the
 * reduction dimension contiguous ("NT"): the layer's linears (x `[rows, in]` · W `[out, in]`ᵀ),
 * the Gram matrix XᵀX (on X transposed) and attention (Q·Kᵀ, and P·V on V transposed) all fit it.
 *
 * Register blocking: a 4×2 block of C keeps eight f32x4 accumulators (plus four A and one B
 * vector: 13 of the 16 vector registers of x86-64), each a 4-lane partial dot product over k,
 * summed across lanes once at the end. Each output element is always computed by the same
 * instruction sequence, whichever thread runs it, so results do not depend on the thread count.
 *
 * Encoded with the fast CPU backend's WebAssembly assembler (src/backends/cpu/fast/wasmAsm.ts).
 */

import { assembleModule, FnBuilder, I32, V128, type WasmInstance } from '../backends/cpu/fast/wasmAsm.js';

export { wasmApi, type WasmApi, type WasmInstance, type WasmMemory, type WasmModule } from '../backends/cpu/fast/wasmAsm.js';

/**
 * Store modes of the generated kernels: Set, C[i, j] = dot (f32); AddF64, C[i, j] += dot with C
 * in f64 (the dot is summed in f32 and added in f64).
 */
export const GemmMode = { Set: 0, AddF64: 2 } as const;

/**
 * `gemm_MRxNR(a, b, c, rows, cols, kBytes, lda, ldb, ldc, mode)`: for every block of MR rows of A
 * (`rows` a multiple of MR) and NR rows of B (`cols` a multiple of NR), the dot products over
 * `kBytes / 4` floats (a multiple of 4) into C. All pointers and strides are in bytes; `ldc`
 * counts C's elements in bytes of its own type (4 or 8 per element, by mode).
 */
function gemmFn(mr: number, nr: number): FnBuilder {
  const f = new FnBuilder(`gemm_${mr}x${nr}`, [I32, I32, I32, I32, I32, I32, I32, I32, I32, I32]);
  const [A, B, C, ROWS, COLS, KB, LDA, LDB, LDC, MODE] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const i = f.local(I32), j = f.local(I32), p = f.local(I32), cRow = f.local(I32), esz = f.local(I32);
  const pa = Array.from({ length: mr }, () => f.local(I32));
  const pb = Array.from({ length: nr }, () => f.local(I32));
  const acc = Array.from({ length: mr * nr }, () => f.local(V128));
  const va = Array.from({ length: mr }, () => f.local(V128));
  const vb = f.local(V128);
  // element size of C: 8 for f64 accumulation, else 4
  f.get(MODE).i32(GemmMode.AddF64).eq().if().i32(8).set(esz).else().i32(4).set(esz).end();
  f.i32(0).set(i);
  f.block().loop(); // rows
  f.get(i).get(ROWS).ltU().i32(1).xor().brIf(1); // i32.xor 1: exit when !(i < rows)
  f.i32(0).set(j);
  f.block().loop(); // cols
  f.get(j).get(COLS).ltU().i32(1).xor().brIf(1);
  for (let r = 0; r < mr; r++) f.get(A).get(i).i32(r).add().get(LDA).mul().add().set(pa[r]);
  for (let c = 0; c < nr; c++) f.get(B).get(j).i32(c).add().get(LDB).mul().add().set(pb[c]);
  for (const a of acc) f.v128Zero().set(a);
  f.i32(0).set(p);
  f.block().loop(); // k
  f.get(p).get(KB).ltU().i32(1).xor().brIf(1);
  for (let r = 0; r < mr; r++) f.get(pa[r]).get(p).add().v128Load(0, 4).set(va[r]);
  for (let c = 0; c < nr; c++) {
    f.get(pb[c]).get(p).add().v128Load(0, 4).set(vb);
    for (let r = 0; r < mr; r++) f.get(acc[r * nr + c]).get(va[r]).get(vb).f32x4Mul().f32x4Add().set(acc[r * nr + c]);
  }
  f.get(p).i32(16).add().set(p);
  f.br(0).end().end();
  // stores
  for (let r = 0; r < mr; r++) {
    f.get(C).get(i).i32(r).add().get(LDC).mul().add().get(j).get(esz).mul().add().set(cRow);
    for (let c = 0; c < nr; c++) {
      const a = acc[r * nr + c];
      const hsum = (): void => {
        f.get(a).f32x4ExtractLane(0).get(a).f32x4ExtractLane(1).f32Add();
        f.get(a).f32x4ExtractLane(2).get(a).f32x4ExtractLane(3).f32Add();
        f.f32Add();
      };
      // address: cRow + c·esz
      f.get(MODE).i32(GemmMode.AddF64).eq().if();
      f.get(cRow).i32(c * 8).add();
      f.get(cRow).i32(c * 8).add().f64Load();
      hsum();
      f.f64PromoteF32().f64Add().f64Store();
      f.else();
      f.get(cRow).i32(c * 4).add();
      hsum();
      f.f32Store();
      f.end();
    }
  }
  f.get(j).i32(nr).add().set(j);
  f.br(0).end().end();
  f.get(i).i32(mr).add().set(i);
  f.br(0).end().end();
  return f;
}

/** Block shapes the module exports: the main one, and 1×1 for edges. */
export const BLOCKS: readonly (readonly [number, number])[] = [[4, 2], [1, 1]];
export const MAX_PAGES = 65536; // 4 GiB

export function gemmModuleBytes(): Uint8Array {
  return assembleModule(BLOCKS.map(([mr, nr]) => gemmFn(mr, nr)), 1, MAX_PAGES);
}

export type GemmFn = (a: number, b: number, c: number, rows: number, cols: number, kBytes: number, lda: number, ldb: number, ldc: number, mode: number) => void;

export interface GemmExports {
  readonly main: GemmFn;
  readonly edge: GemmFn;
}

export function gemmExports(inst: WasmInstance): GemmExports {
  const [mr, nr] = BLOCKS[0];
  return { main: inst.exports[`gemm_${mr}x${nr}`] as GemmFn, edge: inst.exports.gemm_1x1 as GemmFn };
}
