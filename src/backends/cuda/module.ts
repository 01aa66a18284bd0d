/**
 * The kernel module: loads qllama-kernels.fatbin.br (built by `npm run build:cuda`, shipped with the
 * package, brotli-compressed: 2.1 MB instead of 25.6) and launches kernels by name on one stream.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { brotliDecompressSync } from 'node:zlib';
import { QllamaError } from '../../errors.js';
import { FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, type CuFunction, type CuModule, type CuStream, type DevicePtr, type Dim3, type Driver } from './driver.js';

export class CudaKernelsMissingError extends QllamaError {}

const FATBIN = 'qllama-kernels.fatbin.br';

/**
 * Where the fatbin is: $QLLAMA_CUDA_FATBIN, else src/backends/cuda of the checkout or package this dist belongs to
 * (the package ships that file). One place only: a copy beside dist's module.js, found first, went stale whenever
 * build:cuda ran again without refreshing it.
 */
export function fatbinPath(): string {
  const candidates = [
    process.env.QLLAMA_CUDA_FATBIN,
    fileURLToPath(new URL(`../../../../src/backends/cuda/${FATBIN}`, import.meta.url)),
  ].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new CudaKernelsMissingError(`the CUDA kernels (${FATBIN}) were not found at ${candidates.join(' or ')}: run npm run build:cuda`);
  return found;
}

/** CUDA's fatbin magic (fatbinary.h FATBIN_MAGIC, little-endian at offset 0) */
const FATBIN_MAGIC = 0xba55ed50;

/**
 * The fatbin image at `file`: brotli-decompressed when the name ends in .br (the shipped build), else as is (an
 * uncompressed build, e.g. `build:cuda --plain` or a lab build through $QLLAMA_CUDA_FATBIN). Checks the magic, so a
 * damaged or foreign file fails here with its name rather than in cuModuleLoadData.
 */
export function readFatbin(file: string): Buffer {
  let image: Buffer;
  try {
    image = file.endsWith('.br') ? brotliDecompressSync(readFileSync(file)) : readFileSync(file);
  } catch (e) {
    throw new CudaKernelsMissingError(`the CUDA kernels at ${file} could not be read (${(e as Error).message}): run npm run build:cuda`);
  }
  if (image.length < 16 || image.readUInt32LE(0) !== FATBIN_MAGIC) {
    throw new CudaKernelsMissingError(`${file} is not a CUDA fatbin (no fatbin header): run npm run build:cuda`);
  }
  return image;
}

export class KernelModule {
  private readonly fns = new Map<string, CuFunction>();
  private readonly mod: CuModule;

  /**
   * @param pdl launch the kernels that ask for it (`launch(..., pdl = true)`; each calls pdl_wait before
   * reading what earlier kernels wrote) with programmatic stream serialization, so they start during
   * the previous kernel's tail
   */
  constructor(private readonly cu: Driver, private readonly stream: CuStream, readonly pdl = false) {
    this.mod = cu.loadModule(readFatbin(fatbinPath()));
  }

  fn(name: string): CuFunction {
    let f = this.fns.get(name);
    if (f === undefined) {
      f = this.cu.getFunction(this.mod, name);
      this.fns.set(name, f);
    }
    return f;
  }

  /** Lets `name` take up to `bytes` of dynamic shared memory (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES). */
  allowDynamicShared(name: string, bytes: number): void {
    this.cu.setFunctionAttribute(this.fn(name), FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
  }

  /** cluster: launch thread-block clusters of that shape (sm_90, cuLaunchKernelEx; the kernel expects them) */
  launch(name: string, grid: Dim3, block: Dim3, args: Buffer[], sharedBytes = 0, pdl = false, cluster?: Dim3): void {
    if (cluster) this.cu.launchCluster(this.fn(name), grid, block, cluster, pdl && this.pdl, sharedBytes, this.stream, args, name);
    else if (pdl && this.pdl) this.cu.launchPdl(this.fn(name), grid, block, sharedBytes, this.stream, args, name);
    else this.cu.launch(this.fn(name), grid, block, sharedBytes, this.stream, args, name);
  }

  /** A __device__ variable of the loaded fatbin (lab builds' records, bench/cudaDecodeTrace.ts), or null where it has none. */
  global(name: string): { readonly ptr: DevicePtr; readonly bytes: number } | null {
    return this.cu.getGlobal(this.mod, name);
  }

  dispose(): void {
    this.cu.unloadModule(this.mod);
  }
}
