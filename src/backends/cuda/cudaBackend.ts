/**
 * The CUDA backend: f32 activations and an fp16 KV cache in device memory, GPTQ weights in their
 * packed form, one stream, kernels from qllama-kernels.fatbin.br. The decode step runs as a captured
 * CUDA graph (`runGraph`): inside the capture, kernels read the position and token ids from a small
 * device buffer that each replay refreshes, so one graph serves every position.
 */
import type {
  Activation, AttentionShape, Backend, BatchAttentionShape, BatchStep, DeviceSampling, EmbeddingWeight, KvCache, LinearHost, LinearUploadOptions, LinearWeight, RopeShape, VectorWeight,
} from '../backend.js';
import { flashGrid, flashShared, flashWgGrid, flashWgShared, planAttention, positionBucket } from './attentionLaunch.js';
import {
  DeviceAttribute, type CuGraph, type CuGraphExec, type CuStream, type DevicePtr, type Driver,
} from './driver.js';
import { f32, i32, ptr, u32 } from './kernelArgs.js';
import {
  CLUSTER_SHARED_X_K, clusterDefault, FOLD_ATTENTION_MAX_HEADS, FOLD_ATTENTION_MAX_POSITIONS, GemvBatch, MAX_PERM_K, MAX_TILES, NEXT_GEMV_BYTES, PERM_BUFFERS,
} from './gemvBatch.js';
import { GEMM_MMA_SHARED, GEMM_WGMMA_SHARED, launchLinear, type GemmOptions, type WgmmaOptions } from './linearLaunch.js';
import { GEMM_RS_SHARED, RS_BUILDS, RS_MAX_ROWS, RS_MIN_FILL, RS_MIN_ROWS, RS_QKV_KERNEL, RS_SMALL_ROWS, RS_SPLIT_MIN_FILL, rsBuildFor, rsQkvRopeHeadTiles, rsQkvRopeKernel, rsQkvRopeOverlaps, rsTakes } from './rsLinear.js';
import { GEMM_WGMMA_160_SHARED, WG_SLICE_BYTES, type WgTileCols } from './wgmmaLinear.js';
import { uploadArray, uploadDense, uploadGptq, type CudaGptq, type CudaLinear, type PermCache } from './linearUpload.js';
import { DeviceMemory } from './memory.js';
import { halfCopyReaders, PromptOps, q4Pair } from './promptOps.js';
import { halfOnlyFromEnv, type HalfOnlyProducer } from './halfCopies.js';
import { openDevice } from './openDevice.js';
import { KernelModule } from './module.js';
import { launchSample } from './sampleLaunch.js';
import { launchArgmaxRows } from './argmaxRows.js';
import { BatchOps } from './batchOps.js';
import { CudaUnavailableError, CudaUnsupportedError } from './errors.js';
import {
  launchSmallBatchGroup, MULTI_MAX_ROWS, MULTI_ROWS_PER_LAUNCH, SMALL_BATCH_MAX_ROWS, smallBatchGroupFits, type MultiMat,
} from './smallBatchLinear.js';

export { CudaUnavailableError, CudaUnsupportedError };

class CudaActivation implements Activation {
  constructor(readonly rows: number, readonly cols: number, readonly ptr: DevicePtr) {}
}
class CudaVector implements VectorWeight {
  constructor(readonly length: number, readonly ptr: DevicePtr) {}
}
class CudaEmbedding implements EmbeddingWeight {
  constructor(readonly vocab: number, readonly dim: number, readonly ptr: DevicePtr) {}
}
class CudaKvCache implements KvCache {
  constructor(readonly layers: number, readonly maxSeq: number, readonly kvHeads: number, readonly headDim: number,
    readonly k: DevicePtr, readonly v: DevicePtr) {}
  /** byte offset of one layer in k or v: [maxSeq, kvHeads·headDim] fp16 */
  layerBytes(): number { return this.maxSeq * this.kvHeads * this.headDim * 2; }
}

/** A device buffer that only grows; growing invalidates captured graphs (they hold its address). */
interface Scratch { ptr: DevicePtr | null; bytes: number }

/**
 * Prefill kernels (rows > 1):
 *   'wgmma': as 'mma', but q4 GEMMs of ≥ WGMMA_MIN_ROWS rows on sm_90 dequantize the weights to fp16 and
 *            run the wgmma/TMA GEMM (gemm_wgmma.cu); elsewhere the same as 'mma'
 *   'mma':   the mma.sync int4 GEMM + flash attention
 *   'old':   the wmma GEMM with per-element dequantization + the looped decode attention
 */
export type PrefillKernels = 'wgmma' | 'mma' | 'old';
/** the default where $QLLAMA_CUDA_PREFILL is not set */
export const DEFAULT_PREFILL: PrefillKernels = 'wgmma';

/** rope.cu's ROPE_HEADS: the heads one thread of rope_f32 / rope_kv_f32 rotates (a grid row per chunk of them) */
const ROPE_HEADS = 8;

/** $QLLAMA_CUDA_WG_TILE_COLS: 160 or 256 forces that tile width, anything else (or unset) lets the planner choose */
function tileColsFromEnv(): WgTileCols {
  const v = process.env.QLLAMA_CUDA_WG_TILE_COLS;
  return v === '160' ? 160 : v === '256' ? 256 : 0;
}

/** rows written into `cache` from startPos must fit it (writeKv, ropeKv) */
function checkKvRange(cache: CudaKvCache, startPos: number, rows: number): void {
  if (startPos + rows > cache.maxSeq) throw new RangeError(`KV cache holds ${cache.maxSeq} positions, asked for ${startPos + rows}`);
}

/** $name as an integer ≥ min, else `fallback` (unset or not such an integer) */
function intFromEnv(name: string, min: number, fallback: number): number {
  const v = Number(process.env[name]);
  return process.env[name] !== undefined && Number.isInteger(v) && v >= min ? v : fallback;
}

/**
 * Default most rows of a batched decode step that go through per-row graph replays: 1, since batched steps
 * are recorded too (decodeStep). H200, 13B, mean context 256 (bench/cudaBatchBench.ts): two rows 421–431
 * tok/s as one recorded batched step against 385–395 as two replays (when batched steps ran eagerly: 254
 * against 384, and this default was 2).
 */
export const DECODE_ROWS_BY_GRAPH = 1;
/**
 * Default most rows of a batched decode step that is recorded and replayed (CudaBackend.batchGraphRows).
 * H200, 13B, mean context 256, with gemv_q4_multi: 3 / 4 / 8 / 16 rows 564–573 / 671–683 / 1,062–1,078 / 1,544
 * tok/s recorded against 331 / 490 / 928 / 1,390 eager; 32 rows (the GEMM) stay eager.
 */
export const BATCH_GRAPH_ROWS = 16;
/** tiles of gemv_q4_multi's 4 rows × 128 outputs that the shared split-K workspace (MAX_TILES · 128 f32) holds */
const MULTI_WS_TILES = MAX_TILES / MULTI_ROWS_PER_LAUNCH;

/**
 * Prompt attention with head size 128 on sm_90 ('wgmma' prefill kernels): 'wgmma' (attn_flash_wg_128, the default)
 * or 'mma' (attn_flash_128 everywhere); $QLLAMA_CUDA_FLASH.
 */
export type FlashKernel = 'wgmma' | 'mma';
/** most heads attnOverlap's counters serve (more: attention waits for the whole q/k/v launch, as without it) */
const ATTN_READY_HEADS = 1024;

/** the flash kernels' softmax scale: log2(e) / sqrt(d), so exp2 of the scaled scores is exp of the scaled ones */
const flashScaleLog2 = (d: number): number => Math.LOG2E / Math.sqrt(d);

function flashFromEnv(): FlashKernel {
  return process.env.QLLAMA_CUDA_FLASH === 'mma' ? 'mma' : 'wgmma';
}

function prefillFromEnv(): PrefillKernels {
  const v = process.env.QLLAMA_CUDA_PREFILL;
  return v === 'wgmma' || v === 'mma' || v === 'old' ? v : DEFAULT_PREFILL;
}

export class CudaBackend implements Backend {
  readonly name = 'cuda';
  readonly mem: DeviceMemory;
  readonly kernels: KernelModule;
  readonly smCount: number;
  /** cuMemcpyHtoDAsync from pageable memory returns once the bytes are staged, and uploads keep no host arrays */
  readonly uploadCopiesHostData = true;
  /**
   * Prompts in passes of up to 2048 rows: the tensor-core GEMM fills the GPU only with many rows (a 2048
   * prompt ran 8,488 tok/s in one pass vs 6,582 in 512-row chunks on the H100; 13B at 2048 context
   * then allocates 9.9 GB).
   */
  readonly preferredChunkRows = 2048;
  readonly deviceName: string;
  private readonly graphs = new Map<string, { graph: CuGraph; exec: CuGraphExec }>();
  private capturing = false;
  /** positions the graph being captured serves (its bucket: positionBucket) */
  private captureBound = Infinity;
  private readonly step: Scratch = { ptr: null, bytes: 0 }; // int32 [startPos, ids...] for graph replays
  private stepHost = new Int32Array(2); // its host side, reused by every replay
  private readonly ids: Scratch = { ptr: null, bytes: 0 }; // int32 ids of eager embed calls
  private readonly argmaxIds: Scratch = { ptr: null, bytes: 0 }; // int32 ids out of argmaxRows
  private readonly attnPart: Scratch = { ptr: null, bytes: 0 };
  /** per (row, head) tickets of the split attention (zeroed when allocated; the kernel leaves them at zero) */
  private readonly attnTickets: Scratch = { ptr: null, bytes: 0 };
  /** fp16 copies of GEMMs' x (rows > 1), two slots (halfCopies.ts) */
  private readonly xHalf: Scratch[] = [{ ptr: null, bytes: 0 }, { ptr: null, bytes: 0 }];
  /** a prompt chunk's rope_table_f32 / _f64 (qkvRopeKv), and the chunk and precision it was computed for */
  private readonly ropeTab: Scratch = { ptr: null, bytes: 0 };
  private ropeTabKey = '';
  /** the prompt-row ops around the tensor-core GEMMs (promptOps.ts), with what xHalf holds */
  private readonly promptOps: PromptOps;
  /** fp16 [Ns, K] weights of the wgmma GEMM: one slice of a matrix at a time (≤ wgmmaSliceBytes; 84 MB for 13B), kept */
  private readonly wHalf: Scratch = { ptr: null, bytes: 0 };
  /**
   * Prefill kernels (PrefillKernels; $QLLAMA_CUDA_PREFILL=wgmma|mma|old, default DEFAULT_PREFILL).
   * Tests and benchmarks switch it to compare.
   */
  prefillKernels: PrefillKernels = prefillFromEnv();
  /** prompt attention at head size 128 under the 'wgmma' prefill kernels (FlashKernel) */
  flashKernel: FlashKernel = flashFromEnv();
  /** attn_flash_wg_128 launches so far (tests assert the kernel they mean ran) */
  flashWgLaunches = 0;
  /** prompt attention launches that overlapped the q/k/v rope launch before them (attnOverlap; for tests) */
  attnOverlapLaunches = 0;
  /**
   * Most rows of a q4 linear that take the batched-decode kernel gemv_q4_rows (2..this; 0: none;
   * $QLLAMA_CUDA_SMALL_BATCH_ROWS, default SMALL_BATCH_MAX_ROWS). Benchmarks switch it to compare with the GEMM.
   */
  smallBatchMaxRows = intFromEnv('QLLAMA_CUDA_SMALL_BATCH_ROWS', 0, SMALL_BATCH_MAX_ROWS);
  /**
   * Of those, the most rows that take gemv_q4_multi, the one-token GEMV's integer kernel over up to 4 rows
   * per launch, instead ($QLLAMA_CUDA_MULTI_ROWS, default MULTI_MAX_ROWS; 0: none).
   */
  multiMaxRows = intFromEnv('QLLAMA_CUDA_MULTI_ROWS', 0, MULTI_MAX_ROWS);
  /**
   * Batched decode's q/k/v, and gate/up with SwiGLU, as one gemv_q4_multi launch each (linears, gateUp) where
   * gemv_q4_multi serves the rows; $QLLAMA_CUDA_FUSE_ROWS=0: a launch per linear and a SwiGLU kernel, as before.
   */
  fuseSmallBatch = process.env.QLLAMA_CUDA_FUSE_ROWS !== '0';
  /** the batched decode ops (batchOps.ts) */
  private readonly batchOps: BatchOps;
  /** the split-K workspace and tickets of the one-row GEMV batch, which gemv_q4_multi shares (zero between launches) */
  private readonly splitK: { readonly ws: DevicePtr; readonly counters: DevicePtr };
  /**
   * The wgmma GEMM splits a launch of few tiles along K (stream-K, gemm_wgmma.cuh WgWork; when:
   * wgmmaStreamK), so every SM takes a share; $QLLAMA_CUDA_STREAMK=0 (or false here) runs whole tiles
   * only. Either way the sums do not depend on timing, but they are grouped differently with and without it.
   */
  wgmmaStreamK = process.env.QLLAMA_CUDA_STREAMK !== '0';
  /** ropeKv takes prompt rows (rope_kv_f32); $QLLAMA_CUDA_ROPE_KV=0 (or false here): it declines, and rope / writeKv run apart */
  fusedRopeKv = process.env.QLLAMA_CUDA_ROPE_KV !== '0';
  /** gateUp fuses gate, up and SwiGLU on the Hopper GEMM; $QLLAMA_CUDA_GATE_UP=0 (or false here): it declines */
  fusedGateUp = process.env.QLLAMA_CUDA_GATE_UP !== '0';
  /**
   * linears runs prompt q/k/v as one register-A launch (PromptOps.qkv) where rsQkvFits holds; $QLLAMA_CUDA_QKV=0 (or
   * false here): it declines, and the model runs three linears. Figures: rsLinear.ts, RS_QKV_MIN_FILL_GAIN.
   */
  fusedQkv = process.env.QLLAMA_CUDA_QKV !== '0';
  /**
   * qkvRopeKv runs a prompt chunk's q/k/v launch with rope and the KV write in its epilogue (PromptOps.qkvRope) where
   * the q/k/v launch and ropeKv would both run: 32 (the default), rotated in f32 with an f32 (cos, sin) table, within
   * an ulp of rope_kv_f32; 64, in f64 as rope_kv_f32 does (the same bits). $QLLAMA_CUDA_QKV_ROPE=0 (or 0 here): it
   * declines, and they run apart. H200, 13B prompt, same call, 32 / 64 / apart: 2048 tokens 23,095 / 22,936 / 22,828
   * and 23,057 / 22,946 / 22,743 tok/s; 512 tokens 21,310 / 21,378 / 21,386 (f64's conversions and f64 math sit in
   * the epilogue, where the tensor cores wait; in rope_kv_f32 they hid under its memory traffic).
   */
  qkvRopeBits: 0 | 32 | 64 = process.env.QLLAMA_CUDA_QKV_ROPE === '0' ? 0 : process.env.QLLAMA_CUDA_QKV_ROPE === '64' ? 64 : 32;
  /**
   * act-order prompts: a norm whose readers share one permutation writes their fp16 copy gathered (declareInputNorm, read
   * at upload); $QLLAMA_CUDA_NORM_HALF_PERM=0: it writes x's own order, and the GEMMs convert it again (x_to_half).
   */
  normGathersHalf = process.env.QLLAMA_CUDA_NORM_HALF_PERM !== '0';
  /**
   * prompt rows: producers whose declared reader reads only their fp16 copy write that copy alone, and the q/k/v rope
   * launch writes q as attention's fp16 Q tile (halfCopies.ts HalfOnlyProducer; $QLLAMA_CUDA_HALF_ONLY, default all):
   * - 'norm': a norm whose only readers (rmsNorm readers 'declared') all read its copy (PromptOps.rmsNorm). H200, 13B
   *   prompt, same call, on / off: 2048 tokens 23,105 / 22,974 and 23,077 / 22,993 tok/s, 512 tokens 21,656 / 21,407.
   * - 'swiglu': the fused gate/up's SwiGLU where down_proj (gateUp's reader) reads the copy (PromptOps.gateUp).
   * - 'attention': attn_flash_wg_128 where o_proj (attention's reader) reads the copy.
   * - 'q': qkvRopeKv with qReader 'attention' where attn_flash_wg_128 will read it: half(q · scale), held by
   *   HalfCopies.holdQTile.
   */
  halfOnly: Set<HalfOnlyProducer> = halfOnlyFromEnv();
  /** the fp16 Q tile qkvRopeKv writes instead of q ('q' above; HalfCopies.holdQTile): [rows, heads·128] */
  private readonly qTileBuf: Scratch = { ptr: null, bytes: 0 };
  /**
   * Prompt attention behind the q/k/v rope launch that wrote its Q tile starts on the SMs that launch's last partial wave
   * leaves idle: the launch counts its finished tiles per head, and attention, launched with programmatic dependent
   * launch, waits per head on those counts instead of for the whole launch ($QLLAMA_CUDA_ATTN_OVERLAP=0: off), where
   * that launch leaves attention room (rsQkvRopeOverlaps).
   */
  attnOverlap = process.env.QLLAMA_CUDA_ATTN_OVERLAP !== '0';
  /**
   * the per-head tile counters (ATTN_READY_HEADS), their running count, which wraps at 2³², and the head count of the
   * launches that count on them (a launch adds only to its own heads' counters, so another head count zeroes them first)
   */
  private attnReady: DevicePtr | null = null;
  private attnReadyCount = 0;
  private attnReadyHeads = 0;
  /**
   * Batched decode steps of up to this many rows replay each row's captured one-sequence graph instead of
   * one eager batched pass (Backend.decodeRowsByGraph; $QLLAMA_CUDA_GRAPH_ROWS, default DECODE_ROWS_BY_GRAPH).
   */
  decodeRowsByGraph = intFromEnv('QLLAMA_CUDA_GRAPH_ROWS', 1, DECODE_ROWS_BY_GRAPH);
  /**
   * Batched decode steps of 2..this many rows are recorded once per row count and position bucket and
   * replayed (decodeStep); more rows run eagerly ($QLLAMA_CUDA_BATCH_GRAPH_ROWS, default BATCH_GRAPH_ROWS; 0: never).
   */
  batchGraphRows = intFromEnv('QLLAMA_CUDA_BATCH_GRAPH_ROWS', 0, BATCH_GRAPH_ROWS);
  /**
   * The wgmma GEMM's tile width for plain linears: 0 (default) chooses 256 or 160 per launch by the wave model
   * (wgmmaLinear.ts wgmmaTileCols), 256 or 160 force one; $QLLAMA_CUDA_WG_TILE_COLS. Tests and benchmarks switch it.
   */
  wgmmaTileCols: WgTileCols = tileColsFromEnv();
  /**
   * the wgmma GEMM's cap on one slice of fp16 weights (wgmmaLinear.ts; $QLLAMA_CUDA_WG_SLICE_MB, in MiB, default
   * WG_SLICE_BYTES); tests lower it to force many slices
   */
  wgmmaSliceBytes = intFromEnv('QLLAMA_CUDA_WG_SLICE_MB', 1, WG_SLICE_BYTES / 2 ** 20) * 2 ** 20;
  /**
   * 4-bit GEMMs of rsMinRows up to rsMaxRows rows run the register-A GEMM (rsLinear.ts) instead of dequant +
   * wgmma or gemm_q4_mma, and above rsMaxRows those whose tiles fill at least rsMinFill of the SMs' turns
   * (rsWaveFill) ($QLLAMA_CUDA_RS_MIN_ROWS, $QLLAMA_CUDA_RS_MAX_ROWS, $QLLAMA_CUDA_RS_MIN_FILL in percent;
   * defaults RS_MIN_ROWS, RS_MAX_ROWS, RS_MIN_FILL; max 0: never, fill above 100: not above rsMaxRows). Tests and
   * benchmarks switch them.
   */
  rsMinRows = intFromEnv('QLLAMA_CUDA_RS_MIN_ROWS', 2, RS_MIN_ROWS);
  rsMaxRows = intFromEnv('QLLAMA_CUDA_RS_MAX_ROWS', 0, RS_MAX_ROWS);
  rsMinFill = intFromEnv('QLLAMA_CUDA_RS_MIN_FILL', 0, RS_MIN_FILL * 100) / 100;
  /** of those, rows up to which it runs 128-token tiles ($QLLAMA_CUDA_RS_SMALL_ROWS, default RS_SMALL_ROWS; 0: never) */
  rsSmallRows = intFromEnv('QLLAMA_CUDA_RS_SMALL_ROWS', 0, RS_SMALL_ROWS);
  /**
   * the share of the SMs' turns below which a plain register-A launch splits K to fill them (rsSplits;
   * $QLLAMA_CUDA_RS_SPLIT_FILL in percent, default RS_SPLIT_MIN_FILL; 0: only where the tiles fill less than half the SMs)
   */
  rsSplitFill = intFromEnv('QLLAMA_CUDA_RS_SPLIT_FILL', 0, RS_SPLIT_MIN_FILL * 100) / 100;
  /** the register-A gate/up launch with gate and up in one 3-D tensor map per array ($QLLAMA_CUDA_RS_PAIRED=0: two 2-D maps) */
  rsPaired = process.env.QLLAMA_CUDA_RS_PAIRED !== '0';
  /**
   * register-A launches with programmatic dependent launch: a block starts while the kernel before ends and loads its
   * first weights meanwhile (gemm_wgmma_rs.cuh); $QLLAMA_CUDA_RS_PDL=0: launched after it. H200, 13B prompt, same
   * call, with / without: 2048 tokens 22,877 / 22,905 (f64 rope in the q/k/v epilogue), 22,841 / 22,816 and 22,836
   * / 22,755 (rope apart); 512 tokens 21,173 / 20,976 and 21,209 / 21,024 tok/s.
   */
  rsPdl = process.env.QLLAMA_CUDA_RS_PDL !== '0';
  private readonly mmaGemmFits: boolean;
  /** sm_90 with tensor maps and the wgmma GEMM's shared memory: 'wgmma' takes effect */
  readonly wgmmaFits: boolean;
  private readonly wgmma: WgmmaOptions;
  private readonly flashFits: boolean;
  /** attn_flash_wg_128 runs here: the fatbin's sm_90a code (compute capability 9.0) and its shared memory */
  private readonly flashWgFits: boolean;
  /** compute capability 9.0+ with cuLaunchKernelEx: one-token GEMVs may launch as clusters (gemvClusters) */
  private readonly clustersFit: boolean;
  /** the one token id argmax and sample write on the device, and its host copy */
  private readonly idOut: DevicePtr;
  private readonly idHost = new Int32Array(1);
  /** one-token int4 GEMVs waiting to go out together (flushed before every other op) */
  private readonly batch: GemvBatch;
  private disposed = false;
  /** seconds spent in upload calls so far (benchmarks split load time with it) */
  uploadSeconds = 0;
  /** act-order permutations uploaded so far, by content: equal ones share one device buffer */
  private readonly permCache: PermCache = new Map();

  private constructor(readonly cu: Driver, readonly device: number, readonly stream: CuStream) {
    this.mem = new DeviceMemory(cu);
    // programmatic dependent launch: sm_90+, where the driver has cuLaunchKernelEx; QLLAMA_CUDA_PDL=0 turns it off
    const ccMajor = cu.attribute(DeviceAttribute.ComputeCapabilityMajor, device);
    const ccMinor = cu.attribute(DeviceAttribute.ComputeCapabilityMinor, device);
    const pdl = ccMajor >= 9 && cu.hasLaunchEx() && process.env.QLLAMA_CUDA_PDL !== '0';
    this.kernels = new KernelModule(cu, stream, pdl);
    this.smCount = cu.attribute(DeviceAttribute.MultiprocessorCount, device);
    this.deviceName = cu.deviceName(device);
    this.idOut = this.mem.alloc(4);
    // one ticket per tile, and one more for the RMSNorm epilogue (GemvBatch.normEpilogue)
    const ws = this.mem.alloc(MAX_TILES * 128 * 4), counters = this.mem.alloc((MAX_TILES + 1) * 4);
    this.splitK = { ws, counters };
    cu.memsetD32(ws, 0, MAX_TILES * 128, stream);
    cu.memsetD32(counters, 0, MAX_TILES + 1, stream);
    const permBufs = Array.from({ length: PERM_BUFFERS }, () => this.mem.alloc(MAX_PERM_K * 4));
    this.batch = new GemvBatch(this.kernels, ws, counters, this.smCount, permBufs);
    this.batch.attnCounters = this.mem.alloc(FOLD_ATTENTION_MAX_HEADS * 4);
    cu.memsetD32(this.batch.attnCounters, 0, FOLD_ATTENTION_MAX_HEADS, stream);
    // thread-block clusters (compute capability 9.0+) for the one-token GEMVs' split-K sums, where the device can
    // run the largest one the GEMVs launch (8 blocks with act-order's shared x)
    let clusters = ccMajor >= 9 && cu.hasLaunchEx();
    if (clusters) {
      for (const rpg of [16, 8, 4]) this.kernels.allowDynamicShared(`gemv_q4_cl_rpg${rpg}`, CLUSTER_SHARED_X_K * 4);
      const fit = cu.maxActiveClusters(this.kernels.fn('gemv_q4_cl_rpg16'), { x: 128 }, { x: 2, y: 4 }, CLUSTER_SHARED_X_K * 4);
      clusters = fit === null || fit > 0;
    }
    this.clustersFit = clusters;
    this.batch.clusters = clusters && clusterDefault();
    // the prefill kernels' shared memory (sm_86/89 allow 99 KiB per block: the old GEMM there)
    const optin = cu.attribute(DeviceAttribute.MaxSharedMemoryPerBlockOptin, device);

    this.mmaGemmFits = optin >= GEMM_MMA_SHARED;
    if (this.mmaGemmFits) this.kernels.allowDynamicShared('gemm_q4_mma', GEMM_MMA_SHARED);
    // the fatbin's sm_90a code runs on compute capability 9.0 only
    this.wgmmaFits = this.mmaGemmFits && ccMajor === 9 && ccMinor === 0 && cu.hasTensorMaps() && optin >= GEMM_WGMMA_SHARED;
    if (this.wgmmaFits) this.kernels.allowDynamicShared('gemm_wgmma_256', GEMM_WGMMA_SHARED);
    if (this.wgmmaFits) this.kernels.allowDynamicShared('gemm_wgmma_160', GEMM_WGMMA_160_SHARED);
    const rsFitsDevice = this.wgmmaFits && optin >= GEMM_RS_SHARED;
    if (rsFitsDevice) {
      for (const b of RS_BUILDS) for (const k of [b.kernel, `${b.kernel}_swiglu`, `${b.kernel}_swiglu_paired`]) this.kernels.allowDynamicShared(k, b.shared);
      for (const k of [RS_QKV_KERNEL, rsQkvRopeKernel(32), rsQkvRopeKernel(64)]) this.kernels.allowDynamicShared(k, RS_BUILDS[0].shared);
    }
    // the stream-K tail's per-tile turns (gemm_wgmma.cuh WgWork), zeroed once: the kernel leaves them at zero
    const tileFlags = this.mem.alloc(this.smCount * 4);
    cu.memsetD32(tileFlags, 0, this.smCount, stream);
    this.wgmma = {
      weightScratch: (bytes) => this.grow(this.wHalf, bytes, false), smCount: this.smCount, sliceBytes: () => this.wgmmaSliceBytes,
      tileFlags: () => (this.wgmmaStreamK ? tileFlags : null),
      tileCols: () => this.wgmmaTileCols,
      takesRs: (rows, wTiles, nk) => rsFitsDevice && rsTakes(rows, wTiles,
        { minRows: this.rsMinRows, maxRows: this.rsMaxRows, minFill: this.rsMinFill, smCount: this.smCount, splitFill: this.rsSplitFill }, nk),
      rsSplitFill: () => this.rsSplitFill,
      rsPaired: () => this.rsPaired,
      rsPdl: () => this.rsPdl,
      rsBuild: (rows) => rsBuildFor(rows, this.rsSmallRows),
    };
    for (const d of [64, 128]) if (optin >= flashShared(d)) this.kernels.allowDynamicShared(`attn_flash_${d}`, flashShared(d));
    this.flashFits = optin >= flashShared(128);
    this.flashWgFits = ccMajor === 9 && ccMinor === 0 && optin >= flashWgShared();
    if (this.flashWgFits) this.kernels.allowDynamicShared('attn_flash_wg_128', flashWgShared());
    this.promptOps = new PromptOps({
      cu, kernels: this.kernels, flush: () => this.batch.flush(),
      halfScratch: (i, bytes) => this.grow(this.xHalf[i], bytes, false),
      // rows that take the small-batch kernels (batched decode: gemv_q4_multi, gemv_q4_rows) read x in f32
      gemmReadsHalf: (rows) => rows > this.smallBatchMaxRows && this.prefillKernels !== 'old' && this.mmaGemmFits,
      fusedGateUp: () => (this.fusedGateUp && this.prefillKernels === 'wgmma' && this.wgmmaFits ? this.wgmma : null),
      fusedQkv: () => (this.fusedQkv && this.prefillKernels === 'wgmma' && this.wgmmaFits ? this.wgmma : null),
    });
    this.batchOps = new BatchOps({
      cu, mem: this.mem, stream, kernels: this.kernels, smCount: this.smCount, capturing: () => this.capturing, flush: () => this.batch.flush(),
      captureBound: () => this.captureBound, tablesMoved: () => this.dropGraphs(),
      attnScratch: (partBytes, ticketBytes) => ({ part: this.grow(this.attnPart, partBytes), tickets: this.growZeroed(this.attnTickets, ticketBytes) }),
    });
  }

  /** Opens device `ordinal` (default $QLLAMA_CUDA_DEVICE or 0) with its primary context. */
  static create(ordinal = Number(process.env.QLLAMA_CUDA_DEVICE ?? 0)): CudaBackend {
    const { cu, device, stream } = openDevice(ordinal,
      (reason) => new CudaUnavailableError(/--backend cpu/.test(reason) ? reason : `${reason}: use --backend cpu`));
    return new CudaBackend(cu, device, stream);
  }

  // --- memory ----------------------------------------------------------------------------
  allocActivation(rows: number, cols: number): Activation {
    return new CudaActivation(rows, cols, this.mem.alloc(rows * cols * 4));
  }

  writeActivation(dst: Activation, data: Float32Array): void {
    this.batch.flush();
    this.promptOps.copies.forget();
    const a = act(dst);
    if (data.length > a.rows * a.cols) throw new RangeError(`writeActivation: ${data.length} values into [${a.rows}, ${a.cols}]`);
    this.cu.copyHtoD(a.ptr, data, data.byteLength, this.stream);
  }

  readActivation(src: Activation, rows = src.rows): Float32Array {
    this.batch.flush();
    const a = act(src);
    const out = new Float32Array(rows * a.cols);
    this.cu.copyDtoH(out, a.ptr, out.byteLength, this.stream);
    this.cu.streamSynchronize(this.stream);
    return out;
  }

  /**
   * LinearUploadOptions are honoured (linearUpload.ts); the model then uploads gate/up with their outputs
   * in down_proj's group order, so an act-order down reads x linearly. $QLLAMA_CUDA_DOWN_ORDER=0 (or
   * setting this false before a model loads) turns that off: down gathers x through its permutation.
   */
  supportsUploadOrder = process.env.QLLAMA_CUDA_DOWN_ORDER !== '0';

  uploadLinear(weight: LinearHost, options?: LinearUploadOptions): LinearWeight {
    this.batch.flush();
    const t0 = performance.now();
    const ctx = { cu: this.cu, mem: this.mem, kernels: this.kernels, stream: this.stream, perms: this.permCache };
    const w = weight.kind === 'dense' ? uploadDense(ctx, weight, options) : uploadGptq(ctx, weight, options);
    this.uploadSeconds += (performance.now() - t0) / 1000;
    return w;
  }

  /**
   * Keeps `norm` in the row order of each act-order linear that reads rmsNorm(x)·norm (one copy per
   * distinct permutation: q/k/v share one, gate/up another), so their decode GEMV reads the weight
   * linearly beside the gathered x (gemvBatch.ts permutedNorm). H200, 13B act-order decode: bench/cudaNotes.md,
   * twelfth pass.
   */
  declareInputNorm(norm: VectorWeight, linears: readonly LinearWeight[]): void {
    const n = norm as CudaVector;
    // prompt rows: where every reader gathers through one act-order permutation, the norm writes its fp16 copy in
    // that order (PromptOps.normConsumerPerm)
    const perms = new Set(linears.map((l) => {
      const w = l as CudaLinear;
      return w.kind === 'gptq' ? w.perm : null;
    }));
    const [perm] = perms;
    if (this.normGathersHalf && perms.size === 1 && perm && linears.every((l) => l.inFeatures === n.length)) this.promptOps.normConsumerPerm.set(n.ptr, perm);
    this.promptOps.normReaders.set(n.ptr, linears as CudaLinear[]);
    for (const l of linears) {
      const w = l as CudaLinear;
      if (w.kind !== 'gptq' || w.perm === null || w.inFeatures !== n.length || this.batch.hasPermutedNorm(n.ptr, w.perm)) continue;
      const out = this.mem.alloc(n.length * 4);
      this.kernels.launch('f32_gather', { x: Math.ceil(n.length / 256) }, { x: 256 }, [ptr(out), ptr(n.ptr), ptr(w.perm), i32(n.length)]);
      this.batch.permutedNorm(n.ptr, w.perm, out);
    }
  }

  /**
   * gate and up (4-bit q4 GPTQ of one shape and group size) re-laid side by side: qweight, scales and qzeros each
   * one allocation holding gate's array then up's, so the prompt's SwiGLU launch loads both halves of a tile through
   * one 3-D tensor map per array (rsLinear.ts pairedWeightMaps: 4 copies per K slice instead of 7). Load time only
   * (a copy on the device, then the old arrays freed), before any recorded step can hold their addresses. Off with
   * rsPaired.
   */
  pairLinears(a: LinearWeight, b: LinearWeight): readonly [LinearWeight, LinearWeight] {
    const pair = this.rsPaired ? q4Pair(a as CudaLinear, b as CudaLinear) : null;
    if (pair === null) return [a, b];
    const [g, u] = pair;
    this.batch.flush();
    const K = g.inFeatures, N = g.outFeatures, groups = K / g.groupSize;
    const pack = (x: DevicePtr, y: DevicePtr, bytes: number): [DevicePtr, DevicePtr] => {
      const half = Math.ceil(bytes / 256) * 256; // (a TMA stride is a multiple of 16 bytes)
      const base = this.mem.alloc(2 * half);
      this.cu.copyDtoD(base, x, bytes, this.stream);
      this.cu.copyDtoD((base + BigInt(half)) as DevicePtr, y, bytes, this.stream);
      return [base, (base + BigInt(half)) as DevicePtr];
    };
    const q = pack(g.qweight, u.qweight, (K / 8) * N * 4), s = pack(g.scales, u.scales, groups * N * 2);
    const z = pack(g.qzeros, u.qzeros, groups * (N / 8) * 4);
    this.cu.streamSynchronize(this.stream);
    for (const old of [g.qweight, g.scales, g.qzeros, u.qweight, u.scales, u.qzeros]) this.mem.free(old);
    const pg: CudaGptq = { ...g, qweight: q[0], scales: s[0], qzeros: z[0] }, pu: CudaGptq = { ...u, qweight: q[1], scales: s[1], qzeros: z[1] };
    return [pg, pu];
  }

  uploadVector(data: Float32Array): VectorWeight {
    return new CudaVector(data.length, uploadArray(this, data));
  }

  uploadEmbedding(data: Uint16Array, vocab: number, dim: number): EmbeddingWeight {
    const t0 = performance.now();
    const e = new CudaEmbedding(vocab, dim, uploadArray(this, data));
    this.uploadSeconds += (performance.now() - t0) / 1000;
    return e;
  }

  allocKvCache(layers: number, maxSeq: number, kvHeads: number, headDim: number): KvCache {
    this.batch.flush();
    const bytes = layers * maxSeq * kvHeads * headDim * 2;
    const k = this.mem.alloc(bytes), v = this.mem.alloc(bytes);
    // poisoned with fp16 NaN: a read of a position nothing wrote shows up instead of passing silently
    this.cu.memsetD32(k, 0x7e007e00, bytes / 4, this.stream);
    this.cu.memsetD32(v, 0x7e007e00, bytes / 4, this.stream);
    return new CudaKvCache(layers, maxSeq, kvHeads, headDim, k, v);
  }

  // --- ops -------------------------------------------------------------------------------
  // Every op that writes an activation other than through a linear calls promptOps.copies.forget() first
  // (linear and linearAdd call copies.wrote with their output): the fp16 copies the prompt GEMMs reuse
  // (halfCopies.ts) must never outlive a write to their source.
  embed(out: Activation, table: EmbeddingWeight, ids: Int32Array): void {
    this.batch.flush();
    this.promptOps.copies.forget();
    const e = table as CudaEmbedding;
    let idsPtr: DevicePtr;
    if (this.capturing) {
      idsPtr = (this.step.ptr! + 4n) as DevicePtr;
    } else {
      for (const id of ids) if (id < 0 || id >= e.vocab) throw new RangeError(`token id ${id} outside the vocabulary [0, ${e.vocab})`);
      idsPtr = this.grow(this.ids, ids.byteLength);
      this.cu.copyHtoD(idsPtr, ids, ids.byteLength, this.stream);
    }
    this.kernels.launch('embed_f16', { x: Math.ceil(e.dim / 256), y: ids.length }, { x: 256 },
      [ptr(act(out).ptr), ptr(e.ptr), ptr(idsPtr), i32(e.dim), i32(e.vocab)]);
  }

  rmsNorm(out: Activation, x: Activation, weight: VectorWeight, eps: number, rows: number, readers?: 'declared'): void {
    this.promptOps.copies.forget();
    // prompt rows: also the fp16 copy that the GEMMs of q/k/v or gate/up read (only that copy where they alone read it)
    if (this.promptOps.rmsNorm(act(out), act(x), (weight as CudaVector).ptr, eps, rows, readers === 'declared' && this.halfOnly.has('norm'))) return;
    // one row: the epilogue of the GEMV that produced x, else held for the next GEMV (gemvBatch.ts)
    this.batch.rmsNorm(act(out).ptr, act(x).ptr, (weight as CudaVector).ptr, eps, rows, x.cols);
  }

  linear(out: Activation, x: Activation, weight: LinearWeight, rows: number): void {
    launchLinear(this.cu, this.kernels, this.stream, this.batch, weight as CudaLinear, { y: act(out).ptr, x: act(x).ptr, rows, accumulate: false }, this.gemmOptions());
    this.promptOps.copies.wrote(act(out).ptr);
  }

  /**
   * Batched decode's 2..4 rows: gate and up in one gemv_q4_multi launch whose last block per tile pair writes SwiGLU
   * (smallBatchGroup). Prompt rows on the Hopper GEMM: gate and up in one GEMM whose epilogue applies SwiGLU and also
   * writes the fp16 copy that down_proj reads (promptOps.ts). Neither writes gate and up themselves, nor runs a SwiGLU
   * pass. Other rows, kernels or weights: false, and the caller runs linear, linear, swiglu.
   */
  gateUp(out: Activation, x: Activation, gate: LinearWeight, up: LinearWeight, rows: number, reader?: LinearWeight): boolean {
    if (this.smallBatchGroup([{ w: gate as CudaLinear, y: null }, { w: up as CudaLinear, y: null }], act(x), rows, act(out))) return true;
    const halfReader = this.halfOnly.has('swiglu') && reader !== undefined ? (reader as CudaLinear) : null;
    return this.promptOps.gateUp(act(out), act(x), gate as CudaLinear, up as CudaLinear, rows, halfReader);
  }

  /**
   * Batched decode (2..4 rows): q/k/v in one gemv_q4_multi launch (smallBatchLinear.ts launchSmallBatchGroup); prompts
   * the register-A GEMM takes: q/k/v in one gemm_rs_256_qkv launch (PromptOps.qkv); other rows and weights: false,
   * and the model runs linear for each (one row: GemvBatch fuses them anyway).
   */
  linears(outs: readonly Activation[], x: Activation, weights: readonly LinearWeight[], rows: number): boolean {
    if (outs.length !== weights.length) return false;
    if (this.smallBatchGroup(weights.map((w, i) => ({ w: w as CudaLinear, y: act(outs[i]).ptr })), act(x), rows, null)) return true;
    return this.promptOps.qkv(outs.map(act), act(x), weights as CudaLinear[], rows);
  }

  /** One gemv_q4_multi launch over these matrices where the small-batch path takes them (see linears, gateUp). */
  private smallBatchGroup(mats: readonly { w: CudaLinear; y: DevicePtr | null }[], x: CudaActivation, rows: number, swiglu: CudaActivation | null): boolean {
    const opts = this.gemmOptions().smallBatch;
    if (!opts || !this.fuseSmallBatch) return false;
    const gptq: MultiMat[] = [];
    for (const m of mats) {
      if (m.w.kind !== 'gptq') return false;
      gptq.push({ w: m.w, y: m.y });
    }
    const out = swiglu?.ptr ?? null;
    if (!smallBatchGroupFits(gptq, rows, out, opts)) return false;
    this.batch.flush();
    launchSmallBatchGroup(this.kernels, gptq, x.ptr, rows, out, opts);
    for (const m of gptq) if (m.y !== null) this.promptOps.copies.wrote(m.y);
    if (swiglu !== null) this.promptOps.copies.wrote(swiglu.ptr);
    return true;
  }

  /** acc += x Wᵀ + b: the residual add fused into the GEMV (its atomics add straight into acc). */
  linearAdd(acc: Activation, x: Activation, weight: LinearWeight, rows: number): void {
    launchLinear(this.cu, this.kernels, this.stream, this.batch, weight as CudaLinear, { y: act(acc).ptr, x: act(x).ptr, rows, accumulate: true }, this.gemmOptions());
    this.promptOps.copies.wrote(act(acc).ptr);
  }

  rope(x: Activation, heads: number, headDim: number, startPos: number, theta: number, rows: number): void {
    this.promptOps.copies.forget();
    if (rows === 1 && x.cols === heads * headDim && this.batch.addRope(act(x).ptr, heads, headDim, theta, { ptr: this.posPtr(), imm: startPos })) return;
    this.batch.flush();
    // rope.cu: a thread per (row, pair, chunk of ROPE_HEADS heads)
    this.kernels.launch('rope_f32', { x: Math.ceil((rows * headDim) / 2 / 256), y: Math.ceil(heads / ROPE_HEADS) }, { x: 256 },
      [ptr(act(x).ptr), i32(x.cols), i32(heads), i32(headDim), f32(theta), ptr(this.posPtr()), i32(startPos), i32(rows)]);
  }

  writeKv(cache: KvCache, layer: number, startPos: number, k: Activation, v: Activation, rows: number): void {
    const c = cache as CudaKvCache;
    if (!this.capturing) checkKvRange(c, startPos, rows);
    const width = c.kvHeads * c.headDim;
    const off = BigInt(layer * c.layerBytes());
    if (rows === 1 && k.cols === width && v.cols === width &&
      this.batch.addKvWrite(act(k).ptr, act(v).ptr, (c.k + off) as DevicePtr, (c.v + off) as DevicePtr, c.maxSeq, { ptr: this.posPtr(), imm: startPos })) return;
    this.batch.flush();
    // (kv_write moves 4 values per thread where width % 4 == 0)
    this.kernels.launch('kv_write', { x: Math.ceil(width / (width % 4 === 0 ? 1024 : 256)), y: rows }, { x: 256 },
      [ptr((c.k + off) as DevicePtr), ptr((c.v + off) as DevicePtr), ptr(act(k).ptr), ptr(act(v).ptr), i32(width), i32(c.maxSeq),
        ptr(this.posPtr()), i32(startPos)]);
  }

  /**
   * Prompt rows (a chunk at startPos..): rope_kv_f32 rotates q in place and writes k (rotated) and v into the cache in
   * one launch, the same bits as rope, rope and writeKv (rope.cu). One row stays with the GEMV batch, which folds rope
   * and the KV write into the q/k/v launch's epilogue; so do shapes off the cache's.
   */
  ropeKv(q: Activation, k: Activation, v: Activation, cache: KvCache, layer: number, startPos: number,
    shape: RopeShape, rows: number): boolean {
    const c = cache as CudaKvCache, d = shape.headDim, width = c.kvHeads * c.headDim;
    if (!this.fusedRopeKv || rows < 2 || this.capturing || d % 2 !== 0 || c.headDim !== d || c.kvHeads !== shape.kvHeads ||
      q.cols !== shape.heads * d || k.cols !== width || v.cols !== width) return false;
    checkKvRange(c, startPos, rows);
    this.batch.flush();
    this.promptOps.copies.forget();
    const off = BigInt(layer * c.layerBytes()), chunks = (n: number): number => Math.ceil(n / ROPE_HEADS);
    this.kernels.launch('rope_kv_f32', { x: Math.ceil((rows * d) / 2 / 256), y: chunks(shape.heads) + 2 * chunks(shape.kvHeads) }, { x: 256 },
      [ptr(act(q).ptr), ptr(act(k).ptr), ptr(act(v).ptr), ptr((c.k + off) as DevicePtr), ptr((c.v + off) as DevicePtr), i32(shape.heads),
        i32(shape.kvHeads), i32(d), f32(shape.theta), i32(startPos), i32(rows), i32(c.maxSeq)]);
    return true;
  }

  /**
   * Prompt rows: q, k and v in one register-A launch whose epilogue rotates q and k and writes k and v into the cache
   * (PromptOps.qkvRope: gemm_rs_256_qkv_rope32, within an ulp of linears + ropeKv; gemm_rs_256_qkv_rope with
   * qkvRopeBits 64, their bits). Heads of 128, k and v of q's width (no grouped KV heads), where both would fuse.
   */
  qkvRopeKv(outs: readonly Activation[], x: Activation, weights: readonly LinearWeight[], cache: KvCache, layer: number, startPos: number,
    shape: RopeShape, rows: number, qReader?: 'attention'): boolean {
    const c = cache as CudaKvCache, d = shape.headDim, width = c.kvHeads * c.headDim;
    const bits = this.qkvRopeBits;
    if (bits === 0 || !this.fusedRopeKv || rows < 2 || this.capturing || d !== 128 || c.headDim !== d || c.kvHeads !== shape.kvHeads ||
      shape.kvHeads !== shape.heads || outs.length !== 3 || outs.some((o) => o.cols !== width)) return false;
    checkKvRange(c, startPos, rows);
    const at = (base: bigint): DevicePtr => (base + BigInt(layer * c.layerBytes()) + BigInt(startPos * width * 2)) as DevicePtr;
    const table = (): DevicePtr => this.ropeTable(startPos, rows, shape.theta, d, bits);
    // q only as the Q tile attn_flash_wg_128 makes of it, where that kernel is the attention that reads q next
    const qh = qReader === 'attention' && this.halfOnly.has('q') && this.flashFor(d, rows, shape.heads)?.name === 'attn_flash_wg_128'
      ? this.grow(this.qTileBuf, rows * outs[0].cols * 2) : null;
    const overlap = this.attnOverlap && shape.heads <= ATTN_READY_HEADS && rsQkvRopeOverlaps(rows, outs[0].cols, this.smCount);
    const counters = qh !== null && overlap ? this.attnReadyCounters(shape.heads) : null;
    const qTile = qh === null ? null : { at: qh, scale: flashScaleLog2(d), ready: counters };
    const xh = this.promptOps.qkvRope(act(outs[0]), act(x), weights as CudaLinear[], at(c.k), at(c.v), table, bits, rows, qTile);
    if (xh === null) return false;
    this.promptOps.copies.forget();
    if (qh !== null) {
      if (counters !== null) this.attnReadyCount = (this.attnReadyCount + rsQkvRopeHeadTiles(rows)) >>> 0;
      const ready = counters === null ? null : { counters, target: this.attnReadyCount, reads: xh };
      this.promptOps.copies.holdQTile(act(outs[0]).ptr, { at: qh, ready });
    }
    return true;
  }

  /**
   * attnOverlap's per-head tile counters for a launch of `heads` heads: allocated at first use, and zeroed then and
   * whenever the head count changes (one model's launches all have the same, so its prompts never zero them; without
   * it, heads a narrower launch skipped would lag the running count and their attention would wait for ever)
   */
  private attnReadyCounters(heads: number): DevicePtr {
    this.attnReady ??= this.mem.alloc(ATTN_READY_HEADS * 4);
    if (heads !== this.attnReadyHeads) {
      this.cu.memsetD32(this.attnReady, 0, ATTN_READY_HEADS, this.stream);
      this.attnReadyCount = 0;
      this.attnReadyHeads = heads;
    }
    return this.attnReady;
  }

  /** rope_table_f64 (or _f32) for positions startPos .. startPos + rows − 1 (computed once per chunk: every layer reads it) */
  private ropeTable(startPos: number, rows: number, theta: number, d: number, bits: 32 | 64): DevicePtr {
    const key = `${startPos},${rows},${theta},${d},${bits}`, bytes = rows * (d / 2) * (bits / 4), before = this.ropeTab.ptr;
    const p = this.grow(this.ropeTab, bytes);
    if (p === before && key === this.ropeTabKey) return p;
    this.kernels.launch(`rope_table_f${bits}`, { x: Math.ceil((rows * d) / 2 / 256) }, { x: 256 }, [ptr(p), i32(d), f32(theta), i32(startPos), i32(rows)]);
    this.ropeTabKey = key;
    return p;
  }

  /**
   * The causal prompt-attention kernel for `rows` > 1 query rows of head size d, or null (the split kernel then):
   * attn_flash_wg_128 (wgmma, a block per head and 128 rows) on sm_90 under the 'wgmma' prefill kernels, else
   * attn_flash_<d> (mma.sync, a block per head and 64 rows) for d 64 / 128 unless the prefill kernels are 'old'.
   */
  private flashFor(d: number, rows: number, heads: number): { name: string; grid: { x: number; y: number }; threads: number; shared: number } | null {
    if (d === 128 && this.prefillKernels === 'wgmma' && this.flashKernel === 'wgmma' && this.flashWgFits) {
      return { name: 'attn_flash_wg_128', grid: flashWgGrid(rows, heads), threads: 256, shared: flashWgShared() };
    }
    if ((d === 64 || d === 128) && this.prefillKernels !== 'old' && this.flashFits) {
      return { name: `attn_flash_${d}`, grid: flashGrid(rows, heads), threads: 128, shared: flashShared(d) };
    }
    return null;
  }

  attention(out: Activation, q: Activation, cache: KvCache, shape: AttentionShape, rows: number, reader?: LinearWeight): void {
    // q written only as attn_flash_wg_128's Q tile (qkvRopeKv): that kernel must be the one to run
    const qt = this.promptOps.copies.takeQTile(act(q).ptr), qh = qt?.at ?? null;
    this.promptOps.copies.forget();
    const c = cache as CudaKvCache;
    const d = shape.headDim;
    if (d !== 64 && d !== 128 && d !== 256) throw new CudaUnsupportedError(`the CUDA attention kernel supports head sizes 64, 128 and 256, not ${d}`);
    const off = BigInt(shape.layer * c.layerBytes());
    const pos = this.posPtr();
    const flash = rows > 1 && shape.heads % shape.kvHeads === 0 ? this.flashFor(d, rows, shape.heads) : null;
    const wg = flash?.name === 'attn_flash_wg_128';
    if (qh !== null && !wg) {
      throw new Error('qllama internal error: q was written only as attn_flash_wg_128\'s Q tile, and another attention kernel would read q; ' +
        'QLLAMA_CUDA_HALF_ONLY=none works around it');
    }
    if (flash) {
      this.batch.flush();
      // attn_flash_wg_128 also writes out's fp16 copy where o_proj's GEMM reads one (halfCopies.ts): no conversion pass;
      // and only that copy where its reader (o_proj) reads it
      const half = wg && out.cols === shape.heads * d ? this.promptOps.halfFor(act(out), rows) : null;
      const halfOnly = half !== null && reader !== undefined && this.halfOnly.has('attention') &&
        halfCopyReaders([reader as CudaLinear], out.cols, null);
      this.promptOps.copies.unwritten(act(out).ptr, halfOnly);
      const args = [ptr(halfOnly ? null : act(out).ptr), ptr(act(q).ptr), ptr((c.k + off) as DevicePtr), ptr((c.v + off) as DevicePtr), ptr(pos),
        i32(shape.startPos), i32(rows), i32(shape.heads), i32(shape.kvHeads), f32(flashScaleLog2(d))];
      const ready = qt?.ready ?? null;
      // attention overlapping the q/k/v launch must not write the fp16 x that launch still reads. It cannot by
      // construction: HalfCopies hands out its least recently used of two slots, and the q/k/v launch's x is the most
      // recent (nothing takes a slot between the two); this keeps a change there from racing silently.
      if (ready !== null && half === ready.reads) {
        throw new Error('qllama internal error: prompt attention would write its fp16 copy into the x the q/k/v launch it overlaps reads; ' +
          'QLLAMA_CUDA_ATTN_OVERLAP=0 works around it');
      }
      if (ready !== null) this.attnOverlapLaunches++;
      if (wg) {
        this.flashWgLaunches++;
        args.push(ptr(half), ptr(qh), ptr(ready?.counters ?? null), u32(ready?.target ?? 0));
      }
      // behind the q/k/v launch that counts its tiles: may start before that launch ends (it waits on the counts)
      this.kernels.launch(flash.name, flash.grid, { x: flash.threads }, args, flash.shared, ready !== null);
      return;
    }
    const maxPositions = this.capturing ? Math.min(c.maxSeq, this.captureBound) : shape.startPos + rows;
    // one row over a short cache: folded into the q/k/v launch that writes q, k and v (gemvBatch.ts foldAttentionInto)
    if (rows === 1 && d === 128 && maxPositions <= FOLD_ATTENTION_MAX_POSITIONS &&
      this.batch.foldAttentionInto(act(out).ptr, act(q).ptr, (c.k + off) as DevicePtr, (c.v + off) as DevicePtr, shape.heads, shape.kvHeads,
        1 / Math.sqrt(d), { ptr: pos, imm: shape.startPos })) return;
    const plan = planAttention(maxPositions, rows, shape.heads, this.smCount, d);
    const part = this.grow(this.attnPart, rows * shape.heads * plan.splits * (d + 2) * 4);
    const tickets = this.growZeroed(this.attnTickets, rows * shape.heads * 4);
    // one row: held until the next GEMV is known (its x permuted for act-order)
    const nx = Buffer.alloc(NEXT_GEMV_BYTES);
    this.batch.launchBeforeGemv(`attn_split_${d}`, { x: shape.heads, y: plan.splits, z: rows }, { x: 128 },
      [ptr(act(out).ptr), ptr(part), ptr(tickets), ptr(act(q).ptr), ptr((c.k + off) as DevicePtr), ptr((c.v + off) as DevicePtr), ptr(pos),
        i32(shape.startPos), i32(shape.heads), i32(shape.kvHeads), i32(plan.splits), f32(1 / Math.sqrt(d)), nx], nx, rows === 1 ? act(out).ptr : null, out.cols);
  }

  // --- batched decode: row t is sequence t's next token (batchOps.ts, batch_decode.cu) -----------
  ropeRows(x: Activation, heads: number, headDim: number, positions: Int32Array, theta: number, rows: number): void {
    this.promptOps.copies.forget();
    this.batchOps.ropeRows(act(x), heads, headDim, positions, theta, rows);
  }

  writeKvRows(caches: readonly KvCache[], layer: number, positions: Int32Array, k: Activation, v: Activation, rows: number): void {
    this.batchOps.writeKvRows(caches.map(kvCache), layer, positions, act(k), act(v), rows);
  }

  ropeKvRows(q: Activation, k: Activation, v: Activation, caches: readonly KvCache[], layer: number, positions: Int32Array,
    shape: RopeShape, rows: number): void {
    this.promptOps.copies.forget();
    this.batchOps.ropeKvRows(act(q), act(k), act(v), caches.map(kvCache), layer, positions, shape, rows);
  }

  attentionRows(out: Activation, q: Activation, caches: readonly KvCache[], shape: BatchAttentionShape, positions: Int32Array, rows: number): void {
    this.promptOps.copies.forget();
    this.batchOps.attentionRows(act(out), act(q), caches.map(kvCache), shape, positions, rows);
  }

  swiglu(out: Activation, gate: Activation, up: Activation, rows: number): void {
    this.promptOps.copies.forget();
    if (rows === 1 && this.batch.swiglu(act(out).ptr, act(gate).ptr, act(up).ptr)) return;
    // prompt rows: also the fp16 copy that down_proj's GEMM reads
    if (this.promptOps.swiglu(act(out), act(gate), act(up), rows)) return;
    this.batch.flush();
    const n = rows * out.cols;
    this.kernels.launch('swiglu_f32', { x: Math.min(Math.ceil(n / 256), 8192) }, { x: 256 },
      [ptr(act(out).ptr), ptr(act(gate).ptr), ptr(act(up).ptr), i32(n)], 0, true);
  }

  copyRows(dst: Activation, src: Activation, srcRow: number, rows: number): void {
    this.batch.flush();
    this.promptOps.copies.forget();
    const s = act(src);
    this.cu.copyDtoD(act(dst).ptr, (s.ptr + BigInt(srcRow * s.cols * 4)) as DevicePtr, rows * s.cols * 4, this.stream);
  }

  addInPlace(x: Activation, y: Activation, rows: number): void {
    this.batch.flush();
    this.promptOps.copies.forget();
    const n = rows * x.cols;
    this.kernels.launch('add_f32', { x: Math.min(Math.ceil(n / 256), 8192) }, { x: 256 }, [ptr(act(x).ptr), ptr(act(y).ptr), i32(n)]);
  }

  /** Whether act-order input-norm GEMVs read the norm weight in their row order (declareInputNorm); drops captured graphs. */
  get gemvPermutedNorms(): boolean { return this.batch.usePermutedNorms; }
  set gemvPermutedNorms(on: boolean) {
    this.synchronize();
    this.batch.usePermutedNorms = on;
    this.dropGraphs();
  }

  /** Whether one-token attention over short caches folds into the q/k/v launch (gemvBatch.ts); drops captured graphs. */
  get foldAttention(): boolean { return this.batch.foldAttention; }
  set foldAttention(on: boolean) {
    this.synchronize();
    this.batch.foldAttention = on;
    this.dropGraphs();
  }

  /** attentions folded into q/k/v launches so far (captured ones count once) */
  get attentionFolds(): number { return this.batch.attentionFolds; }

  /** Whether one-token GEMV batches launch as thread-block clusters where they can (sm_90); drops captured graphs. */
  get gemvClusters(): boolean { return this.batch.clusters; }
  set gemvClusters(on: boolean) {
    this.synchronize();
    this.batch.clusters = on && this.clustersFit;
    this.dropGraphs();
  }

  /** Whether prompt RMSNorms up to 5120 wide take rmsnorm_rows_f32_narrow (PromptOps.normNarrow). */
  get rmsNormNarrow(): boolean { return this.promptOps.normNarrow; }
  set rmsNormNarrow(on: boolean) { this.promptOps.normNarrow = on; }

  /** Whether attention (and, with the norm in the tail, the norm) writes act-order consumers' inputs permuted; drops captured graphs. */
  get gemvPermuteX(): boolean { return this.batch.permuteX; }
  set gemvPermuteX(on: boolean) {
    this.synchronize();
    this.batch.permuteX = on;
    this.dropGraphs();
  }

  // --- fast paths ------------------------------------------------------------------------
  runGraph(key: string, step: { readonly startPos: number; readonly ids: Int32Array }, record: () => void): void {
    this.batch.flush();
    this.writeStep(step.startPos, step.ids);
    const bound = positionBucket(step.startPos + step.ids.length);
    this.replay(`${key}@${bound}`, bound, record);
  }

  /**
   * A batched decode step (LlamaModel.decodeBatch) of 2..batchGraphRows rows is recorded once per row
   * count and position bucket and replayed: its ids go through the step buffer (embed reads them there),
   * its positions and cache pointers through the batched ops' tables, written before the replay
   * (BatchOps.prepare). Other steps, or none given, run `record` eagerly. The eager pass cost about
   * 6 ms per step at 2..4 rows in driver calls (13B, H200: bench/cudaNotes.md, twelfth pass).
   */
  decodeStep(record: () => void, step?: BatchStep): void {
    const rows = step?.ids.length ?? 0;
    if (step === undefined || rows < 2 || rows > this.batchGraphRows || this.capturing) {
      record();
      return;
    }
    this.batch.flush();
    const maxPos = this.batchOps.prepare(step.caches.map(kvCache), step.positions, rows);
    this.writeStep(0, step.ids);
    const bound = positionBucket(maxPos + 1);
    this.replay(`batch${rows}@${bound}/${this.linearChoices()}`, bound, record);
  }

  /**
   * The switches that choose a batched step's kernels (tests and benchmarks change them between steps):
   * part of a recorded step's key, so a change records anew instead of replaying the old choice.
   */
  private linearChoices(): string {
    return [this.smallBatchMaxRows, this.multiMaxRows, this.fuseSmallBatch, this.prefillKernels, this.wgmmaStreamK, this.fusedGateUp, this.fusedQkv, this.wgmmaTileCols, this.wgmmaSliceBytes, this.rsMinRows, this.rsMaxRows, this.rsMinFill, this.rsSmallRows, this.rsSplitFill, this.rsPaired, this.rsPdl, this.qkvRopeBits].join(',');
  }

  /** [startPos, ids...] into the step buffer, which recorded steps read their ids (and one-row steps their position) from. */
  private writeStep(startPos: number, ids: Int32Array): void {
    const len = 1 + ids.length;
    if (this.stepHost.length < len) this.stepHost = new Int32Array(len);
    const host = this.stepHost;
    host[0] = startPos;
    host.set(ids, 1);
    const stepPtr = this.grow(this.step, len * 4);
    // pageable source: the driver has staged it when the call returns, so the buffer is reused next step
    this.cu.copyHtoD(stepPtr, host, len * 4, this.stream);
  }

  /** Launches the graph recorded under `key`, recording `record` first if there is none (positions up to `bound`). */
  private replay(key: string, bound: number, record: () => void): void {
    let g = this.graphs.get(key);
    if (!g) {
      // fp16 copies made before the recording would be missing from its replays: make them inside
      this.promptOps.copies.forget();
      this.cu.beginCapture(this.stream);
      this.capturing = true;
      this.captureBound = bound;
      let graph: CuGraph;
      try {
        record();
        this.batch.flush();
      } finally {
        this.capturing = false;
        this.captureBound = Infinity;
        graph = this.cu.endCapture(this.stream);
      }
      g = { graph, exec: this.cu.instantiate(graph) };
      this.graphs.set(key, g);
    }
    this.cu.launchGraph(g.exec, this.stream);
  }

  argmax(x: Activation): number {
    this.batch.flush();
    const a = act(x);
    this.kernels.launch('argmax_f32', { x: 1 }, { x: 1024 }, [ptr(this.idOut), ptr(a.ptr), i32(a.cols)], 0, true);
    return this.readId();
  }
  /** argmaxRows.ts; its own scratch, so a wide batch never regrows embed's ids buffer (a regrow drops captured graphs) */
  argmaxRows(x: Activation, rows: number): Int32Array {
    this.batch.flush();
    return launchArgmaxRows(this, act(x), rows, this.grow(this.argmaxIds, rows * 4));
  }

  /** The Sampler's draw from row 0 of x on the device (sampleLaunch.ts); null: sample on the host. */
  sample(x: Activation, p: DeviceSampling): number | null {
    this.batch.flush();
    const a = act(x);
    if (!launchSample(this.kernels, this.idOut, a.ptr, a.cols, p)) return null;
    const id = this.readId();
    return id >= 0 ? id : null;
  }

  /** The id the last argmax or sample launch wrote (waits for it). */
  private readId(): number {
    this.cu.copyDtoH(this.idHost, this.idOut, 4, this.stream);
    this.cu.streamSynchronize(this.stream);
    return this.idHost[0];
  }

  /** Waits for all queued work (benchmarks, tests). */
  synchronize(): void {
    this.batch.flush();
    this.cu.streamSynchronize(this.stream);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.cu.streamSynchronize(this.stream);
    this.dropGraphs();
    this.mem.freeAll();
    this.kernels.dispose();
    this.cu.destroyStream(this.stream);
    this.cu.releasePrimaryContext(this.device);
  }

  // --- internals -------------------------------------------------------------------------
  private gemmOptions(): GemmOptions {
    return {
      mma: this.prefillKernels !== 'old' && this.mmaGemmFits,
      half: (x, rows, cols, perm) => this.promptOps.copies.of(x, rows, cols, perm),
      readsF32: (x) => this.promptOps.copies.checkWritten(x),
      wgmma: this.prefillKernels === 'wgmma' && this.wgmmaFits ? this.wgmma : null,
      smallBatch: this.smallBatchMaxRows >= 2
        ? { maxRows: this.smallBatchMaxRows, multiMaxRows: this.multiMaxRows, smCount: this.smCount, ...this.splitK, wsTiles: MULTI_WS_TILES }
        : null,
    };
  }

  private posPtr(): DevicePtr | null {
    return this.capturing ? this.step.ptr : null;
  }

  /** grow() whose new memory starts zeroed (a memset node when it happens during a capture) */
  private growZeroed(s: Scratch, bytes: number): DevicePtr {
    const before = s.ptr;
    const p = this.grow(s, bytes);
    if (p !== before) this.cu.memsetD32(p, 0, s.bytes / 4, this.stream);
    return p;
  }

  /** @param double grow to at least twice the old size (false: exactly `bytes`, for large buffers) */
  private grow(s: Scratch, bytes: number, double = true): DevicePtr {
    if (s.ptr !== null && s.bytes >= bytes) return s.ptr;
    if (this.capturing && s === this.step) throw new CudaUnsupportedError('step buffer grew during capture');
    if (s.ptr !== null) {
      if (this.capturing) {
        // nodes captured so far may use the old buffer, and a capturing stream cannot be synchronized:
        // keep it until dispose
      } else {
        this.batch.flush(); // held launches may use the old buffer
        this.cu.streamSynchronize(this.stream);
        this.mem.free(s.ptr);
        this.dropGraphs();
      }
    }
    const size = Math.max(bytes, double ? 2 * s.bytes : 0, 256);
    s.ptr = this.mem.alloc(size);
    s.bytes = size;
    return s.ptr;
  }

  private dropGraphs(): void {
    for (const g of this.graphs.values()) {
      this.cu.destroyGraphExec(g.exec);
      this.cu.destroyGraph(g.graph);
    }
    this.graphs.clear();
  }
}


function kvCache(c: KvCache): CudaKvCache {
  if (!(c instanceof CudaKvCache)) throw new TypeError('KV cache was not allocated by the CUDA backend');
  return c;
}

function act(a: Activation): CudaActivation {
  if (!(a instanceof CudaActivation)) throw new TypeError('activation was not allocated by the CUDA backend');
  return a;
}
