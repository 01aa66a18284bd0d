/**
 * Shared pieces of the CUDA op tests: the GPU probe (tests skip with its reason when there is no
 * GPU), random inputs, random GPTQ layers, and the normalized error ‖a − b‖ / ‖b‖.
 */
import type { Activation, Backend } from '../../src/backends/backend.js';
import { CudaBackend } from '../../src/backends/cuda/cudaBackend.js';
import { cudaAvailable } from '../../src/backends/cuda/driver.js';
import { packGptq } from '../../src/formats/gptq.js';
import type { GptqBits, GptqLinearHost } from '../../src/formats/gptqTypes.js';
import { floatToHalf } from '../../src/formats/safetensors.js';

const probe = cudaAvailable();
/** false when a GPU answers, else the reason every CUDA test is skipped. */
export const skipNoGpu: false | string = probe.ok ? false : `no CUDA GPU here (${probe.reason}); run npm run test:cuda on a GPU machine`;

let shared: CudaBackend | undefined;
export function gpu(): CudaBackend {
  shared ??= CudaBackend.create();
  return shared;
}

export function randn(n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = 1 - Math.random(), v = Math.random();
    const r = Math.sqrt(-2 * Math.log(u)) * scale;
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

export function randHalf(n: number, scale = 1): Uint16Array {
  const f = randn(n, scale);
  return Uint16Array.from(f, (v) => floatToHalf(v));
}

/** ‖a − b‖ / ‖b‖; NaN anywhere (an unwritten, poisoned output) gives Infinity. */
export function normErr(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new RangeError(`lengths ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]) || !Number.isFinite(b[i])) return Infinity;
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/** An activation on `b` holding `data` ([rows, cols]). */
export function input(b: Backend, rows: number, cols: number, data: Float32Array): Activation {
  const a = b.allocActivation(rows, cols);
  b.writeActivation(a, data);
  return a;
}

/** An output activation filled with NaN first, so an element the op never writes fails the check. */
export function poisoned(b: Backend, rows: number, cols: number): Activation {
  return input(b, rows, cols, new Float32Array(rows * cols).fill(NaN));
}

/** A random GPTQ layer; actOrder shuffles which rows belong to which group. */
export function randomGptq(inF: number, outF: number, bits: GptqBits, groupSize: number, actOrder: boolean): GptqLinearHost {
  const gs = groupSize > 0 ? groupSize : inF;
  const groups = Math.ceil(inF / gs);
  const levels = 1 << bits;
  const q = Uint8Array.from({ length: inF * outF }, () => Math.floor(Math.random() * levels));
  const zeros = Uint8Array.from({ length: groups * outF }, () => 1 + Math.floor(Math.random() * (levels - 1))); // v1 packing stores zero − 1: [1, levels − 1]
  const scales = Float32Array.from({ length: groups * outF }, () => (0.5 + Math.random()) * 0.02);
  let gIdx: Int32Array | undefined;
  if (actOrder) {
    const order = Int32Array.from({ length: inF }, (_, i) => i);
    for (let i = inF - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    gIdx = new Int32Array(inF);
    for (let i = 0; i < inF; i++) gIdx[order[i]] = Math.floor(i / gs);
  }
  const p = packGptq({ bits, groupSize: gs, q, zeros, scales, inFeatures: inF, outFeatures: outF, gIdx }, floatToHalf);
  return { kind: 'gptq', inFeatures: inF, outFeatures: outF, bits, groupSize: gs, groups, actOrder, ...p };
}

/** IEEE round half to even, as the GPU's __float2int_rn. */
function rint(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * x after the one-row int4 GEMV's int8 quantization (gemv_q4.cu): blocks of 32 consecutive staged
 * values (staged in `order`, e.g. an act-order layer's group-contiguous row order; null = identity),
 * each q = rint(v · fl(127 / max|v|)) and back as q · fl(max|v| / 127), in the kernel's f32 steps.
 */
export function int8RoundTrip(x: Float32Array, order: Int32Array | null): Float32Array {
  const out = new Float32Array(x.length);
  const at = (j: number): number => (order ? order[j] : j);
  for (let j0 = 0; j0 < x.length; j0 += 32) {
    let amax = 0;
    for (let j = j0; j < j0 + 32; j++) amax = Math.max(amax, Math.abs(x[at(j)]));
    const qs = amax > 0 ? Math.fround(127 / amax) : 0;
    const d = Math.fround(amax / 127);
    for (let j = j0; j < j0 + 32; j++) out[at(j)] = rint(Math.fround(x[at(j)] * qs)) * d;
  }
  return out;
}

/** the kernels `f` launches on the GPU backend, by name (they run as usual) */
export function launchesOf(g: ReturnType<typeof gpu>, f: () => void): string[] {
  const launched: string[] = [];
  const launch = g.kernels.launch.bind(g.kernels);
  g.kernels.launch = (name, grid, block, args, shared, pdl, cluster): void => {
    launched.push(name);
    launch(name, grid, block, args, shared, pdl, cluster);
  };
  try {
    f();
  } finally {
    g.kernels.launch = launch;
  }
  return launched;
}
