import { setTimeout as sleep } from 'node:timers/promises';
import type { DeviceSampling } from '../../src/backends/backend.js';
import type { BatchedLm, DecodeRow, RowResult } from '../../src/model/batch.js';
import type { CausalLm } from '../../src/model/causalLm.js';

/** Token id the fake model refuses in a prompt, synchronously (a model bug must fail its run only). */
export const POISON = 99;

/**
 * A model whose next id is token + slot; records every call ('step 0,1' with the slots of a
 * decode step, 'prefill <slot>@<pos>x<rows>' for a prompt chunk) and whether calls overlapped.
 */
export class FakeBatchedLm implements BatchedLm {
  readonly vocabSize = 100;
  readonly contextLength = 1000;
  readonly sequences = 4;
  readonly steps: DecodeRow[][] = [];
  readonly events: string[] = [];
  inside = false;
  overlapped = false;

  private async enter<T>(what: string, f: () => T): Promise<T> {
    if (this.inside) this.overlapped = true;
    this.inside = true;
    this.events.push(what);
    try {
      await sleep(2); // the loop must not start anything else meanwhile
      return f();
    } finally {
      this.inside = false;
    }
  }

  forward(tokens: readonly number[], pos: number, slot = 0): Promise<Float32Array> {
    return this.enter(`prefill ${slot}@${pos}x${tokens.length}`, () => new Float32Array(this.vocabSize));
  }
  feed(tokens: readonly number[], pos: number, slot = 0): Promise<void> {
    if (tokens.includes(POISON)) throw new Error('poisoned prompt');
    return this.enter(`prefill ${slot}@${pos}x${tokens.length}`, () => undefined);
  }
  forwardArgmax(tokens: readonly number[], pos: number, slot = 0): Promise<number> {
    if (tokens.includes(POISON)) throw new Error('poisoned prompt');
    return this.enter(`prefill ${slot}@${pos}x${tokens.length}`, () => tokens[tokens.length - 1] + slot);
  }
  forwardSample(_t: readonly number[], _p: number, _s: DeviceSampling): Promise<number> { return this.enter('prefill', () => 0); }
  decodeBatch(rows: readonly DecodeRow[]): Promise<RowResult[]> {
    return this.enter(`step ${rows.map((r) => r.slot).join(',')}`, () => {
      if (rows.some((r) => r.pos >= this.contextLength)) throw new RangeError('past the context');
      this.steps.push([...rows]);
      return rows.map((r) => r.token + r.slot);
    });
  }
}

/** The sequence in `slot` of a batched model, seen as a single-sequence model. */
export class SlotView implements CausalLm {
  constructor(
    private readonly model: BatchedLm,
    readonly slot: number,
  ) {}

  get vocabSize(): number { return this.model.vocabSize; }
  get contextLength(): number { return this.model.contextLength; }

  forward(tokens: readonly number[], startPos: number): Promise<Float32Array> {
    return this.model.forward(tokens, startPos, this.slot);
  }

  forwardArgmax(tokens: readonly number[], startPos: number): Promise<number> {
    return this.model.forwardArgmax(tokens, startPos, this.slot);
  }

  forwardSample(tokens: readonly number[], startPos: number, sampling: DeviceSampling): Promise<number | Float32Array> {
    return this.model.forwardSample(tokens, startPos, sampling, this.slot);
  }
}
