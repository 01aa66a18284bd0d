import { packGptq } from '../formats/gptq.js';
import type { TensorSpec } from '../formats/safetensorsWriter.js';
import type { QuantizedLinear } from './types.js';

/**
 * One quantized linear as the four tensors GPTQ-for-LLaMa's QuantLinear saves under
 * `<prefix>.`: qweight I32 [in·bits/32, out], qzeros I32 [groups, out·bits/32] (zero − 1),
 * scales F16 [groups, out], g_idx I32 [in]. No bias: LLaMA's linears have none.
 */
export interface PackedTensor {
  readonly spec: TensorSpec;
  readonly bytes: Uint8Array;
}

export function packLinear(prefix: string, ql: QuantizedLinear): PackedTensor[] {
  const { inFeatures: inF, outFeatures: out, bits, groups } = ql;
  const packed = packGptq({ bits, groupSize: ql.groupSize, q: ql.q, zeros: ql.zeros, scales: ql.scales, inFeatures: inF, outFeatures: out, gIdx: ql.gIdx });
  const bytes = (a: Int32Array | Uint16Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return [
    { spec: { name: `${prefix}.g_idx`, dtype: 'I32', shape: [inF] }, bytes: bytes(packed.gIdx) },
    { spec: { name: `${prefix}.qweight`, dtype: 'I32', shape: [(inF * bits) / 32, out] }, bytes: bytes(packed.qweight) },
    { spec: { name: `${prefix}.qzeros`, dtype: 'I32', shape: [groups, (out * bits) / 32] }, bytes: bytes(packed.qzeros) },
    { spec: { name: `${prefix}.scales`, dtype: 'F16', shape: [groups, out] }, bytes: bytes(packed.scales) },
  ];
}
