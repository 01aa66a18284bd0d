// Several tokens at once (prefill, small batches): tensor-core GEMM with weights dequantized per tile.
//   y[m, n] = Σ_k x[m, xk(k)] · W[n, k]   (+ y[m, n] when accumulate)
// GPTQ: W[n, k] = s[g, n] · (q[k, n] − z[g, n]), g = gidx ? gidx[k] : k / gs, xk(k) = perm ? perm[k] : k
// dense: W[n, k] = w[n*K + k] (fp16)
// Tiles of 64 rows × 64 columns × 32 k: x and W are converted to fp16 in shared memory and multiplied
// with wmma 16×16×16 (f32 accumulate); 4 warps each own a 32×32 quarter of the tile.
#include <mma.h>
#include "common.cuh"
using namespace nvcuda;

struct GptqSrc {
  const uint32_t* qw; const __half* scales; const uint32_t* qzeros; const int* gidx; const int* perm;
  int gs; int bits;
};

template <bool GPTQ>
__device__ __forceinline__ void gemm_tile(float* y, const float* __restrict__ x, int M, int N, int K, int accumulate,
                                          GptqSrc g, const __half* __restrict__ w) {
  __shared__ __align__(32) __half As[64][40];  // [m][k]
  __shared__ __align__(32) __half Bs[64][40];  // [n][k]: wmma matrix_b in column-major order
  __shared__ __align__(32) float Cs[64][68];
  const int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
  const int tid = threadIdx.x, warp = tid >> 5;
  const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> c[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(c[i][j], 0.f);
  const size_t zeroWords = GPTQ ? (((size_t)N * g.bits) >> 5) : 0;

  for (int k0 = 0; k0 < K; k0 += 32) {
#pragma unroll 4
    for (int i = 0; i < 16; ++i) {
      const int idx = tid + i * 128;
      const int m = idx >> 5, kk = idx & 31;
      const int gm = m0 + m, gk = k0 + kk;
      float v = 0.f;
      if (gm < M && gk < K) v = x[(size_t)gm * K + (GPTQ && g.perm ? g.perm[gk] : gk)];
      As[m][kk] = __float2half(v);
    }
#pragma unroll 4
    for (int i = 0; i < 16; ++i) {
      const int idx = tid + i * 128;
      int n, kk;
      if (GPTQ) { n = idx & 63; kk = idx >> 6; } else { n = idx >> 5; kk = idx & 31; }  // coalesced either way
      const int gn = n0 + n, gk = k0 + kk;
      float v = 0.f;
      if (gn < N && gk < K) {
        if (GPTQ) {
          const int grp = g.gidx ? g.gidx[gk] : gk / g.gs;
          const float q = (float)extract_bits(g.qw + gn, N, (uint32_t)gk * g.bits, g.bits);
          const float z = (float)(extract_bits(g.qzeros + grp * zeroWords, 1, (uint32_t)gn * g.bits, g.bits) + 1u);
          v = __half2float(g.scales[(size_t)grp * N + gn]) * (q - z);
        } else {
          v = __half2float(w[(size_t)gn * K + gk]);
        }
      }
      Bs[n][kk] = __float2half(v);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 32; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &As[wm + i * 16][kk], 40);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &Bs[wn + j * 16][kk], 40);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(c[i][j], a[i], b[j], c[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::store_matrix_sync(&Cs[wm + i * 16][wn + j * 16], c[i][j], 68, wmma::mem_row_major);
  __syncthreads();
  for (int idx = tid; idx < 64 * 64; idx += 128) {
    const int m = idx >> 6, n = idx & 63;
    const int gm = m0 + m, gn = n0 + n;
    if (gm < M && gn < N) {
      float* dst = y + (size_t)gm * N + gn;
      *dst = accumulate ? *dst + Cs[m][n] : Cs[m][n];
    }
  }
}

extern "C" __global__ void __launch_bounds__(128) gemm_gptq(float* y, const float* x, int M, int N, int K, int accumulate,
                                                            const uint32_t* qw, const __half* scales, const uint32_t* qzeros,
                                                            const int* gidx, const int* perm, int gs, int bits) {
  gemm_tile<true>(y, x, M, N, K, accumulate, GptqSrc{qw, scales, qzeros, gidx, perm, gs, bits}, nullptr);
}

extern "C" __global__ void __launch_bounds__(128) gemm_f16(float* y, const float* x, int M, int N, int K, int accumulate,
                                                           const __half* w) {
  pdl_wait();
  pdl_launch_dependents();
  gemm_tile<false>(y, x, M, N, K, accumulate, GptqSrc{}, w);
}
