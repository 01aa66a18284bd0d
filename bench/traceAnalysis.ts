/**
 * Block timelines of a lab build (src/backends/cuda/kernels/trace.cuh, -DQLLAMA_TRACE) turned into launches and a
 * per-launch-kind account of a decode step's time. Pure functions over the records, so they are unit-tested
 * without a GPU (test/unit/traceAnalysis.test.ts); bench/cudaDecodeTrace.ts reads the records on the GPU machine.
 */

/** sizeof(TraceRec) in trace.cuh */
export const TRACE_RECORD_BYTES = 64;

/** trace.cuh's kernel ids */
export const TRACE_KERNELS: Readonly<Record<number, string>> = { 1: 'gemv_q4', 2: 'gemv_q4_cl', 3: 'attn_split', 4: 'gemv_f16' };

/** One block: its stamps in ns from the trace's earliest start (t1, t2: NaN where the kernel sets no such mark). */
export interface BlockRecord {
  readonly t0: number;
  readonly t1: number;
  readonly t2: number;
  readonly t3: number;
  readonly kernel: number;
  readonly gridX: number;
  readonly gridY: number;
  readonly block: number;
  readonly smid: number;
}

/** The first `count` records of `buf` (trace.cuh's TraceRec layout), times relative to the earliest start. */
export function parseTrace(buf: Buffer, count: number): BlockRecord[] {
  if (buf.length < count * TRACE_RECORD_BYTES) throw new RangeError(`trace: ${count} records need ${count * TRACE_RECORD_BYTES} bytes, got ${buf.length}`);
  let base: bigint | null = null;
  for (let i = 0; i < count; i++) {
    const t0 = buf.readBigUInt64LE(i * TRACE_RECORD_BYTES);
    if (base === null || t0 < base) base = t0;
  }
  const rel = (t: bigint): number => (t === 0n || base === null ? Number.NaN : Number(t - base));
  const out: BlockRecord[] = [];
  for (let i = 0; i < count; i++) {
    const o = i * TRACE_RECORD_BYTES;
    out.push({
      t0: rel(buf.readBigUInt64LE(o)), t1: rel(buf.readBigUInt64LE(o + 8)), t2: rel(buf.readBigUInt64LE(o + 16)), t3: rel(buf.readBigUInt64LE(o + 24)),
      kernel: buf.readUInt32LE(o + 32), gridX: buf.readUInt32LE(o + 36), gridY: buf.readUInt32LE(o + 40), block: buf.readUInt32LE(o + 44),
      smid: buf.readUInt32LE(o + 48),
    });
  }
  return out;
}

/** One launch, from its blocks' stamps (ns). */
export interface Launch {
  /** kernel name and grid, e.g. "gemv_q4_cl 120x4": launches of one kind in a step share it */
  readonly kind: string;
  readonly blocks: number;
  /** first block's start */
  readonly start: number;
  /** first griddepcontrol.wait to return: when the launch before it had completed (NaN: no such mark) */
  readonly released: number;
  /** median and last block's end of the main loop (NaN: no such mark) */
  readonly mainDoneMedian: number;
  readonly mainDone: number;
  /** last block's exit */
  readonly end: number;
  /** its blocks' records */
  readonly records: readonly BlockRecord[];
}

const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor((s.length - 1) / 2)];
};
const minOf = (v: number[]): number => v.reduce((m, x) => (Number.isNaN(x) ? m : Math.min(m, x)), Infinity);
const maxOf = (v: number[]): number => v.reduce((m, x) => (Number.isNaN(x) ? m : Math.max(m, x)), -Infinity);
const orNaN = (x: number): number => (Number.isFinite(x) ? x : Number.NaN);

/**
 * The records as launches, in start order. Blocks of one kernel and grid are sorted by start and cut into launches of
 * gridX · gridY blocks: launches of the same kind never overlap in a decode step (programmatic launches overlap only a
 * neighbour, and a kind recurs at most every other launch). Throws where a kind's blocks are not whole launches (the
 * trace buffer filled up, or a launch was cut off).
 */
export function groupLaunches(records: readonly BlockRecord[]): Launch[] {
  const byKind = new Map<string, BlockRecord[]>();
  for (const r of records) {
    const kind = `${TRACE_KERNELS[r.kernel] ?? `kernel${r.kernel}`} ${r.gridX}x${r.gridY}`;
    const list = byKind.get(kind);
    if (list) list.push(r);
    else byKind.set(kind, [r]);
  }
  const launches: Launch[] = [];
  for (const [kind, list] of byKind) {
    const size = list[0].gridX * list[0].gridY;
    if (list.length % size !== 0) throw new Error(`trace: ${list.length} blocks of ${kind} are not whole launches of ${size}`);
    list.sort((a, b) => a.t0 - b.t0);
    for (let i = 0; i < list.length; i += size) {
      const l = list.slice(i, i + size);
      const t2 = l.map((r) => r.t2).filter((t) => !Number.isNaN(t));
      launches.push({
        kind, blocks: size, start: minOf(l.map((r) => r.t0)), released: orNaN(minOf(l.map((r) => r.t1))),
        mainDoneMedian: median(t2), mainDone: orNaN(maxOf(t2)), end: maxOf(l.map((r) => r.t3)), records: l,
      });
    }
  }
  return launches.sort((a, b) => a.start - b.start);
}

/** Mean µs per launch of one kind; each span runs from the previous launch's end to this one's. */
export interface KindAccount {
  readonly kind: string;
  readonly launches: number;
  /** previous launch's end → this launch's end: its share of the step's critical path */
  readonly span: number;
  /** previous launch's end → this launch's first wait returned (release latency; NaN: no such mark) */
  readonly release: number;
  /** first wait returned → the median / last block's main loop done */
  readonly bodyMedian: number;
  readonly body: number;
  /** last main loop done → last block exit (epilogues: cluster sums, rope, attention, atomics) */
  readonly tail: number;
  /** this launch's start before the previous one's end: how long its blocks were resident early */
  readonly headStart: number;
}

/** Whether `l` starts a step after `prev` (default: more than 50 µs after it ended, the host having read a token). */
export type StepStart = (prev: Launch, l: Launch) => boolean;
const afterGap: StepStart = (prev, l) => l.start - prev.end > 50_000;

/**
 * Per kind of launch, the mean account over the launches that follow another launch of the same step; a launch that
 * starts a step (`startsStep`) is left out, its span being the host's.
 */
export function accountByKind(launches: readonly Launch[], startsStep: StepStart = afterGap): KindAccount[] {
  const sums = new Map<string, { n: number; span: number; release: number; bodyMedian: number; body: number; tail: number; headStart: number }>();
  for (let i = 1; i < launches.length; i++) {
    const l = launches[i], prevEnd = launches[i - 1].end;
    if (startsStep(launches[i - 1], l)) continue;
    const s = sums.get(l.kind) ?? { n: 0, span: 0, release: 0, bodyMedian: 0, body: 0, tail: 0, headStart: 0 };
    s.n++;
    s.span += l.end - prevEnd;
    s.release += l.released - prevEnd;
    s.bodyMedian += l.mainDoneMedian - l.released;
    s.body += l.mainDone - l.released;
    s.tail += l.end - l.mainDone;
    s.headStart += prevEnd - l.start;
    sums.set(l.kind, s);
  }
  return [...sums].map(([kind, s]) => ({
    kind, launches: s.n, span: s.span / s.n / 1000, release: s.release / s.n / 1000, bodyMedian: s.bodyMedian / s.n / 1000,
    body: s.body / s.n / 1000, tail: s.tail / s.n / 1000, headStart: s.headStart / s.n / 1000,
  }));
}

/** Mean µs from a step's first launch's start to its last launch's end, over the steps `startsStep` delimits. */
export function meanStepSpan(launches: readonly Launch[], startsStep: StepStart = afterGap): number {
  let first = 0, total = 0, n = 0;
  for (let i = 1; i <= launches.length; i++) {
    if (i < launches.length && !startsStep(launches[i - 1], launches[i])) continue;
    total += launches[i - 1].end - launches[first].start;
    n++;
    first = i;
  }
  return n === 0 ? Number.NaN : total / n / 1000;
}

/**
 * Per kind of launch with main-loop marks, how long after the launch's release its blocks finished their main loops
 * (mean µs), by how many blocks of the same launch shared their SM: whether blocks on busier SMs stream slower.
 */
export function bodyBySmLoad(launches: readonly Launch[]): Map<string, Map<number, { readonly blocks: number; readonly body: number }>> {
  const sums = new Map<string, Map<number, { blocks: number; total: number }>>();
  for (const l of launches) {
    if (Number.isNaN(l.released)) continue;
    const perSm = new Map<number, number>();
    for (const r of l.records) perSm.set(r.smid, (perSm.get(r.smid) ?? 0) + 1);
    const byLoad = sums.get(l.kind) ?? new Map<number, { blocks: number; total: number }>();
    for (const r of l.records) {
      if (Number.isNaN(r.t2)) continue;
      const load = perSm.get(r.smid)!;
      const e = byLoad.get(load) ?? { blocks: 0, total: 0 };
      e.blocks++;
      e.total += r.t2 - l.released;
      byLoad.set(load, e);
    }
    if (byLoad.size > 0) sums.set(l.kind, byLoad);
  }
  return new Map([...sums].map(([kind, m]) => [kind, new Map([...m].sort((a, b) => a[0] - b[0]).map(([k, e]) => [k, { blocks: e.blocks, body: e.total / e.blocks / 1000 }]))]));
}
