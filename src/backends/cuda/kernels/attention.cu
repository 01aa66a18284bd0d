// Causal attention over the fp16 KV cache, split along positions (flash-decoding style).
// Row t (position pos + t) of query head h reads kv head h / (heads / kvHeads) at positions 0..pos+t:
//   s_p = (q · k_p) / sqrt(d);   out = Σ_p softmax(s)_p · v_p
// Scores live in the log2 domain (q pre-scaled by log2(e)/sqrt(d)), so the softmax uses exp2.
//
// attn_split_<d>: block (h, split, t), 4 warps. The live length n = pos + t + 1 is read on the device,
// so one launch (a captured decode graph covers a whole bucket of positions) adapts to every length:
//   tiles of TP positions; tile i goes to warp g = i mod (4·active) of the head (g = 4·split + warp),
//   active = min(splits, ceil(n / (4·TP))) blocks; the rest exit at once.
// A warp's tile: LPP = d/8 lanes share one cache row (one 16-byte load each), so a warp-wide load
// reads PPI = 32/LPP whole rows (coalesced); lane (r, c) loads K and V chunk c of the NI positions
// i·PPI + r together, forms NI partial dots against its 8 q values, and a reduce-scatter over the LPP
// lanes (LPP−1 shuffles) leaves each lane one full score. The PV pass uses the V registers already
// loaded: lane (r, c) owns output dims 8c..8c+7 for its positions; the r groups are summed at the end.
// Each warp keeps a running (m, l, acc); the block merges its 4 warps into
//   (m, l, acc[d]) with m = max s, l = Σ 2^(s−m), acc = Σ 2^(s−m) v.
// One active block: it writes out[t, h, :] = acc / l itself. Otherwise each writes its partial to
//   part[((t*heads + h)*splits + split)*(d+2) ..] = (m, l, acc[d])
// and takes a ticket (tickets[t*heads + h], zeroed once by the host; the last block resets it); the last
// of the active blocks merges, one launch per layer:
//   out = Σ_s 2^(m_s−M) acc_s / Σ_s 2^(m_s−M) l_s,  M = max_s m_s
// with every split's (m, l) and every dimension's sums loaded at once (dependent L2 round trips there
// cost ~10 us per layer at 16 splits).
// q, out: [rows, heads*d] f32 · kc, vc: one layer's cache [maxSeq, kvHeads*d] fp16
// part: [rows, heads, splits, d+2] f32 · tickets: [rows*heads] u32
// nx (one row; see NextGemv in common.cuh): the output also in o_proj's act-order row order,
// permOut[inv[h*d + i]] = out[h*d + i].
// (included again by batch_decode.cu, whose batched attention wraps attn_decode)
#pragma once
#include "common.cuh"
#include "trace.cuh"  // lab builds' block timelines (empty otherwise)

#define ATTN_WARPS 4

// Tile geometry of attn_decode<D, NI>: NI = 16-byte loads of K (and of V) per lane per tile.
template <int D, int NI>
struct AttnTile {
  static constexpr int LPP = D / 8;      // lanes per cache row, one uint4 (8 halves) each
  static constexpr int PPI = 32 / LPP;   // rows per warp-wide load
  static constexpr int TP = NI * PPI;    // positions per warp tile
  static constexpr int DUP = LPP / NI;   // lanes holding the same score after the reduce-scatter
  static_assert(D == 64 || D == 128 || D == 256, "head size");
  static_assert(NI >= 1 && NI <= LPP && LPP % NI == 0, "NI must be a power of two up to d/8");
};

// Loads per lane per tile in the shipped kernels: tiles of 32, 16, 8 positions (4 KiB of K + 4 KiB of V per warp).
template <int D> struct AttnNI { static constexpr int value = 8; };

// CG: through L2 only (the folded attention reads K/V rows and q that other blocks of its own launch just wrote,
// which the read-only path may not see); else the read-only path
template <bool CG = false>
__device__ __forceinline__ uint4 attn_ld(const __half* p) {
  return CG ? __ldcg(reinterpret_cast<const uint4*>(p)) : __ldg(reinterpret_cast<const uint4*>(p));
}

// most blocks per (row, head): one per thread of the merging block (attentionLaunch.ts never plans more)
#define ATTN_MAX_SPLITS 128

// output dims per thread of a block (128 threads): 1, 1, 2 for d 64, 128, 256
#define ATTN_DIMS_PER_THREAD(D) (((D) + 127) / 128)

// out[i] = Σ_s 2^(m_s−M) acc_s[i] / Σ_s 2^(m_s−M) l_s over the `active` partials at src, written by
// other blocks of this grid (L2 reads). All loads of a step go out together. permOut non-null: also
// permOut[pinv[k]] = out[i] for the k-th dimension i of this thread.
template <int D>
__device__ __forceinline__ void attn_merge(float* __restrict__ out, const float* src, int active, float* permOut,
                                           const int (&pinv)[ATTN_DIMS_PER_THREAD(D)]) {
  __shared__ float sm[ATTN_MAX_SPLITS], sl[ATTN_MAX_SPLITS];
  const int tid = threadIdx.x;
  if (tid < active) {
    sm[tid] = __ldcg(src + (size_t)tid * (D + 2));
    sl[tid] = __ldcg(src + (size_t)tid * (D + 2) + 1);
  }
  __syncthreads();
  float M = -INFINITY;
  for (int s = 0; s < active; ++s) M = fmaxf(M, sm[s]);
  __syncthreads();
  if (tid < active) sm[tid] = exp2f(sm[tid] - M);  // weight of split tid (active splits are never empty)
  __syncthreads();
  float den = 0.f;
  for (int s = 0; s < active; ++s) den = fmaf(sm[s], sl[s], den);
  const float inv = 1.f / den;
#pragma unroll
  for (int k = 0; k < ATTN_DIMS_PER_THREAD(D); ++k) {
    const int i = tid + k * 128;
    if (i >= D) break;
    float num = 0.f;
#pragma unroll 16
    for (int s = 0; s < active; ++s) num = fmaf(sm[s], __ldcg(src + (size_t)s * (D + 2) + 2 + i), num);
    out[i] = num * inv;
    if (permOut) permOut[pinv[k]] = num * inv;
  }
}

// FOLDED (gemv_q4.cu, the one-token q/k/v launch's last block of a head): head foldHead, one split, one row, no
// programmatic-launch wait (the caller's launch already waited), q and K/V read through L2 (see attn_ld).
// EARLY (attn_split_<d>): a warp's first tile of K/V rows is loaded before the programmatic-launch wait, except the
// rows at positions ≥ pos (this call's own rows, which the kernels before it write); those load after the wait.
// The position comes from the host (an immediate, or the step's device word written before the graph runs).
template <int D, int NI, bool FOLDED = false, bool EARLY = false>
__device__ __forceinline__ void attn_decode(float* __restrict__ out, float* __restrict__ part, unsigned* tickets,
                                            const float* __restrict__ q, const __half* __restrict__ kc,
                                            const __half* __restrict__ vc, const int* pos_ptr, int pos_imm,
                                            int heads, int kvHeads, int splits, float scale, const NextGemv* nx = nullptr,
                                            int foldHead = 0) {
  using G = AttnTile<D, NI>;
  constexpr int LPP = G::LPP, PPI = G::PPI, TP = G::TP, DUP = G::DUP;
  __shared__ float wm[ATTN_WARPS], wl[ATTN_WARPS];
  __shared__ __align__(16) float wacc[ATTN_WARPS][D];
  __shared__ int last;
  const int h = FOLDED ? foldHead : (int)blockIdx.x, split = FOLDED ? 0 : (int)blockIdx.y, t = FOLDED ? 0 : (int)blockIdx.z;
  // before waiting for q: the inverse permutation entries of the dimensions this thread may write
  float* permOut = nullptr;
  int pinv[ATTN_DIMS_PER_THREAD(D)];
  if (nx && nx->inv && t == 0) {
    permOut = nx->permOut;
#pragma unroll
    for (int k = 0; k < ATTN_DIMS_PER_THREAD(D); ++k) {
      const int i = threadIdx.x + k * 128;
      pinv[k] = i < D ? __ldg(nx->inv + h * D + i) : 0;
    }
  }
  if (!FOLDED && !EARLY) {
    pdl_wait();
    pdl_launch_dependents();
  }
  const int pos = read_pos(pos_ptr, pos_imm), n = pos + t + 1;
  const int tiles = (n + TP - 1) / TP;
  const int active = min(min(splits, ATTN_MAX_SPLITS), (tiles + ATTN_WARPS - 1) / ATTN_WARPS);
  if (split >= active) return;  // past the live context: exit at once
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int c = lane % LPP, r = lane / LPP;
  const int kvh = h / (heads / kvHeads);
  const size_t width = (size_t)kvHeads * D;
  const size_t row = (size_t)t * heads + h;
  const __half* kb = kc + (size_t)kvh * D + c * 8;
  const __half* vb = vc + (size_t)kvh * D + c * 8;
  // K and V of a tile, all in flight at once; rows past n are not read (they may hold anything). Rows below
  // `from` are left as they are (EARLY's first tile: loaded before the wait).
  auto loadTile = [&](uint4 (&kr)[NI], uint4 (&vr)[NI], int p0, int from) {
#pragma unroll
    for (int i = 0; i < NI; ++i) {
      const int p = p0 + i * PPI + r;
      if (from > 0 && p < from) continue;
      if (p < n) {
        kr[i] = attn_ld<FOLDED>(kb + (size_t)p * width);
        vr[i] = attn_ld<FOLDED>(vb + (size_t)p * width);
      } else {
        kr[i] = make_uint4(0, 0, 0, 0);
        vr[i] = make_uint4(0, 0, 0, 0);
      }
    }
  };
  const int first = split * ATTN_WARPS + warp;  // this warp's first tile
  uint4 kf[NI], vf[NI];                         // its K and V (EARLY)
  if constexpr (EARLY) {
#pragma unroll
    for (int i = 0; i < NI; ++i) {
      const int p = first * TP + i * PPI + r;
      const bool stable = first < tiles && p < pos;
      kf[i] = stable ? attn_ld<FOLDED>(kb + (size_t)p * width) : make_uint4(0, 0, 0, 0);
      vf[i] = stable ? attn_ld<FOLDED>(vb + (size_t)p * width) : make_uint4(0, 0, 0, 0);
    }
    pdl_wait();
    pdl_launch_dependents();
  }

  // this lane's q values (dims 8c..8c+7), scaled into the log2 domain
  float qf[8];
  {
    const float4* qp = reinterpret_cast<const float4*>(q + row * D + c * 8);
    const float4 a = FOLDED ? __ldcg(qp) : __ldg(qp), b = FOLDED ? __ldcg(qp + 1) : __ldg(qp + 1);
    const float sc = scale * 1.4426950408889634f;
    qf[0] = a.x * sc; qf[1] = a.y * sc; qf[2] = a.z * sc; qf[3] = a.w * sc;
    qf[4] = b.x * sc; qf[5] = b.y * sc; qf[6] = b.z * sc; qf[7] = b.w * sc;
  }

  float m = -INFINITY, l = 0.f, acc[8];
#pragma unroll
  for (int k = 0; k < 8; ++k) acc[k] = 0.f;
  const int stride = active * ATTN_WARPS;
  // one tile: scores, the running softmax, and P·V into acc
  auto fold = [&](const uint4 (&kr)[NI], const uint4 (&vr)[NI], int p0) {
    float d[NI];
#pragma unroll
    for (int i = 0; i < NI; ++i) {
      const half2* h2 = reinterpret_cast<const half2*>(&kr[i]);
      float s = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 f = __half22float2(h2[j]);
        s = fmaf(f.x, qf[2 * j], s);
        s = fmaf(f.y, qf[2 * j + 1], s);
      }
      d[i] = s;
    }
    // reduce-scatter over the LPP lanes of a row: after step o, lanes with bit o set keep the upper half
    // of their values; lane c ends with the full dot of value c / DUP
#pragma unroll
    for (int o = LPP / 2, half = NI / 2; o >= DUP && half >= 1; o >>= 1, half >>= 1) {
      const bool upper = (c & o) != 0;
#pragma unroll
      for (int k = 0; k < half; ++k) {
        const float send = upper ? d[k] : d[k + half];
        const float keep = upper ? d[k + half] : d[k];
        d[k] = keep + __shfl_xor_sync(0xffffffffu, send, o);
      }
    }
#pragma unroll
    for (int o = DUP / 2; o >= 1; o >>= 1) d[0] += __shfl_xor_sync(0xffffffffu, d[0], o);
    // this lane's score: position p0 + (c / DUP)·PPI + r
    const float s = p0 + (c / DUP) * PPI + r < n ? d[0] : -INFINITY;
    const float m_new = fmaxf(m, warp_max(s));  // finite: position p0 < n is in every tile
    const float corr = exp2f(m - m_new);
    const float e = exp2f(s - m_new);
    l = fmaf(l, corr, c % DUP == 0 ? e : 0.f);
    m = m_new;
#pragma unroll
    for (int k = 0; k < 8; ++k) acc[k] *= corr;
#pragma unroll
    for (int i = 0; i < NI; ++i) {
      const float ei = __shfl_sync(0xffffffffu, e, r * LPP + i * DUP);  // score of position i·PPI + r
      const half2* h2 = reinterpret_cast<const half2*>(&vr[i]);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 f = __half22float2(h2[j]);
        acc[2 * j] = fmaf(ei, f.x, acc[2 * j]);
        acc[2 * j + 1] = fmaf(ei, f.y, acc[2 * j + 1]);
      }
    }
  };
  // (EARLY peels the first tile off the loop; the other builds keep one copy of fold)
  if constexpr (EARLY) {
    if (first < tiles) {
      loadTile(kf, vf, first * TP, pos);
      fold(kf, vf, first * TP);
    }
  }
  for (int tile = EARLY ? first + stride : first; tile < tiles; tile += stride) {
    uint4 kr[NI], vr[NI];
    loadTile(kr, vr, tile * TP, 0);
    fold(kr, vr, tile * TP);
  }
  // warp totals: l over all lanes, acc over the PPI row groups
  l = warp_sum(l);
#pragma unroll
  for (int o = LPP; o < 32; o <<= 1)
#pragma unroll
    for (int k = 0; k < 8; ++k) acc[k] += __shfl_xor_sync(0xffffffffu, acc[k], o);
  if (lane == 0) { wm[warp] = m; wl[warp] = l; }
  if (r == 0) {
    float4* w = reinterpret_cast<float4*>(&wacc[warp][c * 8]);
    w[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
    w[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
  }
  __syncthreads();

  // block merge (warp 0 always holds a tile, so M is finite; an empty warp has m = −inf: weight 0)
  float M = wm[0];
#pragma unroll
  for (int w = 1; w < ATTN_WARPS; ++w) M = fmaxf(M, wm[w]);
  float f[ATTN_WARPS], L = 0.f;
#pragma unroll
  for (int w = 0; w < ATTN_WARPS; ++w) { f[w] = exp2f(wm[w] - M); L = fmaf(wl[w], f[w], L); }
  if (active == 1) {
    const float inv = 1.f / L;
#pragma unroll
    for (int k = 0; k < ATTN_DIMS_PER_THREAD(D); ++k) {
      const int i = threadIdx.x + k * 128;
      if (i >= D) break;
      float a = 0.f;
#pragma unroll
      for (int w = 0; w < ATTN_WARPS; ++w) a = fmaf(wacc[w][i], f[w], a);
      out[row * D + i] = a * inv;
      if (permOut) permOut[pinv[k]] = a * inv;
    }
    return;
  }
  float* src = part + row * splits * (D + 2);
  float* dst = src + (size_t)split * (D + 2);
  if (threadIdx.x == 0) { dst[0] = M; dst[1] = L; }
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    float a = 0.f;
#pragma unroll
    for (int w = 0; w < ATTN_WARPS; ++w) a = fmaf(wacc[w][i], f[w], a);
    dst[2 + i] = a;
  }
  // this block's partial visible device-wide before its ticket; every active block arrived: the last merges
  if (!block_ticket(tickets + row, (unsigned)active, &last)) return;
  attn_merge<D>(out + row * D, src, active, permOut, pinv);
}

// 5 blocks per SM (at most 102 registers): attentionLaunch.ts plans the splits to fill them once
#define ATTN_MIN_BLOCKS 5
#define ATTN_SPLIT(D)                                                                                          \
  extern "C" __global__ void __launch_bounds__(128, ATTN_MIN_BLOCKS) attn_split_##D(                                \
      float* out, float* part, unsigned* tickets, const float* q, const __half* kc, const __half* vc,          \
      const int* pos_ptr, int pos_imm, int heads, int kvHeads, int splits, float scale,                       \
      const __grid_constant__ NextGemv nx) {                                                                   \
    TRACE_BEGIN(TRACE_ATTN_SPLIT);                                                                              \
    attn_decode<D, AttnNI<D>::value, false, true>(out, part, tickets, q, kc, vc, pos_ptr, pos_imm, heads, kvHeads, \
                                                  splits, scale, &nx);                                          \
  }
ATTN_SPLIT(64)
ATTN_SPLIT(128)
ATTN_SPLIT(256)
