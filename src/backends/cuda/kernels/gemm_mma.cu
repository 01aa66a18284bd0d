// Prefill / batched GEMM on int4 GPTQ weights in the q4 layout (rows group-contiguous, [K/8, N] packing),
// with mma.sync m16n8k16 tensor cores:   y[m, n] (+)= Σ_k xh[m, k] · W[n, k]
//   W[n, k] = s[k / gs, n] · (q[k, n] − (z[k / gs, n] + 1))
// xh is x converted to fp16 once per linear (x_to_half), its columns gathered through perm for act-order
// (the upload reordered the weight rows so each group is contiguous; perm maps a row to its x column).
// Block tile 128 rows × 128 outputs, K slices of 64; 8 warps, each a 64 × 32 quarter-of-a-half of the tile.
// Per slice: x (fp16) and the packed weights (8 words × 128 columns, 4 KB) go to shared memory through
// cp.async 16-byte copies, STAGES deep; the block dequantizes the slice's weights once into an fp16
// [n][k] tile (each 32-bit word = 8 consecutive k of one column → one 16-byte store), then ldmatrix feeds
// the mma fragments. f32 accumulators; epilogue stores or adds (linearAdd).
// Needs: K % 64 == 0, N % 8 == 0, gs % 32 == 0 (what the q4 layout guarantees).
#include "mma.cuh"

// xh[m, k] = half(x[m, perm ? perm[k] : k]); K even. Without perm (and K % 4 == 0) x and xh are read and
// written 4 values at a time with no index arithmetic; with perm, 32-bit row/column arithmetic where
// M·K < 2^32 (the 64-bit division per pair cost more than the copy).
extern "C" __global__ void x_to_half(__half* __restrict__ xh, const float* __restrict__ x, const int* __restrict__ perm,
                                     int M, int K) {
  const size_t total = (size_t)M * K;
  const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x, threads = (size_t)gridDim.x * blockDim.x;
  if (!perm && (K & 3) == 0) {
    for (size_t i = first; i < total / 4; i += threads) store_half4(xh + 4 * i, reinterpret_cast<const float4*>(x)[i]);
    return;
  }
  const bool narrow = total < (1ull << 32);
  for (size_t i = first * 2; i < total; i += threads * 2) {
    size_t m;
    int k;
    if (narrow) {
      const uint32_t i32 = (uint32_t)i, m32 = i32 / (uint32_t)K;
      m = m32;
      k = (int)(i32 - m32 * (uint32_t)K);
    } else {
      m = i / K;
      k = (int)(i - m * K);
    }
    const float* row = x + m * K;
    float a, b;
    if (perm) {
      a = row[__ldg(perm + k)];
      b = row[__ldg(perm + k + 1)];
    } else {
      const float2 v = *reinterpret_cast<const float2*>(row + k);
      a = v.x;
      b = v.y;
    }
    *reinterpret_cast<half2*>(xh + i) = __floats2half2_rn(a, b);
  }
}

// x_to_half with perm, a row per block (K % 4 == 0, K floats of dynamic shared memory): the row comes in as float4
// into shared memory and the gather reads it there, 4 values per thread and step, written as one 8-byte store. The
// grid-stride x_to_half gathers from global memory (scattered loads within the row, a division per pair): 61 us for
// 13B's o_proj input at 2048 rows on an H200 (1 TB/s), the one conversion left in an act-order prompt layer.
extern "C" __global__ void __launch_bounds__(256) x_to_half_gather_rows(__half* __restrict__ xh, const float* __restrict__ x,
                                                                       const int* __restrict__ perm, int M, int K) {
  extern __shared__ float xrow[];
  for (int m = blockIdx.x; m < M; m += gridDim.x) {
    const float4* src = reinterpret_cast<const float4*>(x + (size_t)m * K);
    for (int i = threadIdx.x; i < K / 4; i += blockDim.x) reinterpret_cast<float4*>(xrow)[i] = src[i];
    __syncthreads();
    __half* out = xh + (size_t)m * K;
    for (int i = threadIdx.x; i < K / 4; i += blockDim.x) store_gathered_half4(out, xrow, perm, i);
    __syncthreads();
  }
}

namespace gq {
constexpr int BM = 128, BN = 128, BK = 64, STAGES = 4, THREADS = 256;
constexpr int AST = BK + 8;                 // halves per shared row (16-byte pad: conflict-free ldmatrix)
constexpr int A_STAGE = BM * AST;           // halves
constexpr int BQ_STAGE = (BK / 8) * BN;     // 32-bit words
constexpr int SMEM = STAGES * (A_STAGE * 2 + BQ_STAGE * 4) + BN * AST * 2;  // 108544 bytes
}  // namespace gq

extern "C" __global__ void __launch_bounds__(256, 2)
gemm_q4_mma(float* __restrict__ y, const __half* __restrict__ xh, int M, int N, int K, int accumulate,
            const uint32_t* __restrict__ qw, const __half* __restrict__ scales, const uint32_t* __restrict__ qzeros, int gs) {
  using namespace gq;
  extern __shared__ __align__(16) unsigned char gq_smem[];
  __half* As = reinterpret_cast<__half*>(gq_smem);
  uint32_t* Bq = reinterpret_cast<uint32_t*>(gq_smem + STAGES * A_STAGE * 2);
  __half* Bh = reinterpret_cast<__half*>(gq_smem + STAGES * (A_STAGE * 2 + BQ_STAGE * 4));
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
  const int nslices = K / BK;

  auto load = [&](int stage, int slice) {
    const int k0 = slice * BK;
    __half* a = As + stage * A_STAGE;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int c = tid + i * THREADS;  // 1024 chunks of 8 halves: row c / 8, chunk c % 8
      const int r = c >> 3, kc = (c & 7) * 8;
      const int gm = m0 + r;
      mma_cp16(a + r * AST + kc, xh + (size_t)min(gm, M - 1) * K + k0 + kc, gm < M ? 16 : 0);
    }
    const int r = tid >> 5, nc = (tid & 31) * 4;  // 8 packed rows × 32 chunks of 4 columns
    const int gn = n0 + nc;
    mma_cp16(Bq + stage * BQ_STAGE + r * BN + nc, qw + (size_t)(k0 / 8 + r) * N + min(gn, N - 4), gn < N ? 16 : 0);
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

  const int dn = tid & (BN - 1), dw = (tid >> 7) * 4;  // dequantization: column dn, packed rows dw..dw+3
  const int gn = n0 + dn;
  const bool nok = gn < N;
  const int zshift = (gn & 7) * 4;
  for (int i = 0; i < nslices; ++i) {
    // this thread's group (its 4 words = 32 k lie in one group): loads go out before the wait
    const int grp = (i * BK + dw * 8) / gs;
    half2 s2 = __float2half2_rn(0.f), z2 = __float2half2_rn(1024.f);
    if (nok) {
      const __half s = scales[(size_t)grp * N + gn];
      const uint32_t z = ((__ldg(qzeros + (size_t)grp * (N >> 3) + (gn >> 3)) >> zshift) & 15u) + 1u;
      s2 = __half2half2(s);
      z2 = u32_as_half2((0x6400u | z) * 0x10001u);  // 1024 + z in both halves
    }
    mma_cp_wait<STAGES - 2>();
    __syncthreads();  // slice i landed for every thread; everyone is past the mma of slice i − 1
    if (i + STAGES - 1 < nslices) load((i + STAGES - 1) % STAGES, i + STAGES - 1);
    mma_cp_commit();

    const uint32_t* bq = Bq + (i % STAGES) * BQ_STAGE;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const uint32_t q = bq[(dw + w) * BN + dn];
      half2 v[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {  // v[j] = (k = j, k = j + 4) of this word
        const uint32_t t = ((q >> (4 * j)) & 0x000F000Fu) | 0x64006400u;  // 1024 + q
        v[j] = __hmul2(__hsub2(u32_as_half2(t), z2), s2);
      }
      half2 o[4] = {__lows2half2(v[0], v[1]), __lows2half2(v[2], v[3]), __highs2half2(v[0], v[1]), __highs2half2(v[2], v[3])};
      *reinterpret_cast<uint4*>(Bh + dn * AST + (dw + w) * 8) = *reinterpret_cast<const uint4*>(o);
    }
    __syncthreads();

    const __half* a = As + (i % STAGES) * A_STAGE;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) mma_warp_64x32_k16<AST, AST>(acc, a, Bh, wm, wn, kk, lane);
  }
  mma_cp_wait<0>();
  mma_store_64x32(y, N, M, N, m0 + wm, n0 + wn, acc, lane, accumulate);
}
