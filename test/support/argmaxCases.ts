/**
 * Logits for the row-argmax tests (CPU and CUDA): random rows, and rows built to catch a wrong tie
 * rule or a wrong reduction in argmax.cu, whose element i sits in float4 c = i >> 2, read by thread
 * c % 1024 in round c / 1024. The maximum is repeated inside one float4, in two rounds of one
 * thread, in two lanes of a warp, in two warps, past the 8 unrolled rounds, at both ends; rows of
 * equal values, -Infinity mixed in or everywhere, NaN mixed in or everywhere, +Infinity twice.
 */
import { Prng } from '../../src/generate/prng.js';

/**
 * The lowest index holding the row's largest number (NaN ignored), 0 when nothing is above
 * -Infinity: written apart from every argmax under test (max first, then indexOf).
 */
export function referenceArgmax(row: Float32Array): number {
  let max = -Infinity;
  for (const v of row) if (v > max) max = v;
  return max === -Infinity ? 0 : row.indexOf(max);
}

/** element pairs where the block reduction of argmax.cu meets a tie in different places */
function structuralPairs(cols: number): [number, number][] {
  const f4 = (c: number, lane = 0): number => 4 * c + lane;
  const pairs: [number, number][] = [
    [f4(10, 1), f4(10, 3)], // one float4
    [f4(3), f4(3 + 1024)], // one thread, two rounds
    [f4(33, 2), f4(32, 2)], // two lanes of one warp
    [f4(1 + 1024), f4(2)], // the higher index in the lower lane (round 1 of thread 1 vs round 0 of thread 2)
    [f4(5), f4(5 + 32 * 7)], // two warps
    [f4(1023, 3), f4(0)], // last thread and first thread
    [f4(8 * 1024 + 3), f4(9 * 1024 + 3)], // past the unrolled rounds (cols > 32768)
    [0, cols - 1],
    [cols - 2, cols - 1], // the scalar tail when cols % 4 ≠ 0
  ];
  return pairs.filter(([a, b]) => a !== b && a < cols && b < cols);
}

export const ROW_KINDS = [
  'random', 'coarse', 'tie-pair', 'tie-structural', 'all-equal', 'neg-inf-mixed', 'all-neg-inf', 'nan-mixed', 'all-nan', 'pos-inf-twice', 'max-last',
] as const;
export type RowKind = (typeof ROW_KINDS)[number];

/** `rows` rows of `cols` logits ([rows, cols] f32), row r of kind ROW_KINDS[r % ROW_KINDS.length]. */
export function argmaxCases(rows: number, cols: number, seed: number): { readonly logits: Float32Array; readonly kinds: RowKind[] } {
  const prng = new Prng(seed);
  const logits = new Float32Array(rows * cols);
  const kinds: RowKind[] = [];
  const pairs = structuralPairs(cols);
  const at = (): number => Math.floor(prng.nextFloat() * cols);
  for (let r = 0; r < rows; r++) {
    const kind = ROW_KINDS[r % ROW_KINDS.length];
    kinds.push(kind);
    const row = logits.subarray(r * cols, (r + 1) * cols);
    for (let i = 0; i < cols; i++) row[i] = (prng.nextFloat() - 0.5) * 20;
    switch (kind) {
      case 'random':
        break;
      case 'coarse': // a handful of values: the maximum repeats many times
        for (let i = 0; i < cols; i++) row[i] = Math.round(row[i] / 4);
        break;
      case 'tie-pair': {
        const a = at(), b = at();
        row[a] = 11;
        row[b] = 11;
        break;
      }
      case 'tie-structural': {
        if (pairs.length === 0) break;
        const [a, b] = pairs[Math.floor(r / ROW_KINDS.length) % pairs.length];
        row[a] = 11;
        row[b] = 11;
        break;
      }
      case 'all-equal':
        row.fill(0.5);
        break;
      case 'neg-inf-mixed':
        for (let i = 0; i < cols; i++) if (prng.nextFloat() < 0.5) row[i] = -Infinity;
        row[0] = -Infinity;
        break;
      case 'all-neg-inf':
        row.fill(-Infinity);
        break;
      case 'nan-mixed':
        for (let i = 0; i < cols; i++) if (prng.nextFloat() < 0.3) row[i] = NaN;
        row[0] = NaN; // a NaN first must not stick as the "best so far"
        break;
      case 'all-nan':
        row.fill(NaN);
        break;
      case 'pos-inf-twice': {
        const a = at(), b = at();
        row[a] = Infinity;
        row[b] = Infinity;
        break;
      }
      case 'max-last':
        row[cols - 1] = 11;
        break;
    }
  }
  return { logits, kinds };
}
