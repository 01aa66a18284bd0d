/**
 * The quantizer's handle on one CUDA device: context, stream, kernel module and tracked allocations,
 * with typed upload/download helpers. Separate from the inference backend (CudaBackend), which
 * knows nothing of calibration buffers; the driver, module and memory plumbing are shared.
 */
import { CudaOutOfMemoryError, DeviceAttribute, type CuStream, type DevicePtr, type Dim3, type Driver } from '../../backends/cuda/driver.js';
import { flashShared } from '../../backends/cuda/attentionLaunch.js';
import { DeviceMemory } from '../../backends/cuda/memory.js';
import { KernelModule } from '../../backends/cuda/module.js';
import { openDevice } from '../../backends/cuda/openDevice.js';
import { QllamaError } from '../../errors.js';

/** --backend cuda was asked for and no usable CUDA GPU answers. */
export class QuantizeCudaUnavailableError extends QllamaError {}
/** The GPU path cannot handle this model or device (shapes, shared memory, memory). */
export class QuantizeCudaUnsupportedError extends QllamaError {}

/** Dynamic shared memory of the kernels that need more than the default 48 KiB. */
export const SHARED = {
  qz_gemm_f16: 61440, // 3 stages × (128 + 128 rows) × 40 halves × 2 bytes
  qz_gptq_block: 98816, // U block 128 × 128 f32 + weights 128 × 65 f32
} as const;

/** p + bytes. */
export function offset(p: DevicePtr, bytes: number): DevicePtr {
  return (p + BigInt(bytes)) as DevicePtr;
}

export class QuantGpu {
  readonly mem: DeviceMemory;
  readonly kernels: KernelModule;
  readonly deviceName: string;
  private disposed = false;

  private constructor(readonly cu: Driver, readonly device: number, readonly stream: CuStream) {
    this.mem = new DeviceMemory(cu);
    this.kernels = new KernelModule(cu, stream);
    this.deviceName = cu.deviceName(device);
    const optin = cu.attribute(DeviceAttribute.MaxSharedMemoryPerBlockOptin, device);
    const need = Math.max(SHARED.qz_gemm_f16, SHARED.qz_gptq_block, flashShared(128));
    if (optin < need) {
      throw new QuantizeCudaUnsupportedError(`${this.deviceName} allows ${optin} bytes of shared memory per block, the quantizer's kernels need ${need}: use --backend cpu`);
    }
    this.kernels.allowDynamicShared('qz_gemm_f16', SHARED.qz_gemm_f16);
    this.kernels.allowDynamicShared('qz_gptq_block', SHARED.qz_gptq_block);
    for (const d of [64, 128]) this.kernels.allowDynamicShared(`attn_flash_${d}`, flashShared(d));
  }

  /** Device `ordinal` (default $QLLAMA_CUDA_DEVICE or 0) through its primary context. */
  static create(ordinal = Number(process.env.QLLAMA_CUDA_DEVICE ?? 0)): QuantGpu {
    const { cu, device, stream } = openDevice(ordinal, (reason) => new QuantizeCudaUnavailableError(`${reason}: quantize with --backend cpu`));
    return new QuantGpu(cu, device, stream);
  }

  /** Bytes free on the device now. */
  freeBytes(): number {
    return this.cu.memInfo().free;
  }

  alloc(bytes: number, what: string): DevicePtr {
    try {
      return this.mem.alloc(bytes);
    } catch (e) {
      if (e instanceof CudaOutOfMemoryError) {
        throw new QuantizeCudaUnsupportedError(`out of GPU memory allocating ${what} (${gib(bytes)}; ${gib(this.mem.allocated)} already held by the quantizer, ${gib(this.freeBytes())} free): use fewer --nsamples or a shorter --seqlen, or --backend cpu`, { cause: e });
      }
      throw e;
    }
  }

  free(p: DevicePtr | null): void {
    if (p !== null) this.mem.free(p);
  }

  zero(p: DevicePtr, bytes: number): void {
    if (bytes % 4 !== 0) throw new RangeError('zero: a multiple of 4 bytes');
    this.cu.memsetD32(p, 0, bytes / 4, this.stream);
  }

  upload(dst: DevicePtr, src: ArrayBufferView): void {
    this.cu.copyHtoD(dst, src, src.byteLength, this.stream);
  }

  /** Copies into `dst` and waits, so `dst` is valid on return. */
  download<T extends ArrayBufferView>(dst: T, src: DevicePtr): T {
    this.cu.copyDtoH(dst, src, dst.byteLength, this.stream);
    this.sync();
    return dst;
  }

  /** A new device buffer holding `src`. */
  uploadNew(src: ArrayBufferView, what: string): DevicePtr {
    const p = this.alloc(src.byteLength, what);
    this.upload(p, src);
    return p;
  }

  copy(dst: DevicePtr, src: DevicePtr, bytes: number): void {
    this.cu.copyDtoD(dst, src, bytes, this.stream);
  }

  launch(name: string, grid: Dim3, block: Dim3, args: Buffer[], sharedBytes = 0): void {
    this.kernels.launch(name, grid, block, args, sharedBytes);
  }

  sync(): void {
    this.cu.streamSynchronize(this.stream);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    // best effort: after a failed kernel the context is unusable and every call fails; the error
    // that brought us here is the one to report
    const steps = [() => this.sync(), () => this.mem.freeAll(), () => this.kernels.dispose(),
      () => this.cu.destroyStream(this.stream), () => this.cu.releasePrimaryContext(this.device)];
    for (const step of steps) {
      try {
        step();
      } catch { /* see above */ }
    }
  }
}

export function gib(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}
