import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  attentionTile, flashGrid, flashShared, flashWgGrid, flashWgShared, MAX_SPLITS, planAttention, positionBucket,
} from '../../src/backends/cuda/attentionLaunch.js';

/** opt-in dynamic shared memory per block on sm_90 (H100 / H200) */
const SM90_OPTIN = 227 * 1024;

test('prompt attention grids cover every query row exactly once: 64-row tiles (attn_flash), 128-row tiles (attn_flash_wg_128)', () => {
  for (const rows of [2, 63, 64, 65, 127, 128, 129, 700, 2048]) {
    for (const [grid, tile] of [[flashGrid(rows, 40), 64], [flashWgGrid(rows, 40), 128]] as const) {
      assert.equal(grid.x, 40, 'a block column per head');
      assert.ok(grid.y * tile >= rows && (grid.y - 1) * tile < rows, `${rows} rows in ${grid.y} tiles of ${tile}`);
    }
  }
});

test('prompt attention shared memory fits an sm_90 block: attn_flash_<d> and attn_flash_wg_128 (Q tile + two K/V stages + swizzle alignment)', () => {
  for (const d of [64, 128]) assert.ok(flashShared(d) <= SM90_OPTIN, `attn_flash_${d}: ${flashShared(d)} bytes`);
  // 1 KB alignment + Q (128 rows × 128 fp16) + 2 stages × (K + V of 64 positions × 128 fp16)
  assert.equal(flashWgShared(), 1024 + 128 * 128 * 2 + 2 * 2 * 64 * 128 * 2);
  assert.ok(flashWgShared() <= SM90_OPTIN);
});

test('decode attention plans: graphs per position bucket, splits within the merge block and the resident blocks', () => {
  assert.deepEqual([1, 128, 129, 512, 513, 2048].map(positionBucket), [128, 128, 512, 512, Infinity, Infinity]);
  for (const d of [64, 128, 256]) assert.equal(attentionTile(d) * d, 2048, `a warp tile of head size ${d} is 4 KiB of K`);
  for (const [positions, rows] of [[1, 1], [128, 1], [2048, 1], [2048, 3], [100000, 1]]) {
    const { splits } = planAttention(positions, rows, 40, 132, 128);
    assert.ok(splits >= 1 && splits <= MAX_SPLITS, `${positions} positions: ${splits} splits`);
    // no more splits than the positions can fill (4 warps × one tile each), and one wave of 5 blocks per SM at most
    assert.ok(splits <= Math.max(1, Math.ceil(positions / (4 * attentionTile(128)))), `${positions} positions: ${splits} splits`);
    assert.ok(splits * rows * 40 <= 5 * 132 || splits === 1, `${positions} positions, ${rows} rows: ${splits} splits`);
  }
  // a long context on a big GPU gets more than one split per head
  assert.ok(planAttention(2048, 1, 40, 132, 128).splits > 1);
});
