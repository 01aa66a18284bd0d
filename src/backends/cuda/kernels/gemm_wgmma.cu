// Hopper prefill GEMM for rows ≥ WGMMA_MIN_ROWS (linearLaunch.ts) on q4-layout int4 GPTQ weights, in two
// launches per linear (the lab's variant (b), kernels and layouts in gemm_wgmma.cuh):
//   dequant_q4_nk_rp4: W[n, k] (fp16 [N, K] scratch, K contiguous) = s[k / gs, n] · (q[k, n] − z[k / gs, n] − 1)
//   gemm_wgmma_256:    y[m, n] (+)= Σ_k xh[m, k] · W[n, k]   (xh: x_to_half's fp16 copy of x, act-order gathered)
// gemm_wgmma_256: 384 threads (a TMA producer warpgroup + 2 wgmma consumer warpgroups), 128 × 256 block
// tiles, 4-deep TMA ring, persistent grid (≤ one block per SM), GEMM_WGMMA_SHARED bytes of dynamic shared
// memory. tmA: xh [M][K] fp16, box {64, 128}; tmB: W [N][K] fp16, box {64, 256}; both 128-byte swizzle.
// Needs K % 64 == 0, N % 8 == 0, gs % 32 == 0, 16-byte aligned buffers; M and N need not be tile multiples.
// sm_90a only (wgmma): on the fatbin's other targets the GEMM entry point traps (the host never launches it
// there); the dequantization builds everywhere.
#include "gemm_wgmma.cuh"

// grid (ceil(N / 256), K / 32), 256 threads; gs % 32 == 0
extern "C" __global__ void __launch_bounds__(256) dequant_q4_nk_rp4(__half* __restrict__ W, const uint32_t* __restrict__ qw,
                                                                  const __half* __restrict__ scales,
                                                                  const uint32_t* __restrict__ qzeros, int N, int K, int gs) {
  wg::dequant_q4_nk_body<4>(W, qw, scales, qzeros, N, K, gs);
}

// the lab's wg256 configuration: BN 256, 4 stages, 1 block per SM, 40 / 232 registers per producer / consumer thread
extern "C" __global__ void __launch_bounds__(384, 1)
    gemm_wgmma_256(float* __restrict__ y, int M, int N, int K, int accumulate, int gs, const __grid_constant__ CUtensorMap tmA,
                   const __grid_constant__ CUtensorMap tmB) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  wg::wg_gemm_body<256, 4, false, 1, 40, 232>(y, M, N, K, accumulate, gs, tmA, tmB, tmB, tmB);
#else
  __trap();
#endif
}
