import type { DeviceSampling } from '../backends/backend.js';
import { argmaxRow } from '../backends/cpu/kernels/argmax.js';
import { applyPenalties } from './penalties.js';
import { Prng, randomSeed } from './prng.js';
import { resolveSampling, type SamplingOptions } from './samplingOptions.js';

export { DEFAULT_SAMPLING, InvalidSamplingOptionsError, resolveSampling, type SamplingOptions } from './samplingOptions.js';

/**
 * Picks the next token from a model's logits. One Sampler per generation (it owns the PRNG
 * stream and scratch sized to the vocabulary, allocated once here: `sample` allocates no buffers).
 *
 * Order of transforms, each seeing the distribution the previous one left (renormalized):
 *   1. penalties over the window (repetition: divide positive / multiply negative logits,
 *      once per distinct token, as HF and llama.cpp; then frequency × count and presence,
 *      subtracted, as OpenAI)
 *   2. temperature (0 → argmax here, lowest id on ties; nothing below runs)
 *   3. top-k → 4. typical-p → 5. top-p → 6. min-p
 *   7. draw from what is left with the seeded PRNG
 * This is HF's processor order (penalties, temperature, then warpers); llama.cpp's newer
 * default applies temperature last, which changes what top-p / min-p see.
 *
 * Steps 2, 3, 5, 6 and 7 can also run where the logits are (`deviceSampling`, Backend.sample): the
 * device gets the uniform the next draw would use, so the PRNG stream is the same on either side.
 */
export class Sampler {
  readonly options: SamplingOptions;
  /** The seed in use (the given one, or a random one to report so the run can be replayed). */
  readonly seed: number;
  private readonly prng: Prng;
  private readonly work: Float32Array; // [vocab] logits after penalties and temperature
  private readonly cand: Int32Array; // [vocab] candidate ids, by logit descending (id ascending on ties)
  private readonly weight: Float64Array; // [vocab] exp(logit − max) of cand[rank]
  private readonly aux: Float64Array; // [vocab] typical-p: |surprisal − entropy| by rank
  private readonly order: Int32Array; // [vocab] typical-p: ranks by aux ascending
  private readonly counts: Uint32Array; // [vocab] window occurrence counts; all zero between calls
  private readonly bucketMass = new Float64Array(BUCKETS); // [octaves] prefilter mass per bucket
  /** Mass (in cand weight units) the prefilter removed; top-p counts it in the total. */
  private droppedMass = 0;
  /** The uniform handed to the device and not yet taken by a draw (deviceSampling). */
  private pendingU: number | null = null;
  /** deviceSampling's answer, filled once and updated in place (the decode loop allocates nothing). */
  private readonly device: { temperature: number; topK: number; topP: number; minP: number; u: number };
  private readonly byLogitDesc = (a: number, b: number): number => this.work[b] - this.work[a] || a - b;
  private readonly byAuxAsc = (a: number, b: number): number => this.aux[a] - this.aux[b] || a - b;
  private readonly ranksAfter = (a: number, b: number): boolean => this.byLogitDesc(a, b) > 0;

  constructor(
    readonly vocabSize: number,
    options: Partial<SamplingOptions> = {},
  ) {
    if (!Number.isInteger(vocabSize) || vocabSize <= 0) throw new RangeError(`vocabSize must be a positive integer, got ${vocabSize}`);
    this.options = resolveSampling(options);
    this.seed = this.options.seed ?? randomSeed();
    this.prng = new Prng(this.seed);
    this.work = new Float32Array(vocabSize);
    this.cand = new Int32Array(vocabSize);
    this.weight = new Float64Array(vocabSize);
    this.aux = new Float64Array(vocabSize);
    this.order = new Int32Array(vocabSize);
    this.counts = new Uint32Array(vocabSize);
    const o = this.options;
    this.device = { temperature: o.temperature, topK: o.topK < vocabSize ? o.topK : 0, topP: o.topP, minP: o.minP, u: 0 };
  }

  /** Greedy with no penalties: the choice is a plain argmax, which a backend can do on the device. */
  get isPlainGreedy(): boolean {
    return this.options.temperature === 0 && this.penaltiesOff;
  }

  private get penaltiesOff(): boolean {
    const o = this.options;
    return o.repeatLastN === 0 || (o.repetitionPenalty === 1 && o.presencePenalty === 0 && o.frequencyPenalty === 0);
  }

  /**
   * The next draw as a device sampler takes it (Backend.sample: temperature, top-k, top-p, min-p,
   * and `u`, the uniform this draw uses), or null when these options need the host: greedy (the
   * device argmax covers it), penalties, typical-p. `u` comes from the PRNG once and stays pending
   * until a draw takes it: `acceptDeviceDraw` when the device chose the token, or `sample` when the
   * caller fell back to the host (which draws with it, or keeps it for the next token where the host
   * would not have drawn). So a seed gives the same tokens whichever side draws.
   */
  deviceSampling(): DeviceSampling | null {
    const o = this.options;
    if (o.temperature === 0 || o.typicalP < 1 || !this.penaltiesOff) return null;
    this.pendingU ??= this.prng.nextFloat();
    this.device.u = this.pendingU;
    return this.device;
  }

  /** The device chose this token with deviceSampling's `u` (it always draws): the uniform is used up. */
  acceptDeviceDraw(): void {
    this.pendingU = null;
  }

  /** The uniform of the next draw: the one handed to the device, if any, else a fresh one. */
  private nextUniform(): number {
    const u = this.pendingU ?? this.prng.nextFloat();
    this.pendingU = null;
    return u;
  }

  /**
   * Choose the next id. `logits` ([vocab], not modified) are the model's raw scores;
   * `history` is every id so far (prompt then generated), read only for the penalties.
   */
  sample(logits: Float32Array, history: readonly number[]): number {
    const V = this.vocabSize;
    if (logits.length !== V) throw new RangeError(`logits have ${logits.length} entries, the sampler was made for ${V}`);
    const o = this.options;
    const work = this.work;
    work.set(logits);
    applyPenalties(work, history, this.options, this.counts);

    if (o.temperature === 0) return argmax(work);
    if (o.temperature !== 1) {
      const inv = 1 / o.temperature;
      for (let i = 0; i < V; i++) work[i] *= inv;
    }

    const topK = o.topK > 0 && o.topK < V ? o.topK : 0;
    if (topK === 0 && o.typicalP >= 1 && o.topP >= 1 && o.minP <= 0) return this.drawFromAll();

    let n = this.sortCandidates(topK);
    if (o.typicalP < 1) n = this.typical(n, o.typicalP);
    if (o.topP < 1) n = this.topP(n, o.topP);
    if (o.minP > 0) n = this.minP(n, o.minP);
    return this.drawFromCandidates(n);
  }

  /** Plain softmax draw over the whole vocabulary in id order: no sort needed. */
  private drawFromAll(): number {
    const work = this.work;
    const V = this.vocabSize;
    const max = work[argmax(work)];
    if (!Number.isFinite(max)) return argmax(work);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(work[i] - max);
    let r = this.nextUniform() * sum;
    let last = 0;
    for (let i = 0; i < V; i++) {
      const w = Math.exp(work[i] - max);
      if (w === 0) continue;
      last = i;
      r -= w;
      if (r < 0) return i;
    }
    return last; // rounding left a sliver of mass: the last token with weight
  }

  /**
   * Step 3 (and the sort every later filter needs): candidates by logit descending, ties by id.
   * With top-k only the k best are sorted (a bounded selection keeps it O(V log k)); with only
   * top-p / min-p, tokens that provably fall outside them are dropped before the sort.
   */
  private sortCandidates(topK: number): number {
    const cand = this.cand;
    let n: number;
    this.droppedMass = 0;
    if (topK > 0) n = this.selectTopK(topK);
    else if (this.options.typicalP >= 1) n = this.prefilter();
    else {
      n = this.vocabSize;
      for (let i = 0; i < n; i++) cand[i] = i;
    }
    cand.subarray(0, n).sort(this.byLogitDesc);
    const work = this.work;
    const max = work[cand[0]];
    const weight = this.weight;
    for (let i = 0; i < n; i++) weight[i] = Number.isFinite(max) ? Math.exp(work[cand[i]] - max) : i === 0 ? 1 : 0;
    return n;
  }

  /**
   * Sorting the whole vocabulary for top-p costs ~6 ms at 32k tokens, more than a GPU decode step.
   * Instead, bucket tokens by octave below the top logit (bucket b holds weights in
   * (2^-(b+1), 2^-b] of the top weight) and sum each bucket's mass: once buckets 0..B hold mass
   * ≥ p, the nucleus lies inside them, so the rest can be dropped unsorted (one spare bucket
   * absorbs rounding). Min-p's cutoff is applied the same way. The dropped mass is remembered
   * because top-p measures p against the whole distribution.
   */
  private prefilter(): number {
    const o = this.options;
    const work = this.work;
    const V = this.vocabSize;
    const cand = this.cand;
    const max = work[argmax(work)];
    const mass = this.bucketMass;
    mass.fill(0);
    let total = 0;
    for (let i = 0; i < V; i++) {
      const d = max - work[i];
      const w = Math.exp(-d);
      mass[Math.min(BUCKETS - 1, Math.floor(d * INV_LN2))] += w;
      total += w;
    }
    if (!Number.isFinite(max) || !(total > 0)) {
      for (let i = 0; i < V; i++) cand[i] = i;
      return V;
    }
    let last = BUCKETS - 1;
    if (o.topP < 1) {
      const target = o.topP * total;
      let cum = 0;
      for (let b = 0; b < BUCKETS; b++) {
        cum += mass[b];
        if (cum >= target) {
          last = Math.min(BUCKETS - 1, b + 1);
          break;
        }
      }
    }
    const maxDistance = o.minP > 0 ? -Math.log(o.minP) + 1e-6 : Infinity;
    let n = 0;
    let kept = 0;
    for (let i = 0; i < V; i++) {
      const d = max - work[i];
      if ((last === BUCKETS - 1 || Math.floor(d * INV_LN2) <= last) && d <= maxDistance) {
        cand[n++] = i;
        kept += Math.exp(-d);
      }
    }
    this.droppedMass = Math.max(0, total - kept);
    return n;
  }

  /** Puts the k best ids (by logit desc, id asc) in cand[0..k) using a min-heap of the kept ones. */
  private selectTopK(k: number): number {
    const cand = this.cand;
    const worse = this.ranksAfter; // worse(a, b): a ranks after b
    for (let i = 0; i < k; i++) {
      cand[i] = i;
      siftUp(cand, i, worse);
    }
    for (let i = k; i < this.vocabSize; i++) {
      if (worse(cand[0], i)) {
        cand[0] = i;
        siftDown(cand, k, worse);
      }
    }
    return k;
  }

  /** Step 4, as HF TypicalLogitsWarper: keep the most typical tokens until their mass reaches p. */
  private typical(n: number, p: number): number {
    const weight = this.weight;
    const aux = this.aux;
    const order = this.order;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += weight[i];
    let entropy = 0;
    for (let i = 0; i < n; i++) {
      const q = weight[i] / sum;
      if (q > 0) entropy -= q * Math.log(q);
    }
    for (let i = 0; i < n; i++) {
      const q = weight[i] / sum;
      aux[i] = q > 0 ? Math.abs(-Math.log(q) - entropy) : Infinity;
      order[i] = i;
    }
    order.subarray(0, n).sort(this.byAuxAsc);
    // keep order[0..last]: every token whose preceding cumulative mass is still below p
    let cum = 0;
    let last = 0;
    for (let j = 0; j < n; j++) {
      last = j;
      cum += weight[order[j]] / sum;
      if (cum >= p) break;
    }
    // mark kept ranks (aux reused as a flag), then compact cand/weight keeping logit order
    for (let i = 0; i < n; i++) aux[i] = 0;
    for (let j = 0; j <= last; j++) aux[order[j]] = 1;
    let m = 0;
    for (let i = 0; i < n; i++) {
      if (aux[i] === 1) {
        this.cand[m] = this.cand[i];
        weight[m] = weight[i];
        m++;
      }
    }
    return m;
  }

  /** Step 5: the smallest prefix (by probability) whose mass reaches p; the crossing token stays. */
  private topP(n: number, p: number): number {
    const weight = this.weight;
    let sum = this.droppedMass;
    for (let i = 0; i < n; i++) sum += weight[i];
    const target = p * sum;
    let cum = 0;
    for (let i = 0; i < n; i++) {
      cum += weight[i];
      if (cum >= target) return i + 1;
    }
    return n;
  }

  /** Step 6: keep tokens at least minP times as likely as the most likely one. */
  private minP(n: number, minP: number): number {
    const weight = this.weight;
    const threshold = weight[0] * minP;
    let m = 1;
    while (m < n && weight[m] >= threshold) m++;
    return m;
  }

  /** Step 7 over cand[0..n). */
  private drawFromCandidates(n: number): number {
    const weight = this.weight;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += weight[i];
    if (!(sum > 0) || !Number.isFinite(sum)) return this.cand[0];
    let r = this.nextUniform() * sum;
    for (let i = 0; i < n; i++) {
      r -= weight[i];
      if (r < 0) return this.cand[i];
    }
    let i = n - 1;
    while (i > 0 && weight[i] === 0) i--;
    return this.cand[i];
  }
}

const BUCKETS = 64;
const INV_LN2 = 1 / Math.LN2;

/**
 * Index of the largest value; the lowest index wins ties (deterministic greedy decoding). The same rule as
 * the backends' argmax (argmaxRow, the reference of the CUDA kernel): NaN is never chosen over a number, and
 * nothing above -Infinity gives 0, so a greedy pick does not depend on where the logits were read.
 */
export function argmax(values: Float32Array): number {
  return argmaxRow(values, 0, values.length);
}

// Binary heap on heap[0..size) whose root is the "worst" kept id (for the top-k selection).
function siftUp(heap: Int32Array, i: number, worse: (a: number, b: number) => boolean): void {
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!worse(heap[i], heap[parent])) return;
    const t = heap[i];
    heap[i] = heap[parent];
    heap[parent] = t;
    i = parent;
  }
}

function siftDown(heap: Int32Array, size: number, worse: (a: number, b: number) => boolean): void {
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let w = i;
    if (l < size && worse(heap[l], heap[w])) w = l;
    if (r < size && worse(heap[r], heap[w])) w = r;
    if (w === i) return;
    const t = heap[i];
    heap[i] = heap[w];
    heap[w] = t;
    i = w;
  }
}
