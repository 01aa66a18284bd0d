import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ModelLoadError } from '../errors.js';
import { PickleFormatError, PyDict, PyList, PyTuple, unpickle, type PickleHooks } from './torchPickle.js';
import { DTYPE_BYTES, stateDictTensors, torchHooks, TorchStorage } from './torchPickleTensors.js';
import { TorchCheckpoint, type StorageBytes } from './torchZipCheckpoint.js';

/** The pre-1.6 torch.save stream is inconsistent or cut short. */
export class LegacyCheckpointError extends ModelLoadError {}

// torch/serialization.py: the first pickle of a legacy file is this number.
const MAGIC = 0x1950a86a20f9469cfc6cn;
const PROTOCOL_VERSION = 1001;

/** Legacy files start with a pickle (PROTO 2); zip checkpoints with "PK". */
export function isLegacyFormat(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(2);
    return readSync(fd, head, 0, 2, 0) === 2 && head[0] === 0x80 && head[1] === 0x02;
  } finally {
    closeSync(fd);
  }
}

/**
 * The legacy format: five pickles back to back (magic number, protocol version, sys info, the
 * object, the list of storage keys), then each storage as an int64 element count and its raw
 * little-endian bytes, in key-list order. Storage views (the sixth pid field) are refused.
 */
export function openLegacyCheckpoint(file: string): TorchCheckpoint {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    // The pickles are small next to the tensor data: read a growing prefix until they parse.
    for (let want = Math.min(size, 1 << 20); ; want = Math.min(size, want * 4)) {
      const head = Buffer.alloc(want);
      readSync(fd, head, 0, want, 0);
      try {
        return new TorchCheckpoint(...parseLegacy(head, fd, size, file));
      } catch (err) {
        if (!(err instanceof PickleFormatError) || want === size) throw err;
      }
    }
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

const legacyHooks: PickleHooks = {
  ...torchHooks,
  persistentLoad(pid) {
    if (pid instanceof PyTuple && pid.items.length === 6 && pid.items[5] !== null) {
      throw new LegacyCheckpointError('the legacy checkpoint uses storage views, which are not supported; re-save it with a recent PyTorch');
    }
    return torchHooks.persistentLoad(pid);
  },
};

function parseLegacy(head: Buffer, fd: number, size: number, file: string): [StorageBytes, ReturnType<typeof stateDictTensors>] {
  const where = `${file} (legacy torch format)`;
  const magic = unpickle(head, legacyHooks, 0, where);
  if (magic.value !== MAGIC) throw new LegacyCheckpointError(`${file} is neither a zip nor a legacy PyTorch checkpoint (bad magic number)`);
  const version = unpickle(head, legacyHooks, magic.end, where);
  if (version.value !== PROTOCOL_VERSION) throw new LegacyCheckpointError(`${file}: legacy protocol version ${String(version.value)} is not supported`);
  const sysInfo = unpickle(head, legacyHooks, version.end, where);
  if (sysInfo.value instanceof PyDict && sysInfo.value.entries.some(([k, v]) => k === 'little_endian' && v === false)) {
    throw new LegacyCheckpointError(`${file} was saved on a big-endian machine; not supported`);
  }
  const obj = unpickle(head, legacyHooks, sysInfo.end, where);
  const tensors = stateDictTensors(obj.value, file);
  const keys = unpickle(head, legacyHooks, obj.end, where);
  if (!(keys.value instanceof PyList) || !keys.value.items.every((k) => typeof k === 'string')) {
    throw new LegacyCheckpointError(`${file}: the storage key list is malformed`);
  }
  const storages = new Map<string, TorchStorage>();
  for (const t of tensors.values()) storages.set(t.storage.key, t.storage);
  const spans = new Map<string, { start: number; size: number }>();
  let pos = keys.end;
  const count = Buffer.alloc(8);
  for (const key of keys.value.items as string[]) {
    const s = storages.get(key);
    if (!s) throw new LegacyCheckpointError(`${file}: storage ${key} is listed but no tensor uses it`);
    if (pos + 8 > size || readSync(fd, count, 0, 8, pos) !== 8) throw truncated(file, pos + 8, size);
    const numel = count.readBigInt64LE(0);
    if (numel !== BigInt(s.numel)) throw new LegacyCheckpointError(`${file}: storage ${key} holds ${numel} elements, the pickle says ${s.numel}; the file is corrupt`);
    const bytes = s.numel * DTYPE_BYTES[s.dtype];
    if (pos + 8 + bytes > size) throw truncated(file, pos + 8 + bytes, size);
    spans.set(key, { start: pos + 8, size: bytes });
    pos += 8 + bytes;
  }
  const storage: StorageBytes = {
    path: file,
    size: (key) => spans.get(key)?.size,
    read(key, start, length) {
      const span = spans.get(key);
      if (!span || start + length > span.size) throw new LegacyCheckpointError(`${file}: read outside storage ${key}`);
      const buf = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const n = readSync(fd, buf, done, length - done, span.start + start + done);
        if (n === 0) throw truncated(file, span.start + start + length, size);
        done += n;
      }
      return buf;
    },
    close: () => closeSync(fd),
  };
  return [storage, tensors];
}

function truncated(file: string, need: number, size: number): LegacyCheckpointError {
  return new LegacyCheckpointError(`${file} ends at byte ${size} but its storages need ${need}; the file is truncated, download it again`);
}
