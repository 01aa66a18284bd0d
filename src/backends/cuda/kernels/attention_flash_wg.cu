// Causal prefill attention for head size 128 on Hopper's warpgroup MMA (wgmma), FlashAttention-3's shape
// without its producer warp: the block is (head, 128 query rows), two consumer warpgroups of 64 rows each.
//   S = Q Kᵀ   wgmma m64n<BKV>k16, A = Q and B = K both from shared memory (K-major: d contiguous)
//   O += P V   wgmma m64n128k16, A = P from registers (the S accumulators re-packed as fp16: the f32
//              accumulator fragment of m64nN is, per warp, the mma.m16n8k16 A fragment of the next product),
//              B = V from shared memory read N-major (imm-trans-b: V's rows are keys, d contiguous).
// Q, K and V tiles live in shared memory as two halves of the head (d 0..63, d 64..127), each [row][128 bytes]
// with the 128-byte swizzle (16-byte chunk c of row r at chunk c ^ (r % 8)), which is the canonical layout of
// both majors: K-major for Q and K (SBO = 1024 bytes between 8-row groups), N-major for V (LBO = the half's
// size between the two 64-wide d atoms, SBO = 1024 between 8-key groups).
// All 256 threads copy the next K/V tile (cp.async, zero past the live positions) while the current one is
// multiplied; each tile folds into the running max / sum per row (online softmax, exp2 with q pre-scaled by
// log2(e)/sqrt(d), as attn_flash) and masks positions past a row's own (row t sees 0..start+t).
// q, out: [rows, heads*128] f32 · kc, vc: one layer's cache [maxSeq, kvHeads*128] fp16 · outh: null, or out's fp16 copy
// (the one o_proj's prompt GEMM reads: halfCopies.ts), which saves that GEMM's conversion pass; out may then be null
// (nothing else reads it) · qh: null, or q as the Q tile takes it, half(q · scale_log2), which the q/k/v launch wrote
// instead of q (gemm_rs_256_qkv_rope32's qh), so q is not read · ready: null, or the q/k/v launch's per-head tile
// counters (its ready): the block waits until its head's reaches readyTarget instead of for that launch to end.
// Grid (head, query tile of 128 rows), the longest tiles first (flash_block.cuh); 256 threads; dynamic shared
// memory flashWgShared() (attentionLaunch.ts: 1 KB of alignment + Q + two K/V stages). sm_90a only: on the fatbin's other targets it traps.
#include "gemm_wgmma_rs.cuh"  // wgmma, descriptors, fence_proxy_async (and gemm_wgmma.cuh)
#include "flash_block.cuh"
#include "mma.cuh"

namespace fwg {
using namespace wg;  // the wgmma helpers of gemm_wgmma.cuh
constexpr int D = 128, NWG = 2, BKV = 64;  // the product's build: 2 warpgroups (128 query rows), 64-key tiles
constexpr int HALF_ROW = 128;  // bytes of a 64-wide half row of fp16

#ifdef WG_SM90A
// d[32] (scale_d = 0: =) += A(64x16, desc a) * B(16x64, desc b)
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[32], uint64_t a, uint64_t b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : WG_F8(0), WG_F8(8), WG_F8(16), WG_F8(24)
      : "l"(a), "l"(b), "r"(scale_d));
}
// d[64] += A(64x16: registers, the m16n8k16 A fragment of the warp's rows) * B(16x128, desc b read N-major)
__device__ __forceinline__ void wgmma_rs_m64n128k16_nmajor(float (&d)[64], const uint32_t (&a)[4], uint64_t b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " WG_REGS64 ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : WG_ACC64
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
}
template <int BKV>
__device__ __forceinline__ void wgmma_s(float (&d)[BKV / 2], uint64_t a, uint64_t b, int scale_d);
template <>
__device__ __forceinline__ void wgmma_s<128>(float (&d)[64], uint64_t a, uint64_t b, int scale_d) { wgmma_m64n128k16(d, a, b, scale_d); }
template <>
__device__ __forceinline__ void wgmma_s<64>(float (&d)[32], uint64_t a, uint64_t b, int scale_d) { wgmma_m64n64k16(d, a, b, scale_d); }

// byte offset of 16-byte chunk c (0..15 over d) of row r in a two-halves tile of `rows` rows
__device__ __forceinline__ uint32_t swz(int r, int c, int rows) {
  return (uint32_t)((c >> 3) * rows * HALF_ROW + r * HALF_ROW + (((c & 7) ^ (r & 7)) << 4));
}

__device__ __forceinline__ void scale_rows(float (&o)[64], float c0, float c1) {
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    o[4 * i] *= c0;
    o[4 * i + 1] *= c0;
    o[4 * i + 2] *= c1;
    o[4 * i + 3] *= c1;
  }
}

// S = Q Kᵀ over d (8 k16 steps: 4 per 64-wide half), issued (not committed)
template <int BKV, int BQ>
__device__ __forceinline__ void issue_scores(float (&s)[BKV / 2], uint32_t qa, uint32_t sK) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const uint32_t off = (kk & 3) << 5;  // 16 d values = 32 bytes along the half row
    wgmma_s<BKV>(s, desc_sw128(qa + (kk >> 2) * BQ * HALF_ROW + off), desc_sw128(sK + (kk >> 2) * BKV * HALF_ROW + off), kk > 0);
  }
}
// O += P V over the tile's keys (16 keys = two 8-key groups of 1024 bytes per step), issued (not committed)
template <int BKV>
__device__ __forceinline__ void issue_pv(float (&o)[64], const uint32_t (&pf)[BKV / 16][4], uint32_t sV) {
#pragma unroll
  for (int kk = 0; kk < BKV / 16; ++kk) wgmma_rs_m64n128k16_nmajor(o, pf[kk], desc_sw128_lbo(sV + kk * 2048, BKV * HALF_ROW));
}

// PIPE: FlashAttention-3's intra-warpgroup overlap: tile j's S = Q Kᵀ and tile j−1's O += P V are in flight
// together and tile j's softmax runs under the latter (three K/V stages, two P buffers); otherwise each tile's
// products run one after the other around its softmax (two stages).
template <int BKV, int NWG_, bool PIPE>
__device__ __forceinline__ void attn_flash_wg(float* __restrict__ out, const float* __restrict__ q, const __half* __restrict__ kc,
                                              const __half* __restrict__ vc, const int* pos_ptr, int pos_imm, int rows, int heads,
                                              int kvHeads, float scale_log2, __half* __restrict__ outh = nullptr,
                                              const __half* __restrict__ qh = nullptr, const unsigned* ready = nullptr,
                                              unsigned readyTarget = 0) {
  constexpr int BQ = 64 * NWG_, THREADS = 128 * NWG_, Q_BYTES = BQ * D * 2, KV_BYTES = BKV * D * 2, STAGES = PIPE ? 3 : 2;
  extern __shared__ unsigned char fwg_smem[];
  const uint32_t sbase = (saddr(fwg_smem) + 1023u) & ~1023u;
  unsigned char* gbase = fwg_smem + (sbase - saddr(fwg_smem));
  const uint32_t sQ = sbase, sK0 = sbase + Q_BYTES;  // then stage i's K at sK0 + 2i·KV_BYTES, its V right after
  const int tid = threadIdx.x, wgi = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const FlashBlock<BQ, BKV, D> fb(kc, vc, pos_ptr, pos_imm, rows, heads, kvHeads);
  const int h = fb.h, start = fb.start, t0 = fb.t0, nk = fb.nk, width = fb.width, ntiles = fb.ntiles;
  const __half* kbase = fb.kbase;
  const __half* vbase = fb.vbase;
  // launched behind the q/k/v launch that writes this chunk's q, k and v (programmatic dependent launch, no
  // griddepcontrol.wait): wait until every tile of this head is written (its counter reaches readyTarget; the
  // difference, so the running count may wrap), then read them from L2 (cp.async.cg, and __ldcg for the Q tile)
  // (a count that never comes, i.e. a host and kernel that disagree on it, traps after 2^26 spins, 10-20 s, rather than
  // hang: CUDA_ERROR_LAUNCH_FAILED at the next synchronize)
  if (ready != nullptr) {
    if (tid == 0) {
      unsigned v, spins = 0;
      for (;;) {
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(ready + h) : "memory");
        if ((int)(v - readyTarget) >= 0) break;
        __nanosleep(128);
        if (++spins == (1u << 26)) __trap();
      }
    }
    __syncthreads();
  }

  auto load = [&](int tile) {
    const int p0 = tile * BKV;
    unsigned char* kd = gbase + Q_BYTES + (tile % STAGES) * 2 * KV_BYTES;
    unsigned char* vd = kd + KV_BYTES;
#pragma unroll 4
    for (int u = tid; u < BKV * 16; u += THREADS) {
      const int r = u >> 4, c = u & 15, p = p0 + r;
      const bool ok = p < nk;  // past nk: zeros (the cache there may hold NaN poison)
      const size_t off = (size_t)(ok ? p : 0) * width + c * 8;
      const uint32_t o = swz(r, c, BKV);
      mma_cp16(kd + o, kbase + off, ok ? 16 : 0);
      mma_cp16(vd + o, vbase + off, ok ? 16 : 0);
    }
    mma_cp_commit();
  };
  auto stageK = [&](int tile) { return sK0 + (uint32_t)((tile % STAGES) * 2 * KV_BYTES); };
  load(0);
  if (PIPE && ntiles > 1) load(1);

  // Q tile: f32 → fp16 × scale_log2 (or qh's, which is that already), swizzled (rows past `rows` are zeros)
  for (int u = tid; u < BQ * 16; u += THREADS) {
    const int r = u >> 4, c = u & 15;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (t0 + r < rows && qh != nullptr) {
      v = __ldcg(reinterpret_cast<const uint4*>(qh + ((size_t)(t0 + r) * heads + h) * D + c * 8));
    } else if (t0 + r < rows) {
      const float4* src = reinterpret_cast<const float4*>(q + ((size_t)(t0 + r) * heads + h) * D + c * 8);
      const float4 a = src[0], b = src[1];
      v = make_uint4(pack_half2(a.x * scale_log2, a.y * scale_log2), pack_half2(a.z * scale_log2, a.w * scale_log2),
                     pack_half2(b.x * scale_log2, b.y * scale_log2), pack_half2(b.z * scale_log2, b.w * scale_log2));
    }
    st_shared_v4(sQ + swz(r, c, BQ), v);
  }
  fence_proxy_async();

  const int rw = wgi * 64 + warp * 16 + g;  // this thread's rows in the tile: rw, rw + 8
  const int qpos0 = start + t0 + rw, qpos1 = qpos0 + 8;
  // the tile reaches past some row's own position (the warpgroup's first row)
  auto masks = [&](int tile) { return tile * BKV + BKV - 1 > start + t0 + wgi * 64; };
  const uint32_t qa = sQ + wgi * 64 * HALF_ROW;  // this warpgroup's 64 rows of each half
  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.f;
  RowSoftmax<BKV> sm;
  float s[BKV / 2], c0, c1;
  uint32_t pf[BKV / 16][4];

  if (!PIPE) {
    for (int j = 0; j < ntiles; ++j) {
      if (j + 1 < ntiles) load(j + 1);
      else mma_cp_commit();  // (an empty group keeps the wait below uniform)
      mma_cp_wait<1>();
      fence_proxy_async();  // this thread's cp.async bytes → visible to wgmma's reads
      __syncthreads();
      wg_fence();
      issue_scores<BKV, BQ>(s, qa, stageK(j));
      wg_commit();
      wg_wait<0>();
      fence_regs(s);
      sm.fold(s, pf, masks(j), j * BKV, t, qpos0, qpos1, c0, c1);
      scale_rows(o, c0, c1);
      wg_fence();
      issue_pv<BKV>(o, pf, stageK(j) + KV_BYTES);
      wg_commit();
      wg_wait<0>();
      fence_regs(o);
      __syncthreads();  // this stage is refilled next iteration
    }
  } else {
    // tile 0's scores and softmax; then per tile j ≥ 1: S_j and PV_{j−1} in flight, softmax of S_j under PV_{j−1}
    mma_cp_wait<PIPE ? 1 : 0>();
    if (ntiles == 1) mma_cp_wait<0>();
    fence_proxy_async();
    __syncthreads();
    wg_fence();
    issue_scores<BKV, BQ>(s, qa, stageK(0));
    wg_commit();
    wg_wait<0>();
    fence_regs(s);
    sm.fold(s, masks(0), 0, t, qpos0, qpos1, c0, c1);
    RowSoftmax<BKV>::pack(s, pf);
    for (int j = 1; j < ntiles; ++j) {
      mma_cp_wait<0>();  // tile j (the only group in flight)
      fence_proxy_async();
      __syncthreads();   // every warpgroup is past PV_{j−2}: its stage (that of tile j + 1) is free
      if (j + 1 < ntiles) load(j + 1);
      wg_fence();
      issue_scores<BKV, BQ>(s, qa, stageK(j));
      wg_commit();
      issue_pv<BKV>(o, pf, stageK(j - 1) + KV_BYTES);
      wg_commit();
      wg_wait<1>();  // S_j
      fence_regs(s);
      sm.fold(s, masks(j), j * BKV, t, qpos0, qpos1, c0, c1);
      wg_wait<0>();  // PV_{j−1}
      fence_regs(o);
      scale_rows(o, c0, c1);
      RowSoftmax<BKV>::pack(s, pf);  // only now: P is the next P·V's input (see RowSoftmax::pack)
    }
    wg_fence();
    issue_pv<BKV>(o, pf, stageK(ntiles - 1) + KV_BYTES);
    wg_commit();
    wg_wait<0>();
    fence_regs(o);
  }

  float inv0, inv1;
  sm.inverses(inv0, inv1);
  const int r0 = t0 + rw, r1 = r0 + 8;
  const size_t at0 = ((size_t)r0 * heads + h) * D, at1 = ((size_t)r1 * heads + h) * D;
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const int d = i * 8 + 2 * t;
    const float2 v0 = make_float2(o[4 * i] * inv0, o[4 * i + 1] * inv0), v1 = make_float2(o[4 * i + 2] * inv1, o[4 * i + 3] * inv1);
    if (out != nullptr) {  // (null: o_proj reads only the copy)
      if (r0 < rows) *reinterpret_cast<float2*>(out + at0 + d) = v0;
      if (r1 < rows) *reinterpret_cast<float2*>(out + at1 + d) = v1;
    }
    if (outh != nullptr) {  // the fp16 copy o_proj's GEMM reads (x_to_half's rounding of the same values)
      if (r0 < rows) *reinterpret_cast<half2*>(outh + at0 + d) = __floats2half2_rn(v0.x, v0.y);
      if (r1 < rows) *reinterpret_cast<half2*>(outh + at1 + d) = __floats2half2_rn(v1.x, v1.y);
    }
  }
}
#endif  // WG_SM90A
}  // namespace fwg

// The product's build: 2 warpgroups, 64-key tiles, products one after the other. H200, 13B at 2048 rows
// (bench/lab/flashLab.cu, ms per layer): 0.135–0.138 against 0.246–0.249 for attn_flash_128; 128-key tiles 0.156–0.158,
// 192 query rows (3 warpgroups) 0.163, two blocks per SM 0.138, PIPE 0.175 (128-key tiles 0.159).
extern "C" __global__ void __launch_bounds__(128 * fwg::NWG, 1)
    attn_flash_wg_128(float* out, const float* q, const __half* kc, const __half* vc, const int* pos_ptr, int pos_imm, int rows,
                      int heads, int kvHeads, float scale_log2, __half* outh, const __half* qh, const unsigned* ready,
                      unsigned readyTarget) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  fwg::attn_flash_wg<fwg::BKV, fwg::NWG, false>(out, q, kc, vc, pos_ptr, pos_imm, rows, heads, kvHeads, scale_log2, outh, qh, ready,
                                                readyTarget);
#else
  __trap();
#endif
}
