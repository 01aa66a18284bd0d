/**
 * Backend.gateUp: where a backend fuses gate, up and SwiGLU it returns true and the model runs nothing
 * else for them; where it declines it returns false and the model runs linear, linear, swiglu. The CPU
 * backend has no gateUp, so subclasses stand in: one that does the three ops itself (into its own
 * buffers, as a fused kernel would, never touching the model's gate/up activations), one that declines.
 * Both must give the plain backend's logits on the embedded model, prompt rows and decode rows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Activation, LinearWeight } from '../../src/backends/backend.js';
import { PlainCpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import { LlamaModel } from '../../src/model/llama.js';
import { EMBEDDED_MODEL } from '../support/paths.js';

class FusingCpu extends PlainCpuBackend {
  fused = 0;
  gateUp(out: Activation, x: Activation, gate: LinearWeight, up: LinearWeight, rows: number): boolean {
    const g = this.allocActivation(rows, out.cols), u = this.allocActivation(rows, out.cols);
    this.linear(g, x, gate, rows);
    this.linear(u, x, up, rows);
    this.swiglu(out, g, u, rows);
    this.fused++;
    return true;
  }
}

class DecliningCpu extends PlainCpuBackend {
  asked = 0;
  gateUp(): boolean {
    this.asked++;
    return false;
  }
}

test('gateUp: a fusing backend and a declining one both give the plain backend\'s logits', async () => {
  const prompt = [1, 835, 5618, 29901, 15043, 29991];
  const logits = async (backend: PlainCpuBackend): Promise<Float32Array[]> => {
    const model = await LlamaModel.create(EMBEDDED_MODEL, { backend, contextLength: 32 });
    try {
      const ids = prompt.map((id) => id % model.vocabSize);
      return [await model.forward(ids, 0), await model.forward([ids[1]], ids.length)];
    } finally {
      model.dispose();
    }
  };
  const fusing = new FusingCpu(), declining = new DecliningCpu();
  const want = await logits(new PlainCpuBackend());
  const [fused, declined] = [await logits(fusing), await logits(declining)];
  for (let i = 0; i < want.length; i++) {
    assert.deepEqual(fused[i], want[i], `fused, pass ${i}`);
    assert.deepEqual(declined[i], want[i], `declined, pass ${i}`);
  }
  // one call per layer and pass (prompt, then one decode row)
  assert.ok(fusing.fused > 0 && fusing.fused % 2 === 0, `fused ${fusing.fused} times`);
  assert.equal(declining.asked, fusing.fused);
});
