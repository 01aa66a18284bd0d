// The two dense products of `qllama quantize --backend cuda`.
//
// qz_gemm_f16 (tensor cores): C[m, n] (= | +=) Σ_k A[m, k] · B[n, k]
//   A [M, lda] fp16, B [N, ldb] fp16 (both K-contiguous), C [M, ldc] f32, f32 accumulators.
//   Used for the layer's linears (A = activations, B = weights [out, in]) and for the Hessian sums
//   (A = B = Xᵀ, lower = 1: tiles wholly above the diagonal are skipped, the caller mirrors).
//   Block tile 128 × 128, K slices of 32 through a 3-stage cp.async ring, 8 warps of 64 × 32, the
//   fragment indexing of gemm_q4_mma (gemm_mma.cu) with an fp16 B tile loaded like A.
//   Needs: K % 8 == 0, lda % 8 == 0, ldb % 8 == 0, A and B 16-byte aligned (every 8-half chunk is
//   one 16-byte cp.async, zero-filled past M, N or K), N % 2 == 0, ldc % 2 == 0 (float2 stores).
//
// qz_sgemm (f32 CUDA cores, for GPTQ's factorizations and its lazy update, where fp16 is too coarse):
//   C = alpha · op(A) · op(B) + beta · C, op(A)[m, k] = transA ? A[k·lda + m] : A[m·lda + k],
//   op(B)[k, n] = transB ? B[n·ldb + k] : B[k·ldb + n]. beta == 0 never reads C (it may hold NaN).
//   lower = 1 skips tiles wholly above the diagonal; bLower = 1 says op(B) is lower triangular
//   (op(B)[k, n] = 0 for k < n), so each tile's K loop starts at its first column. Any sizes.
#include "mma.cuh"

namespace qzg {
constexpr int BM = 128, BN = 128, BK = 32, STAGES = 3, THREADS = 256;
constexpr int ST = BK + 8;                  // halves per shared row: 80 bytes, conflict-free ldmatrix
constexpr int A_STAGE = BM * ST, B_STAGE = BN * ST;  // dynamic shared: STAGES·(A_STAGE + B_STAGE)·2 = 61440 bytes
}  // namespace qzg

extern "C" __global__ void __launch_bounds__(256, 2)
qz_gemm_f16(float* __restrict__ C, int ldc, const __half* __restrict__ A, int lda, const __half* __restrict__ B, int ldb,
            int M, int N, int K, int accumulate, int lower) {
  using namespace qzg;
  if (lower && blockIdx.x > blockIdx.y) return;  // BM == BN: this tile lies above the diagonal
  extern __shared__ __align__(16) unsigned char qzg_smem[];
  __half* As = reinterpret_cast<__half*>(qzg_smem);
  __half* Bs = As + STAGES * A_STAGE;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
  const int nk = (K + BK - 1) / BK;

  auto load = [&](int stage, int kt) {
    const int k0 = kt * BK;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int c = tid + i * THREADS;  // 512 chunks of 8 halves: row c / 4, chunk c % 4
      const int r = c >> 2, kc = k0 + (c & 3) * 8;
      const bool kok = kc < K;
      const int gm = m0 + r, gn = n0 + r;
      const bool aok = kok && gm < M, bok = kok && gn < N;
      mma_cp16(As + stage * A_STAGE + r * ST + (c & 3) * 8, A + (aok ? (size_t)gm * lda + kc : 0), aok ? 16 : 0);
      mma_cp16(Bs + stage * B_STAGE + r * ST + (c & 3) * 8, B + (bok ? (size_t)gn * ldb + kc : 0), bok ? 16 : 0);
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
    if (s < nk) load(s, s);
    mma_cp_commit();
  }
  for (int i = 0; i < nk; ++i) {
    mma_cp_wait<STAGES - 2>();
    __syncthreads();  // slice i landed for every thread; every warp is past the mma of slice i − 1
    if (i + STAGES - 1 < nk) load((i + STAGES - 1) % STAGES, i + STAGES - 1);
    mma_cp_commit();
    const __half* a = As + (i % STAGES) * A_STAGE;
    const __half* b = Bs + (i % STAGES) * B_STAGE;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) mma_warp_64x32_k16<ST, ST>(acc, a, b, wm, wn, kk, lane);
  }
  mma_cp_wait<0>();
  mma_store_64x32(C, ldc, M, N, m0 + wm, n0 + wn, acc, lane, accumulate);
}

namespace qzs {
constexpr int T = 64, BK = 16, LD = T + 1;  // tile, K slice, padded shared row
}

extern "C" __global__ void __launch_bounds__(256)
qz_sgemm(float* __restrict__ C, int ldc, const float* __restrict__ A, int lda, int transA, const float* __restrict__ B, int ldb,
         int transB, int M, int N, int K, float alpha, float beta, int lower, int bLower) {
  using namespace qzs;
  const int m0 = blockIdx.y * T, n0 = blockIdx.x * T;
  if (lower && n0 > m0 + T - 1) return;
  __shared__ float As[BK][LD];  // As[k][m]
  __shared__ float Bs[BK][LD];  // Bs[k][n]
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

  const int kStart = bLower ? (n0 / BK) * BK : 0;  // op(B)[k, n] = 0 for k < n0
  for (int k0 = kStart; k0 < K; k0 += BK) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int e = tid + i * 256;
      // the thread-to-element maps keep consecutive threads on consecutive addresses
      int m, k;
      if (transA) { m = e & 63; k = e >> 6; } else { k = e & 15; m = e >> 4; }
      const int gm = m0 + m, gk = k0 + k;
      As[k][m] = (gm < M && gk < K) ? (transA ? A[(size_t)gk * lda + gm] : A[(size_t)gm * lda + gk]) : 0.f;
      int n;
      if (transB) { k = e & 15; n = e >> 4; } else { n = e & 63; k = e >> 6; }
      const int gn = n0 + n, gk2 = k0 + k;
      Bs[k][n] = (gn < N && gk2 < K) ? (transB ? B[(size_t)gn * ldb + gk2] : B[(size_t)gk2 * ldb + gn]) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int gm = m0 + ty + 16 * i;
    if (gm >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int gn = n0 + tx + 16 * j;
      if (gn >= N) continue;
      float* c = C + (size_t)gm * ldc + gn;
      *c = beta == 0.f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *c;
    }
  }
}
