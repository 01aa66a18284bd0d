/**
 * The shipped CUDA kernels (module.ts readFatbin), no GPU: the brotli-compressed fatbin in the checkout is a fatbin
 * with the sm_90a code the Hopper kernels need, and damaged or foreign files fail with their name and what to do.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { brotliCompressSync } from 'node:zlib';
import { CudaKernelsMissingError, fatbinPath, readFatbin } from '../../src/backends/cuda/module.js';

test('the shipped fatbin decompresses to a CUDA fatbin holding the kernels for every target', () => {
  const file = fatbinPath();
  assert.ok(file.endsWith('qllama-kernels.fatbin.br'), file);
  const image = readFatbin(file);
  assert.equal(image.readUInt32LE(0), 0xba55ed50);
  assert.ok(image.length > 4 << 20, `${image.length} bytes`);
  // kernel names are stored in the image as plain text: one from each of the decode, prefill and attention paths
  for (const name of ['gemv_q4_rpg16', 'gemm_wgmma_256', 'attn_flash_wg_128', 'dequant_q4_tile']) {
    assert.ok(image.includes(Buffer.from(name)), `${name} in the fatbin`);
  }
});

test('a damaged or foreign fatbin fails with its name and "npm run build:cuda", compressed or not', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'qllama-fatbin-'));
  try {
    const cases: [string, Buffer][] = [
      ['truncated.fatbin.br', brotliCompressSync(Buffer.alloc(1 << 16, 7)).subarray(0, 100)],
      ['foreign.fatbin.br', brotliCompressSync(Buffer.from('not a fatbin at all'))],
      ['plain.fatbin', Buffer.alloc(64, 0)],
    ];
    for (const [name, bytes] of cases) {
      const file = path.join(dir, name);
      writeFileSync(file, bytes);
      assert.throws(() => readFatbin(file), (e: Error) => e instanceof CudaKernelsMissingError && e.message.includes(file) && /npm run build:cuda/.test(e.message), name);
    }
    assert.throws(() => readFatbin(path.join(dir, 'missing.fatbin.br')), /could not be read.*npm run build:cuda/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
