import { ModelLoadError } from '../errors.js';
import { PickleFormatError, PyDict, PyExtension, PyGlobal, PyList, PyTuple, UnsafePickleError, type PickleHooks, type PyValue } from './torchPickle.js';

/**
 * What a PyTorch state-dict pickle may reference, and how those references become plain
 * descriptions of tensors. The allow-list is exactly what torch.save emits for a state dict of
 * ordinary tensors or parameters; anything else is refused by name.
 */

/** Safetensors dtype names, used for tensors read from .bin files too. */
export type TorchDtype = 'F16' | 'BF16' | 'F32' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const STORAGE_DTYPES: Readonly<Record<string, TorchDtype>> = {
  HalfStorage: 'F16', BFloat16Storage: 'BF16', FloatStorage: 'F32', DoubleStorage: 'F64',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};

export const DTYPE_BYTES: Readonly<Record<TorchDtype, number>> = {
  F16: 2, BF16: 2, F32: 4, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

const REBUILD_TENSOR = new Set(['_rebuild_tensor_v2', '_rebuild_tensor']);
const REBUILD_PARAMETER = new Set(['_rebuild_parameter', '_rebuild_parameter_with_state']);

/** A tensor storage's bytes (`data/<key>` in the zip; a numbered blob in the legacy format). */
export class TorchStorage extends PyExtension {
  constructor(readonly dtype: TorchDtype, readonly key: string, readonly numel: number) {
    super();
  }
}

/** A view into a storage: where the tensor's elements are. Checked by the reader, not here. */
export class TorchTensor extends PyExtension {
  constructor(readonly storage: TorchStorage, readonly offset: number, readonly shape: readonly number[], readonly stride: readonly number[]) {
    super();
  }
}

/** A state dict names a tensor it cannot describe (bad shape, stride or storage reference). */
export class TorchTensorError extends ModelLoadError {}

class StorageType extends PyGlobal {
  constructor(name: string, readonly dtype: TorchDtype) {
    super('torch', name);
  }
}

export const torchHooks: PickleHooks = {
  findClass(module, name) {
    if (module === 'collections' && name === 'OrderedDict') return new PyGlobal(module, name);
    if (module === 'torch._utils' && (REBUILD_TENSOR.has(name) || REBUILD_PARAMETER.has(name))) return new PyGlobal(module, name);
    if (module === 'torch' && name in STORAGE_DTYPES) return new StorageType(name, STORAGE_DTYPES[name] as TorchDtype);
    throw new UnsafePickleError(`the checkpoint references the Python global ${module}.${name}, which a state dict of tensors never needs; refusing to load it (it could run code). Convert it with PyTorch you trust, or get a .safetensors copy`);
  },

  call(callable, args) {
    const g = callable as PyGlobal;
    if (g.module === 'collections') {
      const d = new PyDict();
      const items = args[0];
      if (items instanceof PyTuple || items instanceof PyList) {
        for (const pair of items.items) {
          if (!(pair instanceof PyTuple) || pair.items.length !== 2) throw new PickleFormatError('OrderedDict built from something that is not (key, value) pairs');
          d.entries.push([pair.items[0] as PyValue, pair.items[1] as PyValue]);
        }
      }
      return d;
    }
    if (REBUILD_TENSOR.has(g.name)) return rebuildTensor(args);
    if (REBUILD_PARAMETER.has(g.name)) {
      if (!(args[0] instanceof TorchTensor)) throw new PickleFormatError(`${g.qualifiedName} of something that is not a tensor`);
      return args[0];
    }
    throw new UnsafePickleError(`calling ${g.qualifiedName} is not allowed in a checkpoint`);
  },

  persistentLoad(pid) {
    // ('storage', torch.<Type>Storage, key, location, numel [, view metadata in the legacy format])
    const items = pid instanceof PyTuple ? pid.items : [];
    const [tag, type, key, , numel] = items;
    if (tag !== 'storage' || !(type instanceof StorageType) || typeof key !== 'string' || typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) {
      throw new PickleFormatError('a persistent id that is not a torch storage reference');
    }
    return new TorchStorage(type.dtype, key, numel);
  },
};

function rebuildTensor(args: readonly PyValue[]): TorchTensor {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof TorchStorage)) throw new PickleFormatError('_rebuild_tensor_v2 without a storage');
  const shape = intTuple(size, 'size');
  const strides = intTuple(stride, 'stride');
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw new TorchTensorError(`tensor storage offset ${String(offset)} is not a non-negative integer`);
  if (shape.length !== strides.length) throw new TorchTensorError(`tensor has ${shape.length} sizes but ${strides.length} strides`);
  return new TorchTensor(storage, offset, shape, strides);
}

function intTuple(v: PyValue | undefined, what: string): number[] {
  if (!(v instanceof PyTuple)) throw new TorchTensorError(`tensor ${what} is not a tuple`);
  return v.items.map((x) => {
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) throw new TorchTensorError(`tensor ${what} holds ${String(x)}, not a non-negative integer`);
    return x;
  });
}

/**
 * The name → tensor map of an unpickled checkpoint: the top-level dict, or the usual wrappers
 * (`{"state_dict": ...}`, `{"model": ...}`). Non-tensor entries (step counters) are skipped.
 */
export function stateDictTensors(root: PyValue, where: string): Map<string, TorchTensor> {
  let dict = root;
  if (dict instanceof PyDict && !dict.entries.some(([, v]) => v instanceof TorchTensor)) {
    for (const [k, v] of dict.entries) {
      if ((k === 'state_dict' || k === 'model' || k === 'module') && v instanceof PyDict) dict = v;
    }
  }
  if (!(dict instanceof PyDict)) throw new PickleFormatError(`${where}: the pickle holds no dict of tensors; it is not a state-dict checkpoint`);
  const out = new Map<string, TorchTensor>();
  for (const [k, v] of dict.entries) {
    if (typeof k === 'string' && v instanceof TorchTensor) out.set(k, v);
  }
  return out;
}
