// Causal prefill attention, flash style, on tensor cores (mma.sync m16n8k16, f32 accumulators).
// Block (head h, query tile of 64 rows), 4 warps of 16 query rows. Keys/values stream through shared
// memory in tiles of 64 positions (cp.async, double-buffered); per tile each warp computes S = Q Kᵀ
// (q pre-scaled by log2(e)/sqrt(d), so softmax uses exp2), masks positions past its row
// (row t sees positions 0..start+t), folds the tile into its running max / sum (online softmax) and
// accumulates P V with P re-packed from the S accumulators as the A operand.
// q, out: [rows, heads*D] f32 · kc, vc: one layer's cache [maxSeq, kvHeads*D] fp16 (positions < start+rows written)
#include "flash_block.cuh"
#include "mma.cuh"

template <int D>
__device__ __forceinline__ void attn_flash(float* __restrict__ out, const float* __restrict__ q, const __half* __restrict__ kc,
                                           const __half* __restrict__ vc, const int* pos_ptr, int pos_imm, int rows,
                                           int heads, int kvHeads, float scale_log2) {
  constexpr int BQ = 64, BKV = 64, ST = D + 8, KD = D / 16, CH = D / 8;
  extern __shared__ __align__(16) unsigned char fa_smem[];
  __half* Ks = reinterpret_cast<__half*>(fa_smem);  // [2][BKV][ST]
  __half* Vs = Ks + 2 * BKV * ST;                // [2][BKV][ST]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const FlashBlock<BQ, BKV, D> fb(kc, vc, pos_ptr, pos_imm, rows, heads, kvHeads);
  const int h = fb.h, start = fb.start, t0 = fb.t0, nk = fb.nk, width = fb.width, ntiles = fb.ntiles;
  const __half* kbase = fb.kbase;
  const __half* vbase = fb.vbase;

  auto load = [&](int buf, int tile) {
    const int p0 = tile * BKV;
    for (int c = tid; c < BKV * CH; c += 128) {
      const int r = c / CH, col = (c % CH) * 8;
      const int p = p0 + r;
      const bool ok = p < nk;  // past nk: zeros (the cache there may hold NaN poison)
      const size_t off = (size_t)(ok ? p : 0) * width + col;
      mma_cp16(Ks + (buf * BKV + r) * ST + col, kbase + off, ok ? 16 : 0);
      mma_cp16(Vs + (buf * BKV + r) * ST + col, vbase + off, ok ? 16 : 0);
    }
  };
  load(0, 0);
  mma_cp_commit();

  const int r0 = t0 + warp * 16 + g, r1 = r0 + 8;  // this thread's two query rows
  const int qpos0 = start + r0, qpos1 = start + r1;
  uint32_t qf[KD][4];
  {
    const float* q0 = q + ((size_t)r0 * heads + h) * D;
    const float* q1 = q + ((size_t)r1 * heads + h) * D;
#pragma unroll
    for (int kd = 0; kd < KD; ++kd) {
      const int d = kd * 16 + 2 * t;
      float2 a = make_float2(0.f, 0.f), b = a, c = a, e = a;
      if (r0 < rows) { a = *reinterpret_cast<const float2*>(q0 + d); c = *reinterpret_cast<const float2*>(q0 + d + 8); }
      if (r1 < rows) { b = *reinterpret_cast<const float2*>(q1 + d); e = *reinterpret_cast<const float2*>(q1 + d + 8); }
      qf[kd][0] = pack_half2(a.x * scale_log2, a.y * scale_log2);
      qf[kd][1] = pack_half2(b.x * scale_log2, b.y * scale_log2);
      qf[kd][2] = pack_half2(c.x * scale_log2, c.y * scale_log2);
      qf[kd][3] = pack_half2(e.x * scale_log2, e.y * scale_log2);
    }
  }

  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  RowSoftmax<BKV> sm;

  for (int j = 0; j < ntiles; ++j) {
    if (j + 1 < ntiles) load((j + 1) & 1, j + 1);
    mma_cp_commit();
    mma_cp_wait<1>();
    __syncthreads();
    const __half* ks = Ks + (j & 1) * BKV * ST;
    const __half* vs = Vs + (j & 1) * BKV * ST;

    float s[BKV / 2];  // S in the m16n8 accumulator layout, 8 positions per 4 values
#pragma unroll
    for (int i = 0; i < BKV / 2; ++i) s[i] = 0.f;
#pragma unroll
    for (int kd = 0; kd < KD; ++kd)
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4(b0, b1, b2, b3, ks + (np * 16 + (lane & 7) + (lane >> 4) * 8) * ST + kd * 16 + ((lane >> 3) & 1) * 8);
        mma_16816(s + 8 * np, qf[kd], b0, b1);
        mma_16816(s + 8 * np + 4, qf[kd], b2, b3);
      }

    float c0, c1;
    uint32_t pf[BKV / 16][4];  // P as the A operand, one per 16 positions
    sm.fold(s, pf, j * BKV + BKV - 1 > start + t0, j * BKV, t, qpos0, qpos1, c0, c1);
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      o[i][0] *= c0;
      o[i][1] *= c0;
      o[i][2] *= c1;
      o[i][3] *= c1;
    }
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int dp = 0; dp < KD; ++dp) {
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4_trans(b0, b1, b2, b3, vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ST + dp * 16 + (lane >> 4) * 8);
        mma_16816(o[2 * dp], pf[kk], b0, b1);
        mma_16816(o[2 * dp + 1], pf[kk], b2, b3);
      }
    __syncthreads();  // this buffer is refilled next iteration
  }

  float inv0, inv1;
  sm.inverses(inv0, inv1);
  float* out0 = out + ((size_t)r0 * heads + h) * D;
  float* out1 = out + ((size_t)r1 * heads + h) * D;
#pragma unroll
  for (int i = 0; i < D / 8; ++i) {
    const int d = i * 8 + 2 * t;
    if (r0 < rows) *reinterpret_cast<float2*>(out0 + d) = make_float2(o[i][0] * inv0, o[i][1] * inv0);
    if (r1 < rows) *reinterpret_cast<float2*>(out1 + d) = make_float2(o[i][2] * inv1, o[i][3] * inv1);
  }
}

#define ATTN_FLASH(D)                                                                                          \
  extern "C" __global__ void __launch_bounds__(128) attn_flash_##D(                                            \
      float* out, const float* q, const __half* kc, const __half* vc, const int* pos_ptr, int pos_imm, int rows, \
      int heads, int kvHeads, float scale_log2) {                                                              \
    attn_flash<D>(out, q, kc, vc, pos_ptr, pos_imm, rows, heads, kvHeads, scale_log2);                         \
  }
ATTN_FLASH(64)
ATTN_FLASH(128)
