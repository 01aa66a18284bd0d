/**
 * Streaming safetensors writer: the header (names, dtypes, shapes, offsets) is laid out first from
 * the tensor list, then each tensor's bytes come from a fill callback chunk by chunk, so a 7 GB
 * checkpoint never sits in memory.
 */
import { closeSync, openSync, writeSync } from 'node:fs';

export type WriteDType = 'F16' | 'I32';

export interface TensorSpec {
  readonly name: string;
  readonly dtype: WriteDType;
  readonly shape: readonly number[];
  /** fills `out` (a chunk of the tensor's elements starting at element `offset`) */
  readonly fill: (out: Uint16Array | Int32Array, offset: number) => void;
}

const CHUNK_BYTES = 32 * 2 ** 20;

export function writeSafetensors(file: string, tensors: readonly TensorSpec[], metadata: Record<string, string> = {}): number {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * (t.dtype === 'F16' ? 2 : 4);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // keeps the data 8-byte aligned
  const head = Buffer.alloc(8 + json.length);
  head.writeBigUInt64LE(BigInt(json.length));
  head.write(json, 8, 'utf8');
  const fd = openSync(file, 'w');
  try {
    writeSync(fd, head);
    const chunk = Buffer.alloc(CHUNK_BYTES);
    for (const t of tensors) {
      const width = t.dtype === 'F16' ? 2 : 4;
      const count = t.shape.reduce((a, b) => a * b, 1);
      const per = CHUNK_BYTES / width;
      for (let done = 0; done < count; done += per) {
        const n = Math.min(per, count - done);
        const view = t.dtype === 'F16' ? new Uint16Array(chunk.buffer, chunk.byteOffset, n) : new Int32Array(chunk.buffer, chunk.byteOffset, n);
        t.fill(view, done);
        writeSync(fd, chunk, 0, n * width);
      }
    }
  } finally {
    closeSync(fd);
  }
  return head.length + offset;
}
