/**
 * A plain double-precision reference of one device draw (Backend.sample, kernels/sample.cu), written
 * from the Sampler's documented order with a full sort instead of its heap and prefilter. Tests use
 * it as a fake device sampler (test/unit) and to check that a device pick that differs from the
 * Sampler's is one a perturbation of the masses within a tolerance would give (test/cuda).
 */
import type { DeviceSampling } from '../../src/backends/backend.js';

/** The draw laid out: ids in draw order with their weights and prefix masses. */
export interface DrawLayout {
  /** ids in the order the draw walks them: id order (temperature only) or rank order */
  readonly order: Int32Array;
  /** exp(s − max s) by position in `order` */
  readonly weight: Float64Array;
  /** cum[j] = Σ weight[0..j] */
  readonly cum: Float64Array;
  /** positions top-k leaves (the whole order without it) */
  readonly m: number;
  /** the mass top-p measures p against (top-k's m positions, or the whole row) */
  readonly mass: number;
  /** temperature only: no filter, the draw runs over `order` in id order */
  readonly plain: boolean;
}

/** null where the Sampler has special cases the device leaves to it (NaN, +∞, nothing finite). */
export function drawLayout(logits: Float32Array, p: DeviceSampling): DrawLayout | null {
  const V = logits.length;
  const s = new Float32Array(logits);
  if (p.temperature !== 1) {
    const inv = 1 / p.temperature;
    for (let i = 0; i < V; i++) s[i] *= inv; // rounded to f32 as the Sampler's work array
  }
  let max = -Infinity;
  for (const v of s) {
    if (Number.isNaN(v)) return null;
    if (v > max) max = v;
  }
  if (!Number.isFinite(max)) return null;
  const topK = p.topK > 0 && p.topK < V ? p.topK : 0;
  const plain = topK === 0 && p.topP >= 1 && p.minP <= 0;
  const order = Int32Array.from({ length: V }, (_, i) => i);
  if (!plain) order.sort((a, b) => (s[a] === s[b] ? a - b : s[b] - s[a]));
  const weight = Float64Array.from(order, (id) => Math.exp(s[id] - max));
  const cum = new Float64Array(V);
  let acc = 0;
  for (let j = 0; j < V; j++) cum[j] = acc += weight[j];
  const m = topK || V;
  return { order, weight, cum, m, mass: cum[m - 1], plain };
}

/** The id the draw picks for uniform u (the Sampler's choice, in double precision). */
export function referenceDraw(logits: Float32Array, p: DeviceSampling): number | null {
  const l = drawLayout(logits, p);
  if (!l) return null;
  const keep = l.plain ? l.order.length : keptPositions(l, p, 0)[0];
  return l.order[drawPosition(l, keep, p.u)];
}

/** The positions top-p then min-p keep; with tol > 0, every count a perturbation of the masses
 *  (top-p) or weights (min-p) by up to tol × the mass (× 1 for weights) could give. */
export function keptPositions(l: DrawLayout, p: DeviceSampling, tol: number): number[] {
  const { cum, weight, m, mass } = l;
  const pOptions: number[] = [];
  if (p.topP < 1) {
    const goal = p.topP * mass;
    let exact = m;
    for (let j = 0; j < m; j++) {
      if (cum[j] >= goal) {
        exact = j + 1;
        break;
      }
    }
    pOptions.push(exact);
    for (let j = 0; j < m; j++) if (Math.abs(cum[j] - goal) <= tol * mass && j + 1 !== exact) pOptions.push(j + 1);
  } else pOptions.push(m);
  const mOptions: number[] = [];
  if (p.minP > 0) {
    let exact = m;
    for (let j = 1; j < m; j++) {
      if (weight[j] < p.minP) {
        exact = j;
        break;
      }
    }
    mOptions.push(exact);
    for (let j = 1; j < m; j++) {
      if (Math.abs(weight[j] - p.minP) <= tol && j !== exact) mOptions.push(j, j + 1);
    }
  } else mOptions.push(m);
  const out = new Set<number>();
  for (const a of pOptions) for (const b of mOptions) out.add(Math.min(a, b, m));
  return [...out];
}

/** Where the draw over the first `keep` positions lands for u (the Sampler's loop, in double). */
export function drawPosition(l: DrawLayout, keep: number, u: number): number {
  const target = u * l.cum[keep - 1];
  let last = 0;
  for (let j = 0; j < keep; j++) {
    if (l.weight[j] === 0) continue;
    last = j;
    if (l.cum[j] > target) return j;
  }
  return last;
}

/**
 * Whether `id` is what the draw gives when its masses move by at most tol × the total mass (and the
 * min-p weights by tol): the kept count may be any of keptPositions(tol), and u · (kept mass) may
 * land anywhere within tol × the total of id's span [cum before it, cum through it].
 */
export function explainsPick(logits: Float32Array, p: DeviceSampling, id: number, tol: number): boolean {
  const l = drawLayout(logits, p);
  if (!l) return false;
  const pos = l.order.indexOf(id);
  if (pos < 0) return false;
  const total = l.cum[l.order.length - 1];
  const slack = tol * total;
  const keeps = l.plain ? [l.order.length] : keptPositions(l, p, tol);
  for (const keep of keeps) {
    if (pos >= keep) continue;
    const target = p.u * l.cum[keep - 1];
    const lo = pos > 0 ? l.cum[pos - 1] : 0;
    if (target >= lo - slack && target <= l.cum[pos] + slack) return true;
  }
  return false;
}
