/**
 * bench/gpuSampler.ts, no GPU: nvidia-smi's sample lines (its own timestamps, local time) and the mean clock and
 * power of the samples inside a phase.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeClocks, parseSample, phaseClocks } from '../../bench/gpuSampler.js';

test('nvidia-smi sample lines parse with their timestamps; anything else is skipped', () => {
  const s = parseSample('2026/11/29 04:20:01.123, 1410, 650.12, 700.00');
  assert.deepEqual(s, { t: new Date(2026, 10, 29, 4, 20, 1, 123).getTime(), smMHz: 1410, watts: 650.12, limitW: 700 });
  assert.equal(parseSample('timestamp, clocks.current.sm [MHz], power.draw [W], power.limit [W]'), null);
  assert.equal(parseSample('2026/11/29 04:20:01.123, [N/A], 650.12, 700.00'), null);
  assert.equal(parseSample(''), null);
});

test('a phase\'s clocks: the mean of the samples inside it, null when none fell there', () => {
  const at = (ms: number, mhz: number, w: number): string => {
    const d = new Date(2026, 10, 29, 4, 0, 0, ms);
    const p = (n: number, k = 2): string => String(n).padStart(k, '0');
    return `${d.getFullYear()}/${p(d.getMonth() + 1)}/${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}, ${mhz}, ${w}, 700.00`;
  };
  const samples = [at(0, 1980, 120), at(50, 1500, 640), at(100, 1400, 680), at(150, 1980, 130)].map((l) => parseSample(l)!);
  const t0 = new Date(2026, 10, 29, 4, 0, 0, 40).getTime();
  const c = phaseClocks(samples, t0, t0 + 70);
  assert.deepEqual(c, { samples: 2, smMHz: 1450, watts: 660, limitW: 700 });
  assert.match(describeClocks(c), /SM clock 1450 MHz, 660 W of a 700 W limit \(2 samples\)/);
  assert.equal(phaseClocks(samples, t0 + 1000, t0 + 2000), null);
  assert.equal(describeClocks(null), 'no clock samples');
});
