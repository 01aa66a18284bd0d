/**
 * The BPE merge loop shared by SentencePiece (`tokenizer.model`, merge priority = score of the merged
 * piece) and Hugging Face BPE (`tokenizer.json`, priority = minus the merge rank). Both pick the
 * adjacent pair with the highest priority and, on a tie, the leftmost pair, then re-score the two new
 * neighbour pairs. A max-heap of candidate pairs over a doubly linked list of symbols makes this
 * O(n log n), so a whole 1.3 MB corpus encodes in one call; stale heap entries (a side already merged
 * away or grown) are recognised by their recorded length and skipped when popped.
 */

/** Decides whether two adjacent symbols merge. */
export interface MergeRule {
  /**
   * Priority of merging `text[start, mid)` with `text[mid, end)` (higher merges first), or
   * `undefined` when that pair never merges.
   */
  priority(text: string, start: number, mid: number, end: number): number | undefined;
}

/** Final symbols as [start, end) offsets into the text. */
export interface Segments {
  readonly starts: Int32Array;
  readonly ends: Int32Array;
  readonly count: number;
}

/** Max-heap of pair candidates keyed by (priority desc, left asc), stored in parallel typed arrays. */
class PairHeap {
  private prio = new Float64Array(1024);
  private left = new Int32Array(1024);
  private size = new Int32Array(1024);
  length = 0;

  push(prio: number, left: number, size: number): void {
    if (this.length === this.prio.length) this.grow();
    let i = this.length++;
    // Sift up: move parents down until the new entry's slot is found.
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(prio, left, this.prio[parent], this.left[parent])) break;
      this.set(i, this.prio[parent], this.left[parent], this.size[parent]);
      i = parent;
    }
    this.set(i, prio, left, size);
  }

  /** Removes the top entry; read it first with topLeft/topSize/topPrio. */
  pop(): void {
    const n = --this.length;
    if (n === 0) return;
    const prio = this.prio[n];
    const left = this.left[n];
    const size = this.size[n];
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.before(this.prio[r], this.left[r], this.prio[l], this.left[l]) ? r : l;
      if (!this.before(this.prio[c], this.left[c], prio, left)) break;
      this.set(i, this.prio[c], this.left[c], this.size[c]);
      i = c;
    }
    this.set(i, prio, left, size);
  }

  get topLeft(): number {
    return this.left[0];
  }
  get topSize(): number {
    return this.size[0];
  }
  get topPrio(): number {
    return this.prio[0];
  }

  private before(pa: number, la: number, pb: number, lb: number): boolean {
    return pa > pb || (pa === pb && la < lb);
  }

  private set(i: number, prio: number, left: number, size: number): void {
    this.prio[i] = prio;
    this.left[i] = left;
    this.size[i] = size;
  }

  private grow(): void {
    const cap = this.prio.length * 2;
    const prio = new Float64Array(cap);
    const left = new Int32Array(cap);
    const size = new Int32Array(cap);
    prio.set(this.prio);
    left.set(this.left);
    size.set(this.size);
    this.prio = prio;
    this.left = left;
    this.size = size;
  }
}

/**
 * Runs BPE over `text`, starting from the initial symbols whose end offsets are `initialEnds`
 * (ascending, the last equal to text.length). Symbols flagged in `frozen` (user-defined pieces)
 * never merge. `onMerge`, when given, sees every merge (SentencePiece uses it to undo merges into
 * UNUSED pieces).
 */
export function bpeMerge(
  text: string,
  initialEnds: ArrayLike<number>,
  rule: MergeRule,
  frozen?: ArrayLike<boolean>,
  onMerge?: (start: number, mid: number, end: number) => void,
): Segments {
  const n = initialEnds.length;
  const start = new Int32Array(n);
  const end = new Int32Array(n);
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    start[i] = i === 0 ? 0 : initialEnds[i - 1];
    end[i] = initialEnds[i];
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  const isFrozen = (i: number): boolean => frozen !== undefined && frozen[i] === true;
  const heap = new PairHeap();
  const consider = (l: number): void => {
    const r = next[l];
    if (r < 0 || isFrozen(l) || isFrozen(r)) return;
    const p = rule.priority(text, start[l], end[l], end[r]);
    if (p !== undefined) heap.push(p, l, end[r] - start[l]);
  };
  for (let i = 0; i + 1 < n; i++) consider(i);

  while (heap.length > 0) {
    const l = heap.topLeft;
    const size = heap.topSize;
    heap.pop();
    const r = next[l];
    // Stale if the left symbol was merged away (its end is now -1), or either side changed size.
    if (end[l] < 0 || r < 0 || end[r] - start[l] !== size) continue;
    onMerge?.(start[l], end[l], end[r]);
    end[l] = end[r];
    end[r] = -1;
    next[l] = next[r];
    if (next[r] >= 0) prev[next[r]] = l;
    if (prev[l] >= 0) consider(prev[l]);
    consider(l);
  }

  const starts = new Int32Array(n);
  const ends = new Int32Array(n);
  let count = 0;
  for (let i = n > 0 ? 0 : -1; i >= 0; i = next[i]) {
    starts[count] = start[i];
    ends[count] = end[i];
    count++;
  }
  return { starts, ends, count };
}
