/**
 * Typed bindings of the CUDA driver API (libcuda.so.1) through koffi. Only what the backend needs:
 * init and primary context, memory, modules, launches, streams, events and stream capture into
 * graphs. Every call is checked and fails with a `CudaError` naming the CUresult.
 *
 * koffi is loaded lazily through createRequire so that importing this file never fails on a
 * machine without the native module; `cudaAvailable()` turns every such failure into a reason.
 */
import { createRequire } from 'node:module';
import { QllamaError } from '../../errors.js';
import { cuResultName } from './cuResult.js';

/** A device address (CUdeviceptr). */
export type DevicePtr = bigint & { readonly __brand: 'DevicePtr' };
/** An opaque driver handle (context, module, function, stream, event, graph, graph exec). */
export type Handle<K extends string> = bigint & { readonly __handle: K };
export type CuContext = Handle<'context'>;
export type CuModule = Handle<'module'>;
export type CuFunction = Handle<'function'>;
export type CuStream = Handle<'stream'>;
export type CuEvent = Handle<'event'>;
export type CuGraph = Handle<'graph'>;
export type CuGraphExec = Handle<'graphExec'>;

/** A host buffer the driver may read or write (typed arrays are passed by pointer, not copied). */
export type HostBuffer = ArrayBufferView;

/** A failed CUDA driver call; `code` is the CUresult, `result` its name. */
export class CudaError extends QllamaError {
  constructor(readonly call: string, readonly code: number, detail = '') {
    super(`${call} failed: ${cuResultName(code)} (${code})${detail ? `: ${detail}` : ''}`);
  }
  get result(): string {
    return cuResultName(this.code);
  }
}

/** cuMemAlloc asked for more than the card has free. */
export class CudaOutOfMemoryError extends CudaError {}

type Fn = (...args: unknown[]) => unknown;
interface KoffiLib { func(signature: string): Fn }
interface Koffi {
  load(path: string): KoffiLib;
  alloc(type: string, length: number): unknown;
  array(type: string, length: number): unknown;
  encode(ref: unknown, type: unknown, value: number[]): void;
  address(ref: unknown): bigint;
  decode(ref: unknown, offset: number, type: string, length: number): Uint8Array;
}

/** CUlaunchAttribute {id, pad, value[64 bytes]}: programmatic stream serialization, thread-block cluster shape */
const CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6;
const CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION = 4;
const LAUNCH_ATTR_WORDS = 18;
/** cuModuleGetGlobal: the module has no variable of that name */
const CUDA_ERROR_NOT_FOUND = 500;
/** CUlaunchConfig: 7 u32 (grid, block, shared bytes), pad, stream, attrs pointer, numAttrs, pad */
const LAUNCH_CONFIG_BYTES = 56;

const SIGNATURES = {
  cuInit: 'int cuInit(unsigned int flags)',
  cuDeviceGetCount: 'int cuDeviceGetCount(_Out_ int *n)',
  cuDeviceGet: 'int cuDeviceGet(_Out_ int *dev, int ordinal)',
  cuDeviceGetName: 'int cuDeviceGetName(_Out_ uint8_t *name, int len, int dev)',
  cuDeviceGetAttribute: 'int cuDeviceGetAttribute(_Out_ int *v, int attrib, int dev)',
  cuDevicePrimaryCtxRetain: 'int cuDevicePrimaryCtxRetain(_Out_ void **ctx, int dev)',
  cuDevicePrimaryCtxRelease: 'int cuDevicePrimaryCtxRelease_v2(int dev)',
  cuCtxSetCurrent: 'int cuCtxSetCurrent(void *ctx)',
  cuMemAlloc: 'int cuMemAlloc_v2(_Out_ uint64_t *dptr, size_t bytes)',
  cuMemFree: 'int cuMemFree_v2(uint64_t dptr)',
  cuMemGetInfo: 'int cuMemGetInfo_v2(_Out_ size_t *free, _Out_ size_t *total)',
  cuMemcpyHtoDAsync: 'int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t bytes, void *stream)',
  cuMemcpyDtoHAsync: 'int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t bytes, void *stream)',
  cuMemcpyDtoDAsync: 'int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void *stream)',
  cuMemsetD32Async: 'int cuMemsetD32Async(uint64_t dst, unsigned int value, size_t n, void *stream)',
  cuModuleLoadData: 'int cuModuleLoadData(_Out_ void **mod, const void *image)',
  cuModuleUnload: 'int cuModuleUnload(void *mod)',
  cuModuleGetFunction: 'int cuModuleGetFunction(_Out_ void **fn, void *mod, const char *name)',
  cuModuleGetGlobal: 'int cuModuleGetGlobal_v2(_Out_ uint64_t *dptr, _Out_ size_t *bytes, void *mod, const char *name)',
  cuFuncSetAttribute: 'int cuFuncSetAttribute(void *fn, int attrib, int value)',
  cuLaunchKernel: 'int cuLaunchKernel(void *f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem, void *stream, void **params, void **extra)',
  cuStreamCreate: 'int cuStreamCreate(_Out_ void **s, unsigned int flags)',
  cuStreamDestroy: 'int cuStreamDestroy_v2(void *s)',
  cuStreamSynchronize: 'int cuStreamSynchronize(void *s)',
  cuStreamBeginCapture: 'int cuStreamBeginCapture_v2(void *s, int mode)',
  cuStreamEndCapture: 'int cuStreamEndCapture(void *s, _Out_ void **graph)',
  cuGraphInstantiate: 'int cuGraphInstantiateWithFlags(_Out_ void **exec, void *graph, unsigned long long flags)',
  cuGraphLaunch: 'int cuGraphLaunch(void *exec, void *stream)',
  cuGraphDestroy: 'int cuGraphDestroy(void *graph)',
  cuGraphExecDestroy: 'int cuGraphExecDestroy(void *exec)',
  cuEventCreate: 'int cuEventCreate(_Out_ void **ev, unsigned int flags)',
  cuEventRecord: 'int cuEventRecord(void *ev, void *stream)',
  cuEventSynchronize: 'int cuEventSynchronize(void *ev)',
  cuEventElapsedTime: 'int cuEventElapsedTime(_Out_ float *ms, void *start, void *end)',
  cuEventDestroy: 'int cuEventDestroy_v2(void *ev)',
} as const;
type Name = keyof typeof SIGNATURES;

/** Device attributes the backend reads (CUdevice_attribute values). */
export const enum DeviceAttribute {
  MultiprocessorCount = 16,
  ComputeCapabilityMajor = 75,
  ComputeCapabilityMinor = 76,
  MaxSharedMemoryPerBlockOptin = 97,
}

/** sizeof(CUtensorMap): an opaque TMA descriptor, 64-byte aligned where the driver writes it */
export const TENSOR_MAP_BYTES = 128;
/** A 2-D tiled TMA descriptor (cuTensorMapEncodeTiled), always fp16, no interleave, L2 promotion 256 B, zero fill. */
export interface TensorMap2d {
  /** global address, 16-byte aligned */
  readonly base: DevicePtr;
  /** elements along the contiguous dimension, and rows */
  readonly inner: number;
  readonly outer: number;
  /** bytes from one row to the next (a multiple of 16) */
  readonly rowBytes: number;
  /** the box (shared-memory tile) in elements: its inner bytes ≤ the swizzle span (a multiple of 16 without one) */
  readonly boxInner: number;
  readonly boxOuter: number;
  /** CUtensorMapSwizzle */
  readonly swizzle: TensorMapSwizzle;
  /** element type (default fp16) */
  readonly dtype?: TensorMapDtype;
}
export const enum TensorMapSwizzle { None = 0, B32 = 1, B64 = 2, B128 = 3 }
/** CUtensorMapDataType values the kernels use */
export const enum TensorMapDtype { U32 = 2, F16 = 6 }
const CU_TENSOR_MAP_INTERLEAVE_NONE = 0;
const CU_TENSOR_MAP_L2_PROMOTION_L2_256B = 3;
const CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE = 0;

/** CUfunction_attribute: raise a kernel's dynamic shared memory limit above 48 KiB. */
export const FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
const CU_STREAM_NON_BLOCKING = 1;
const CU_STREAM_CAPTURE_MODE_RELAXED = 2;
const CUDA_ERROR_OUT_OF_MEMORY = 2;

let cached: Driver | undefined;
let loadFailure: string | undefined;

/** The driver bindings, or a reason why they cannot be had (no koffi, no libcuda). */
export function loadDriver(): Driver | string {
  if (cached) return cached;
  if (loadFailure) return loadFailure;
  let koffi: Koffi;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (e) {
    return (loadFailure = `the koffi native module could not be loaded (${(e as Error).message.split('\n')[0]})`);
  }
  let lib: KoffiLib;
  try {
    lib = koffi.load('libcuda.so.1');
  } catch {
    return (loadFailure = 'no NVIDIA driver: libcuda.so.1 was not found (install the NVIDIA driver, or use --backend cpu)');
  }
  const fns = {} as Record<Name, Fn>;
  for (const name of Object.keys(SIGNATURES) as Name[]) fns[name] = lib.func(SIGNATURES[name]);
  // cuLaunchKernelEx (CUDA >= 12) with its attributes in memory that lives as long as the process: one
  // programmatic-serialization attribute, and two slots that cluster launches rewrite; without it, launches
  // that ask for PDL fall back to cuLaunchKernel
  let launchEx: LaunchEx | null;
  try {
    const fn = lib.func('int cuLaunchKernelEx(const void *config, void *f, void **params, void **extra)');
    const block = koffi.alloc('int32_t', LAUNCH_ATTR_WORDS);
    const words = new Array<number>(LAUNCH_ATTR_WORDS).fill(0);
    words[0] = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    words[2] = 1; // value.programmaticStreamSerializationAllowed
    koffi.encode(block, koffi.array('int32_t', LAUNCH_ATTR_WORDS), words);
    let maxClusters: Fn | null = null;
    try {
      maxClusters = lib.func('int cuOccupancyMaxActiveClusters(_Out_ int *n, void *f, const void *config)');
    } catch {
      maxClusters = null;
    }
    const pair = koffi.alloc('int32_t', 2 * LAUNCH_ATTR_WORDS);
    const pairType = koffi.array('int32_t', 2 * LAUNCH_ATTR_WORDS);
    launchEx = {
      fn, attrs: koffi.address(block), maxClusters,
      clusterAttrs: (pdl, c) => {
        const w = new Array<number>(2 * LAUNCH_ATTR_WORDS).fill(0);
        w[0] = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
        w[2] = c.x;
        w[3] = c.y ?? 1;
        w[4] = c.z ?? 1;
        if (pdl) {
          w[LAUNCH_ATTR_WORDS] = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
          w[LAUNCH_ATTR_WORDS + 2] = 1;
        }
        koffi.encode(pair, pairType, w);
        return { attrs: koffi.address(pair), count: pdl ? 2 : 1 };
      },
    };
  } catch {
    launchEx = null;
  }
  // cuTensorMapEncodeTiled (CUDA >= 12, a host-only call) writing into 64-byte aligned memory that lives as
  // long as the process; without it the Hopper GEMM is not used
  let tensorMap: TensorMapEncoder | null;
  try {
    const fn = lib.func('int cuTensorMapEncodeTiled(uint64_t map, int dataType, unsigned int rank, uint64_t base, ' +
      'const uint64_t *dims, const uint64_t *strides, const uint32_t *box, const uint32_t *elementStrides, ' +
      'int interleave, int swizzle, int l2Promotion, int oobFill)');
    const block = koffi.alloc('uint8_t', TENSOR_MAP_BYTES + 64);
    const addr = koffi.address(block);
    const offset = Number((64n - (addr % 64n)) % 64n);
    tensorMap = { fn, addr: addr + BigInt(offset), read: () => Buffer.from(koffi.decode(block, offset, 'uint8_t', TENSOR_MAP_BYTES)) };
  } catch {
    tensorMap = null;
  }
  cached = new Driver(fns, launchEx, tensorMap);
  return cached;
}

/** Probe for --backend auto: a driver that initializes and at least one device. Never throws. */
export function cudaAvailable(): { ok: true } | { ok: false; reason: string } {
  const d = loadDriver();
  if (typeof d === 'string') return { ok: false, reason: d };
  try {
    d.init();
    const n = d.deviceCount();
    if (n < 1) return { ok: false, reason: 'the NVIDIA driver reports no CUDA device' };
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: `the CUDA driver did not initialize: ${(e as Error).message}` };
  }
}

/** cuLaunchKernelEx and its attribute blocks (loadDriver) */
interface LaunchEx {
  readonly fn: Fn;
  /** the programmatic-serialization attribute */
  readonly attrs: bigint;
  /** cuOccupancyMaxActiveClusters, where the driver has it */
  readonly maxClusters: Fn | null;
  /** a cluster-shape attribute (and programmatic serialization when pdl) written for one launch */
  readonly clusterAttrs: (pdl: boolean, cluster: Dim3) => { readonly attrs: bigint; readonly count: number };
}

interface TensorMapEncoder {
  readonly fn: Fn;
  /** the aligned 128 bytes the driver writes */
  readonly addr: bigint;
  /** a copy of them */
  readonly read: () => Buffer;
}

/** Kernel launch geometry. */
export interface Dim3 { readonly x: number; readonly y?: number; readonly z?: number }

export class Driver {
  constructor(private readonly f: Record<Name, Fn>, private readonly launchEx: LaunchEx | null = null,
    private readonly tensorMap: TensorMapEncoder | null = null) {}

  private readonly launchConfig = Buffer.alloc(LAUNCH_CONFIG_BYTES);

  /** Whether launchPdl can use cuLaunchKernelEx. */
  hasLaunchEx(): boolean { return this.launchEx !== null; }

  private call(name: Name, ...args: unknown[]): void {
    const rc = this.f[name](...args) as number;
    if (rc !== 0) throw new CudaError(name, rc);
  }

  private out<T>(name: Name, make: (slot: unknown[]) => unknown[]): T {
    const slot: unknown[] = [null];
    this.call(name, ...make(slot));
    return slot[0] as T;
  }

  init(): void { this.call('cuInit', 0); }
  deviceCount(): number { return this.out<number>('cuDeviceGetCount', (s) => [s]); }
  device(ordinal: number): number { return this.out<number>('cuDeviceGet', (s) => [s, ordinal]); }

  deviceName(dev: number): string {
    const buf = new Uint8Array(256);
    this.call('cuDeviceGetName', buf, buf.length, dev);
    const end = buf.indexOf(0);
    return Buffer.from(buf.subarray(0, end < 0 ? buf.length : end)).toString('utf8');
  }

  attribute(attr: DeviceAttribute, dev: number): number {
    return this.out<number>('cuDeviceGetAttribute', (s) => [s, attr, dev]);
  }

  retainPrimaryContext(dev: number): CuContext {
    return BigInt(this.out<bigint>('cuDevicePrimaryCtxRetain', (s) => [s, dev])) as CuContext;
  }
  releasePrimaryContext(dev: number): void { this.call('cuDevicePrimaryCtxRelease', dev); }
  setCurrent(ctx: CuContext): void { this.call('cuCtxSetCurrent', ctx); }

  memInfo(): { free: number; total: number } {
    const free: unknown[] = [0];
    const total: unknown[] = [0];
    this.call('cuMemGetInfo', free, total);
    return { free: Number(free[0]), total: Number(total[0]) };
  }

  /** Allocates `bytes` of device memory; out of memory says how much was asked and is free. */
  memAlloc(bytes: number): DevicePtr {
    const slot: unknown[] = [0n];
    const rc = this.f.cuMemAlloc(slot, Math.max(bytes, 1)) as number;
    if (rc === CUDA_ERROR_OUT_OF_MEMORY) {
      let detail = `asked for ${mib(bytes)}`;
      try {
        const { free, total } = this.memInfo();
        detail += `, ${mib(free)} free of ${mib(total)}: use a smaller model or --ctx, or free the GPU`;
      } catch { /* the report is best effort */ }
      throw new CudaOutOfMemoryError('cuMemAlloc', rc, detail);
    }
    if (rc !== 0) throw new CudaError('cuMemAlloc', rc, `asked for ${mib(bytes)}`);
    return BigInt(slot[0] as bigint | number) as DevicePtr;
  }
  memFree(ptr: DevicePtr): void { this.call('cuMemFree', ptr); }

  copyHtoD(dst: DevicePtr, src: HostBuffer, bytes: number, stream: CuStream): void {
    this.call('cuMemcpyHtoDAsync', dst, src, bytes, stream);
  }
  copyDtoH(dst: HostBuffer, src: DevicePtr, bytes: number, stream: CuStream): void {
    this.call('cuMemcpyDtoHAsync', dst, src, bytes, stream);
  }
  copyDtoD(dst: DevicePtr, src: DevicePtr, bytes: number, stream: CuStream): void {
    this.call('cuMemcpyDtoDAsync', dst, src, bytes, stream);
  }
  memsetD32(dst: DevicePtr, value: number, count: number, stream: CuStream): void {
    this.call('cuMemsetD32Async', dst, value >>> 0, count, stream);
  }

  loadModule(image: Uint8Array): CuModule {
    return BigInt(this.out<bigint>('cuModuleLoadData', (s) => [s, image])) as CuModule;
  }
  unloadModule(mod: CuModule): void { this.call('cuModuleUnload', mod); }
  getFunction(mod: CuModule, name: string): CuFunction {
    const slot: unknown[] = [null];
    const rc = this.f.cuModuleGetFunction(slot, mod, name) as number;
    if (rc !== 0) throw new CudaError('cuModuleGetFunction', rc, `kernel "${name}" (rebuild with npm run build:cuda)`);
    return BigInt(slot[0] as bigint) as CuFunction;
  }
  /** A __device__ variable of the module: its address and size, or null where the module has none of that name. */
  getGlobal(mod: CuModule, name: string): { readonly ptr: DevicePtr; readonly bytes: number } | null {
    const dptr: unknown[] = [0n], bytes: unknown[] = [0];
    const rc = this.f.cuModuleGetGlobal(dptr, bytes, mod, name) as number;
    if (rc === CUDA_ERROR_NOT_FOUND) return null;
    if (rc !== 0) throw new CudaError('cuModuleGetGlobal', rc, `variable "${name}"`);
    return { ptr: BigInt(dptr[0] as bigint) as DevicePtr, bytes: Number(bytes[0]) };
  }
  setFunctionAttribute(fn: CuFunction, attr: number, value: number): void {
    this.call('cuFuncSetAttribute', fn, attr, value);
  }

  /** `params` holds one buffer per kernel argument, each the argument's bytes. */
  launch(fn: CuFunction, grid: Dim3, block: Dim3, sharedBytes: number, stream: CuStream, params: Buffer[], name = 'kernel'): void {
    const rc = this.f.cuLaunchKernel(fn, grid.x, grid.y ?? 1, grid.z ?? 1, block.x, block.y ?? 1, block.z ?? 1,
      sharedBytes, stream, params, null) as number;
    if (rc !== 0) throw new CudaError('cuLaunchKernel', rc, `${name} grid ${grid.x}x${grid.y ?? 1}x${grid.z ?? 1} block ${block.x}x${block.y ?? 1}`);
  }

  /**
   * A launch with programmatic stream serialization: the kernel may start before the previous one in
   * the stream has finished, and must call griddepcontrol.wait before reading that kernel's output.
   */
  launchPdl(fn: CuFunction, grid: Dim3, block: Dim3, sharedBytes: number, stream: CuStream, params: Buffer[], name = 'kernel'): void {
    if (!this.launchEx) {
      this.launch(fn, grid, block, sharedBytes, stream, params, name);
      return;
    }
    this.launchWith(this.launchEx, this.launchEx.attrs, 1, fn, grid, block, sharedBytes, stream, params,
      `${name} grid ${grid.x}x${grid.y ?? 1}x${grid.z ?? 1} block ${block.x}x${block.y ?? 1} (programmatic dependent launch; QLLAMA_CUDA_PDL=0 turns it off)`);
  }

  /**
   * A launch of thread-block clusters of shape `cluster` (sm_90; the grid a multiple of it), with programmatic
   * stream serialization when `pdl`. Needs cuLaunchKernelEx (hasLaunchEx).
   */
  launchCluster(fn: CuFunction, grid: Dim3, block: Dim3, cluster: Dim3, pdl: boolean, sharedBytes: number, stream: CuStream, params: Buffer[], name = 'kernel'): void {
    if (!this.launchEx) throw new CudaError('cuLaunchKernelEx', 500, `${name}: cluster launches need CUDA >= 12`);
    const a = this.launchEx.clusterAttrs(pdl, cluster);
    this.launchWith(this.launchEx, a.attrs, a.count, fn, grid, block, sharedBytes, stream, params,
      `${name} grid ${grid.x}x${grid.y ?? 1}x${grid.z ?? 1} block ${block.x}x${block.y ?? 1} cluster ${cluster.x}x${cluster.y ?? 1} (QLLAMA_CUDA_CLUSTER=0 turns cluster launches off)`);
  }

  /**
   * How many clusters of shape `cluster` of `fn` (blocks of `block` threads with `sharedBytes` of dynamic shared
   * memory) the device can run at once (cuOccupancyMaxActiveClusters); null where the driver lacks the call.
   * 0 means such a launch would fail (e.g. a partitioned GPU whose SMs cannot hold the cluster).
   */
  maxActiveClusters(fn: CuFunction, block: Dim3, cluster: Dim3, sharedBytes: number): number | null {
    const ex = this.launchEx;
    if (!ex?.maxClusters) return null;
    const a = ex.clusterAttrs(false, cluster);
    const c = this.writeConfig(cluster, block, sharedBytes, 0n as CuStream, a.attrs, a.count);
    const slot: unknown[] = [null];
    const rc = ex.maxClusters(slot, fn, c) as number;
    if (rc !== 0) throw new CudaError('cuOccupancyMaxActiveClusters', rc);
    return slot[0] as number;
  }

  /** The CUlaunchConfig bytes (launchConfig, rewritten whole; the driver reads it only during a call). */
  private writeConfig(grid: Dim3, block: Dim3, sharedBytes: number, stream: CuStream, attrs: bigint, count: number): Buffer {
    const c = this.launchConfig;
    c.writeUInt32LE(grid.x, 0);
    c.writeUInt32LE(grid.y ?? 1, 4);
    c.writeUInt32LE(grid.z ?? 1, 8);
    c.writeUInt32LE(block.x, 12);
    c.writeUInt32LE(block.y ?? 1, 16);
    c.writeUInt32LE(block.z ?? 1, 20);
    c.writeUInt32LE(sharedBytes, 24);
    c.writeBigUInt64LE(stream, 32);
    c.writeBigUInt64LE(attrs, 40);
    c.writeUInt32LE(count, 48);
    return c;
  }

  private launchWith(ex: LaunchEx, attrs: bigint, count: number, fn: CuFunction, grid: Dim3, block: Dim3, sharedBytes: number, stream: CuStream, params: Buffer[], what: string): void {
    const c = this.writeConfig(grid, block, sharedBytes, stream, attrs, count);
    const rc = ex.fn(c, fn, params, null) as number;
    if (rc !== 0) throw new CudaError('cuLaunchKernelEx', rc, what);
  }

  /** Whether encodeTensorMap2d is available (the driver has cuTensorMapEncodeTiled). */
  hasTensorMaps(): boolean { return this.tensorMap !== null; }

  /**
   * A CUtensorMap (TENSOR_MAP_BYTES) for a 2-D fp16 (or m.dtype) tensor, to pass by value to a kernel's
   * `const __grid_constant__ CUtensorMap` parameter (a launch copies the bytes).
   */
  encodeTensorMap2d(m: TensorMap2d): Buffer {
    if (!this.tensorMap) throw new CudaError('cuTensorMapEncodeTiled', 500, 'the driver does not have it (CUDA >= 12 needed)');
    const rc = this.tensorMap.fn(this.tensorMap.addr, m.dtype ?? TensorMapDtype.F16, 2, m.base,
      new BigUint64Array([BigInt(m.inner), BigInt(m.outer)]), new BigUint64Array([BigInt(m.rowBytes)]),
      new Uint32Array([m.boxInner, m.boxOuter]), new Uint32Array([1, 1]),
      CU_TENSOR_MAP_INTERLEAVE_NONE, m.swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) as number;
    if (rc !== 0) {
      throw new CudaError('cuTensorMapEncodeTiled', rc,
        `dims {${m.inner}, ${m.outer}}, row ${m.rowBytes} bytes, box {${m.boxInner}, ${m.boxOuter}}, base 0x${m.base.toString(16)}`);
    }
    return this.tensorMap.read();
  }

  /**
   * A CUtensorMap for a 3-D tensor: m's rows, then `depth` planes `planeBytes` apart (a multiple of 16 below 2^40:
   * the planes may be two separate buffers), box {m.boxInner, m.boxOuter, boxDepth}.
   */
  encodeTensorMap3d(m: TensorMap2d, depth: number, planeBytes: bigint, boxDepth: number): Buffer {
    if (!this.tensorMap) throw new CudaError('cuTensorMapEncodeTiled', 500, 'the driver does not have it (CUDA >= 12 needed)');
    const rc = this.tensorMap.fn(this.tensorMap.addr, m.dtype ?? TensorMapDtype.F16, 3, m.base,
      new BigUint64Array([BigInt(m.inner), BigInt(m.outer), BigInt(depth)]), new BigUint64Array([BigInt(m.rowBytes), planeBytes]),
      new Uint32Array([m.boxInner, m.boxOuter, boxDepth]), new Uint32Array([1, 1, 1]),
      CU_TENSOR_MAP_INTERLEAVE_NONE, m.swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) as number;
    if (rc !== 0) {
      throw new CudaError('cuTensorMapEncodeTiled', rc, `dims {${m.inner}, ${m.outer}, ${depth}}, strides ${m.rowBytes} / ${planeBytes} bytes, ` +
        `box {${m.boxInner}, ${m.boxOuter}, ${boxDepth}}, base 0x${m.base.toString(16)}`);
    }
    return this.tensorMap.read();
  }

  createStream(): CuStream {
    return BigInt(this.out<bigint>('cuStreamCreate', (s) => [s, CU_STREAM_NON_BLOCKING])) as CuStream;
  }
  destroyStream(s: CuStream): void { this.call('cuStreamDestroy', s); }
  streamSynchronize(s: CuStream): void { this.call('cuStreamSynchronize', s); }

  /** Relaxed mode: allocations made while capturing are allowed (and must outlive the graph). */
  beginCapture(s: CuStream): void { this.call('cuStreamBeginCapture', s, CU_STREAM_CAPTURE_MODE_RELAXED); }
  endCapture(s: CuStream): CuGraph { return BigInt(this.out<bigint>('cuStreamEndCapture', (slot) => [s, slot])) as CuGraph; }
  instantiate(g: CuGraph): CuGraphExec {
    return BigInt(this.out<bigint>('cuGraphInstantiate', (s) => [s, g, 0n])) as CuGraphExec;
  }
  launchGraph(exec: CuGraphExec, s: CuStream): void { this.call('cuGraphLaunch', exec, s); }
  destroyGraph(g: CuGraph): void { this.call('cuGraphDestroy', g); }
  destroyGraphExec(e: CuGraphExec): void { this.call('cuGraphExecDestroy', e); }

  createEvent(): CuEvent { return BigInt(this.out<bigint>('cuEventCreate', (s) => [s, 0])) as CuEvent; }
  recordEvent(e: CuEvent, s: CuStream): void { this.call('cuEventRecord', e, s); }
  synchronizeEvent(e: CuEvent): void { this.call('cuEventSynchronize', e); }
  elapsedMs(start: CuEvent, end: CuEvent): number {
    return this.out<number>('cuEventElapsedTime', (s) => [s, start, end]);
  }
  destroyEvent(e: CuEvent): void { this.call('cuEventDestroy', e); }
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
