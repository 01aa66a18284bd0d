import { test } from 'node:test';
import assert from 'node:assert/strict';
import { channelParams, quantGrid, quantizeLevel, roundHalfEven, toHalfPrecision } from '../../src/quantize/quantizer.js';

test('round half to even, as torch.round', () => {
  assert.deepEqual([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, -3.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, 4, -0, -2, -2, -4, 2, 3]);
});

test('asymmetric 4-bit: range [−1, 2] gives scale 3/15 (in fp16) and zero 5', () => {
  const p = channelParams(quantGrid(4, false), -1, 2);
  assert.equal(p.scale, toHalfPrecision(0.2));
  assert.equal(p.scale, 0.199951171875);
  assert.equal(p.zero, 5);
  assert.equal(quantizeLevel(2, p.scale, p.zero, 15), 15);
  assert.equal(quantizeLevel(-1, p.scale, p.zero, 15), 0);
  assert.equal(quantizeLevel(0, p.scale, p.zero, 15), 5);
  assert.equal(quantizeLevel(100, p.scale, p.zero, 15), 15, 'clamped');
});

test('symmetric 4-bit: range [−1, 2] mirrors to [−2, 2], zero mid-grid (8)', () => {
  const p = channelParams(quantGrid(4, true), -1, 2);
  assert.equal(p.scale, toHalfPrecision(4 / 15));
  assert.equal(p.zero, 8);
});

test('the range always includes 0; an all-zero channel gets [−1, 1]', () => {
  const pos = channelParams(quantGrid(3, false), -3, -1); // max raised to 0
  assert.equal(pos.scale, toHalfPrecision(3 / 7));
  assert.equal(pos.zero, 7);
  const zero = channelParams(quantGrid(4, false), 0, 0);
  assert.equal(zero.scale, toHalfPrecision(2 / 15));
  assert.equal(zero.zero, 8);
});

test('a range starting at 0 gets zero point 1, since the v1 file stores zero − 1', () => {
  const p = channelParams(quantGrid(4, false), 0.5, 3);
  assert.equal(p.zero, 1);
  assert.equal(p.scale, toHalfPrecision(3 / 14));
  assert.equal(quantizeLevel(3, p.scale, p.zero, 15), 15, 'the max stays representable');
  assert.equal(quantizeLevel(0, p.scale, p.zero, 15), 1);
});

test('8-bit and 2-bit grids', () => {
  assert.equal(quantGrid(8, false).maxq, 255);
  assert.equal(channelParams(quantGrid(2, true), -1, 1).zero, 2);
});
