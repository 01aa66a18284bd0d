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
 * Own small encoder (the backend's is being reworked independently; this module is quantizer-only).
 */

const I32 = 0x7f;
const V128 = 0x7b;

function uleb(n: number, out: number[]): void {
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
}

function sleb(n: number, out: number[]): void {
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0);
    out.push(done ? b : b | 0x80);
    if (done) return;
  }
}

function utf8Name(s: string, out: number[]): void {
  const bytes = new TextEncoder().encode(s);
  uleb(bytes.length, out);
  out.push(...bytes);
}

class Fn {
  readonly code: number[] = [];
  private readonly locals: number[] = [];
  constructor(readonly exportName: string, readonly params: readonly number[]) {}

  local(type: number): number {
    this.locals.push(type);
    return this.params.length + this.locals.length - 1;
  }

  op(...bytes: number[]): this { this.code.push(...bytes); return this; }
  private simd(sub: number, ...imm: number[]): this { this.code.push(0xfd); uleb(sub, this.code); this.code.push(...imm); return this; }
  get(i: number): this { this.code.push(0x20); uleb(i, this.code); return this; }
  set(i: number): this { this.code.push(0x21); uleb(i, this.code); return this; }
  i32(v: number): this { this.code.push(0x41); sleb(v | 0, this.code); return this; }
  add(): this { return this.op(0x6a); }
  mul(): this { return this.op(0x6c); }
  ltU(): this { return this.op(0x49); }
  eq(): this { return this.op(0x46); }
  block(): this { return this.op(0x02, 0x40); }
  loop(): this { return this.op(0x03, 0x40); }
  if(): this { return this.op(0x04, 0x40); }
  else(): this { return this.op(0x05); }
  end(): this { return this.op(0x0b); }
  br(depth: number): this { return this.op(0x0c, depth); }
  brIf(depth: number): this { return this.op(0x0d, depth); }
  f32Load(): this { return this.op(0x2a, 2, 0); }
  f32Store(): this { return this.op(0x38, 2, 0); }
  f64Load(): this { return this.op(0x2b, 3, 0); }
  f64Store(): this { return this.op(0x39, 3, 0); }
  f32Add(): this { return this.op(0x92); }
  f64Add(): this { return this.op(0xa0); }
  f64PromoteF32(): this { return this.op(0xbb); }
  v128Load(): this { return this.simd(0x00, 4, 0); }
  f32x4Add(): this { return this.simd(0xe4, 0x01); }
  f32x4Mul(): this { return this.simd(0xe6, 0x01); }
  f32x4ExtractLane(lane: number): this { return this.simd(0x1f, lane); }
  v128Zero(): this { this.simd(0x0c); for (let i = 0; i < 16; i++) this.code.push(0); return this; }

  encode(): number[] {
    const out: number[] = [];
    const runs: [number, number][] = [];
    for (const t of this.locals) {
      const last = runs[runs.length - 1];
      if (last && last[1] === t) last[0]++;
      else runs.push([1, t]);
    }
    uleb(runs.length, out);
    for (const [n, t] of runs) { uleb(n, out); out.push(t); }
    out.push(...this.code, 0x0b);
    return out;
  }
}

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
function gemmFn(mr: number, nr: number): Fn {
  const f = new Fn(`gemm_${mr}x${nr}`, [I32, I32, I32, I32, I32, I32, I32, I32, I32, I32]);
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
  f.get(i).get(ROWS).ltU().i32(1).op(0x73).brIf(1); // i32.xor 1: exit when !(i < rows)
  f.i32(0).set(j);
  f.block().loop(); // cols
  f.get(j).get(COLS).ltU().i32(1).op(0x73).brIf(1);
  for (let r = 0; r < mr; r++) f.get(A).get(i).i32(r).add().get(LDA).mul().add().set(pa[r]);
  for (let c = 0; c < nr; c++) f.get(B).get(j).i32(c).add().get(LDB).mul().add().set(pb[c]);
  for (const a of acc) f.v128Zero().set(a);
  f.i32(0).set(p);
  f.block().loop(); // k
  f.get(p).get(KB).ltU().i32(1).op(0x73).brIf(1);
  for (let r = 0; r < mr; r++) f.get(pa[r]).get(p).add().v128Load().set(va[r]);
  for (let c = 0; c < nr; c++) {
    f.get(pb[c]).get(p).add().v128Load().set(vb);
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

function section(id: number, body: number[], out: number[]): void {
  out.push(id);
  uleb(body.length, out);
  out.push(...body);
}

/** Block shapes the module exports: the main one, and 1×1 for edges. */
export const BLOCKS: readonly (readonly [number, number])[] = [[4, 2], [1, 1]];
export const MAX_PAGES = 65536; // 4 GiB

export function gemmModuleBytes(): Uint8Array {
  const fns = BLOCKS.map(([mr, nr]) => gemmFn(mr, nr));
  const out = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const types: number[] = [];
  uleb(fns.length, types);
  for (const f of fns) {
    types.push(0x60);
    uleb(f.params.length, types); types.push(...f.params);
    types.push(0);
  }
  section(1, types, out);
  const imports: number[] = [1];
  utf8Name('env', imports); utf8Name('memory', imports);
  imports.push(0x02, 0x03); uleb(1, imports); uleb(MAX_PAGES, imports);
  section(2, imports, out);
  const funcs: number[] = [];
  uleb(fns.length, funcs);
  fns.forEach((_, k) => uleb(k, funcs));
  section(3, funcs, out);
  const exps: number[] = [];
  uleb(fns.length, exps);
  fns.forEach((f, k) => { utf8Name(f.exportName, exps); exps.push(0x00); uleb(k, exps); });
  section(7, exps, out);
  const code: number[] = [];
  uleb(fns.length, code);
  for (const f of fns) { const body = f.encode(); uleb(body.length, code); code.push(...body); }
  section(10, code, out);
  return Uint8Array.from(out);
}

// --- the slice of the WebAssembly JS API used here (the DOM lib is not in this project) ---
export interface WasmMemory { readonly buffer: SharedArrayBuffer; grow(pages: number): number }
export type WasmModule = object;
export interface WasmInstance { readonly exports: Record<string, unknown> }
export interface WasmApi {
  Memory: new (d: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
  validate(bytes: Uint8Array): boolean;
}
export const wasmApi: WasmApi | undefined = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

export type GemmFn = (a: number, b: number, c: number, rows: number, cols: number, kBytes: number, lda: number, ldb: number, ldc: number, mode: number) => void;

export interface GemmExports {
  readonly main: GemmFn;
  readonly edge: GemmFn;
}

export function gemmExports(inst: WasmInstance): GemmExports {
  const [mr, nr] = BLOCKS[0];
  return { main: inst.exports[`gemm_${mr}x${nr}`] as GemmFn, edge: inst.exports.gemm_1x1 as GemmFn };
}
