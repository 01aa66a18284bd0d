// Lab: prefill GEMMs of a 13B 4-bit g128 GPTQ model (q4 layout) on the H100, M = 2048 and 512 rows.
//   (a) q4mma     the shipped gemm_q4_mma (src/backends/cuda/kernels/gemm_mma.cu, included as is)
//   (b) wg*       dequant_q4_tile (int4 -> fp16 [N, K] scratch, timed and counted; the first dequant_q4_nk timed
//                 beside it) + wgmma GEMM (src/backends/cuda/kernels/gemm_wgmma.cu + .cuh)
//       mma16     the same scratch + an mma.sync fp16 GEMM (sm_80 instructions: the fallback if wgmma fails)
//   (s) wg256s    the product's path: per slice of N (sliceCols, a copy of wgmmaLinear.ts's planner), dequant_q4_tile
//                 into a slice-sized scratch + wg256 into the slice's columns of y; timed with its dequantizations
//   deq           (probe only) dequant_q4_tile byte-equal to dequant_q4_nk, whole and for a slice of columns
//   (c) fused*    wgmma GEMM that dequantizes each int4 slice into shared memory itself
//   (r) rs*       wgmma GEMM with W as the register operand A, dequantized by the consumers (gemm_wgmma_rs.cuh)
// Also: x_to_half (x f32 -> fp16, every path needs it once per linear input) and the prefill attention
// (attn_flash_128, 40 heads, d 128, 2048 causal rows), so the lead can see linears vs attention; and one
// 13B layer as the product runs it (7 linears: q, k, v, o 5120x5120, gate, up 13824x5120, down 5120x13824):
// old dequant + whole GEMM, new dequant + whole GEMM, sliced (the planner's width, and a 32 MiB cap), M 2048 / 1024.
// Every variant is checked against a plain f32 reference (dequantize, multiply, f32 sums) on every output,
// with the output poisoned (NaN) first; a variant that fails is not timed and the lab exits 1.
// Timing: cudaEvents around each launch, L2 flushed (256 MB memset) before each, median of 15 (10 for attention).
// Modes:  gemmLab                  all variants, all shapes, summary table
//         gemmLab --only a,b,...   only these variants (names: gemmLab --list)
//         gemmLab --probe NAME     small-shape correctness of one variant (odd M / N, gs 32/64/128, accumulate,
//                                  a grid smaller than the tile count); gemm-lab.sh runs each under `timeout`
// Build and run: bash bench/lab/gemm-lab.sh
#include <cuda_runtime.h>
#include <cudaTypedefs.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../../src/backends/cuda/kernels/gemm_mma.cu"
#include "../../src/backends/cuda/kernels/attention_flash.cu"
#include "../../src/backends/cuda/kernels/readbw.cu"
#include "../../src/backends/cuda/kernels/gemm_wgmma.cu"
#include "../../src/backends/cuda/kernels/gemm_wgmma_rs.cuh"

#define CK(x)                                                                                               \
  do {                                                                                                      \
    cudaError_t e_ = (x);                                                                                   \
    if (e_ != cudaSuccess) {                                                                                \
      fprintf(stderr, "gemm-lab: CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, __LINE__, #x); \
      exit(1);                                                                                              \
    }                                                                                                       \
  } while (0)

static const char* g_current = "";  // what runs now (named in a launch failure)
static void ckLaunch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    fprintf(stderr, "gemm-lab: %s (%s) failed: %s%s\n", what, g_current, cudaGetErrorString(e),
            e == cudaErrorLaunchFailure || e == cudaErrorIllegalInstruction
                ? " (a trap: the wgmma kernels trap when an mbarrier wait exceeds ~5 s, i.e. a pipeline hang)"
                : "");
    exit(1);
  }
}

// ---- random data ---------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t hash32(uint64_t i, uint32_t seed) {
  uint32_t x = (uint32_t)i * 2654435761u ^ seed * 40503u ^ (uint32_t)(i >> 32) * 97u;
  x ^= x >> 15; x *= 2246822519u; x ^= x >> 13; x *= 3266489917u; x ^= x >> 16;
  return x;
}
__global__ void fill_u32(uint32_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    p[i] = hash32(i, seed) ^ (hash32(i, seed + 7u) << 16);
}
__global__ void fill_half(__half* p, size_t n, uint32_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    p[i] = __float2half(lo + (hi - lo) * ((hash32(i, seed) >> 8) * (1.f / 16777216.f)));
}
__global__ void fill_float(float* p, size_t n, uint32_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    p[i] = lo + (hi - lo) * ((hash32(i, seed) >> 8) * (1.f / 16777216.f));
}
__global__ void add_f32(float* dst, const float* a, const float* b, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) dst[i] = a[i] + b[i];
}

// ---- reference: y[m, n] = Σ_k float(xh[m, k]) · s[k/gs, n] · (q[k, n] − z[k/gs, n] − 1), f32 -----------
// 16 × 16 output tile per block; every weight dequantized straight from the packed words, in f32.
__global__ void ref_q4_gemm(float* __restrict__ y, const __half* __restrict__ xh, const uint32_t* __restrict__ qw,
                            const __half* __restrict__ scales, const uint32_t* __restrict__ qzeros, int M, int N, int K, int gs) {
  __shared__ float xs[16][17], ws[16][17];  // xs[m][k], ws[n][k]
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int m = blockIdx.y * 16 + ty, n = blockIdx.x * 16 + tx;
  const int wn = blockIdx.x * 16 + ty;  // the weight column this thread loads
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += 16) {
    const int k = k0 + tx;
    xs[ty][tx] = m < M ? __half2float(xh[(size_t)m * K + k]) : 0.f;
    float w = 0.f;
    if (wn < N) {
      const int g = k / gs;
      const uint32_t q = (qw[(size_t)(k / 8) * N + wn] >> (4 * (k % 8))) & 15u;
      const uint32_t z = (qzeros[(size_t)g * (N / 8) + wn / 8] >> (4 * (wn % 8))) & 15u;
      w = __half2float(scales[(size_t)g * N + wn]) * ((float)q - (float)z - 1.f);
    }
    ws[ty][tx] = w;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 16; ++kk) acc += xs[ty][kk] * ws[tx][kk];
    __syncthreads();
  }
  if (m < M && n < N) y[(size_t)m * N + n] = acc;
}

// ---- fallback: fp16 × fp16 GEMM with mma.sync on the dequantized W [N, K] --------------------------------
// gemm_q4_mma's tiling (128 × 128 block, 8 warps of 64 × 32, mma.cuh helpers) with the fp16 weight tile
// coming straight from the scratch through cp.async: no dequantization step, one barrier per slice,
// 3 stages of 36 KB so 2 blocks fit an SM. Safe (sm_80 instructions only) if the wgmma kernels fail.
namespace hm {
constexpr int BM = 128, BN = 128, BK = 64, STAGES = 3, THREADS = 256, AST = BK + 8;
constexpr int A_STAGE = BM * AST, B_STAGE = BN * AST;     // halves
constexpr int SMEM = STAGES * (A_STAGE + B_STAGE) * 2;    // 110592 bytes
}  // namespace hm
__global__ void __launch_bounds__(256, 2) gemm_f16_mma(float* __restrict__ y, const __half* __restrict__ xh,
                                                      const __half* __restrict__ W, int M, int N, int K, int accumulate) {
  using namespace hm;
  extern __shared__ __align__(16) unsigned char hm_smem[];
  __half* As = reinterpret_cast<__half*>(hm_smem);
  __half* Bs = As + STAGES * A_STAGE;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
  const int nslices = K / BK;
  auto load = [&](int stage, int slice) {
    const int k0 = slice * BK;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int c = tid + i * THREADS;  // 1024 chunks of 8 halves: row c / 8, chunk c % 8
      const int r = c >> 3, kc = (c & 7) * 8;
      const int gm = m0 + r, gn = n0 + r;
      mma_cp16(As + stage * A_STAGE + r * AST + kc, xh + (size_t)min(gm, M - 1) * K + k0 + kc, gm < M ? 16 : 0);
      mma_cp16(Bs + stage * B_STAGE + r * AST + kc, W + (size_t)min(gn, N - 1) * K + k0 + kc, gn < N ? 16 : 0);
    }
  };
  float acc[4][4][4];
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int b = 0; b < 4; ++b)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[a][b][c] = 0.f;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < nslices) load(s, s);
    mma_cp_commit();
  }
  for (int i = 0; i < nslices; ++i) {
    mma_cp_wait<STAGES - 2>();
    __syncthreads();  // slice i landed for every thread; everyone is past the mma of slice i − 1
    if (i + STAGES - 1 < nslices) load((i + STAGES - 1) % STAGES, i + STAGES - 1);
    mma_cp_commit();
    const __half* a = As + (i % STAGES) * A_STAGE;
    const __half* b = Bs + (i % STAGES) * B_STAGE;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) mma_warp_64x32_k16<AST, AST>(acc, a, b, wm, wn, kk, lane);
  }
  mma_cp_wait<0>();
  mma_store_64x32(y, N, M, N, m0 + wm, n0 + wn, acc, lane, accumulate);
}

// ---- comparison on the device: max |a − r|, max |r|, Σ (a − r)², Σ r², non-finite count -----------------
struct CmpOut {
  unsigned maxErr, maxRef;  // float bits (non-negative: integer order = float order)
  unsigned long long bad;
  double err2, ref2;
};
__global__ void compare(const float* __restrict__ a, const float* __restrict__ r, size_t n, CmpOut* out) {
  float me = 0.f, mr = 0.f;
  double e2 = 0, r2 = 0;
  unsigned long long bad = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float x = a[i], y = r[i];
    if (!isfinite(x)) { ++bad; continue; }
    const float d = fabsf(x - y);
    me = fmaxf(me, d);
    mr = fmaxf(mr, fabsf(y));
    e2 += (double)d * d;
    r2 += (double)y * y;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    me = fmaxf(me, __shfl_xor_sync(0xffffffffu, me, o));
    mr = fmaxf(mr, __shfl_xor_sync(0xffffffffu, mr, o));
    e2 += __shfl_xor_sync(0xffffffffu, e2, o);
    r2 += __shfl_xor_sync(0xffffffffu, r2, o);
    bad += __shfl_xor_sync(0xffffffffu, bad, o);
  }
  if ((threadIdx.x & 31) == 0) {
    atomicMax(&out->maxErr, __float_as_uint(me));
    atomicMax(&out->maxRef, __float_as_uint(mr));
    atomicAdd(&out->bad, bad);
    atomicAdd(&out->err2, e2);
    atomicAdd(&out->ref2, r2);
  }
}

// ---- globals -------------------------------------------------------------------------------------
static int g_sms = 132;
static cudaDeviceProp g_prop;
static PFN_cuTensorMapEncodeTiled_v12000 g_encode = nullptr;
static void* g_flush = nullptr;  // L2 flush buffer
static const size_t FLUSH_BYTES = (size_t)256 << 20;
static CmpOut* g_cmp = nullptr;
static bool g_failed = false;

struct Err { double maxNorm, rmsNorm; unsigned long long bad; bool ok; };
static const double TOL_MAX = 3e-3, TOL_RMS = 1e-3;  // fp16-rounded weights vs f32: ~3e-4 expected

static Err compareDev(const float* a, const float* ref, size_t n) {
  CK(cudaMemset(g_cmp, 0, sizeof(CmpOut)));
  compare<<<g_sms * 4, 256>>>(a, ref, n, g_cmp);
  ckLaunch("compare");
  CmpOut h;
  CK(cudaMemcpy(&h, g_cmp, sizeof h, cudaMemcpyDeviceToHost));
  float me, mr;
  memcpy(&me, &h.maxErr, 4);
  memcpy(&mr, &h.maxRef, 4);
  Err e;
  e.bad = h.bad;
  e.maxNorm = mr > 0 ? me / mr : (me > 0 ? INFINITY : 0);
  e.rmsNorm = h.ref2 > 0 ? std::sqrt(h.err2 / h.ref2) : 0;
  e.ok = h.bad == 0 && mr > 0 && e.maxNorm < TOL_MAX && e.rmsNorm < TOL_RMS;
  return e;
}

static float medianOf(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// ms per launch: median of `reps`; each launch bracketed by its own events, an L2 flush before each,
// everything queued back to back (no host gaps inside a measurement)
static float timeMs(const std::function<void()>& launch, int reps = 15) {
  launch();
  launch();
  ckLaunch("warm-up");
  std::vector<cudaEvent_t> ev(2 * reps);
  for (auto& e : ev) CK(cudaEventCreate(&e));
  for (int i = 0; i < reps; ++i) {
    CK(cudaMemsetAsync(g_flush, i & 0xff, FLUSH_BYTES));
    CK(cudaEventRecord(ev[2 * i]));
    launch();
    CK(cudaEventRecord(ev[2 * i + 1]));
  }
  ckLaunch("timed launches");
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i) CK(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
  for (auto& e : ev) CK(cudaEventDestroy(e));
  return medianOf(ms);
}

// ---- tensor maps ---------------------------------------------------------------------------------
static CUtensorMap tmap2d(CUtensorMapDataType dt, const void* base, uint64_t inner, uint64_t outer, uint64_t rowBytes,
                         uint32_t boxInner, uint32_t boxOuter, CUtensorMapSwizzle sw, const char* what) {
  CUtensorMap m;
  memset(&m, 0, sizeof m);
  const cuuint64_t dims[2] = {inner, outer};
  const cuuint64_t strides[1] = {rowBytes};
  const cuuint32_t box[2] = {boxInner, boxOuter};
  const cuuint32_t es[2] = {1, 1};
  const CUresult r = g_encode(&m, dt, 2, const_cast<void*>(base), dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE, sw,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    fprintf(stderr,
            "gemm-lab: cuTensorMapEncodeTiled(%s) failed with CUresult %d: dims {%llu, %llu}, row %llu bytes, box {%u, %u}, "
            "base %p\n",
            what, (int)r, (unsigned long long)inner, (unsigned long long)outer, (unsigned long long)rowBytes, boxInner, boxOuter,
            base);
    exit(1);
  }
  return m;
}

// ---- the weights of one linear -------------------------------------------------------------------
struct Q4 {
  int N, K, gs;
  uint32_t* qw;      // [K/8, N]
  __half* scales;    // [K/gs, N]
  uint32_t* qzeros;  // [K/gs, N/8]
};
static Q4 makeQ4(int N, int K, int gs, uint32_t seed) {
  Q4 w{N, K, gs, nullptr, nullptr, nullptr};
  const size_t nq = (size_t)K / 8 * N, ns = (size_t)K / gs * N, nz = (size_t)K / gs * N / 8;
  CK(cudaMalloc(&w.qw, nq * 4));
  CK(cudaMalloc(&w.scales, ns * 2));
  CK(cudaMalloc(&w.qzeros, nz * 4));
  fill_u32<<<g_sms * 8, 256>>>(w.qw, nq, seed);
  fill_half<<<g_sms * 8, 256>>>(w.scales, ns, seed + 1, 0.002f, 0.012f);
  fill_u32<<<g_sms * 8, 256>>>(w.qzeros, nz, seed + 2);
  ckLaunch("weight fill");
  return w;
}
static void freeQ4(Q4& w) {
  cudaFree(w.qw);
  cudaFree(w.scales);
  cudaFree(w.qzeros);
}

// ---- variants -------------------------------------------------------------------------------------
typedef void (*WgFn)(float*, int, int, int, int, int, int, CUtensorMap, CUtensorMap, CUtensorMap, CUtensorMap, int*);
struct Variant {
  const char* name;
  char kind;  // 'a' q4mma, 'b' dequant + wgmma, 'c' fused wgmma, 'r' register-A wgmma, 's' sliced dequant + wgmma, 'd' dequant check (probe only)
  int bn, stages, smem;
  WgFn fn;
  const char* about;
};
static std::vector<Variant> variants() {
  using namespace wg;
  return {
      {"q4mma", 'a', 128, gq::STAGES, gq::SMEM, nullptr, "gemm_q4_mma (shipped): mma.sync, 128x128, int4 dequantized per slice in smem"},
      {"mma16", 'b', 128, hm::STAGES, hm::SMEM, nullptr,
       "fallback: dequant -> fp16 [N,K], mma.sync 128x128, cp.async 3 stages, 2 blocks/SM"},
      {"wg256", 'b', 256, 4, Cfg<256, 4, false>::SMEM, (WgFn)wg_gemm<256, 4, false, 1, 40, 232>,
       "dequant -> fp16 [N,K], wgmma 128x256, TMA 4 stages"},
      {"wg128", 'b', 128, 6, Cfg<128, 6, false>::SMEM, (WgFn)wg_gemm<128, 6, false, 1, 40, 232>,
       "dequant -> fp16 [N,K], wgmma 128x128, TMA 6 stages"},
      {"fused256", 'c', 256, 6, Cfg<256, 6, true>::SMEM, (WgFn)wg_gemm<256, 6, true, 1, 56, 224>,
       "wgmma 128x256, int4 via TMA (6 stages), 3 warps dequantize into 2 fp16 B tiles"},
      {"fused128", 'c', 128, 8, Cfg<128, 8, true>::SMEM, (WgFn)wg_gemm<128, 8, true, 1, 56, 224>,
       "wgmma 128x128, int4 via TMA (8 stages), 3 warps dequantize into 2 fp16 B tiles"},
      {"rs256", 'r', 256, 6, RsCfg<256, 6>::SMEM, (WgFn)wg_gemm_rs<256, 6>,
       "yT = W xhT: int4 W dequantized into wgmma's register A by the consumers, xh via TMA, 128 W rows x 256 tokens, 6 stages"},
      {"rs128", 'r', 128, 8, RsCfg<128, 8>::SMEM, (WgFn)wg_gemm_rs<128, 8>,
       "the same, 128 W rows x 128 tokens, 8 stages"},
      {"wg256s", 's', 256, 4, Cfg<256, 4, false>::SMEM, (WgFn)wg_gemm<256, 4, false, 1, 40, 232>,
       "the product: per slice of N, dequant_q4_tile -> fp16 scratch of the slice, wg256 into its columns"},
      {"deq", 'd', 0, 0, 0, nullptr, "dequant_q4_tile byte-equal to dequant_q4_nk (probe only)"},
  };
}
static const Variant* findVariant(const std::vector<Variant>& vs, const std::string& name) {
  for (const Variant& v : vs)
    if (name == v.name) return &v;
  return nullptr;
}

static void setupKernels(const std::vector<Variant>& vs) {
  CK(cudaFuncSetAttribute((const void*)gemm_q4_mma, cudaFuncAttributeMaxDynamicSharedMemorySize, gq::SMEM));
  CK(cudaFuncSetAttribute((const void*)gemm_f16_mma, cudaFuncAttributeMaxDynamicSharedMemorySize, hm::SMEM));
  CK(cudaFuncSetAttribute((const void*)attn_flash_128, cudaFuncAttributeMaxDynamicSharedMemorySize, 2 * 2 * 64 * (128 + 8) * 2));
  for (const Variant& v : vs) {
    if (!v.fn) continue;
    if ((size_t)v.smem > g_prop.sharedMemPerBlockOptin) {
      fprintf(stderr, "gemm-lab: %s needs %d B of shared memory, the device allows %zu\n", v.name, v.smem, g_prop.sharedMemPerBlockOptin);
      exit(1);
    }
    CK(cudaFuncSetAttribute((const void*)v.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, v.smem));
  }
}

// ---- slices of N (kind 's') -------------------------------------------------------------------------
// A copy of wgmmaSlicePlan (src/backends/cuda/wgmmaLinear.ts; keep the two in step): columns per slice, a
// multiple of 256 (or N), at most cap bytes of fp16 weights (one tile at least), minimizing
// Σ waves · 13.3 ns · K + 10 µs per slice, ties to the wider slice.
static const size_t SLICE_BYTES = (size_t)80 << 20;  // WG_SLICE_BYTES
static size_t g_sliceCap = SLICE_BYTES;              // what kind 's' plans with (the probe lowers it)
static int sliceCols(int M, int N, int K, int sms, size_t cap) {
  const int mtiles = (M + wg::BM - 1) / wg::BM, ntiles = (N + 255) / 256;
  const int most = std::min<long long>(ntiles, std::max<long long>(1, (long long)(cap / ((size_t)256 * K * 2))));
  int best = most;
  double bestCost = INFINITY;
  for (int s = most; s >= 1; --s) {
    const int full = ntiles / s, rest = ntiles - full * s;
    const int waves = full * ((mtiles * s + sms - 1) / sms) + (rest > 0 ? (mtiles * rest + sms - 1) / sms : 0);
    const double cost = waves * 13.3 * K + (full + (rest > 0 ? 1 : 0)) * 10000.0;
    if (cost < bestCost) {
      best = s;
      bestCost = cost;
    }
  }
  return std::min(N, best * 256);
}
// dequant_q4_tile (gemm_wgmma.cu, the product's) of columns n0 .. n0 + ns − 1 into W [ns, K]
static void dequantTile(__half* W, const Q4& w, int n0, int ns) {
  dim3 grid((ns + wg::DQ_TN - 1) / wg::DQ_TN, (w.K + 8 * wg::DQ_TR - 1) / (8 * wg::DQ_TR));
  dequant_q4_tile<<<grid, wg::DQ_THREADS>>>(W, w.qw + n0, w.scales + n0, w.qzeros + n0 / 8, ns, w.N, w.K, w.gs, 0, 0);
}

// A prepared launch (tensor maps built outside the timed region).
struct Launch {
  const Variant* v;
  float* y;
  int M, N, K, gs, accumulate, grid;
  int cols;            // 's': columns per slice
  CUtensorMap tA, tB, tS, tZ;
  CUtensorMap tBlast;  // 's': the scratch map of a narrower last slice
  const __half* xh;
  __half* Wnk;
  Q4 w;
  void operator()() const {
    if (v->kind == 's') {  // as launchWgmmaSlices in wgmmaLinear.ts
      for (int n0 = 0; n0 < N; n0 += cols) {
        const int ns = std::min(cols, N - n0);
        dequantTile(Wnk, w, n0, ns);
        const int tiles = ((M + wg::BM - 1) / wg::BM) * ((ns + 255) / 256);
        v->fn<<<std::min(tiles, grid), wg::THREADS, v->smem>>>(y + n0, M, ns, N, K, accumulate, gs, tA, ns == cols ? tB : tBlast, tA, tA, nullptr);
      }
    } else if (v->kind == 'a') {
      dim3 grid((N + 127) / 128, (M + 127) / 128);
      gemm_q4_mma<<<grid, 256, gq::SMEM>>>(y, xh, M, N, K, accumulate, w.qw, w.scales, w.qzeros, gs);
    } else if (!v->fn) {  // mma16
      dim3 grid((N + hm::BN - 1) / hm::BN, (M + hm::BM - 1) / hm::BM);
      gemm_f16_mma<<<grid, hm::THREADS, hm::SMEM>>>(y, xh, Wnk, M, N, K, accumulate);
    } else {
      v->fn<<<grid, v->kind == 'r' ? wg::RS_THREADS : wg::THREADS, v->smem>>>(y, M, N, N, K, accumulate, gs, tA, tB, tS, tZ, nullptr);
    }
  }
};
// xh [M, K] fp16; Wnk: the fp16 scratch for (b) and (s); maxGrid > 0 caps the persistent grid (probe);
// cols > 0: (s) with slices of this width instead of sliceCols's
static Launch prepare(const Variant& v, float* y, const __half* xh, int M, const Q4& w, __half* Wnk, int accumulate,
                      int maxGrid = 0, int cols = 0) {
  Launch L;
  memset(&L, 0, sizeof L);
  L.v = &v;
  L.y = y;
  L.M = M;
  L.N = w.N;
  L.K = w.K;
  L.gs = w.gs;
  L.accumulate = accumulate;
  L.xh = xh;
  L.Wnk = Wnk;
  L.w = w;
  if (v.kind == 'a' || !v.fn) return L;
  const int N = w.N, K = w.K, gs = w.gs, sg = gs < 64 ? 64 / gs : 1;
  L.tA = tmap2d(CU_TENSOR_MAP_DATA_TYPE_FLOAT16, xh, K, M, (uint64_t)K * 2, 64, wg::BM, CU_TENSOR_MAP_SWIZZLE_128B, "xh");
  if (v.kind == 'b') {
    L.tB = tmap2d(CU_TENSOR_MAP_DATA_TYPE_FLOAT16, Wnk, K, N, (uint64_t)K * 2, 64, v.bn, CU_TENSOR_MAP_SWIZZLE_128B, "W fp16");
    L.tS = L.tA;
    L.tZ = L.tA;
  } else if (v.kind == 's') {
    L.cols = cols > 0 ? cols : sliceCols(M, N, K, g_sms, g_sliceCap);
    const int last = N - (N - 1) / L.cols * L.cols;
    L.tB = tmap2d(CU_TENSOR_MAP_DATA_TYPE_FLOAT16, Wnk, K, L.cols, (uint64_t)K * 2, 64, v.bn, CU_TENSOR_MAP_SWIZZLE_128B, "W slice");
    L.tBlast = tmap2d(CU_TENSOR_MAP_DATA_TYPE_FLOAT16, Wnk, K, last, (uint64_t)K * 2, 64, v.bn, CU_TENSOR_MAP_SWIZZLE_128B, "W last slice");
    L.tS = L.tA;
    L.tZ = L.tA;
  } else if (v.kind == 'r') {  // v.bn: tokens per tile; W tiles of RS_BW rows
    L.tA = tmap2d(CU_TENSOR_MAP_DATA_TYPE_FLOAT16, xh, K, M, (uint64_t)K * 2, 64, v.bn, CU_TENSOR_MAP_SWIZZLE_128B, "xh");
    L.tB = tmap2d(CU_TENSOR_MAP_DATA_TYPE_UINT32, w.qw, N, K / 8, (uint64_t)N * 4, wg::RS_BW, 8, CU_TENSOR_MAP_SWIZZLE_NONE, "qweight");
    L.tS = tmap2d(CU_TENSOR_MAP_DATA_TYPE_FLOAT16, w.scales, N, K / gs, (uint64_t)N * 2, wg::RS_BW, sg, CU_TENSOR_MAP_SWIZZLE_NONE, "scales");
    L.tZ = tmap2d(CU_TENSOR_MAP_DATA_TYPE_UINT32, w.qzeros, N / 8, K / gs, (uint64_t)N / 2, wg::RS_BW / 8, sg, CU_TENSOR_MAP_SWIZZLE_NONE,
                  "qzeros");
  } else {
    L.tB = tmap2d(CU_TENSOR_MAP_DATA_TYPE_UINT32, w.qw, N, K / 8, (uint64_t)N * 4, v.bn, 8, CU_TENSOR_MAP_SWIZZLE_NONE, "qweight");
    L.tS = tmap2d(CU_TENSOR_MAP_DATA_TYPE_FLOAT16, w.scales, N, K / gs, (uint64_t)N * 2, v.bn, sg, CU_TENSOR_MAP_SWIZZLE_NONE, "scales");
    L.tZ = tmap2d(CU_TENSOR_MAP_DATA_TYPE_UINT32, w.qzeros, N / 8, K / gs, (uint64_t)N / 2, v.bn / 8, sg, CU_TENSOR_MAP_SWIZZLE_NONE,
                  "qzeros");
  }
  int perSm = 0;
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, v.fn, v.kind == 'r' ? wg::RS_THREADS : wg::THREADS, v.smem));
  if (perSm < 1) {
    fprintf(stderr, "gemm-lab: %s does not fit on an SM (occupancy 0)\n", v.name);
    exit(1);
  }
  const int tiles = v.kind == 'r' ? ((M + v.bn - 1) / v.bn) * ((N + wg::RS_BW - 1) / wg::RS_BW)
                                   : ((M + wg::BM - 1) / wg::BM) * ((N + v.bn - 1) / v.bn);
  L.grid = std::min(tiles, g_sms * perSm);
  if (maxGrid > 0) L.grid = std::min(L.grid, maxGrid);
  return L;
}

static void dequant(__half* Wnk, const Q4& w, int rp) {
  if (w.gs % (8 * rp) != 0 || w.K % (8 * rp) != 0) {
    fprintf(stderr, "gemm-lab: dequant_q4_nk<%d> needs gs and K multiples of %d (gs %d, K %d)\n", rp, 8 * rp, w.gs, w.K);
    exit(1);
  }
  dim3 grid((w.N + 255) / 256, w.K / (8 * rp));
  if (rp == 4)
    wg::dequant_q4_nk<4><<<grid, 256>>>(Wnk, w.qw, w.scales, w.qzeros, w.N, w.K, w.gs);
  else
    wg::dequant_q4_nk<8><<<grid, 256>>>(Wnk, w.qw, w.scales, w.qzeros, w.N, w.K, w.gs);
}
static void reference(float* ref, const __half* xh, const Q4& w, int M) {
  dim3 grid((w.N + 15) / 16, (M + 15) / 16), block(16, 16);
  ref_q4_gemm<<<grid, block>>>(ref, xh, w.qw, w.scales, w.qzeros, M, w.N, w.K, w.gs);
  ckLaunch("reference GEMM");
}
static void toHalf(__half* xh, const float* x, int M, int K) {
  const size_t pairs = (size_t)M * K / 2;
  x_to_half<<<(unsigned)std::min<size_t>((pairs + 255) / 256, 8192), 256>>>(xh, x, nullptr, M, K);
}

// runs variant v once on poisoned output and checks it; for (b) dequantizes into Wnk first (dequant_q4_tile)
static Err runChecked(const Variant& v, float* y, const float* ref, const __half* xh, int M, const Q4& w, __half* Wnk,
                      int accumulate = 0, const float* yInit = nullptr, int maxGrid = 0, int cols = 0) {
  g_current = v.name;
  const size_t n = (size_t)M * w.N;
  if (accumulate)
    CK(cudaMemcpy(y, yInit, n * 4, cudaMemcpyDeviceToDevice));
  else
    CK(cudaMemset(y, 0xff, n * 4));  // NaN
  if (v.kind == 'b' || v.kind == 's') CK(cudaMemset(Wnk, 0xff, (size_t)w.N * w.K * 2));  // NaN weights where unwritten
  if (v.kind == 'b') {
    dequantTile(Wnk, w, 0, w.N);
    ckLaunch("dequant_q4_tile");
  }
  const Launch L = prepare(v, y, xh, M, w, Wnk, accumulate, maxGrid, cols);
  L();
  ckLaunch(v.name);
  return compareDev(y, ref, n);
}

// ---- probe: small shapes, one variant --------------------------------------------------------------
// dequant_q4_tile against dequant_q4_nk<4> (the first kernel, the same dq8 values): byte-equal, for the
// whole matrix and for a slice of columns (qw / scales / qzeros offset, rows of the full width)
static int probeDequant() {
  struct Case { int N, K, gs; };
  const Case cases[] = {
      {640, 1024, 128},    // whole 64-column tiles, 4 row tiles
      {200, 384, 32},      // a partial column tile (8 of 64), a partial row tile (16 of 32 packed rows), 8 groups per tile
      {776, 768, 64},      // N % 64 == 8
      {5120, 13824, 128},  // 13B down
  };
  printf("probe deq (dequant_q4_tile vs dequant_q4_nk<4>):\n");
  bool ok = true;
  for (const Case& c : cases) {
    Q4 w = makeQ4(c.N, c.K, c.gs, 500u + c.N);
    const size_t n = (size_t)c.N * c.K;
    __half *a, *b;
    CK(cudaMalloc(&a, n * 2));
    CK(cudaMalloc(&b, n * 2));
    CK(cudaMemset(a, 0xff, n * 2));
    CK(cudaMemset(b, 0x7f, n * 2));  // different poison: an unwritten element differs
    dequant(a, w, 4);
    dequantTile(b, w, 0, c.N);
    ckLaunch("dequant whole");
    std::vector<uint16_t> ha(n), hb(n);
    CK(cudaMemcpy(ha.data(), a, n * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hb.data(), b, n * 2, cudaMemcpyDeviceToHost));
    size_t diff = 0;
    for (size_t i = 0; i < n; ++i) diff += ha[i] != hb[i];
    // a slice: columns n0 .. n0 + ns − 1 into the start of the scratch
    const int n0 = c.N > 256 ? 256 : 0, ns = std::min(c.N - n0, 264);
    CK(cudaMemset(b, 0x7f, n * 2));
    dequantTile(b, w, n0, ns);
    ckLaunch("dequant slice");
    CK(cudaMemcpy(hb.data(), b, (size_t)ns * c.K * 2, cudaMemcpyDeviceToHost));
    size_t sdiff = 0;
    for (size_t i = 0; i < (size_t)ns * c.K; ++i) sdiff += ha[(size_t)n0 * c.K + i] != hb[i];
    printf("  N %5d K %5d gs %3d: %zu of %zu halves differ; slice of %d columns at %d: %zu differ  %s\n", c.N, c.K, c.gs, diff, n, ns,
           n0, sdiff, diff == 0 && sdiff == 0 ? "ok" : "FAIL");
    ok = ok && diff == 0 && sdiff == 0;
    cudaFree(a);
    cudaFree(b);
    freeQ4(w);
  }
  printf("probe deq: %s\n", ok ? "passed" : "FAILED");
  return ok ? 0 : 1;
}

static int probe(const Variant& v) {
  if (v.kind == 'd') return probeDequant();
  struct Case { int M, N, K, gs, maxGrid; bool acc, n8; };  // n8: N % 32 != 0, (b)/(s) wgmma only
  const Case cases[] = {
      {256, 512, 1024, 128, 0, false, false},   // whole tiles
      {200, 640, 384, 32, 0, false, false},     // partial M and N tiles, two groups per K slice
      {512, 1024, 2048, 64, 5, false, false},   // 5 blocks for 16-32 tiles: the persistent loop across tiles
      {256, 512, 1024, 128, 0, true, false},    // accumulate
      {77, 5120, 5120, 128, 0, false, false},   // a few rows at the 13B width
      {2048, 1024, 5120, 128, 0, false, false}, // many tiles, grid of every SM
      {130, 776, 512, 128, 0, true, true},      // N % 256 == 8 ((s): a last slice of 8 columns), accumulate
  };
  printf("probe %s (%s):\n", v.name, v.about);
  bool ok = true;
  for (const Case& c : cases) {
    if (c.n8 && !(v.fn && (v.kind == 'b' || v.kind == 's'))) continue;
    // (s): slices of at most 2 tiles (3 for the last case), so every case but the smallest runs in several
    g_sliceCap = (size_t)(c.n8 ? 3 : 2) * 256 * c.K * 2;
    Q4 w = makeQ4(c.N, c.K, c.gs, 1000u + c.M + c.N);
    float *x, *y, *ref, *yInit = nullptr;
    __half *xh, *Wnk;
    const size_t mn = (size_t)c.M * c.N;
    CK(cudaMalloc(&x, (size_t)c.M * c.K * 4));
    CK(cudaMalloc(&xh, (size_t)c.M * c.K * 2));
    CK(cudaMalloc(&y, mn * 4));
    CK(cudaMalloc(&ref, mn * 4));
    CK(cudaMalloc(&Wnk, (size_t)c.N * c.K * 2));
    fill_float<<<g_sms * 4, 256>>>(x, (size_t)c.M * c.K, 77u + c.K, -1.f, 1.f);
    toHalf(xh, x, c.M, c.K);
    ckLaunch("x fill");
    reference(ref, xh, w, c.M);
    if (c.acc) {
      CK(cudaMalloc(&yInit, mn * 4));
      fill_float<<<g_sms * 4, 256>>>(yInit, mn, 5u, -2.f, 2.f);
      add_f32<<<g_sms * 4, 256>>>(ref, ref, yInit, mn);  // expected: yInit + x·Wᵀ
      ckLaunch("accumulate setup");
    }
    const Err e = runChecked(v, y, ref, xh, c.M, w, Wnk, c.acc ? 1 : 0, yInit, c.maxGrid);
    char sl[48] = "";
    if (v.kind == 's') {
      const int cols = sliceCols(c.M, c.N, c.K, g_sms, g_sliceCap);
      snprintf(sl, sizeof sl, " slices of %d (%d)", cols, (c.N + cols - 1) / cols);
    }
    printf("  M %4d N %5d K %5d gs %3d%s%s%s: max|err|/max|ref| %.2e, rms %.2e, non-finite %llu  %s\n", c.M, c.N, c.K, c.gs,
           c.maxGrid ? " grid 5" : "", c.acc ? " accumulate" : "", sl, e.maxNorm, e.rmsNorm, e.bad, e.ok ? "ok" : "FAIL");
    ok = ok && e.ok;
    cudaFree(x); cudaFree(xh); cudaFree(y); cudaFree(ref); cudaFree(Wnk);
    if (yInit) cudaFree(yInit);
    freeQ4(w);
  }
  printf("probe %s: %s\n", v.name, ok ? "passed" : "FAILED");
  return ok ? 0 : 1;
}

// ---- attention (attn_flash_128) --------------------------------------------------------------------
struct AttnResult { float ms; double err; bool ok; };
static AttnResult attention() {
  g_current = "attn_flash_128";
  const int rows = 2048, heads = 40, d = 128, width = heads * d;
  float *q, *out;
  __half *kc, *vc;
  CK(cudaMalloc(&q, (size_t)rows * width * 4));
  CK(cudaMalloc(&out, (size_t)rows * width * 4));
  CK(cudaMalloc(&kc, (size_t)rows * width * 2));
  CK(cudaMalloc(&vc, (size_t)rows * width * 2));
  fill_float<<<g_sms * 4, 256>>>(q, (size_t)rows * width, 11u, -1.5f, 1.5f);
  fill_half<<<g_sms * 4, 256>>>(kc, (size_t)rows * width, 12u, -1.f, 1.f);
  fill_half<<<g_sms * 4, 256>>>(vc, (size_t)rows * width, 13u, -1.f, 1.f);
  CK(cudaMemset(out, 0xff, (size_t)rows * width * 4));
  ckLaunch("attention fill");
  const int smem = 2 * 2 * 64 * (d + 8) * 2;  // flashShared(128) in attentionLaunch.ts
  const float scaleLog2 = 1.4426950408889634f / std::sqrt((float)d);
  auto launch = [&] {
    attn_flash_128<<<dim3(heads, (rows + 63) / 64), 128, smem>>>(out, q, kc, vc, nullptr, 0, rows, heads, heads, scaleLog2);
  };
  launch();
  ckLaunch("attn_flash_128");
  // check a few (row, head) pairs against a double-precision causal softmax on the host
  std::vector<float> hq((size_t)rows * width), ho((size_t)rows * width);
  std::vector<__half> hk((size_t)rows * width), hv((size_t)rows * width);
  CK(cudaMemcpy(hq.data(), q, hq.size() * 4, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(ho.data(), out, ho.size() * 4, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hk.data(), kc, hk.size() * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hv.data(), vc, hv.size() * 2, cudaMemcpyDeviceToHost));
  double num = 0, den = 0;
  bool finite = true;
  for (int t : {0, 1, 63, 64, 777, 1500, 2047})
    for (int h : {0, 17, 39}) {
      std::vector<double> s(t + 1), o(d, 0.0);
      double mx = -INFINITY;
      for (int p = 0; p <= t; ++p) {
        double a = 0;
        for (int i = 0; i < d; ++i) a += (double)hq[(size_t)t * width + h * d + i] * __half2float(hk[(size_t)p * width + h * d + i]);
        s[p] = a / std::sqrt((double)d);
        mx = std::max(mx, s[p]);
      }
      double sum = 0;
      for (int p = 0; p <= t; ++p) { s[p] = std::exp(s[p] - mx); sum += s[p]; }
      for (int p = 0; p <= t; ++p)
        for (int i = 0; i < d; ++i) o[i] += s[p] / sum * __half2float(hv[(size_t)p * width + h * d + i]);
      for (int i = 0; i < d; ++i) {
        const float g = ho[(size_t)t * width + h * d + i];
        if (!std::isfinite(g)) finite = false;
        num = std::max(num, std::fabs(g - o[i]));
        den = std::max(den, std::fabs(o[i]));
      }
    }
  AttnResult r;
  r.err = finite ? num / std::max(den, 1e-30) : INFINITY;
  r.ok = finite && r.err < 2e-2;  // q goes to fp16 (scaled), P to fp16: ~1e-3 expected
  r.ms = timeMs(launch, 10);
  cudaFree(q); cudaFree(out); cudaFree(kc); cudaFree(vc);
  return r;
}

// ---- one 13B layer as the product runs it ----------------------------------------------------------------
// 7 linears (q, k, v, o; gate, up; down), each timed with its dequantization (L2 flushed before each):
//   old:   dequant_q4_nk<4> (the first kernel) + wg256 on the whole fp16 matrix
//   tile:  dequant_q4_tile + wg256 on the whole matrix (scratch N·K·2 bytes, 141 MB for gate/up/down)
//   plan:  wg256s with sliceCols at the product's cap (80 MiB), as wgmmaLinear.ts runs it
//   32MiB: wg256s with a 32 MiB cap (slices that could stay in the 50 MB L2, at the cost of fuller waves)
//   q4mma: the shipped mma.sync GEMM (where q4mma is enabled): what rows below WGMMA_MIN_ROWS run
// The whole and both sliced runs (and q4mma) are checked against the reference first; a failure is reported
// and not timed. M = 2048, 1024, 512, 256: where the wgmma path starts to pay (WGMMA_MIN_ROWS).
struct LayerShape { const char* name; int N, K, count; };
static const LayerShape LAYER[] = {{"q/k/v/o", 5120, 5120, 4}, {"gate/up", 13824, 5120, 2}, {"down", 5120, 13824, 1}};
static void layer13b(const Variant& whole, const Variant& sliced, const Variant* mma) {
  printf("one 13B layer as the product runs it: 4 x (5120 x 5120), 2 x (13824 x 5120), 1 x (5120 x 13824), g128;\n"
         "ms per linear, dequantization included\n");
  for (int M : {2048, 1024, 512, 256}) {
    printf("== M = %d ==\n", M);
    double sum[6] = {0, 0, 0, 0, 0, 0};  // old, tile, plan, 32MiB, GEMM alone, q4mma
    bool ok = true;
    for (const LayerShape& sh : LAYER) {
      Q4 w = makeQ4(sh.N, sh.K, 128, 700u + sh.N + sh.K);
      float *x, *y, *ref;
      __half *xh, *Wnk;
      CK(cudaMalloc(&x, (size_t)M * sh.K * 4));
      CK(cudaMalloc(&xh, (size_t)M * sh.K * 2));
      CK(cudaMalloc(&y, (size_t)M * sh.N * 4));
      CK(cudaMalloc(&ref, (size_t)M * sh.N * 4));
      CK(cudaMalloc(&Wnk, (size_t)sh.N * sh.K * 2));
      fill_float<<<g_sms * 4, 256>>>(x, (size_t)M * sh.K, 900u + sh.K, -1.f, 1.f);
      toHalf(xh, x, M, sh.K);
      ckLaunch("x fill");
      reference(ref, xh, w, M);
      const int colsPlan = sliceCols(M, sh.N, sh.K, g_sms, SLICE_BYTES), cols32 = sliceCols(M, sh.N, sh.K, g_sms, (size_t)32 << 20);
      const Err eW = runChecked(whole, y, ref, xh, M, w, Wnk);
      const Err eP = runChecked(sliced, y, ref, xh, M, w, Wnk, 0, nullptr, 0, colsPlan);
      const Err e32 = runChecked(sliced, y, ref, xh, M, w, Wnk, 0, nullptr, 0, cols32);
      const Err eM = mma ? runChecked(*mma, y, ref, xh, M, w, Wnk) : Err{0, 0, 0, true};
      if (!eM.ok) {
        printf("  %-8s q4mma FAIL: err %.2e\n", sh.name, eM.maxNorm);
        ok = false;
        g_failed = true;
      }
      if (!eW.ok || !eP.ok || !e32.ok) {
        printf("  %-8s FAIL: whole err %.2e (%s), sliced by %d err %.2e (%s), by %d err %.2e (%s); not timed\n", sh.name, eW.maxNorm,
               eW.ok ? "ok" : "FAIL", colsPlan, eP.maxNorm, eP.ok ? "ok" : "FAIL", cols32, e32.maxNorm, e32.ok ? "ok" : "FAIL");
        ok = false;
        g_failed = true;
      } else {
        const Launch Lw = prepare(whole, y, xh, M, w, Wnk, 0);
        const Launch Lp = prepare(sliced, y, xh, M, w, Wnk, 0, 0, colsPlan);
        const Launch L32 = prepare(sliced, y, xh, M, w, Wnk, 0, 0, cols32);
        g_current = "layer: old dequant + wg256";
        const float tOld = timeMs([&] { dequant(Wnk, w, 4); Lw(); });
        g_current = "layer: dequant_q4_tile + wg256";
        const float tTile = timeMs([&] { dequantTile(Wnk, w, 0, w.N); Lw(); });
        g_current = "layer: wg256 alone";
        const float tGemm = timeMs([&] { Lw(); });
        g_current = "layer: wg256s (plan)";
        const float tPlan = timeMs([&] { Lp(); });
        g_current = "layer: wg256s (32 MiB)";
        const float t32 = timeMs([&] { L32(); });
        float tMma = NAN;
        if (mma && eM.ok) {
          const Launch Lm = prepare(*mma, y, xh, M, w, Wnk, 0);
          g_current = "layer: q4mma";
          tMma = timeMs([&] { Lm(); });
        }
        const int slP = (sh.N + colsPlan - 1) / colsPlan, sl32 = (sh.N + cols32 - 1) / cols32;
        printf("  %-8s x%d: old %.3f | tile %.3f | GEMM alone %.3f | sliced %.3f (%d x %d cols, %.1f MB scratch) | "
               "32 MiB cap %.3f (%d x %d cols, %.1f MB) | q4mma %.3f\n",
               sh.name, sh.count, tOld, tTile, tGemm, tPlan, slP, colsPlan, (double)colsPlan * sh.K * 2 / 1e6, t32, sl32, cols32,
               (double)cols32 * sh.K * 2 / 1e6, tMma);
        const float t[6] = {tOld, tTile, tPlan, t32, tGemm, tMma};
        for (int i = 0; i < 6; ++i) sum[i] += sh.count * t[i];
      }
      cudaFree(x); cudaFree(xh); cudaFree(y); cudaFree(ref); cudaFree(Wnk);
      freeQ4(w);
    }
    if (!ok) continue;
    const char* names[6] = {"old dequant + whole GEMM", "dequant_q4_tile + whole GEMM", "sliced (product plan, 80 MiB cap)",
                            "sliced (32 MiB cap)", "GEMM alone (fp16 weights resident)", "q4mma (mma.sync, int4 in smem)"};
    for (int i = 0; i < (mma ? 6 : 5); ++i)
      printf("  %-36s %7.3f ms/layer (%s %+.3f) | x40: %6.2f ms, %6.0f tok/s linears only\n", names[i], sum[i],
             i == 5 ? "vs GEMM alone  " : "dequant share", sum[i] - sum[4], 40 * sum[i], M / (40 * sum[i] * 1e-3));
  }
  printf("\n");
}

// ---- full run --------------------------------------------------------------------------------------
struct Shape { const char* name; int N, K; };
static const Shape SHAPES[] = {{"qkv", 15360, 5120}, {"o", 5120, 5120}, {"gate_up", 27648, 5120}, {"down", 5120, 13824}};
static const int NSHAPES = 4;

struct Row {
  float xhalf = 0, deq4 = 0, deq8 = 0, deqT = 0;  // deq4 / deq8: the first kernel; deqT: dequant_q4_tile
  std::vector<float> ms;  // per variant (NAN: skipped or failed)
};

static double tflops(int M, int N, int K, float ms) { return 2.0 * M * N * K / (ms * 1e-3) / 1e12; }

static int runAll(const std::vector<Variant>& vs, const std::vector<bool>& enabled) {
  // read ceiling, for the dequantization's bandwidth
  double ceilGBs = 0;
  {
    uint4* buf;
    unsigned* sink;
    const size_t bytes = (size_t)2 << 30;
    CK(cudaMalloc(&buf, bytes));
    CK(cudaMalloc(&sink, (size_t)g_sms * 8 * 256 * 4));
    CK(cudaMemset(buf, 1, bytes));
    g_current = "read_bw";
    const float ms = timeMs([&] { read_bw<<<g_sms * 8, 256>>>(buf, bytes / 16, sink); }, 10);
    ceilGBs = bytes / (ms * 1e-3) / 1e9;
    cudaFree(buf);
    cudaFree(sink);
  }
  printf("read ceiling (read_bw, 2 GiB): %.0f GB/s\n\n", ceilGBs);

  std::vector<Q4> weights;
  for (int s = 0; s < NSHAPES; ++s) weights.push_back(makeQ4(SHAPES[s].N, SHAPES[s].K, 128, 100u + s));
  size_t maxMN = 0, maxNK = 0, maxMK = 0;
  for (const Shape& s : SHAPES) {
    maxMN = std::max(maxMN, (size_t)2048 * s.N);
    maxNK = std::max(maxNK, (size_t)s.N * s.K);
    maxMK = std::max(maxMK, (size_t)2048 * s.K);
  }
  float *x, *y, *ref;
  __half *xh, *Wnk;
  CK(cudaMalloc(&x, maxMK * 4));
  CK(cudaMalloc(&xh, maxMK * 2));
  CK(cudaMalloc(&y, maxMN * 4));
  CK(cudaMalloc(&ref, maxMN * 4));
  CK(cudaMalloc(&Wnk, maxNK * 2));

  const int Ms[] = {2048, 512};
  std::vector<std::vector<Row>> table(2, std::vector<Row>(NSHAPES));
  for (int mi = 0; mi < 2; ++mi) {
    const int M = Ms[mi];
    printf("== M = %d ==\n", M);
    for (int si = 0; si < NSHAPES; ++si) {
      const Shape& sh = SHAPES[si];
      const Q4& w = weights[si];
      Row& row = table[mi][si];
      row.ms.assign(vs.size(), NAN);
      fill_float<<<g_sms * 4, 256>>>(x, (size_t)M * sh.K, 300u + si + M, -1.f, 1.f);
      toHalf(xh, x, M, sh.K);
      ckLaunch("x fill");
      reference(ref, xh, w, M);
      g_current = "x_to_half";
      row.xhalf = timeMs([&] { toHalf(xh, x, M, sh.K); });
      g_current = "dequant_q4_nk";
      row.deq4 = timeMs([&] { dequant(Wnk, w, 4); });
      row.deq8 = timeMs([&] { dequant(Wnk, w, 8); });
      row.deqT = timeMs([&] { dequantTile(Wnk, w, 0, w.N); });
      const double deqBytes = (double)sh.N * sh.K * (0.5 + 2.0) + (double)sh.K / 128 * sh.N * 2.5;
      printf("  %-8s N %5d K %5d: x_to_half %.3f ms; dequant_q4_nk %.3f ms (4 rows/thread), %.3f ms (8): %.0f GB/s best;\n"
             "  %-8s %29s dequant_q4_tile %.3f ms: %.0f GB/s (%.0f%% of the read ceiling)\n",
             sh.name, sh.N, sh.K, row.xhalf, row.deq4, row.deq8, deqBytes / (std::min(row.deq4, row.deq8) * 1e-3) / 1e9, "", "",
             row.deqT, deqBytes / (row.deqT * 1e-3) / 1e9, 100.0 * deqBytes / (row.deqT * 1e-3) / 1e9 / ceilGBs);
      for (size_t vi = 0; vi < vs.size(); ++vi) {
        const Variant& v = vs[vi];
        if (!enabled[vi] || v.kind == 'd') continue;
        const Err e = runChecked(v, y, ref, xh, M, w, Wnk);
        if (!e.ok) {
          printf("    %-9s FAIL: max|err|/max|ref| %.2e, rms %.2e, non-finite %llu (not timed)\n", v.name, e.maxNorm, e.rmsNorm, e.bad);
          g_failed = true;
          continue;
        }
        const Launch L = prepare(v, y, xh, M, w, Wnk, 0);
        g_current = v.name;
        const float ms = timeMs([&] { L(); });
        row.ms[vi] = ms;
        std::string note = v.fn ? "  persistent grid " + std::to_string(L.grid) : "";
        if (v.kind == 's')
          note += ", slices of " + std::to_string(L.cols) + " (" + std::to_string((sh.N + L.cols - 1) / L.cols) + "), dequant included";
        printf("    %-9s %8.3f ms %6.1f TFLOP/s  (err %.1e / rms %.1e)%s\n", v.name, ms, tflops(M, sh.N, sh.K, ms), e.maxNorm,
               e.rmsNorm, note.c_str());
      }
    }
    printf("\n");
  }

  {
    const Variant *wv = findVariant(vs, "wg256"), *sv = findVariant(vs, "wg256s"), *av = findVariant(vs, "q4mma");
    if (wv && sv && enabled[wv - vs.data()] && enabled[sv - vs.data()])
      layer13b(*wv, *sv, av && enabled[av - vs.data()] ? av : nullptr);
    else
      printf("13B layer (sliced vs whole): skipped (needs wg256 and wg256s)\n\n");
  }
  printf("attention: attn_flash_128, 40 heads, d 128, 2048 causal rows (start 0)\n");
  const AttnResult at = attention();
  printf("  %.3f ms per layer, %.1f TFLOP/s (causal: 2·2·rows²/2·d·heads), check err %.2e %s\n\n", at.ms,
         2.0 * 2.0 * 2048.0 * 2048.0 / 2 * 128 * 40 / (at.ms * 1e-3) / 1e12, at.err, at.ok ? "ok" : "FAIL");
  if (!at.ok) g_failed = true;

  // ---- summary ----
  printf("==================== summary: %s, %d SMs ====================\n", g_prop.name, g_sms);
  printf("times in ms per linear (TFLOP/s); (b) = dequant_q4_tile + a GEMM on the fp16 scratch (wg* wgmma or mma16);\n"
         "best passing config per shape and column; (s) = wg256s, sliced, dequantization included\n");
  for (int mi = 0; mi < 2; ++mi) {
    const int M = Ms[mi];
    printf("\nM = %d\n", M);
    printf("  %-8s %5s %5s | %-16s | %-7s %-24s %-16s | %-24s\n", "shape", "N", "K", "(a) q4mma", "dequant", "(b) GEMM on fp16 W", "(b) total",
           "(c)/(r) fused");
    double sumA = 0, sumDeq = 0, sumDeqOld = 0, sumB = 0, sumBgemm = 0, sumC = 0, sumS = 0, sumX = 0;
    bool haveA = true, haveB = true, haveC = true, haveS = true;
    for (int si = 0; si < NSHAPES; ++si) {
      const Shape& sh = SHAPES[si];
      const Row& r = table[mi][si];
      float a = NAN, b = NAN, c = NAN, sl = NAN;
      const char *bn = "-", *cn = "-";
      for (size_t vi = 0; vi < vs.size(); ++vi) {
        const float t = r.ms[vi];
        if (std::isnan(t)) continue;
        if (vs[vi].kind == 'a') a = t;
        if (vs[vi].kind == 'b' && (std::isnan(b) || t < b)) { b = t; bn = vs[vi].name; }
        if ((vs[vi].kind == 'c' || vs[vi].kind == 'r') && (std::isnan(c) || t < c)) { c = t; cn = vs[vi].name; }
        if (vs[vi].kind == 's') sl = t;
      }
      const float deq = r.deqT;
      char sa[32] = "-", sb[48] = "-", sbt[32] = "-", sc[48] = "-";
      if (!std::isnan(a)) snprintf(sa, sizeof sa, "%7.3f (%5.1f)", a, tflops(M, sh.N, sh.K, a));
      if (!std::isnan(b)) snprintf(sb, sizeof sb, "%7.3f (%5.1f) %-8s", b, tflops(M, sh.N, sh.K, b), bn);
      if (!std::isnan(b)) snprintf(sbt, sizeof sbt, "%7.3f (%5.1f)", b + deq, tflops(M, sh.N, sh.K, b + deq));
      if (!std::isnan(c)) snprintf(sc, sizeof sc, "%7.3f (%5.1f) %-8s", c, tflops(M, sh.N, sh.K, c), cn);
      printf("  %-8s %5d %5d | %-16s | %7.3f %-24s %-16s | %-24s\n", sh.name, sh.N, sh.K, sa, deq, sb, sbt, sc);
      haveA = haveA && !std::isnan(a);
      haveB = haveB && !std::isnan(b);
      haveC = haveC && !std::isnan(c);
      haveS = haveS && !std::isnan(sl);
      sumA += a; sumB += b + deq; sumBgemm += b; sumDeq += deq; sumDeqOld += std::min(r.deq4, r.deq8); sumC += c; sumS += sl;
      sumX += r.xhalf;
    }
    double flopLayer = 0;
    for (const Shape& sh : SHAPES) flopLayer += 2.0 * M * sh.N * sh.K;
    auto line = [&](const char* what, bool have, double ms) {
      if (!have) { printf("  %-44s -\n", what); return; }
      const double att = M == 2048 && at.ok ? at.ms : 0;
      printf("  %-44s %7.3f ms/layer %6.1f TFLOP/s | x40: %7.2f ms, %6.0f tok/s linears; %6.0f tok/s + x_to_half%s\n", what, ms,
             flopLayer / (ms * 1e-3) / 1e12, 40 * ms, M / (40 * ms * 1e-3), M / (40 * (ms + sumX + att) * 1e-3),
             att > 0 ? " + attention" : "");
    };
    line("(a) q4mma, 4 linears", haveA, sumA);
    line("(b) dequant + GEMM, 4 linears", haveB, sumB);
    line("(b) GEMM alone (fp16 weights resident)", haveB, sumBgemm);
    line("(b) with the first dequant_q4_nk", haveB, sumBgemm + sumDeqOld);
    line("(s) sliced dequant + GEMM (wg256s), 4 linears", haveS, sumS);
    line("(c)/(r) fused (best), 4 linears", haveC, sumC);
    printf("  x_to_half for the 4 inputs: %.3f ms/layer; dequant alone: %.3f ms/layer (dequant_q4_tile), %.3f (dequant_q4_nk)\n",
           sumX, sumDeq, sumDeqOld);
    if (M == 2048) printf("  attention (attn_flash_128): %.3f ms/layer (%s)\n", at.ms, at.ok ? "checked" : "FAILED its check");
  }
  printf("\ntarget: 24,000 tok/s at 2048 = 85.3 ms per prompt = 2.13 ms per layer for everything\n");

  for (Q4& w : weights) freeQ4(w);
  cudaFree(x); cudaFree(xh); cudaFree(y); cudaFree(ref); cudaFree(Wnk);
  return g_failed ? 1 : 0;
}

int main(int argc, char** argv) {
  const std::vector<Variant> vs = variants();
  std::string probeName, only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--list") {
      for (const Variant& v : vs) printf("%s\n", v.name);
      return 0;
    } else if (a == "--probe" && i + 1 < argc) {
      probeName = argv[++i];
    } else if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else {
      fprintf(stderr, "usage: gemmLab [--list | --probe NAME | --only NAME,NAME,...]\n");
      return 2;
    }
  }
  CK(cudaGetDeviceProperties(&g_prop, 0));
  g_sms = g_prop.multiProcessorCount;
  printf("%s, %d SMs, compute capability %d.%d, %zu B shared memory per block (opt-in)\n", g_prop.name, g_sms, g_prop.major,
         g_prop.minor, g_prop.sharedMemPerBlockOptin);
  if (g_prop.major != 9 || g_prop.minor != 0) {
    fprintf(stderr, "gemm-lab: the wgmma kernels are built for sm_90a; this device is %d.%d\n", g_prop.major, g_prop.minor);
    return 2;
  }
  {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q;
    CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q));
    if (q != cudaDriverEntryPointSuccess || !fn) {
      fprintf(stderr, "gemm-lab: the driver has no cuTensorMapEncodeTiled (query result %d)\n", (int)q);
      return 2;
    }
    g_encode = (PFN_cuTensorMapEncodeTiled_v12000)fn;
  }
  CK(cudaMalloc(&g_flush, FLUSH_BYTES));
  CK(cudaMalloc(&g_cmp, sizeof(CmpOut)));
  setupKernels(vs);
  for (const Variant& v : vs)
    if (v.fn && probeName.empty()) {
      cudaFuncAttributes fa;
      CK(cudaFuncGetAttributes(&fa, (const void*)v.fn));
      int perSm = 0;
      CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, v.fn, v.kind == 'r' ? wg::RS_THREADS : wg::THREADS, v.smem));
      printf("  %-9s %3d registers at entry, %6d B dynamic smem, %d block(s)/SM: %s\n", v.name, fa.numRegs, v.smem, perSm, v.about);
    }

  if (!probeName.empty()) {
    const Variant* v = findVariant(vs, probeName);
    if (!v) {
      fprintf(stderr, "gemm-lab: no variant %s (see --list)\n", probeName.c_str());
      return 2;
    }
    return probe(*v);
  }
  std::vector<bool> enabled(vs.size(), only.empty());
  if (!only.empty()) {
    size_t p = 0;
    while (p <= only.size()) {
      const size_t q = only.find(',', p);
      const std::string name = only.substr(p, q == std::string::npos ? std::string::npos : q - p);
      if (!name.empty()) {
        const Variant* v = findVariant(vs, name);
        if (!v) {
          fprintf(stderr, "gemm-lab: no variant %s (see --list)\n", name.c_str());
          return 2;
        }
        enabled[v - vs.data()] = true;
      }
      if (q == std::string::npos) break;
      p = q + 1;
    }
  }
  for (size_t i = 0; i < vs.size(); ++i)
    if (!enabled[i]) printf("  %s: skipped\n", vs[i].name);
  return runAll(vs, enabled);
}
