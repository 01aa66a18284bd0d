/**
 * halfCopies.ts on the host side (no GPU: a fake kernel module records the x_to_half launches, and the
 * scratch slots are fake addresses). A 13B prompt layer issued as the CUDA backend issues it converts
 * only o_proj's input, keeps the normed x in one slot and attention's or SwiGLU's output in the other,
 * and never hands out a copy after its source may have changed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DevicePtr, Dim3 } from '../../src/backends/cuda/driver.js';
import { HalfCopies } from '../../src/backends/cuda/halfCopies.js';
import type { KernelModule } from '../../src/backends/cuda/module.js';

class FakeKernels {
  readonly converted: bigint[] = [];
  readonly names: string[] = [];
  launch(name: string, _grid: Dim3, _block: Dim3, args: Buffer[], shared = 0): void {
    assert.ok(name === 'x_to_half' || name === 'x_to_half_gather_rows', name);
    // a gather through a permutation goes a row per block through shared memory where the row's f32 fit 48 KiB
    const perm = args[2].readBigUInt64LE(0), cols = args[4].readInt32LE(0);
    const rowsKernel = perm !== 0n && cols % 4 === 0 && cols * 4 <= 48 * 1024;
    assert.equal(name, rowsKernel ? 'x_to_half_gather_rows' : 'x_to_half', `perm ${perm}, ${cols} columns`);
    assert.equal(shared, rowsKernel ? cols * 4 : 0);
    this.names.push(name);
    this.converted.push(args[1].readBigUInt64LE(0)); // x_to_half(xh, x, perm, M, K): the source
  }
}

/** Two growable fake slots: a slot moves (a new address) when it must grow, as CudaBackend's grow does. */
function slots(): { scratch: (i: number, bytes: number) => DevicePtr; bytes: number[] } {
  const bytes = [0, 0], at = [0n, 0n];
  let next = 0x1000_0000n;
  return {
    bytes,
    scratch: (i, n) => {
      if (n > bytes[i]) {
        bytes[i] = n;
        at[i] = next;
        next += BigInt(n);
      }
      return at[i] as DevicePtr;
    },
  };
}

const p = (v: number): DevicePtr => BigInt(v) as DevicePtr;
const x = p(0x10), xb = p(0x20), attn = p(0x30), hidden = p(0x40), perm = p(0x50);
const ROWS = 2048, DIM = 5120, FFN = 13824;

test('a prompt layer: only o_proj\'s input is converted; normed x and the SwiGLU output keep to their slots', () => {
  const k = new FakeKernels(), s = slots();
  const h = new HalfCopies(k as unknown as KernelModule, s.scratch);
  for (let layer = 0; layer < 3; layer++) {
    h.forget(); // rmsnorm
    const xbCopy = h.reserve(xb, ROWS, DIM); // rmsnorm_rows_f32 writes it
    for (let i = 0; i < 3; i++) assert.equal(h.of(xb, ROWS, DIM, null), xbCopy, 'q, k, v read the norm\'s copy');
    h.wrote(p(0x60)); // their outputs
    h.forget(); // rope, attention
    const attnCopy = h.of(attn, ROWS, DIM, null); // o_proj converts
    assert.notEqual(attnCopy, xbCopy);
    h.wrote(x); // linearAdd into the residual
    h.forget(); // rmsnorm
    const xb2 = h.reserve(xb, ROWS, DIM);
    assert.equal(xb2, xbCopy, 'the normed x goes back to its slot');
    // gate/up + SwiGLU: reads x's copy while writing the output's into the other slot
    h.wrote(hidden);
    assert.equal(h.of(xb, ROWS, DIM, null), xb2);
    const hiddenCopy = h.reserve(hidden, ROWS, FFN);
    assert.notEqual(hiddenCopy, xb2, 'the fused GEMM never writes the copy it reads');
    assert.equal(h.of(hidden, ROWS, FFN, null), hiddenCopy, 'down_proj reads it');
    h.wrote(x);
  }
  assert.deepEqual(k.converted, [attn, attn, attn], 'one conversion per layer: attention\'s output');
  assert.deepEqual([...s.bytes].sort((a, b) => a - b), [ROWS * DIM * 2, ROWS * FFN * 2], 'each slot its own width');
});

test('a copy is not handed out after its source may have changed, or for another gather', () => {
  const k = new FakeKernels(), s = slots();
  const h = new HalfCopies(k as unknown as KernelModule, s.scratch);
  h.of(x, 64, 256, null);
  h.of(x, 64, 256, null);
  assert.equal(k.converted.length, 1, 'the same x, rows, width and gather: one conversion');
  h.of(x, 64, 256, perm);
  assert.equal(k.converted.length, 2, 'a gathered copy is another copy');
  h.of(x, 64, 256, perm);
  h.of(x, 64, 256, null);
  assert.equal(k.converted.length, 2, 'both copies held, one per slot');
  h.of(x, 32, 256, null);
  assert.equal(k.converted.length, 3, 'other rows: converted');
  h.wrote(x);
  h.of(x, 32, 256, null);
  assert.equal(k.converted.length, 4, 'a linear wrote x');
  h.forget();
  h.of(x, 32, 256, null);
  assert.equal(k.converted.length, 5, 'another op may have written x');
  h.wrote(xb);
  h.of(x, 32, 256, null);
  assert.equal(k.converted.length, 5, 'writing another activation keeps x\'s copy');
});

test('the least recently used slot is taken (and grows, moving): what it held is converted again', () => {
  const k = new FakeKernels(), s = slots();
  const h = new HalfCopies(k as unknown as KernelModule, s.scratch);
  const a = h.of(x, 64, 256, null); // slot 0
  h.reserve(xb, 64, 256); // slot 1
  h.of(attn, 128, 256, null); // slot 0 (least recently used) is taken and grows: x's copy is gone
  const again = h.of(x, 64, 256, null);
  assert.notEqual(again, a);
  assert.equal(k.converted.length, 3);
});

test('act-order: a producer reserving the copy in its readers\' permutation serves them, and only them', () => {
  const k = new FakeKernels(), s = slots();
  const h = new HalfCopies(k as unknown as KernelModule, s.scratch);
  const gathered = h.reserve(xb, ROWS, DIM, perm); // rmsnorm_rows_f32 with its consumers' permutation
  for (let i = 0; i < 3; i++) assert.equal(h.of(xb, ROWS, DIM, perm), gathered, 'q, k, v (one permutation) read it');
  assert.deepEqual(k.converted, []);
  assert.notEqual(h.of(xb, ROWS, DIM, null), gathered, 'a reader in x\'s own order converts');
  assert.deepEqual(k.converted, [xb]);
  h.of(xb, ROWS, DIM, p(0x70));
  assert.deepEqual(k.converted, [xb, xb], 'so does one with another permutation');
  assert.deepEqual(k.names, ['x_to_half', 'x_to_half_gather_rows']);
  h.of(x, ROWS, 12289 * 2, perm); // rows too wide for shared memory, and an odd width: the grid-stride kernel
  h.of(x, ROWS, 6, perm);
  assert.deepEqual(k.names.slice(2), ['x_to_half', 'x_to_half']);
});

test('the Q tile written instead of q: the next attention takes it once; any write of an activation drops it; q\'s f32 rows count as unwritten', () => {
  const h = new HalfCopies(new FakeKernels() as unknown as KernelModule, slots().scratch);
  const q = p(0x70), tile = { at: p(0x80), ready: { counters: p(0x90), target: 12, reads: p(0xa0) } };
  h.holdQTile(q, tile);
  assert.throws(() => h.checkWritten(q), /f32 rows were not written/, 'a kernel reading q\'s f32 rows');
  assert.equal(h.takeQTile(attn), null, 'another activation has no tile');
  assert.equal(h.takeQTile(q), null, 'taking (even a miss) lets it go');
  h.holdQTile(q, tile);
  assert.deepEqual(h.takeQTile(q), tile);
  assert.equal(h.takeQTile(q), null, 'taken once');
  h.holdQTile(q, tile);
  h.forget(); // rope, a host write, any op that writes an activation otherwise
  assert.equal(h.takeQTile(q), null, 'dropped by forget');
  h.checkWritten(q);
  h.holdQTile(q, tile);
  h.wrote(hidden);
  assert.deepEqual(h.takeQTile(q), tile, 'a linear writing another activation leaves it');
  h.holdQTile(q, tile);
  h.wrote(q); // a linear writing q itself
  assert.equal(h.takeQTile(q), null, 'dropped when q is written');
  h.checkWritten(q);
});

test('attention overlapping the q/k/v launch (attnOverlap) gets the other slot than the x that launch still reads', () => {
  const h = new HalfCopies(new FakeKernels() as unknown as KernelModule, slots().scratch);
  for (let layer = 0; layer < 3; layer++) {
    h.forget(); // the input RMSNorm
    const xbCopy = h.reserve(xb, ROWS, DIM);
    assert.equal(h.of(xb, ROWS, DIM, null), xbCopy, 'the q/k/v rope launch reads the norm\'s copy');
    h.forget(); // after it (CudaBackend.qkvRopeKv), then attention's own forget
    h.forget();
    assert.notEqual(h.reserve(attn, ROWS, DIM), xbCopy, `layer ${layer}: attention's copy would overwrite the x q/k/v reads`);
    h.wrote(x); // o_proj into the residual; then the MLP's norm and SwiGLU take the slots in turn
    h.forget();
    const mlpCopy = h.reserve(xb, ROWS, DIM);
    assert.equal(h.of(xb, ROWS, DIM, null), mlpCopy);
    h.reserve(hidden, ROWS, FFN);
  }
});
