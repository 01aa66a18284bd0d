/**
 * A minimal WebAssembly binary encoder: just enough to emit the SIMD kernels of the fast CPU
 * backend from TypeScript, so the package needs no C compiler, no wasm toolchain and no install
 * script — the module is assembled in memory at startup (a few kilobytes, well under a
 * millisecond) and runs wherever Node or a browser supports fixed-width SIMD.
 */

export const I32 = 0x7f;
export const F32 = 0x7d;
export const F64 = 0x7c;
export const V128 = 0x7b;
export type ValType = typeof I32 | typeof F32 | typeof F64 | typeof V128;

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

function name(s: string, out: number[]): void {
  const bytes = new TextEncoder().encode(s);
  uleb(bytes.length, out);
  out.push(...bytes);
}

/** One function body under construction; locals are numbered after the parameters. */
export class FnBuilder {
  readonly code: number[] = [];
  private readonly locals: ValType[] = [];
  constructor(readonly exportName: string, readonly params: readonly ValType[], readonly results: readonly ValType[] = []) {}

  local(type: ValType): number {
    this.locals.push(type);
    return this.params.length + this.locals.length - 1;
  }

  private op(...bytes: number[]): this { this.code.push(...bytes); return this; }
  private simd(sub: number, ...imm: number[]): this {
    this.code.push(0xfd);
    uleb(sub, this.code);
    this.code.push(...imm);
    return this;
  }
  private mem(align: number, offset: number): number[] { const m: number[] = [align]; uleb(offset, m); return m; }

  get(i: number): this { this.code.push(0x20); uleb(i, this.code); return this; }
  set(i: number): this { this.code.push(0x21); uleb(i, this.code); return this; }
  tee(i: number): this { this.code.push(0x22); uleb(i, this.code); return this; }
  i32(v: number): this { this.code.push(0x41); sleb(v | 0, this.code); return this; }
  add(): this { return this.op(0x6a); }
  sub(): this { return this.op(0x6b); }
  mul(): this { return this.op(0x6c); }
  shl(): this { return this.op(0x74); }
  xor(): this { return this.op(0x73); }
  eqz(): this { return this.op(0x45); }
  eq(): this { return this.op(0x46); }
  ne(): this { return this.op(0x47); }
  ltU(): this { return this.op(0x49); }
  geU(): this { return this.op(0x4f); }
  drop(): this { return this.op(0x1a); }
  /** block/loop/if with no result */
  block(): this { return this.op(0x02, 0x40); }
  loop(): this { return this.op(0x03, 0x40); }
  if(): this { return this.op(0x04, 0x40); }
  else(): this { return this.op(0x05); }
  end(): this { return this.op(0x0b); }
  br(depth: number): this { return this.op(0x0c, depth); }
  brIf(depth: number): this { return this.op(0x0d, depth); }
  f32Load(offset = 0): this { return this.op(0x2a, ...this.mem(2, offset)); }
  f32Store(offset = 0): this { return this.op(0x38, ...this.mem(2, offset)); }
  f32Add(): this { return this.op(0x92); }
  f32Mul(): this { return this.op(0x94); }
  f64Load(offset = 0): this { return this.op(0x2b, ...this.mem(3, offset)); }
  f64Store(offset = 0): this { return this.op(0x39, ...this.mem(3, offset)); }
  f64Add(): this { return this.op(0xa0); }
  f64PromoteF32(): this { return this.op(0xbb); }

  // --- SIMD (opcodes after the 0xfd prefix) ---
  /** `align` is the log2 alignment hint of the memarg (0: none promised) */
  v128Load(offset = 0, align = 0): this { return this.simd(0x00, ...this.mem(align, offset)); }
  v128Load32Splat(offset = 0): this { return this.simd(0x09, ...this.mem(0, offset)); }
  v128Store(offset = 0): this { return this.simd(0x0b, ...this.mem(0, offset)); }
  // (opcodes ≥ 0x80 are written as their LEB128 value, e.g. 0xad → bytes ad 01)
  v128And(): this { return this.simd(0x4e); }
  i16x8Splat(): this { return this.simd(0x10); }
  i32x4Splat(): this { return this.simd(0x11); }
  f32x4Splat(): this { return this.simd(0x13); }
  f32x4ExtractLane(lane: number): this { return this.simd(0x1f, lane); }
  /** i16x8.shr_u by the i32 on the stack */
  i16x8ShrU(): this { return this.simd(0x8d); }
  i32x4ShrU(): this { return this.simd(0xad); }
  i32x4Add(): this { return this.simd(0xae); }
  /** i32x4.dot_i16x8_s: lane i = a[2i]·b[2i] + a[2i+1]·b[2i+1] (signed) */
  i32x4DotI16x8S(): this { return this.simd(0xba); }
  f32x4Add(): this { return this.simd(0xe4); }
  f32x4Mul(): this { return this.simd(0xe6); }
  f32x4ConvertI32x4S(): this { return this.simd(0xfa); }
  f32x4ConvertI32x4U(): this { return this.simd(0xfb); }
  v128Zero(): this { this.simd(0x0c); for (let i = 0; i < 16; i++) this.code.push(0); return this; }

  /** Body bytes: local declarations, code, end. */
  encode(): number[] {
    const out: number[] = [];
    const runs: [number, ValType][] = [];
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

function section(id: number, body: number[], out: number[]): void {
  out.push(id);
  uleb(body.length, out);
  out.push(...body);
}

/** A module importing one shared memory `env.memory` (pages `min`..`max`) and exporting `fns`. */
export function assembleModule(fns: readonly FnBuilder[], minPages: number, maxPages: number): Uint8Array {
  const out = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const types: number[] = [];
  uleb(fns.length, types);
  for (const f of fns) {
    types.push(0x60);
    uleb(f.params.length, types); types.push(...f.params);
    uleb(f.results.length, types); types.push(...f.results);
  }
  section(1, types, out);
  const imports: number[] = [1];
  name('env', imports); name('memory', imports);
  imports.push(0x02, 0x03); uleb(minPages, imports); uleb(maxPages, imports);
  section(2, imports, out);
  const funcs: number[] = [];
  uleb(fns.length, funcs);
  fns.forEach((_, i) => uleb(i, funcs));
  section(3, funcs, out);
  const exps: number[] = [];
  uleb(fns.length, exps);
  fns.forEach((f, i) => { name(f.exportName, exps); exps.push(0x00); uleb(i, exps); });
  section(7, exps, out);
  const code: number[] = [];
  uleb(fns.length, code);
  for (const f of fns) { const body = f.encode(); uleb(body.length, code); code.push(...body); }
  section(10, code, out);
  return Uint8Array.from(out);
}

// --- the slice of the WebAssembly JS API the backend uses (the DOM lib is not in this project) ---
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
