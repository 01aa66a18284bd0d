/** Random GPTQ 4-bit g128 layers for GEMV timing (zeros 8, scales ~0.002, optional act-order g_idx). */
import type { GptqLinearHost } from '../src/formats/gptqTypes.js';
import { Xorshift, halfTable } from '../src/synth/random.js';

const rng = new Xorshift(7);
const scales = halfTable(0.001, 0.003);

export function randomQ4(K: number, N: number, actOrder: boolean): GptqLinearHost {
  const G = K / 128;
  const qweight = new Int32Array((K / 8) * N);
  rng.fillWords(qweight);
  const sc = new Uint16Array(G * N);
  rng.fillHalves(sc, scales);
  const gIdx = Int32Array.from({ length: K }, (_, i) => Math.floor(i / 128));
  if (actOrder) {
    for (let i = K - 1; i > 0; i--) {
      const j = (rng.next() >>> 0) % (i + 1);
      const t = gIdx[i]; gIdx[i] = gIdx[j]; gIdx[j] = t;
    }
  }
  return {
    kind: 'gptq', inFeatures: K, outFeatures: N, bits: 4, groupSize: 128, groups: G, actOrder,
    qweight, qzeros: new Int32Array(G * N / 8).fill(0x77777777), scales: sc, gIdx,
  };
}
