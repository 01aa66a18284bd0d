import { crc32, deflateRawSync } from 'node:zlib';

/**
 * Test-only writers for PyTorch checkpoints: a protocol-2 pickler that emits the same opcode
 * sequence torch.save does for a state dict (OrderedDict → _rebuild_tensor_v2 with persistent
 * storage ids, memoized globals, a BUILD of `_metadata`), and a zip writer (stored entries,
 * optional zip64 records and a deflated pickle). Kept tiny: just what the tests need.
 */
export type StorageName = 'HalfStorage' | 'BFloat16Storage' | 'FloatStorage' | 'LongStorage';

export interface StorageSpec {
  readonly key: string;
  readonly type: StorageName;
  readonly bytes: Buffer;
  readonly numel: number;
}

export interface TensorSpec {
  readonly name: string;
  readonly storage: StorageSpec;
  readonly offset: number;
  readonly shape: readonly number[];
  readonly stride: readonly number[];
  /** saved as nn.Parameter (torch._utils._rebuild_parameter) */
  readonly parameter?: boolean;
}

export class PickleWriter {
  private readonly out: number[] = [];
  private readonly memoOf = new Map<string, number>();
  private memoNext = 0;

  op(...bytes: number[]): this {
    this.out.push(...bytes);
    return this;
  }

  raw(buf: Uint8Array): this {
    for (const b of buf) this.out.push(b);
    return this;
  }

  u32(n: number): this {
    return this.op(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  }

  /** BININT1 / BININT2 / BININT / LONG1 like pickle's save_long */
  int(n: number): this {
    if (n >= 0 && n < 256) return this.op(0x4b, n);
    if (n >= 0 && n < 65536) return this.op(0x4d, n & 0xff, n >>> 8);
    if (n >= -(2 ** 31) && n < 2 ** 31) return this.op(0x4a).u32(n >>> 0);
    const bytes: number[] = [];
    let v = BigInt(n);
    for (let i = 0; i < 8; i++) { bytes.push(Number(v & 0xffn)); v >>= 8n; }
    return this.op(0x8a, 8, ...bytes);
  }

  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    return this.op(0x58).u32(b.length).raw(b);
  }

  put(): this {
    const i = this.memoNext++;
    return i < 256 ? this.op(0x71, i) : this.op(0x72).u32(i);
  }

  /** GLOBAL, memoized the first time and fetched with BINGET after, as pickle does. */
  global(module: string, name: string): this {
    const key = `${module}\n${name}`;
    const known = this.memoOf.get(key);
    if (known !== undefined) return this.op(0x68, known);
    this.op(0x63).raw(Buffer.from(`${module}\n${name}\n`, 'latin1'));
    this.memoOf.set(key, this.memoNext);
    return this.put();
  }

  tuple(items: readonly number[]): this {
    if (items.length === 0) return this.op(0x29);
    if (items.length <= 3) {
      for (const i of items) this.int(i);
      return this.op(0x84 + items.length);
    }
    this.op(0x28);
    for (const i of items) this.int(i);
    return this.op(0x74);
  }

  bytes(): Buffer {
    return Buffer.from(this.out);
  }
}

/** data.pkl of `torch.save(model.state_dict())`; `legacy` adds the sixth pid field (no view). */
export function stateDictPickle(tensors: readonly TensorSpec[], legacy = false): Buffer {
  const w = new PickleWriter();
  w.op(0x80, 2);
  w.global('collections', 'OrderedDict').op(0x29, 0x52).put();
  w.op(0x28); // MARK for SETITEMS
  for (const t of tensors) {
    w.str(t.name).put();
    if (t.parameter) w.global('torch._utils', '_rebuild_parameter').op(0x28);
    w.global('torch._utils', '_rebuild_tensor_v2');
    w.op(0x28); // MARK: args of _rebuild_tensor_v2
    // torch's persistent_id returns a fresh tuple per tensor, so shared storages repeat it
    w.op(0x28).str('storage').global('torch', t.storage.type).str(t.storage.key).str('cpu').int(t.storage.numel);
    if (legacy) w.op(0x4e);
    w.op(0x74).put();
    w.op(0x51); // BINPERSID
    w.int(t.offset).tuple(t.shape).put().tuple(t.stride).put();
    w.op(0x89); // requires_grad False
    w.global('collections', 'OrderedDict').op(0x29, 0x52).put(); // backward_hooks
    w.op(0x74).put().op(0x52).put(); // TUPLE, REDUCE
    if (t.parameter) w.op(0x89).global('collections', 'OrderedDict').op(0x29, 0x52).put().op(0x74).put().op(0x52).put();
  }
  w.op(0x75); // SETITEMS
  // state = {'_metadata': OrderedDict([('', {'version': 1})])}, then BUILD
  w.op(0x7d).put().str('_metadata').put().global('collections', 'OrderedDict').op(0x29, 0x52).put();
  w.str('').op(0x7d).put().str('version').int(1).op(0x73, 0x73); // SETITEM x2
  w.op(0x73, 0x62, 0x2e); // SETITEM, BUILD, STOP
  return w.bytes();
}

export interface ZipFile {
  readonly name: string;
  readonly data: Buffer;
  readonly deflate?: boolean;
}

/** A zip like PyTorch's writer makes: local headers, data, central directory, end record. */
export function buildZip(files: readonly ZipFile[], options: { zip64?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const f of files) {
    const name = Buffer.from(f.name, 'utf8');
    const packed = f.deflate ? deflateRawSync(f.data) : f.data;
    const crc = crc32(f.data) >>> 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(f.deflate ? 20 : 10, 4);
    local.writeUInt16LE(f.deflate ? 8 : 0, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(packed.length, 18);
    local.writeUInt32LE(f.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    parts.push(local, name, packed);
    const extra = options.zip64 ? Buffer.alloc(4 + 24) : Buffer.alloc(0);
    if (options.zip64) {
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(24, 2);
      extra.writeBigUInt64LE(BigInt(f.data.length), 4);
      extra.writeBigUInt64LE(BigInt(packed.length), 12);
      extra.writeBigUInt64LE(BigInt(offset), 20);
    }
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(45, 4);
    c.writeUInt16LE(45, 6);
    c.writeUInt16LE(f.deflate ? 8 : 0, 10);
    c.writeUInt32LE(crc, 16);
    c.writeUInt32LE(options.zip64 ? 0xffffffff : packed.length, 20);
    c.writeUInt32LE(options.zip64 ? 0xffffffff : f.data.length, 24);
    c.writeUInt16LE(name.length, 28);
    c.writeUInt16LE(extra.length, 30);
    c.writeUInt32LE(options.zip64 ? 0xffffffff : offset, 42);
    central.push(c, name, extra);
    offset += 30 + name.length + packed.length;
  }
  const dir = Buffer.concat(central);
  const tail: Buffer[] = [];
  if (options.zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeBigUInt64LE(BigInt(files.length), 24);
    rec.writeBigUInt64LE(BigInt(files.length), 32);
    rec.writeBigUInt64LE(BigInt(dir.length), 40);
    rec.writeBigUInt64LE(BigInt(offset), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(offset + dir.length), 8);
    loc.writeUInt32LE(1, 16);
    tail.push(rec, loc);
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(options.zip64 ? 0xffff : files.length, 8);
  end.writeUInt16LE(options.zip64 ? 0xffff : files.length, 10);
  end.writeUInt32LE(options.zip64 ? 0xffffffff : dir.length, 12);
  end.writeUInt32LE(options.zip64 ? 0xffffffff : offset, 16);
  return Buffer.concat([...parts, dir, ...tail, end]);
}

/** The whole .bin: archive/data.pkl, archive/data/<key> per storage, archive/version. */
export function torchCheckpoint(tensors: readonly TensorSpec[], options: { zip64?: boolean; deflatePickle?: boolean; pickle?: Buffer } = {}): Buffer {
  const storages = new Map<string, StorageSpec>();
  for (const t of tensors) storages.set(t.storage.key, t.storage);
  return buildZip([
    { name: 'archive/data.pkl', data: options.pickle ?? stateDictPickle(tensors), deflate: options.deflatePickle },
    ...[...storages.values()].map((s) => ({ name: `archive/data/${s.key}`, data: s.bytes })),
    { name: 'archive/version', data: Buffer.from('3\n') },
  ], options);
}

export function f16Bytes(values: readonly number[], toHalf: (v: number) => number): Buffer {
  const b = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => b.writeUInt16LE(toHalf(v), i * 2));
  return b;
}

export function f32Bytes(values: readonly number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
}

export function bf16Bytes(values: readonly number[]): Buffer {
  const b = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => b.writeUInt16LE(f32Bytes([v]).readUInt32LE(0) >>> 16, i * 2));
  return b;
}

/** The pre-1.6 torch.save stream: magic, version, sys info, object, keys, then the storages. */
export function legacyTorchCheckpoint(tensors: readonly TensorSpec[]): Buffer {
  const storages = new Map<string, StorageSpec>();
  for (const t of tensors) storages.set(t.storage.key, t.storage);
  const magic = Buffer.from([0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
  const version = Buffer.from([0x80, 2, 0x4d, 0xe9, 0x03, 0x2e]);
  const sysInfo = new PickleWriter().op(0x80, 2, 0x7d, 0x28).str('protocol_version').int(1001).str('little_endian').op(0x88)
    .str('type_sizes').op(0x7d, 0x28).str('short').int(2).str('int').int(4).str('long').int(4).op(0x75, 0x75, 0x2e).bytes();
  const keys = new PickleWriter().op(0x80, 2, 0x5d, 0x28);
  for (const k of storages.keys()) keys.str(k);
  const blobs: Buffer[] = [];
  for (const s of storages.values()) {
    const n = Buffer.alloc(8);
    n.writeBigInt64LE(BigInt(s.numel));
    blobs.push(n, s.bytes);
  }
  return Buffer.concat([magic, version, sysInfo, stateDictPickle(tensors, true), keys.op(0x65, 0x2e).bytes(), ...blobs]);
}
