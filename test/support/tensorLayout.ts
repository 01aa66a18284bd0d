import assert from 'node:assert/strict';
import { SafetensorsFile } from '../../src/formats/safetensors.js';

/** Two safetensors files hold the same tensor names, each with the same dtype and shape. */
export function assertSameTensorLayout(file: string, reference: string): void {
  const ours = SafetensorsFile.open(file);
  const ref = SafetensorsFile.open(reference);
  try {
    assert.deepEqual(ours.names().sort(), ref.names().sort());
    for (const n of ref.names()) {
      assert.equal(ours.entry(n).dtype, ref.entry(n).dtype, n);
      assert.deepEqual(ours.entry(n).shape, ref.entry(n).shape, n);
    }
  } finally {
    ours.close();
    ref.close();
  }
}
