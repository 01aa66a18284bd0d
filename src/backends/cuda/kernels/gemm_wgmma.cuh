// Hopper (sm_90a) prefill GEMM: y[m, n] (+)= Σ_k xh[m, k] · W[n, k]. The product launches (b) through
// gemm_wgmma.cu's extern "C" entry points (linearLaunch.ts); the lab (bench/lab/gemmLab.cu) includes
// gemm_wgmma.cu and instantiates the templates below for every variant, (c) included.
// on int4 GPTQ weights in the q4 layout (qweight [K/8, N] u32, 8 k of one column per word, LSB first;
// scales [K/gs, N] fp16; qzeros [K/gs, N/8] u32, stored zero z, the weight is s·(q − (z + 1))).
//
// Two ways to feed the tensor cores (both: warpgroup wgmma.mma_async m64nNk16, f16 in, f32 accumulators):
//  (b) dequant_q4_tile writes W (or a slice of its rows, i.e. of y's columns) as fp16 [N, K] (K contiguous)
//      into a scratch buffer, then wg_gemm<BN, R, false> multiplies xh [M, K] by it. Both operands reach
//      shared memory through TMA (cp.async.bulk.tensor.2d, 128-byte swizzle, completion on an mbarrier),
//      R stages deep. linearLaunch.ts runs the pair once per slice of N, so the scratch holds one slice.
//  (c) wg_gemm<BN, R, true>: TMA brings xh and the packed int4 slice (plus its scales and zeros) into an
//      R-deep ring; three producer warps dequantize each slice into a 2-deep ring of fp16 B tiles, written
//      in the same 128-byte-swizzled layout the TMA would produce. No fp16 scratch in device memory.
//
// Block: 384 threads = 3 warpgroups. Warpgroup 0 produces (warp 0 lane 0 issues the TMA copies; in (c)
// warps 1-3 dequantize), warpgroups 1 and 2 consume: each owns 64 rows of the 128 × BN block tile and
// issues 4 wgmma m64nBNk16 per 64-wide K slice. setmaxnreg moves registers from the producer to the
// consumers (BN = 256: 128 f32 accumulators per consumer thread). Persistent grid: block b takes tiles
// b, b + gridDim.x, ...; tile t = (m tile t % mtiles, n tile t / mtiles) so concurrent tiles share W columns.
//
// Shared-memory operands (canonical K-major layout, 128-byte swizzle): a tile of rows × 64 halves is
// rows × 128 bytes; row r's 16-byte chunk c sits at r·128 + ((c ^ (r & 7)) · 16) from a 1024-aligned base.
// Matrix descriptor: start address >> 4 (bits 0-13), leading byte offset 16 >> 4 (unused with this
// swizzle, bits 16-29), stride byte offset 1024 >> 4 (8-row groups, bits 32-45), swizzle mode 1 = 128 B
// (bits 62-63). The k16 step kk of a slice starts kk·32 bytes into each row (the swizzle is applied to
// the absolute address, which is why the tiles are 1024-aligned).
// Accumulator fragment of m64nN (per warpgroup): warp w holds rows 16w..16w+15; lane l: g = l / 4,
// t = l % 4; d[4j + 0, 1] = (row g, cols 8j + 2t, +1), d[4j + 2, 3] = (row g + 8, same cols).
//
// Needs: K % 64 == 0, N % 8 == 0 (scratch path) or N % 32 == 0 (fused: the qzeros rows must be 16-byte
// multiples for the TMA), gs == 32 or gs % 64 == 0, 16-byte aligned pointers. M and N need not be tile
// multiples (TMA zero-fills what lies outside; the epilogue skips it).
// Arch: the wgmma / TMA / setmaxnreg code below exists only in the host pass and the sm_90a device pass
// (WG_SM90A); the other targets of the product's fatbin (sm_80/86/89, plain compute_90 PTX) see only
// the dequantization, and gemm_wgmma.cu's GEMM entry point traps there.
#pragma once
#include <cuda.h>  // CUtensorMap (types only: the host gets cuTensorMapEncodeTiled from the driver)
#include <cuda_fp16.h>
#include <stdint.h>
#include "common.cuh"  // silu_mul

#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WG_SM90A 1
#endif

#ifndef WG_WATCHDOG_CYCLES
// an mbarrier wait longer than this (~5 s at 1.7 GHz) traps: a pipeline bug then fails the launch
// (cudaErrorLaunchFailure) instead of hanging the run
#define WG_WATCHDOG_CYCLES (1ll << 33)
#endif

namespace wg {

#ifdef WG_SM90A

__device__ __forceinline__ uint32_t saddr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// ---- mbarrier ---------------------------------------------------------------------------------
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// after the inits, before anyone (threads or the TMA unit) uses the barriers
__device__ __forceinline__ void mbar_fence_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// one arrival that also announces `bytes` of TMA transactions for the current phase
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ bool mbar_try(uint32_t bar, uint32_t parity) {
  uint32_t ok;
  asm volatile(
      "{\n.reg .pred p;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(ok)
      : "r"(bar), "r"(parity)
      : "memory");
  return ok != 0;
}
__device__ unsigned wg_stuck;  // the kind of the barrier a trapped wait was stuck on
// waits until the phase with this parity has completed (a fresh barrier: parity 0 = its first phase)
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity, int what) {
  if (mbar_try(bar, parity)) return;
  const long long t0 = clock64();
  unsigned spins = 0;
  while (!mbar_try(bar, parity)) {
    if ((++spins & 255u) == 0 && clock64() - t0 > WG_WATCHDOG_CYCLES) {
      wg_stuck = (unsigned)what;  // for a debugger; no printf here (a call would serialize the wgmma pipeline)
      __trap();
    }
  }
}

// ---- TMA ----------------------------------------------------------------------------------------
// 2-D tiled copy global -> shared; c0 = element index along the innermost dimension, c1 = row
__device__ __forceinline__ void tma_2d(uint32_t dst, const CUtensorMap* map, int c0, int c1, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void prefetch_map(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}
// ordinary shared-memory stores -> visible to the async proxy (wgmma operand reads)
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ void st_shared_v4(uint32_t a, uint4 v) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(a), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}

// ---- wgmma --------------------------------------------------------------------------------------
// A wgmma shared-memory descriptor for the 128-byte swizzle: 8-row groups 1024 bytes apart (SBO); lbo, the leading
// byte offset, matters only to N-/M-major operands (the byte distance between 64-wide atoms along N or M)
__device__ __forceinline__ uint64_t desc_sw128_lbo(uint32_t smem_addr, uint32_t lbo) {
  return (uint64_t)((smem_addr & 0x3FFFFu) >> 4) | ((uint64_t)((lbo & 0x3FFFFu) >> 4) << 16) | ((uint64_t)(1024 >> 4) << 32) |
         ((uint64_t)1 << 62);
}
// the same for K-major operands (LBO unused there; 16 as CUTLASS sets it)
__device__ __forceinline__ uint64_t desc_sw128(uint32_t smem_addr) { return desc_sw128_lbo(smem_addr, 16); }
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// pins the accumulators at this point of the program (no reads or writes of them move across it)
template <int R>
__device__ __forceinline__ void fence_regs(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
template <int R>
__device__ __forceinline__ void reg_alloc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R>
__device__ __forceinline__ void reg_dealloc() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}

// The accumulator operands of the wgmma wrappers below (and gemm_wgmma_rs.cuh's): d[0 .. n) as "+f" outputs, and
// the PTX register lists that name them (%0 .. %n-1), shared by the shared-memory-A and register-A forms.
#define WG_F8(i) "+f"(d[(i) + 0]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3]), "+f"(d[(i) + 4]), "+f"(d[(i) + 5]), "+f"(d[(i) + 6]), "+f"(d[(i) + 7])
#define WG_ACC64 WG_F8(0), WG_F8(8), WG_F8(16), WG_F8(24), WG_F8(32), WG_F8(40), WG_F8(48), WG_F8(56)
#define WG_ACC80 WG_ACC64, WG_F8(64), WG_F8(72)
#define WG_ACC128 WG_ACC64, WG_F8(64), WG_F8(72), WG_F8(80), WG_F8(88), WG_F8(96), WG_F8(104), WG_F8(112), WG_F8(120)
#define WG_REGS64 \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"\
  " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"\
  " %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"\
  " %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define WG_REGS80 \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"\
  " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"\
  " %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"\
  " %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63,"\
  " %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79}"
#define WG_REGS128 \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"\
  " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"\
  " %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"\
  " %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63,"\
  " %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79,"\
  " %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95,"\
  " %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111,"\
  " %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"

// d[128] += A(64x16, desc a) * B(16x256, desc b); scale_d = 0 overwrites d
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128], uint64_t a, uint64_t b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 " WG_REGS128 ", %128, %129, p, 1, 1, 0, 0;\n}\n"
      : WG_ACC128
      : "l"(a), "l"(b), "r"(scale_d));
}

// d[80] += A(64x16, desc a) * B(16x160, desc b); scale_d = 0 overwrites d
__device__ __forceinline__ void wgmma_m64n160k16(float (&d)[80], uint64_t a, uint64_t b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %82, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n160k16.f32.f16.f16 " WG_REGS80 ", %80, %81, p, 1, 1, 0, 0;\n}\n"
      : WG_ACC80
      : "l"(a), "l"(b), "r"(scale_d));
}

// d[64] += A(64x16, desc a) * B(16x128, desc b); scale_d = 0 overwrites d
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], uint64_t a, uint64_t b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " WG_REGS64 ", %64, %65, p, 1, 1, 0, 0;\n}\n"
      : WG_ACC64
      : "l"(a), "l"(b), "r"(scale_d));
}


#endif  // WG_SM90A

// ---- dequantization -------------------------------------------------------------------------------
// the 8 weights of one packed word (k = 8r .. 8r+7 of one column) as fp16, k order, with s2 = (s, s) and
// z2 = (1024 + z + 1) in both halves: (1024 + q) − (1024 + z + 1) is exact, one rounding in the product
// (the same values as gemm_q4_mma's shared-memory tile)
__device__ __forceinline__ uint4 dq8(uint32_t q, half2 s2, half2 z2) {
  uint32_t v[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {  // v[j] = (k = j, k = j + 4)
    uint32_t t = ((q >> (4 * j)) & 0x000F000Fu) | 0x64006400u;  // 1024 + q in both halves
    half2 h = __hmul2(__hsub2(*reinterpret_cast<half2*>(&t), z2), s2);
    v[j] = *reinterpret_cast<uint32_t*>(&h);
  }
  uint4 o;  // (k0,k1) (k2,k3) (k4,k5) (k6,k7): low halves of v0/v1, v2/v3, then the high halves
  o.x = __byte_perm(v[0], v[1], 0x5410);
  o.y = __byte_perm(v[2], v[3], 0x5410);
  o.z = __byte_perm(v[0], v[1], 0x7632);
  o.w = __byte_perm(v[2], v[3], 0x7632);
  return o;
}
__device__ __forceinline__ half2 zero_half2(uint32_t zword, int n) {
  const uint32_t z = ((zword >> ((n & 7) * 4)) & 15u) + 1u;
  const uint32_t u = (0x6400u | z) * 0x10001u;
  return *reinterpret_cast<const half2*>(&u);
}

// (b, first version: the lab's baseline) W[n, k] (fp16, K contiguous) = s[k / gs, n] · (q[k, n] − z[k / gs, n] − 1).
// Thread: column n, RP consecutive packed rows (8·RP k values, one group: gs % (8·RP) == 0), one RP·16-byte
// contiguous store; a warp's 16-byte store then touches 32 rows of W K·2 bytes apart (~1.1 TB/s on the H200,
// a quarter of its 4.35 TB/s read ceiling). grid (ceil(N / 256), K / (8·RP)), 256 threads.
template <int RP>
__device__ __forceinline__ void dequant_q4_nk_body(__half* __restrict__ W, const uint32_t* __restrict__ qw,
                                                   const __half* __restrict__ scales, const uint32_t* __restrict__ qzeros,
                                                   int N, int K, int gs) {
  const int n = blockIdx.x * 256 + threadIdx.x;
  if (n >= N) return;
  const int r0 = blockIdx.y * RP;  // first packed row
  const int g = r0 * 8 / gs;
  const half2 s2 = __half2half2(scales[(size_t)g * N + n]);
  const half2 z2 = zero_half2(__ldg(qzeros + (size_t)g * (N >> 3) + (n >> 3)), n);
  uint32_t q[RP];
#pragma unroll
  for (int j = 0; j < RP; ++j) q[j] = __ldg(qw + (size_t)(r0 + j) * N + n);
  uint4* dst = reinterpret_cast<uint4*>(W + (size_t)n * K + (size_t)r0 * 8);
#pragma unroll
  for (int j = 0; j < RP; ++j) dst[j] = dq8(q[j], s2, z2);
}

template <int RP>
__global__ void __launch_bounds__(256) dequant_q4_nk(__half* __restrict__ W, const uint32_t* __restrict__ qw,
                                                    const __half* __restrict__ scales, const uint32_t* __restrict__ qzeros,
                                                    int N, int K, int gs) {
  dequant_q4_nk_body<RP>(W, qw, scales, qzeros, N, K, gs);
}

// (b) the same W and the same values (dq8), written by tiles of DQ_TR packed rows × DQ_TN columns, for the
// columns n0 .. n0 + N − 1 of a matrix whose qweight / scales rows hold ld columns (the slice of
// linearLaunch.ts: qw, scales point at column n0, qzeros at column n0 / 8, n0 % 8 == 0; W row n is the
// slice's column n). The block first stages its packed words in shared memory (each warp reads 128
// contiguous bytes of a qweight row; rows padded by one word, so the column reads below hit 32 banks);
// then lane l of a warp dequantizes packed row r0 + l of one column, so each 16-byte store instruction of
// the warp covers DQ_TR·16 = 512 contiguous bytes of W (4 whole 128-byte lines). A lane keeps one packed
// row, hence one group row of scales / zeros, for the whole tile.
// Traffic: 0.5 byte read + 2 bytes written per weight (+ scales and zeros): the bandwidth bound. H200 lab:
// 2.9–3.6 TB/s at the 13B shapes (67–82% of the read ceiling; 3.1× the first kernel), 0.24 ms per layer.
// grid (ceil(N / DQ_TN), ceil(K / (8·DQ_TR))), DQ_THREADS threads; K % 8 == 0, N % 8 == 0, gs % 8 == 0.
constexpr int DQ_TN = 64, DQ_TR = 32, DQ_THREADS = 256;
// The dequantizing tiles' first step: packed rows r0 .. r0 + TR − 1 (of `rows`) × columns n0 .. n0 + DQ_TN − 1 of
// qweight (rows of ld words) into shared memory, each warp reading 128 contiguous bytes of a row (rows padded by
// one word, so the column reads that follow hit 32 banks); zeros outside the matrix. Ends with the barrier.
template <int TR>
__device__ __forceinline__ void stage_packed_tile(uint32_t (&tq)[TR][DQ_TN + 1], const uint32_t* __restrict__ qw, int ld, int N, int n0,
                                                  int r0, int rows) {
  static_assert(TR % (DQ_THREADS / DQ_TN) == 0, "whole staging passes");
  const int tid = threadIdx.x, c = tid % DQ_TN, n = n0 + c;
#pragma unroll
  for (int i = 0; i < TR / (DQ_THREADS / DQ_TN); ++i) {
    const int r = tid / DQ_TN + i * (DQ_THREADS / DQ_TN);
    tq[r][c] = n < N && r0 + r < rows ? __ldg(qw + (size_t)(r0 + r) * ld + n) : 0u;
  }
  __syncthreads();
}
// pairRows > 0: column n goes to W row (n / pairRows) · 2 · pairRows + n % pairRows + rowOff instead of n (gate and
// up interleaved in blocks of pairRows rows for the fused SwiGLU epilogue: rowOff 0 for gate, pairRows for up).
__device__ __forceinline__ void dequant_q4_tile_body(__half* __restrict__ W, const uint32_t* __restrict__ qw,
                                                     const __half* __restrict__ scales, const uint32_t* __restrict__ qzeros,
                                                     int N, int ld, int K, int gs, int pairRows, int rowOff) {
  static_assert(DQ_TR == 32 && DQ_THREADS % DQ_TN == 0 && DQ_TR % (DQ_THREADS / DQ_TN) == 0, "one packed row per lane");
  constexpr int COLS = DQ_TN / (DQ_THREADS / 32);  // columns per warp: 8 adjacent ones (one packed zero word)
  static_assert(COLS == 8, "a warp's columns share one word of packed zeros");
  __shared__ uint32_t tq[DQ_TR][DQ_TN + 1];  // [packed row][column]
  const int n0 = blockIdx.x * DQ_TN, r0 = blockIdx.y * DQ_TR, rows = K >> 3;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int r = r0 + lane;  // this lane's packed row (k = 8r .. 8r+7)
  const int c0 = warp * COLS, nw = n0 + c0;  // the warp's columns nw .. nw + 7 (N % 8 == 0: all or none exist)
  // this lane's 8 scales (one 16-byte load) and their zero word, loaded with the tile rather than after its
  // barrier: one round trip per block instead of two (cudaNotes, seventeenth pass)
  const int g = min(r, rows - 1) * 8 / gs;
  uint4 s8 = make_uint4(0u, 0u, 0u, 0u);
  uint32_t zw = 0u;
  if (nw < N) {
    s8 = __ldg(reinterpret_cast<const uint4*>(scales + (size_t)g * ld + nw));
    zw = __ldg(qzeros + (size_t)g * (ld >> 3) + (nw >> 3));
  }
  stage_packed_tile(tq, qw, ld, N, n0, r0, rows);
  if (r >= rows || nw >= N) return;  // (no barrier below)
  const uint32_t sw[4] = {s8.x, s8.y, s8.z, s8.w};
#pragma unroll
  for (int i = 0; i < COLS; ++i) {
    const int n = nw + i;
    const uint32_t sh = (sw[i >> 1] >> ((i & 1) * 16)) & 0xFFFFu;
    const uint32_t s2 = sh * 0x10001u;
    const int wrow = pairRows > 0 ? (n / pairRows) * 2 * pairRows + n % pairRows + rowOff : n;
    *reinterpret_cast<uint4*>(W + (size_t)wrow * K + (size_t)r * 8) =
        dq8(tq[lane][c0 + i], *reinterpret_cast<const half2*>(&s2), zero_half2(zw, n));
  }
}

// (b) for the q8 layout (8-bit GPTQ qweight [K/4, N], 4 k per word, rows group-contiguous; qzeros [G, N/4]):
// the same W from tiles of 2·DQ_TR packed rows (256 k, as the int4 tile) × DQ_TN columns; lane l of a warp
// dequantizes packed rows 2l and 2l + 1 (k = 8l .. 8l+7 of the tile) of one column, so each 16-byte store
// of the warp again covers 512 contiguous bytes of W. W = s · (q − z) in f32, rounded once to fp16 (q − z
// is exact). Same grid as dequant_q4_tile; no gate/up interleave (only plain linears take the q8 layout).
__device__ __forceinline__ void dequant_q8_tile_body(__half* __restrict__ W, const uint32_t* __restrict__ qw,
                                                     const __half* __restrict__ scales, const uint32_t* __restrict__ qzeros,
                                                     int N, int ld, int K, int gs) {
  constexpr int TR = 2 * DQ_TR;
  __shared__ uint32_t tq8[TR][DQ_TN + 1];  // [packed row][column]
  const int n0 = blockIdx.x * DQ_TN, r0 = blockIdx.y * TR, rows = K >> 2;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  stage_packed_tile(tq8, qw, ld, N, n0, r0, rows);
  const int r = r0 + 2 * lane;  // this lane's packed rows r, r + 1 (k = 4r .. 4r+7: one group, gs % 32 == 0)
  if (r >= rows) return;        // (no barrier below)
  const int g = r * 4 / gs;
  const __half* srow = scales + (size_t)g * ld;
  const uint32_t* zrow = qzeros + (size_t)g * (ld >> 2);
#pragma unroll 4
  for (int i = 0; i < DQ_TN / (DQ_THREADS / 32); ++i) {
    const int c = warp + i * (DQ_THREADS / 32), n = n0 + c;
    if (n >= N) break;  // n grows with i
    const float sc = __half2float(__ldg(srow + n));
    const float z = (float)(((__ldg(zrow + (n >> 2)) >> ((n & 3) * 8)) & 255u) + 1u);
    const uint32_t a = tq8[2 * lane][c], b = tq8[2 * lane + 1][c];
    uint32_t h[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t word = j < 2 ? a : b, sh = (j & 1) * 16;
      const half2 v = __floats2half2_rn(sc * ((float)((word >> sh) & 255u) - z), sc * ((float)((word >> (sh + 8)) & 255u) - z));
      h[j] = *reinterpret_cast<const uint32_t*>(&v);
    }
    *reinterpret_cast<uint4*>(W + (size_t)n * K + (size_t)r * 4) = make_uint4(h[0], h[1], h[2], h[3]);
  }
}

// ---- the GEMM -----------------------------------------------------------------------------------
constexpr int BM = 128, BK = 64, THREADS = 384;
// fewest K slices of one stream-K run (a tile is split into at most nk / SK_MIN_KB + 1 segments)
constexpr int SK_MIN_KB = 16;

#ifdef WG_SM90A

// The persistent grid's work. Whole tiles go round robin (block b: b, b + G, ...) for the full waves,
// tiles [0, dp) with dp = tiles − tiles % G. Without a split the last partial wave leaves SMs idle (13B
// down_proj at 512 rows: slices of 36 and 44 tiles on 132 SMs), so with `split` the tail's
// (tiles − dp) · nk K slices are dealt out as stream-K runs: block b takes the contiguous run
// [b · per, (b + 1) · per) of them, per = ⌈tail · nk / G⌉ (at least SK_MIN_KB, at most nk), which may end
// one tile's K range and start the next. A tile split into segments is summed in K order: the segment that
// starts at k slice 0 stores (or adds, for accumulate), each later one waits for its turn on the tile's
// flag and adds, and the last resets the flag to 0 for the next launch. A segment waits only on segments
// of lower-numbered blocks that start their run or lie inside one tile, so the waits cannot cycle and
// chain only through the few runs that share a tile; the sum does not depend on timing. The host splits
// only launches of at most half the SMs' tiles (wgmmaLinear.ts wgmmaStreamK says why).
struct WgWork {
  int tiles, nk, dp, per, b, G;
  // block b of G
  __device__ __forceinline__ WgWork(int tiles_, int nk_, bool split, int b_, int G_) : tiles(tiles_), nk(nk_), b(b_), G(G_) {
    const int tail = split ? tiles % G : 0;
    dp = tiles - tail;
    per = tail > 0 ? max((tail * nk + G - 1) / G, min(nk, SK_MIN_KB)) : 0;
  }
  // f(tile, first k slice, end k slice) for each of this block's segments, in the order it runs them.
  // per ≤ nk, so a run touches at most two tiles: it runs the one it starts (from k slice 0, turn 0, no
  // wait) before the one it ends; in K order, each block's wait would be on a block that waits in turn,
  // serializing the whole grid.
  template <class F>
  __device__ __forceinline__ void each(F&& f) const {
    for (int t = b; t < dp; t += G) f(t, 0, nk);
    if (per == 0) return;
    const int u = b * per, u1 = min(u + per, (tiles - dp) * nk);
    if (u >= u1) return;
    const int t0 = u / nk, t1 = (u1 - 1) / nk;
    if (t1 > t0) f(dp + t1, 0, u1 - t1 * nk);
    f(dp + t0, u - t0 * nk, t1 > t0 ? nk : u1 - t0 * nk);
  }
  // the turn of the segment of tail tile `tile` that starts at k slice kb0 (0 = the one that starts the tile)
  __device__ __forceinline__ int order(int tile, int kb0) const {
    const int first = (tile - dp) * nk;
    return (first + kb0) / per - first / per;
  }
};

__device__ __forceinline__ int ld_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_release(int* p, int v) {
  asm volatile("st.release.gpu.global.b32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
}
// the two consumer warpgroups (threads 128..383) only
__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, 256;\n" ::: "memory"); }

template <int BN, int R, bool FUSED>
struct Cfg {
  static constexpr int A_BYTES = BM * BK * 2;                  // xh tile, 128-byte swizzled
  static constexpr int B_BYTES = BN * BK * 2;                  // fp16 W tile [BN][64], 128-byte swizzled
  static constexpr int Q_BYTES = FUSED ? (BK / 8) * BN * 4 : 0;  // packed int4 slice [8][BN] u32
  static constexpr int S_BYTES = FUSED ? 2 * BN * 2 : 0;         // up to 2 group rows of scales
  static constexpr int Z_BYTES = FUSED ? 2 * (BN / 8) * 4 : 0;   // up to 2 group rows of packed zeros
  static constexpr int BSTAGES = FUSED ? 2 : R;                  // fp16 B tiles: TMA ring (b) / dequantized ring (c)
  static constexpr int OFF_B = 0;
  static constexpr int OFF_A = OFF_B + BSTAGES * B_BYTES;
  static constexpr int OFF_Q = OFF_A + R * A_BYTES;
  static constexpr int OFF_S = OFF_Q + R * Q_BYTES;
  static constexpr int OFF_Z = OFF_S + R * S_BYTES;
  static constexpr int END = OFF_Z + R * Z_BYTES;
  static constexpr int SMEM = END + 1024;  // the base is rounded up to 1024 bytes
  static_assert(BN == 128 || BN == 160 || BN == 256, "BN");
  static_assert(S_BYTES % 128 == 0 && Z_BYTES % 128 == 0, "TMA destinations must stay 128-byte aligned");
};

template <int BN>
__device__ __forceinline__ void wgmma_bn(float (&d)[BN / 2], uint64_t a, uint64_t b);
template <>
__device__ __forceinline__ void wgmma_bn<256>(float (&d)[128], uint64_t a, uint64_t b) { wgmma_m64n256k16(d, a, b, 1); }
template <>
__device__ __forceinline__ void wgmma_bn<160>(float (&d)[80], uint64_t a, uint64_t b) { wgmma_m64n160k16(d, a, b, 1); }
template <>
__device__ __forceinline__ void wgmma_bn<128>(float (&d)[64], uint64_t a, uint64_t b) { wgmma_m64n128k16(d, a, b, 1); }

// barrier kinds in the watchdog message
enum { BAR_FULL = 1, BAR_EMPTY = 2, BAR_BFULL = 3, BAR_BEMPTY = 4 };

// y[M, N] f32 (+)= xh[M, K] · W[N, K]ᵀ, y's rows ldy floats apart (a slice of N columns of a wider y: the
// caller offsets y to the slice's first column and passes the full width as ldy).
//   tmA: xh fp16 [M][K], box {64, 128}, 128-byte swizzle
//   (b) tmB: W fp16 [N][K], box {64, BN}, 128-byte swizzle; tmS, tmZ unused
//   (c) tmB: qweight u32 [K/8][N], box {BN, 8}; tmS: scales fp16 [K/gs][N], box {BN, sg};
//       tmZ: qzeros u32 [K/gs][N/8], box {BN/8, sg}; sg = 2 when gs == 32, else 1
// PREG / CREG: registers per producer / consumer thread after setmaxnreg (≤ 65536 / MINB in all).
// flags: null, or ≥ gridDim.x zeroed ints for the stream-K tail (WgWork), which leaves them zeroed.
// swiglu (no flags, no accumulate; BN = 256): W's tiles hold 128 gate rows then the 128 up rows of the same
// outputs (dequant_q4_tile's pairRows = 128), and the epilogue writes y[m, n0 / 2 + c] = silu(g) · u for the
// tile's 128 outputs c, as swiglu_f32 computes it, and its fp16 copy into yh (rows ldy apart), which
// down_proj's GEMM reads. y and yh point at the slice's first output; N counts W rows (2 per output).
// The maps are the calling kernel's own __grid_constant__ parameters (the TMA needs their param-space address).
template <int BN, int R, bool FUSED, int MINB, int PREG, int CREG>
__device__ __forceinline__ void wg_gemm_body(float* __restrict__ y, int M, int N, int ldy, int K, int accumulate, int gs,
                                             const CUtensorMap& tmA, const CUtensorMap& tmB, const CUtensorMap& tmS,
                                             const CUtensorMap& tmZ, int* __restrict__ flags, __half* __restrict__ yh = nullptr,
                                             int swiglu = 0) {
  using C = Cfg<BN, R, FUSED>;
  static_assert(128 * PREG + 256 * CREG <= 65536 / MINB, "register budget");
  extern __shared__ unsigned char wg_smem[];
  __shared__ __align__(8) uint64_t bar_full[R], bar_empty[R], bar_bfull[2], bar_bempty[2];
  const uint32_t sbase = (saddr(wg_smem) + 1023u) & ~1023u;
  unsigned char* gbase = wg_smem + (sbase - saddr(wg_smem));  // generic pointer to the same byte
  const int tid = threadIdx.x, wgi = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
  const int mtiles = (M + BM - 1) / BM, ntiles = (N + BN - 1) / BN, tiles = mtiles * ntiles, nk = K / BK;
  const WgWork work(tiles, nk, flags != nullptr, blockIdx.x, gridDim.x);
  const int sg = gs < BK ? BK / gs : 1;
  const uint32_t full0 = saddr(&bar_full[0]), empty0 = saddr(&bar_empty[0]);
  const uint32_t bfull0 = saddr(&bar_bfull[0]), bempty0 = saddr(&bar_bempty[0]);

  if (tid == 0) {
#pragma unroll
    for (int i = 0; i < R; ++i) {
      mbar_init(full0 + 8 * i, 1);   // the producer's arrive.expect_tx (+ the TMA bytes)
      mbar_init(empty0 + 8 * i, 8);  // one arrival per consumer warp
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mbar_init(bfull0 + 8 * i, 3);   // one per dequantizing warp
      mbar_init(bempty0 + 8 * i, 8);  // one per consumer warp
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (wgi == 0) {
    reg_dealloc<PREG>();
    if (warp == 0) {
      if (lane == 0) {  // TMA issue
        prefetch_map(&tmA);
        prefetch_map(&tmB);
        if (FUSED) {
          prefetch_map(&tmS);
          prefetch_map(&tmZ);
        }
        const uint32_t tx = FUSED ? C::A_BYTES + C::Q_BYTES + sg * BN * 2 + sg * (BN / 8) * 4 : C::A_BYTES + C::B_BYTES;
        int j = 0;
        work.each([&](int tile, int kb0, int kb1) {
          const int m0 = (tile % mtiles) * BM, n0 = (tile / mtiles) * BN;
          for (int kb = kb0; kb < kb1; ++kb, ++j) {
            const int s = j % R, use = j / R;
            if (use > 0) mbar_wait(empty0 + 8 * s, (use - 1) & 1, BAR_EMPTY);
            const uint32_t full = full0 + 8 * s;
            mbar_expect_tx(full, tx);
            tma_2d(sbase + C::OFF_A + s * C::A_BYTES, &tmA, kb * BK, m0, full);
            if (!FUSED) {
              tma_2d(sbase + C::OFF_B + s * C::B_BYTES, &tmB, kb * BK, n0, full);
            } else {
              const int grow = kb * BK / gs;
              tma_2d(sbase + C::OFF_Q + s * C::Q_BYTES, &tmB, n0, kb * (BK / 8), full);
              tma_2d(sbase + C::OFF_S + s * C::S_BYTES, &tmS, n0, grow, full);
              tma_2d(sbase + C::OFF_Z + s * C::Z_BYTES, &tmZ, n0 / 8, grow, full);
            }
          }
        });
      }
    } else if (FUSED) {  // warps 1-3: int4 slice -> swizzled fp16 B tile
      const int t = tid - 32;  // 0..95
      int j = 0;
      work.each([&](int, int kb0, int kb1) {
        for (int kb = kb0; kb < kb1; ++kb, ++j) {
          const int s = j % R, use = j / R, b = j & 1, buse = j >> 1;
          mbar_wait(full0 + 8 * s, use & 1, BAR_FULL);
          if (buse > 0) mbar_wait(bempty0 + 8 * b, (buse - 1) & 1, BAR_BEMPTY);
          const uint32_t* qs = reinterpret_cast<const uint32_t*>(gbase + C::OFF_Q + s * C::Q_BYTES);
          const __half* ss = reinterpret_cast<const __half*>(gbase + C::OFF_S + s * C::S_BYTES);
          const uint32_t* zs = reinterpret_cast<const uint32_t*>(gbase + C::OFF_Z + s * C::Z_BYTES);
          const uint32_t bt = sbase + C::OFF_B + b * C::B_BYTES;
#pragma unroll 2
          for (int u = t; u < 8 * BN; u += 96) {
            const int n = u & (BN - 1), r = u / BN;  // column n, packed row r (k = 8r .. 8r+7)
            const int gl = sg == 2 ? (r >> 2) : 0;
            const uint32_t q = qs[r * BN + n];
            const half2 s2 = __half2half2(ss[gl * BN + n]);
            const half2 z2 = zero_half2(zs[gl * (BN / 8) + (n >> 3)], n);
            st_shared_v4(bt + n * 128 + ((r ^ (n & 7)) << 4), dq8(q, s2, z2));
          }
          fence_proxy_async();
          __syncwarp();
          if (lane == 0) mbar_arrive(bfull0 + 8 * b);
        }
      });
    }
  } else {
    reg_alloc<CREG>();
    const int c = wgi - 1;  // rows c·64 .. c·64+63 of the block tile
    float acc[BN / 2];
    int j = 0;
    work.each([&](int tile, int kb0, int kb1) {
      const int m0 = (tile % mtiles) * BM, n0 = (tile / mtiles) * BN;
#pragma unroll
      for (int i = 0; i < BN / 2; ++i) acc[i] = 0.f;
      for (int kb = kb0; kb < kb1; ++kb, ++j) {
        const int s = j % R, use = j / R, b = j & 1;
        mbar_wait(full0 + 8 * s, use & 1, BAR_FULL);
        if (FUSED) mbar_wait(bfull0 + 8 * b, (j >> 1) & 1, BAR_BFULL);
        const uint64_t da = desc_sw128(sbase + C::OFF_A + s * C::A_BYTES + c * (64 * 128));
        const uint64_t db = desc_sw128(sbase + C::OFF_B + (FUSED ? b : s) * C::B_BYTES);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) wgmma_bn<BN>(acc, da + 2 * kk, db + 2 * kk);  // +32 bytes per k16
        wg_commit();
        if (kb > kb0) {  // the previous slice's wgmmas are done: give its buffers back
          wg_wait<1>();
          if (lane == 0) {
            mbar_arrive(empty0 + 8 * ((j - 1) % R));
            if (FUSED) mbar_arrive(bempty0 + 8 * ((j - 1) & 1));
          }
        }
      }
      wg_wait<0>();
      fence_regs(acc);
      if (lane == 0) {
        mbar_arrive(empty0 + 8 * ((j - 1) % R));
        if (FUSED) mbar_arrive(bempty0 + 8 * ((j - 1) & 1));
      }
      // a segment of a split tile: wait for the segments before it (WgWork)
      const bool whole = kb0 == 0 && kb1 == nk;
      const int turn = whole ? 0 : work.order(tile, kb0);
      int* flag = flags + (tile - work.dp);
      if (turn > 0) {
        if (tid == 128)
          while (ld_acquire(flag) != turn) {
          }
        consumers_sync();
      }
      const bool add = accumulate || turn > 0;
      const int row = m0 + c * 64 + warp * 16 + (lane >> 2);
      if (BN == 256 && swiglu) {  // columns 8jn + 2t (+1) of the tile: gate in jn < 16, up in jn + 16
#pragma unroll
        for (int jn = 0; jn < BN / 16; ++jn) {
          const int col = n0 / 2 + jn * 8 + 2 * (lane & 3);
          if (col >= N / 2) continue;
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int r = row + 8 * h;
            if (r >= M) continue;
            const float g0 = acc[4 * jn + 2 * h], g1 = acc[4 * jn + 2 * h + 1];
            const float2 v = make_float2(silu_mul(g0, acc[4 * (jn + 16) + 2 * h]), silu_mul(g1, acc[4 * (jn + 16) + 2 * h + 1]));
            *reinterpret_cast<float2*>(y + (size_t)r * ldy + col) = v;
            *reinterpret_cast<half2*>(yh + (size_t)r * ldy + col) = __floats2half2_rn(v.x, v.y);
          }
        }
        return;
      }
      const int col0 = n0 + 2 * (lane & 3);
      // Stores, or y += acc. The old values of EP_CHUNK column groups are loaded together before their
      // stores: one load and store after the other made every add wait a full round trip (128 of them per
      // thread and tile), which cost the accumulating launches (o_proj, down_proj) and stream-K's adds more
      // than their main loop.
      constexpr int EP_CHUNK = 4;
#pragma unroll
      for (int jc = 0; jc < BN / 8; jc += EP_CHUNK) {
        float2 old[EP_CHUNK][2];
#pragma unroll
        for (int q = 0; q < EP_CHUNK; ++q)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int col = col0 + (jc + q) * 8, r = row + 8 * h;
            old[q][h] = add && col < N && r < M ? *reinterpret_cast<const float2*>(y + (size_t)r * ldy + col) : make_float2(0.f, 0.f);
          }
#pragma unroll
        for (int q = 0; q < EP_CHUNK; ++q)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int col = col0 + (jc + q) * 8, r = row + 8 * h;
            if (col >= N || r >= M) continue;
            float2 v = make_float2(acc[4 * (jc + q) + 2 * h], acc[4 * (jc + q) + 2 * h + 1]);
            if (add) {
              v.x += old[q][h].x;
              v.y += old[q][h].y;
            }
            *reinterpret_cast<float2*>(y + (size_t)r * ldy + col) = v;
          }
      }
      if (!whole) {  // the next segment's turn (0 again after the tile's last)
        consumers_sync();
        if (tid == 128) {
          __threadfence();
          st_release(flag, kb1 == nk ? 0 : turn + 1);
        }
      }
    });
  }
}

template <int BN, int R, bool FUSED, int MINB, int PREG, int CREG>
__global__ void __launch_bounds__(THREADS, MINB)
    wg_gemm(float* __restrict__ y, int M, int N, int ldy, int K, int accumulate, int gs, const __grid_constant__ CUtensorMap tmA,
            const __grid_constant__ CUtensorMap tmB, const __grid_constant__ CUtensorMap tmS,
            const __grid_constant__ CUtensorMap tmZ, int* __restrict__ flags) {
  wg_gemm_body<BN, R, FUSED, MINB, PREG, CREG>(y, M, N, ldy, K, accumulate, gs, tmA, tmB, tmS, tmZ, flags);
}

#endif  // WG_SM90A

}  // namespace wg
