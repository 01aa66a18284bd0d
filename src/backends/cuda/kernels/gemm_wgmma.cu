// Hopper prefill GEMM for rows ≥ WGMMA_MIN_ROWS (linearLaunch.ts / wgmmaLinear.ts) on q4-layout int4 GPTQ
// weights, in two launches per slice of N (the lab's variant (b), kernels and layouts in gemm_wgmma.cuh); the
// GEMM in 256-wide tiles (gemm_wgmma_256) or 160-wide ones (gemm_wgmma_160, at the end):
//   dequant_q4_tile: W[n, k] (fp16 [Ns, K] scratch, K contiguous) = s[k / gs, n0 + n] · (q[k, n0 + n] − z[k / gs, n0 + n] − 1)
//   gemm_wgmma_256:  y[m, n0 + n] (+)= Σ_k xh[m, k] · W[n, k]   (xh: x_to_half's fp16 copy of x, act-order gathered)
// dequant_q4_tile: grid (ceil(Ns / 64), ceil(K / 256)), 256 threads; qw, scales point at column n0 of the full
// matrix (rows of ld = N columns), qzeros at column n0 / 8 (n0 % 8 == 0); pairRows > 0 interleaves two
// matrices' rows in blocks (gate and up for the fused SwiGLU: dequant_q4_tile_body in gemm_wgmma.cuh).
// gemm_wgmma_256: 384 threads (a TMA producer warpgroup + 2 wgmma consumer warpgroups), 128 × 256 block
// tiles, 4-deep TMA ring, persistent grid (≤ one block per SM), GEMM_WGMMA_SHARED bytes of dynamic shared
// memory; y points at column n0 of the output, whose rows are ldy floats apart; flags: null, or ≥ gridDim.x
// zeroed ints, and the last partial wave is split along K (stream-K, WgWork in gemm_wgmma.cuh). tmA: xh
// [M][K] fp16, box {64, 128}; tmB: the scratch W [Ns][K] fp16, box {64, 256}; both 128-byte swizzle.
// swiglu = 1: gate/up fused with SwiGLU (yh: the fp16 copy of y; wg_gemm_body says how).
// Needs K % 64 == 0, N % 8 == 0, gs % 32 == 0, 16-byte aligned buffers; M and Ns need not be tile multiples.
// sm_90a only (wgmma): on the fatbin's other targets the GEMM entry point traps (the host never launches it
// there); the dequantization builds everywhere.
#include "gemm_wgmma_rs.cuh"  // (and through it gemm_wgmma.cuh)

extern "C" __global__ void __launch_bounds__(wg::DQ_THREADS)
    dequant_q4_tile(__half* __restrict__ W, const uint32_t* __restrict__ qw, const __half* __restrict__ scales,
                    const uint32_t* __restrict__ qzeros, int N, int ld, int K, int gs, int pairRows, int rowOff) {
  wg::dequant_q4_tile_body(W, qw, scales, qzeros, N, ld, K, gs, pairRows, rowOff);
}

// the same for 8-bit weights in the q8 layout (qzeros pointing at column n0 / 4); same grid and block
extern "C" __global__ void __launch_bounds__(wg::DQ_THREADS)
    dequant_q8_tile(__half* __restrict__ W, const uint32_t* __restrict__ qw, const __half* __restrict__ scales,
                    const uint32_t* __restrict__ qzeros, int N, int ld, int K, int gs) {
  wg::dequant_q8_tile_body(W, qw, scales, qzeros, N, ld, K, gs);
}

// the lab's wg256 configuration: BN 256, 4 stages, 1 block per SM, 40 / 232 registers per producer / consumer thread
extern "C" __global__ void __launch_bounds__(384, 1)
    gemm_wgmma_256(float* __restrict__ y, int M, int N, int ldy, int K, int accumulate, int gs,
                   const __grid_constant__ CUtensorMap tmA, const __grid_constant__ CUtensorMap tmB, int* __restrict__ flags,
                   __half* __restrict__ yh, int swiglu) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  wg::wg_gemm_body<256, 4, false, 1, 40, 232>(y, M, N, ldy, K, accumulate, gs, tmA, tmB, tmB, tmB, flags, yh, swiglu);
#else
  __trap();
#endif
}

// 128 × 160 block tiles, 5 stages (GEMM_WGMMA_160_SHARED): for N where 256-wide tiles leave a wave part-empty
// (13B at 2048 rows: q/k/v/o's 320 tiles of 256 are 2.4 waves on 132 SMs, 512 of 160 are 3.9;
// wgmmaLinear.ts wgmmaTileCols chooses). No SwiGLU epilogue (that needs the 256-row gate/up pairs).
extern "C" __global__ void __launch_bounds__(384, 1)
    gemm_wgmma_160(float* __restrict__ y, int M, int N, int ldy, int K, int accumulate, int gs,
                   const __grid_constant__ CUtensorMap tmA, const __grid_constant__ CUtensorMap tmB, int* __restrict__ flags,
                   __half* __restrict__ yh, int swiglu) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  wg::wg_gemm_body<160, 5, false, 1, 40, 232>(y, M, N, ldy, K, accumulate, gs, tmA, tmB, tmB, tmB, flags, yh, 0);
#else
  __trap();
#endif
}

// (d) the register-A GEMM (gemm_wgmma_rs.cuh): y (+)= xh · Wᵀ straight from the int4 words, no fp16 scratch;
// rsLinear.ts runs it for rsMinRows .. rsMaxRows rows. gemm_rs_256 (RsCfg<256, 6>) takes 256-token tiles,
// gemm_rs_128 (RsCfg<128, 8>) 128-token ones for prompts that fill no more. 256 threads (two consumer warpgroups;
// thread 0 also issues the TMA copies), RsCfg<BT, R>::SMEM bytes of dynamic shared memory, grid min(tiles · splits,
// SMs), tiles = ⌈M / BT⌉ · ⌈N / 128⌉ (gate/up: ⌈N / 64⌉); splits > 1 divides each tile's K into that many ranges
// added into y atomically (y zeroed first unless accumulate).
// tmX: xh [M][K] fp16, box {64, BT}, 128-byte swizzle; tmQ / tmS / tmZ: qweight u32 [K/8][N] box {128, 8}, scales
// fp16 [K/gs][N] box {128, sg}, qzeros u32 [K/gs][N/8] box {16, sg} (sg = 2 for gs 32, else 1). Needs K % 64 == 0,
// N % 32 == 0, gs == 32 or gs % 64 == 0.
// The _swiglu entries: y[m, o] = silu(x·gate[o]) · (x·up[o]) and its fp16 copy yh, for N outputs (N % 64 == 0);
// tmQ / tmS / tmZ gate's and tmQ2 / tmS2 / tmZ2 up's maps, boxes of 64 columns ({64, 8}, {64, sg}, {8, sg}).
// The _swiglu_paired entries: the same with gate and up in one 3-D map each (the third dimension's stride is up's
// address minus gate's), boxes {64, 8, 2}, {64, sg, 2}, {8, sg, 2}: 4 copies per K slice instead of 7.
template <int BT, int R>
__device__ __forceinline__ void rs_plain(float* y, int M, int N, int ldy, int K, int accumulate, int gs, int splits, const CUtensorMap& tmX,
                                         const CUtensorMap& tmQ, const CUtensorMap& tmS, const CUtensorMap& tmZ) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  wg::wg_gemm_rs_body<BT, R, false>(y, M, N, ldy, K, accumulate, gs, splits, tmX, tmQ, tmS, tmZ, tmQ, tmS, tmZ, nullptr);
#else
  __trap();
#endif
}
template <int BT, int R, bool PAIRED = false>
__device__ __forceinline__ void rs_swiglu(float* y, __half* yh, int M, int N, int ldy, int K, int gs, const CUtensorMap& tmX,
                                          const CUtensorMap& tmQ, const CUtensorMap& tmS, const CUtensorMap& tmZ, const CUtensorMap& tmQ2,
                                          const CUtensorMap& tmS2, const CUtensorMap& tmZ2) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  wg::wg_gemm_rs_body<BT, R, true, 1, PAIRED>(y, M, N, ldy, K, 0, gs, 1, tmX, tmQ, tmS, tmZ, tmQ2, tmS2, tmZ2, yh);
#else
  __trap();
#endif
}
#define RS_ENTRIES(BT, R)                                                                                                          \
  extern "C" __global__ void __launch_bounds__(wg::RS_THREADS, 1)                                                                  \
      gemm_rs_##BT(float* __restrict__ y, int M, int N, int ldy, int K, int accumulate, int gs, int splits,                        \
                   const __grid_constant__ CUtensorMap tmX, const __grid_constant__ CUtensorMap tmQ,                               \
                   const __grid_constant__ CUtensorMap tmS, const __grid_constant__ CUtensorMap tmZ) {                             \
    rs_plain<BT, R>(y, M, N, ldy, K, accumulate, gs, splits, tmX, tmQ, tmS, tmZ);                                                 \
  }                                                                                                                                \
  extern "C" __global__ void __launch_bounds__(wg::RS_THREADS, 1)                                                                  \
      gemm_rs_##BT##_swiglu(float* __restrict__ y, __half* __restrict__ yh, int M, int N, int ldy, int K, int gs,                  \
                            const __grid_constant__ CUtensorMap tmX, const __grid_constant__ CUtensorMap tmQ,                      \
                            const __grid_constant__ CUtensorMap tmS, const __grid_constant__ CUtensorMap tmZ,                      \
                            const __grid_constant__ CUtensorMap tmQ2, const __grid_constant__ CUtensorMap tmS2,                    \
                            const __grid_constant__ CUtensorMap tmZ2) {                                                            \
    rs_swiglu<BT, R>(y, yh, M, N, ldy, K, gs, tmX, tmQ, tmS, tmZ, tmQ2, tmS2, tmZ2);                                              \
  }                                                                                                                                \
  extern "C" __global__ void __launch_bounds__(wg::RS_THREADS, 1)                                                                  \
      gemm_rs_##BT##_swiglu_paired(float* __restrict__ y, __half* __restrict__ yh, int M, int N, int ldy, int K, int gs,           \
                                   const __grid_constant__ CUtensorMap tmX, const __grid_constant__ CUtensorMap tmQ,               \
                                   const __grid_constant__ CUtensorMap tmS, const __grid_constant__ CUtensorMap tmZ) {             \
    rs_swiglu<BT, R, true>(y, yh, M, N, ldy, K, gs, tmX, tmQ, tmS, tmZ, tmQ, tmS, tmZ);                                          \
  }
RS_ENTRIES(256, 6)
RS_ENTRIES(128, 8)

// q, k and v in one launch (gemm_rs_256_qkv: MATS = 3 in wg_gemm_rs_body): three [K][N] matrices of one group size
// read by one xh, outputs y0 / y1 / y2 ([M][N] each, not accumulated); maps as gemm_rs_256's, one set per matrix.
// Grid min(tiles · splits, SMs), tiles = ⌈M / 256⌉ · 3 · ⌈N / 128⌉.
extern "C" __global__ void __launch_bounds__(wg::RS_THREADS, 1)
    gemm_rs_256_qkv(float* __restrict__ y0, float* __restrict__ y1, float* __restrict__ y2, int M, int N, int K, int gs, int splits,
                    const __grid_constant__ CUtensorMap tmX, const __grid_constant__ CUtensorMap tmQ0,
                    const __grid_constant__ CUtensorMap tmS0, const __grid_constant__ CUtensorMap tmZ0,
                    const __grid_constant__ CUtensorMap tmQ1, const __grid_constant__ CUtensorMap tmS1,
                    const __grid_constant__ CUtensorMap tmZ1, const __grid_constant__ CUtensorMap tmQ2,
                    const __grid_constant__ CUtensorMap tmS2, const __grid_constant__ CUtensorMap tmZ2) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  wg::wg_gemm_rs_body<256, 6, false, 3>(y0, M, N, N, K, 0, gs, splits, tmX, tmQ0, tmS0, tmZ0, tmQ1, tmS1, tmZ1, nullptr, y1, y2, &tmQ2, &tmS2,
                                        &tmZ2);
#else
  __trap();
#endif
}

// The same with rotary embedding and the KV-cache write in the epilogue (ROPE in wg_gemm_rs_body): q's heads rotated
// into q [M][N] f32, k's rotated and v's into the cache rows kc / vc ([M][N] fp16 from the chunk's first position),
// rope: the chunk's (cos, sin) table [M][64] (rope_table_f64: double2, rope.cuh's bits; _rope32: rope_table_f32, float2
// and an f32 rotation). Head size 128 (one head per tile), k and v of q's width. The f32 k and v are not written.
// qh not null: q goes there as half(q · qScale) instead, the Q tile attn_flash_wg_128 would make of it (its qh).
// ready not null: [heads] counters, one added per finished tile of the head (q's, k's and v's; attn_flash_wg_128's ready).
#define RS_QKV_ROPE_ENTRY(NAME, BITS)                                                                                              \
  extern "C" __global__ void __launch_bounds__(wg::RS_THREADS, 1)                                                                  \
      NAME(float* __restrict__ q, __half* __restrict__ kc, __half* __restrict__ vc, const void* __restrict__ rope, int M, int N,   \
           int K, int gs, const __grid_constant__ CUtensorMap tmX, const __grid_constant__ CUtensorMap tmQ0,                       \
           const __grid_constant__ CUtensorMap tmS0, const __grid_constant__ CUtensorMap tmZ0,                                     \
           const __grid_constant__ CUtensorMap tmQ1, const __grid_constant__ CUtensorMap tmS1,                                     \
           const __grid_constant__ CUtensorMap tmZ1, const __grid_constant__ CUtensorMap tmQ2,                                     \
           const __grid_constant__ CUtensorMap tmS2, const __grid_constant__ CUtensorMap tmZ2, __half* __restrict__ qh,            \
           float qScale, unsigned* ready) {                                                                                        \
    RS_QKV_ROPE_BODY(BITS)                                                                                                         \
  }
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define RS_QKV_ROPE_BODY(BITS)                                                                                                       \
  wg::wg_gemm_rs_body<256, 6, false, 3, false, BITS>(q, M, N, N, K, 0, gs, 1, tmX, tmQ0, tmS0, tmZ0, tmQ1, tmS1, tmZ1, qh, nullptr, \
                                                     nullptr, &tmQ2, &tmS2, &tmZ2, kc, vc, rope, qScale, ready);
#else
#define RS_QKV_ROPE_BODY(BITS) __trap();
#endif
RS_QKV_ROPE_ENTRY(gemm_rs_256_qkv_rope, 64)
RS_QKV_ROPE_ENTRY(gemm_rs_256_qkv_rope32, 32)
