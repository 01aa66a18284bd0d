// Where a causal prompt-attention block works (attn_flash_<d>, attention_flash.cu; attn_flash_wg_128,
// attention_flash_wg.cu): grid (head, query tile of BQ rows), query tiles in reverse so blocks start in linear order
// with the longest (last) tiles of every head first and the short ones fill the last wave. (With grid (tile, head) each
// head's long tiles started after all earlier heads' short ones, and a long tile could run alone at the end: 13B at
// 2048 rows, H200, 0.314–0.322 → 0.273–0.276 ms per layer.) Rows t0 .. t0 + BQ − 1 are positions start + t0 ..;
// the block reads cache positions 0 .. nk − 1 of kv head h / (heads / kvHeads) in tiles of BKV.
#pragma once
#include "common.cuh"
#include "mma.cuh"  // pack_half2

template <int BQ, int BKV, int D>
struct FlashBlock {
  int h, start, t0, nk, width, ntiles;
  const __half* kbase;  // the kv head's K at position 0 (rows `width` halves apart)
  const __half* vbase;
  __device__ __forceinline__ FlashBlock(const __half* kc, const __half* vc, const int* pos_ptr, int pos_imm, int rows, int heads,
                                        int kvHeads) {
    const int qt = gridDim.y - 1 - blockIdx.y;
    h = blockIdx.x;
    const int kvh = h / (heads / kvHeads);
    start = read_pos(pos_ptr, pos_imm);
    t0 = qt * BQ;
    nk = start + min(t0 + BQ, rows);
    width = kvHeads * D;
    ntiles = (nk + BKV - 1) / BKV;
    kbase = kc + (size_t)kvh * D;
    vbase = vc + (size_t)kvh * D;
  }
};

// A thread's two query rows' running softmax (rows g and g + 8 of its warp's 16, g = lane / 4) over tiles of BKV
// positions: scores in the log2 domain in the m16n8 accumulator layout (s[4j + e]: row g, position 8j + 2t + e;
// s[4j + 2 + e]: row g + 8), P as the m16n8k16 A fragments of the next product (mma.sync, or wgmma's register A).
template <int BKV>
struct RowSoftmax {
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  // masks positions past qpos0 / qpos1 where `mask`, folds s into (m, l), writes P (one A fragment per 16
  // positions) and returns in c0 / c1 the factors the output rows must be scaled by
  __device__ __forceinline__ void fold(float (&s)[BKV / 2], uint32_t (&pf)[BKV / 16][4], bool mask, int p0, int t, int qpos0,
                                       int qpos1, float& c0, float& c1) {
    fold_<true>(s, pf, mask, p0, t, qpos0, qpos1, c0, c1);
  }
  // the same, but leaves the exponentials (2^(s − m)) in s for pack to turn into P later
  __device__ __forceinline__ void fold(float (&s)[BKV / 2], bool mask, int p0, int t, int qpos0, int qpos1, float& c0, float& c1) {
    uint32_t unused[BKV / 16][4];
    fold_<false>(s, unused, mask, p0, t, qpos0, qpos1, c0, c1);
  }
  template <bool PACK>
  __device__ __forceinline__ void fold_(float (&s)[BKV / 2], uint32_t (&pf)[BKV / 16][4], bool mask, int p0, int t, int qpos0,
                                        int qpos1, float& c0, float& c1) {
    constexpr int NJ = BKV / 8;
    if (mask) {
#pragma unroll
      for (int nt = 0; nt < NJ; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int p = p0 + nt * 8 + 2 * t + e;
          if (p > qpos0) s[4 * nt + e] = -INFINITY;
          if (p > qpos1) s[4 * nt + 2 + e] = -INFINITY;
        }
    }
    float mx0 = m0, mx1 = m1;
#pragma unroll
    for (int nt = 0; nt < NJ; ++nt) {
      mx0 = fmaxf(mx0, fmaxf(s[4 * nt], s[4 * nt + 1]));
      mx1 = fmaxf(mx1, fmaxf(s[4 * nt + 2], s[4 * nt + 3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    // finite: position 0 (first tile) is visible to every row
    c0 = exp2f(m0 - mx0);
    c1 = exp2f(m1 - mx1);
    m0 = mx0;
    m1 = mx1;
    float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
    for (int nt = 0; nt < NJ; ++nt) {
      const float e0 = exp2f(s[4 * nt] - m0), e1 = exp2f(s[4 * nt + 1] - m0);
      const float e2 = exp2f(s[4 * nt + 2] - m1), e3 = exp2f(s[4 * nt + 3] - m1);
      sum0 += e0 + e1;
      sum1 += e2 + e3;
      if constexpr (PACK) {
        pf[nt >> 1][(nt & 1) * 2] = pack_half2(e0, e1);
        pf[nt >> 1][(nt & 1) * 2 + 1] = pack_half2(e2, e3);
      } else {
        s[4 * nt] = e0;
        s[4 * nt + 1] = e1;
        s[4 * nt + 2] = e2;
        s[4 * nt + 3] = e3;
      }
    }
    l0 = l0 * c0 + sum0;
    l1 = l1 * c1 + sum1;
  }
  // P (one A fragment per 16 positions) from the exponentials the second fold left in s. A step of its own for the
  // overlapped wgmma build: writing P, the next product's input registers, while a wgmma is in flight made ptxas
  // serialize the wgmmas (C7513); FlashAttention-3 also converts P only after the previous P·V has retired
  __device__ __forceinline__ static void pack(const float (&s)[BKV / 2], uint32_t (&pf)[BKV / 16][4]) {
#pragma unroll
    for (int nt = 0; nt < BKV / 8; ++nt) {
      pf[nt >> 1][(nt & 1) * 2] = pack_half2(s[4 * nt], s[4 * nt + 1]);
      pf[nt >> 1][(nt & 1) * 2 + 1] = pack_half2(s[4 * nt + 2], s[4 * nt + 3]);
    }
  }
  // after the last tile: 1 / the rows' softmax sums (each lane of a row's quad holds a part)
  __device__ __forceinline__ void inverses(float& inv0, float& inv1) const {
    float a = l0, b = l1;
    a += __shfl_xor_sync(0xffffffffu, a, 1);
    a += __shfl_xor_sync(0xffffffffu, a, 2);
    b += __shfl_xor_sync(0xffffffffu, b, 1);
    b += __shfl_xor_sync(0xffffffffu, b, 2);
    inv0 = 1.f / a;
    inv1 = 1.f / b;
  }
};
