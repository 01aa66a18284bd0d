/**
 * bench:cuda reads ExLlamaV2's figures from the logs of its test_inference.py (bench/peer-exllamav2.sh).
 * The lines below are in the format its speed (-s) and prompt (-ps) tests print.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePeerLogs } from '../../bench/peerExllamav2.js';

const speed = [
  ' -- Measuring token speed...',
  ' ** Position     1 + 127 tokens:  156.4267 t/s',
  ' ** Position   128 + 128 tokens:  159.0000 t/s',
  ' ** Position   512 + 128 tokens:  157.5714 t/s',
  ' ** Position  1792 + 128 tokens:  154.3105 t/s',
  ' ** Position  1920 + 128 tokens:  150.8962 t/s',
].join('\n');
const prompt = [
  ' -- Measuring prompt speed...',
  ' ** Length   256 tokens:   5066.7080 t/s',
  ' ** Length   512 tokens:  10167.1111 t/s',
  ' ** Length  2048 tokens:  16846.3452 t/s',
].join('\n');

test('ExLlamaV2 logs: decode at 1, 512 and its last position up to 2048; prompt at 512 and 2048', () => {
  assert.deepEqual(parsePeerLogs(speed, prompt), {
    name: 'ExLlamaV2 (measured in this call)', decodeShort: 156.4267, decode512: 157.5714, decode2048: 150.8962, decode2048At: 1920,
    prefill512: 10167.1111, prefill2048: 16846.3452,
  });
});

test('ExLlamaV2 logs without the figures the bench compares (a failed run) give null, not zeros', () => {
  assert.equal(parsePeerLogs('', prompt), null);
  assert.equal(parsePeerLogs(speed, ''), null);
  assert.equal(parsePeerLogs('Traceback (most recent call last):\n  RuntimeError: CUDA out of memory', 'error'), null);
  // positions past 2048 are not the 2048 figure
  assert.equal(parsePeerLogs(' ** Position     1 + 127 tokens:  150.0 t/s\n ** Position  4096 + 128 tokens:  90.0 t/s', prompt)?.decode2048, 150);
});
