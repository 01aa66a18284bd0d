// GPTQ 4-bit GEMV for one token over up to 3 matrices that share the input x, in one launch.
//   y_m[n] (+)= Σ_k s_m[g, n] · (q_m[k, n] − z_m[g, n]) · x[perm_m[k]],   g = k / gs,  z = stored zero + 1
// qweight [K/8, N] u32 (8 values of k per word, LSB first), its rows reordered at upload for act-order
// models so group g is rows g*gs..(g+1)*gs−1 (perm maps a reordered row to its x index; null = identity);
// scales [G, N] fp16; qzeros [G, N/8] u32.
// Grid: x = 128-column tiles of all matrices back to back, y = K ranges of kPerBlock values (split-K);
// the host sizes it to about one wave of 4 blocks per SM.
// Block: 4 warps. A lane owns 4 adjacent columns, so one packed row is one 16-byte load per lane and
// 512 contiguous bytes per warp (a layout tiled so each warp's 8 rows are 4 KB in one piece measured
// no faster on the H100, nor did grids of more, shorter blocks: bench/cudaNotes.md, sixth pass).
// Warp w streams the 64-value half slices (8 packed rows) w, w+4, w+8, ... of the block's K range, two
// held in registers: while one is being multiplied, the other's loads are in flight, so each warp keeps
// loading until its range ends. Half slices rather than whole 128-value slices per warp: with 9 slices
// per block (13B down_proj) whole slices left the warps 3, 2, 2, 2 and the block waiting for the first
// at its reduction (15% of down_proj's stall samples, Nsight Compute); halves give 5, 5, 4, 4. H200,
// 13B decode, same call: 388–392 → 400 tok/s at context 1, act-order 350–356 → 362–364 (cudaNotes, 11th pass).
// Programmatic dependent launch (sm_90): the first two half slices' weights, scales and the act-order
// permutation are loaded before griddepcontrol.wait, i.e. while the kernel that produces x is still
// finishing; x, y, the workspace and the KV cache are touched only after it.
// x is staged once per block into shared memory as int8 (see below) per packed row, gathered
// through perm for act-order layers (or read linearly when its producer already wrote it in this
// layer's row order: flags & 4, gemvBatch.ts), so both layouts run the same inner loop; an input
// norm's weight is read linearly too where the host gives it in the row order (xNormPermuted).
// The weight stream, the int8 dot products and the staging quantizer live in gemv_q4.cuh, shared
// with the few-rows kernel (gemv_q4_multi.cu).
// Reduction: the 4 warps' sums meet in shared memory; then
//   cluster launch (gemv_q4_cl_*, sm_90): a tile's K ranges (a gate/up pair's two tiles' ranges) are one
//     thread-block cluster; every block but the leader stores its sums into the leader's shared memory and
//     exits, the leader adds them in rank order and runs the epilogue (see gemv_q4_cluster_sum);
//   one K range (gridDim.y == 1): the block runs the epilogue itself, no atomics;
//   y += result only (residual add): float atomics straight into y, no workspace;
//   otherwise: split-K sums go into a workspace (zero between launches), the tile's last block (ticket
//   counter) reads them, restores the workspace and the counter to zero, and runs the epilogue.
// Epilogue: store or add into y (residual stream), rotary embedding (one tile = one head of 128) and
// the fp16 KV-cache write, or SwiGLU of a gate/up pair; after a residual add, optionally the next
// RMSNorm of the finished y in the launch's last block (q4_norm_tail). The SwiGLU and RMSNorm outputs
// can also be written in the next GEMV's act-order row order (swigluInv / normInv scatter stores).
// Integer dot products (as llama.cpp's MMVQ): x is quantized while staged, to int8 per 32 values
// (symmetric, step d = max|x| / 127, as llama.cpp's Q8_1 blocks); a packed word w holds q0..q7, so
// w & 0x0F0F0F0F is the bytes (q0, q2, q4, q6) and (w >> 4) & 0x0F0F0F0F is (q1, q3, q5, q7): two dp4a against x staged as the
// matching (even, odd) byte quads give Σ q·xq exactly in int32. Per GPTQ group and column:
//   y += s · Σ_blocks d · (Σ q·xq − z · Σ xq)      (z = stored zero + 1; Σ xq per 32 values is staged too)
// That is 5 instructions per 8 weights (the fp16 path needed ~17, and issue, not DRAM, was the limit).
#include "gemv_q4.cuh"
#include "attention.cu"  // attn_decode for the folded attention (attention.cu is #pragma once)
#include "rope.cuh"       // rope_cos_sin, so the rope epilogue rounds as rope_f32 does
#include "trace.cuh"      // lab builds' block timelines (empty otherwise)

struct Q4Mat {
  const uint4* qw;
  const __half* scales;
  const uint32_t* qz;
  const int* perm;   // null: identity
  float* y;          // [N]
  __half* cache;     // KV cache layer [maxSeq, N] fp16, or null
  int N;
  int tileEnd;       // tiles of matrices 0..m (cumulative)
  int flags;         // 1: y += result, 2: rotary embedding (head size 128) before storing, 4: perm is x pre-permuted (f32)
  float theta;
};
struct Q4Args {
  Q4Mat m[3];
  float* ws;               // [tiles * 128] f32, zero between launches
  unsigned* counters;      // [tiles] tickets, zero between launches
  float* swiglu;           // non-null: m[0] = gate, m[1] = up, swiglu[n] = silu(gate[n]) * up[n]
  const float* x;          // [K]
  const int* pos_ptr;
  int pos_imm;
  int count;
  int K;
  int gs;
  int maxSeq;
  int kPerBlock;           // K values per block (multiple of 128, at most XS_ROWS * 8)
  const int* swigluInv;    // non-null: also swigluPerm[swigluInv[n]] = swiglu[n] (the consumer's row order)
  float* swigluPerm;
  // RMSNorm in the epilogue of a residual-add GEMV (normOut non-null, gemv_q4_tail_*; one matrix, flags == 1): the block
  // that finishes last (ticket normCounter, left at zero) normalizes the finished y into normOut, so the
  // model's next rmsnorm needs no kernel of its own.
  const float* normW;      // [N] f32
  float* normOut;          // [N] f32
  unsigned* normCounter;
  float eps;
  int xInShared;           // cluster launch: K floats of dynamic shared memory hold x, copied in the Σx² loop
  // non-null: the norm's output also in the next GEMV's act-order row order, normPerm[normInv[i]] = normOut[i]
  const int* normInv;
  float* normPerm;
  // RMSNorm of the INPUT (xNormW non-null): x is the raw residual r [K]; the launch computes
  //   y = W · (r ⊙ w · rstd) = rstd · (W · (r ⊙ w)),   rstd = 1 / sqrt(mean(r²) + xEps)
  // Every block sums r² over all of K itself (K / 512 float4 loads per thread, from L2, issued beside its
  // x staging), stages r ⊙ w (the int8 step per 32 values absorbs the scale) and multiplies its partial
  // sums by rstd. So the residual-add GEMV that produced r needs no serial norm tail (q4_norm_tail), and
  // no kernel of its own. The blocks of tile 0 also write r ⊙ w · rstd over their K range to xNormOut,
  // so the normalized x exists afterwards as if an rmsnorm had run.
  const float* xNormW;     // [K] f32
  float* xNormOut;         // [K] f32
  float xEps;
  // 1: xNormW is the norm weight in the members' (one, shared) act-order row order, read linearly beside
  // the gathered x instead of gathered through perm too
  int xNormPermuted;
  // Attention folded into a one-token q/k/v launch (attnOut non-null; m[0] = q with rope, m[1] = k with rope and the
  // KV write, m[2] = v with the KV write, head size 128; gemvBatch.ts foldAttentionInto): the block that writes the last of
  // a head's q, k and v tiles (ticket attnCounters[head], left at zero) runs that head's decode attention over the
  // cache in one split (attn_decode, attention.cu) into attnOut, and also attnPermOut[attnInv[i]] where attnInv is
  // set (o_proj's act-order row order, as attention's NextGemv). So short contexts need no attention launch.
  float* attnOut;          // [heads · 128]
  const int* attnInv;      // (these two as NextGemv)
  float* attnPermOut;
  unsigned* attnCounters;  // [heads], zero between launches
  int attnHeads;
  int attnKvHeads;
  float attnScale;
  int attnPad;
};
static_assert(sizeof(Q4Mat) == 64, "Q4Mat layout is mirrored by gemvBatch.ts");
static_assert(sizeof(Q4Args) == 392, "Q4Args layout is mirrored by gemvBatch.ts");

// packed rows of x a block stages (its K range / 8): 64 slices of 128 values
#define XS_ROWS 1024
// most blocks in one cluster of the cluster launch (the portable cluster size)
#define Q4_CLUSTER_MAX 8

// (before sm_90 every block is a cluster of one: the host launches clusters only on sm_90)
__device__ __forceinline__ unsigned cluster_rank() {
  unsigned r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
#endif
  return r;
}
__device__ __forceinline__ unsigned cluster_blocks() {
  unsigned r = 1;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(r));
#endif
  return r;
}
// barrier.cluster phases: every thread of every block arrives, then waits, in turn
__device__ __forceinline__ void cluster_arrive_relaxed() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_arrive_release() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}
// v into the shared variable `local` of the cluster's block `rank` (distributed shared memory)
__device__ __forceinline__ void st_cluster_f32(float* local, unsigned rank, float v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const uint32_t a = (uint32_t)__cvta_generic_to_shared(local);
  uint32_t r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(rank));
  asm volatile("st.shared::cluster.f32 [%0], %1;" ::"r"(r), "f"(v) : "memory");
#endif
}

// The cluster launch's reduction (every thread of the block calls it with its output's partial sum and the
// block's Σx² over its staged K range). The cluster is a tile's K ranges, or a gate/up pair's two tiles (x = 0
// gate, 1 up) times their ranges, ranked x fastest. Every block but rank 0 stores into rank 0's `part` and
// returns false; rank 0 waits for them and returns true with the sums over its ranks in rank order (so the
// result does not depend on which block finished first): gate (or the tile's) in *sum, up in *sum2, and
// Σx² over all of K (the ranges of one tile cover it) in *ss. The cluster barrier's first phase, arrived at
// when the block started (cluster_arrive_relaxed), guarantees rank 0 is running before anyone stores into it.
__device__ __forceinline__ bool gemv_q4_cluster_sum(float (&part)[Q4_CLUSTER_MAX][129], bool pair, float mine, float mySs,
                                                    float* sum, float* sum2, float* ss) {
  const int t = threadIdx.x;
  const unsigned rank = cluster_rank(), ranks = cluster_blocks();
  cluster_wait();
  if (rank != 0) {
    st_cluster_f32(&part[rank][t], 0, mine);
    if (t == 0) st_cluster_f32(&part[rank][128], 0, mySs);
    cluster_arrive_release();
    return false;
  }
  part[0][t] = mine;
  if (t == 0) part[0][128] = mySs;
  cluster_arrive_release();
  cluster_wait();
  float a = 0.f, b = 0.f, q = 0.f;
  for (unsigned r = 0; r < ranks; ++r) {
    if (pair && (r & 1)) {
      b += part[r][t];
    } else {
      a += part[r][t];
      q += part[r][128];
    }
  }
  *sum = a;
  *sum2 = b;
  *ss = q;
  return true;
}

// gate and up of output n (a SwiGLU pair's epilogue): both stored, and silu(gate) · up into swiglu (and its
// permuted copy)
__device__ __forceinline__ void q4_swiglu_out(const Q4Args& a, int n, float g, float u) {
  if (n >= a.m[0].N) return;
  a.m[0].y[n] = g;
  a.m[1].y[n] = u;
  const float h = g / (1.f + expf(-g)) * u;
  a.swiglu[n] = h;
  if (a.swigluInv) a.swigluPerm[__ldg(a.swigluInv + n)] = h;
}

// [p, p + bytes) into L2, a 128-byte line per thread of the block in turn; nothing waits for it
__device__ __forceinline__ void prefetch_l2(const void* p, int bytes) {
  for (int off = threadIdx.x * 128; off < bytes; off += blockDim.x * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(reinterpret_cast<const char*>(p) + off));
}

// acc += Σ v[j]²
__device__ __forceinline__ void sum_squares8(const float (&v)[8], float& acc) {
#pragma unroll
  for (int j = 0; j < 8; ++j) acc = fmaf(v[j], v[j], acc);
}

// The cluster launch's normalized x: tile 0's blocks store x ⊙ w over their ranges while staging (rstd is not
// known yet: it needs every range's Σx²), and its leader scales all K of it by rstd once it is. Linear loads,
// all issued before the first store: one L2 round trip for K up to 8192 (gathering x again here, as a first
// version did, took act-order decode from 383 to 349 tok/s).
__device__ __forceinline__ void q4_scale_norm(float* out, int K, float rstd) {
  for (int i0 = threadIdx.x * 4; i0 < K; i0 += 128 * 4 * 16) {
    float4 v[16];
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int i = i0 + j * 512;
      if (i < K) v[j] = __ldcg(reinterpret_cast<const float4*>(out + i));
    }
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int i = i0 + j * 512;
      if (i < K) *reinterpret_cast<float4*>(out + i) = make_float4(v[j].x * rstd, v[j].y * rstd, v[j].z * rstd, v[j].w * rstd);
    }
  }
}

// The RMSNorm epilogue (see Q4Args), run by the launch's last block (q4_norm_tail).
// Every load of y and w goes out before the first use: one L2 round trip, not one per pass of a loop
// (R float4 per thread cover dim ≤ R · 512; wider rows loop at the end). PERMUTED: also
// normPerm[normInv[i]] = normOut[i]; the index loads go out once y·w is formed (y and w no longer
// held), so they overlap the block reduction without spilling.
template <int R, bool PERMUTED>
__device__ __forceinline__ void q4_norm_rows(const Q4Args& a, float* scratch) {
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int dim = a.m[0].N;
  const float* y = a.m[0].y;
  float4 vw[R];
  float ss = 0.f;
  {
    float4 v[R], w[R];
#pragma unroll
    for (int j = 0; j < R; ++j) {
      const int i = t * 4 + j * 512;
      v[j] = i < dim ? __ldcg(reinterpret_cast<const float4*>(y + i)) : make_float4(0.f, 0.f, 0.f, 0.f);
      w[j] = i < dim ? __ldg(reinterpret_cast<const float4*>(a.normW + i)) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int j = 0; j < R; ++j) {
      ss = fmaf(v[j].x, v[j].x, fmaf(v[j].y, v[j].y, fmaf(v[j].z, v[j].z, fmaf(v[j].w, v[j].w, ss))));
      vw[j] = make_float4(v[j].x * w[j].x, v[j].y * w[j].y, v[j].z * w[j].z, v[j].w * w[j].w);
    }
  }
  int4 iv[PERMUTED ? R : 1];
  if (PERMUTED) {
#pragma unroll
    for (int j = 0; j < R; ++j) {
      const int i = t * 4 + j * 512;
      iv[j] = i < dim ? __ldg(reinterpret_cast<const int4*>(a.normInv + i)) : make_int4(0, 0, 0, 0);
    }
  }
  for (int i = t * 4 + R * 512; i < dim; i += 512) {
    const float4 u = __ldcg(reinterpret_cast<const float4*>(y + i));
    ss = fmaf(u.x, u.x, fmaf(u.y, u.y, fmaf(u.z, u.z, fmaf(u.w, u.w, ss))));
  }
  ss = warp_sum(ss);
  if (lane == 0) scratch[warp] = ss;
  __syncthreads();
  const float inv = rsqrtf((scratch[0] + scratch[1] + scratch[2] + scratch[3]) / dim + a.eps);
#pragma unroll
  for (int j = 0; j < R; ++j) {
    const int i = t * 4 + j * 512;
    if (i < dim) {
      const float4 o = make_float4(vw[j].x * inv, vw[j].y * inv, vw[j].z * inv, vw[j].w * inv);
      *reinterpret_cast<float4*>(a.normOut + i) = o;
      if (PERMUTED) {
        a.normPerm[iv[j].x] = o.x;
        a.normPerm[iv[j].y] = o.y;
        a.normPerm[iv[j].z] = o.z;
        a.normPerm[iv[j].w] = o.w;
      }
    }
  }
  for (int i = t * 4 + R * 512; i < dim; i += 512) {
    const float4 u = __ldcg(reinterpret_cast<const float4*>(y + i));
    const float4 g = __ldg(reinterpret_cast<const float4*>(a.normW + i));
    const float4 o = make_float4(u.x * g.x * inv, u.y * g.y * inv, u.z * g.z * inv, u.w * g.w * inv);
    *reinterpret_cast<float4*>(a.normOut + i) = o;
    if (PERMUTED) {
      const int4 q = __ldg(reinterpret_cast<const int4*>(a.normInv + i));
      a.normPerm[q.x] = o.x;
      a.normPerm[q.y] = o.y;
      a.normPerm[q.z] = o.z;
      a.normPerm[q.w] = o.w;
    }
  }
}

// Every block of the launch calls this after its last write to y; the last to arrive (ticket
// normCounter, left at zero) normalizes the finished y.
__device__ __forceinline__ void q4_norm_tail(const Q4Args& a, float* scratch, int* last) {
  if (!block_ticket(a.normCounter, gridDim.x * gridDim.y, last)) return;
  // R = 16 covers rows up to 8192 in one trip; with the permuted copy's index registers that spills,
  // so rows up to 5120 (LLaMA 7B/13B) take R = 10 (none)
  if (!a.normInv) q4_norm_rows<16, false>(a, scratch);
  else if (a.m[0].N <= 5120) q4_norm_rows<10, true>(a, scratch);
  else q4_norm_rows<16, true>(a, scratch);
}

// The folded attention (see Q4Args): this block has written its tile of q (mi 0: q head `tileHead`) or of k / v
// (kv head `tileHead`, whose group of q heads it serves); for each of those heads, the block that arrives third runs
// its attention. Every thread of the block calls it.
__device__ __forceinline__ void q4_fold_attention(const Q4Args& a, int mi, int tileHead, int* last) {
  const int group = a.attnHeads / a.attnKvHeads;
  const int h0 = mi == 0 ? tileHead : tileHead * group, hn = mi == 0 ? 1 : group;
  for (int h = h0; h < h0 + hn; ++h) {
    // this tile's q, or k / v and their cache rows, visible before its tickets
    if (block_ticket(a.attnCounters + h, 3u, last)) {
      const NextGemv nx = {a.attnInv, a.attnPermOut};
      attn_decode<128, AttnNI<128>::value, true>(a.attnOut, nullptr, nullptr, a.m[0].y, a.m[1].cache, a.m[2].cache, a.pos_ptr,
                                                  a.pos_imm, a.attnHeads, a.attnKvHeads, 1, a.attnScale, &nx, h);
    }
    __syncthreads();
  }
}

// CL: the cluster launch (see Reduction above): a gate/up pair's tiles interleaved (gate tile p at 2p, up at
// 2p + 1), the input norm's Σx² summed from each block's staged range instead of over all of K by every block,
// no workspace or ticket. Host: gemvBatch.ts (gemvCluster).
template <int RPG, bool CL, bool TAIL>
__device__ __forceinline__ void gemv_q4_fused(const Q4Args& a) {
  constexpr int GR = RPG < 8 ? RPG : 8;  // packed rows per group inside a half slice
  constexpr int GH = 8 / GR;             // groups per half slice
  __shared__ uint2 xs[XS_ROWS];            // int8 x: (even, odd) byte quads per packed row
  __shared__ int xsum[XS_ROWS / 4];         // Σ xq per 4 packed rows (32 values)
  __shared__ float xd[XS_ROWS / 4];         // x's quantization step per 4 packed rows
  __shared__ float red[4][128];
  __shared__ float fin[128];
  __shared__ int last;
  __shared__ float part[CL ? Q4_CLUSTER_MAX : 1][129];  // the cluster leader's: each rank's sums and Σx² (the other
                                                        // blocks store into it once every block has started)
  __shared__ float warpSs[4];                           // CL: the warps' Σx² over the staged range
  __shared__ double2 ropeCs[64];                        // rope tiles: (cos, sin) of pair i at this step's position
  extern __shared__ float xall[];                       // CL, xInShared: all of x, for act-order gathers
  TRACE_BEGIN(CL ? TRACE_GEMV_Q4_CL : TRACE_GEMV_Q4);
  if (CL) cluster_arrive_relaxed();
  const bool pair = a.swiglu != nullptr;
  const int tile = blockIdx.x;
  const int mi = CL && pair ? (tile & 1) : tile < a.m[0].tileEnd ? 0 : tile < a.m[1].tileEnd ? 1 : 2;
  const Q4Mat& m = a.m[mi];
  const int tileStart = mi == 0 ? 0 : a.m[mi - 1].tileEnd;
  const int K = a.K, N = m.N, gs = a.gs;
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int kb0 = blockIdx.y * a.kPerBlock;
  const int kb1 = min(K, kb0 + a.kPerBlock);
  const int nSlices = (kb1 - kb0) >> 7;
  const int rows8 = (kb1 - kb0) >> 3;
  const int col0 = (CL && pair ? tile >> 1 : tile - tileStart) * 128;
  const int n0 = col0 + lane * 4;
  const bool colLive = n0 < N;
  const int rowStride = N >> 2;
  const uint4* wcol = m.qw + (n0 >> 2);
  // flags & 4: m.perm is x already gathered into this matrix's row order (f32 [K]), read linearly
  const bool xPermuted = (m.flags & 4) != 0;
  const int* perm = xPermuted ? nullptr : m.perm;
  const float* xsrc = xPermuted ? reinterpret_cast<const float*>(m.perm) : a.x;

  // weights of the first two half slices, and the first permutation entries, before waiting for x's producer
  uint4 wa[8], wb[8];
  uint2 sa[GH], sb[GH];
  uint32_t za[GH], zb[GH];
  int s = warp;  // this warp's half slices: s, s + 4, s + 8, ...
  const int nHalves = 2 * nSlices;
  if (colLive && s < nHalves) q4_load_half<GR, GH>(wa, sa, za, m.scales, m.qz, N, kb0 + s * 64, n0, wcol, rowStride, gs);
  if (colLive && s + 4 < nHalves) q4_load_half<GR, GH>(wb, sb, zb, m.scales, m.qz, N, kb0 + (s + 4) * 64, n0, wcol, rowStride, gs);
  // the permutation entries of the first two staging passes (x gathers then wait on one load, not two)
  int4 p0 = make_int4(0, 0, 0, 0), p1 = p0, p2 = p0, p3 = p0;
  if (perm && t < rows8) {
    p0 = __ldg(reinterpret_cast<const int4*>(perm + kb0 + t * 8));
    p1 = __ldg(reinterpret_cast<const int4*>(perm + kb0 + t * 8 + 4));
  }
  if (perm && t + 128 < rows8) {
    p2 = __ldg(reinterpret_cast<const int4*>(perm + kb0 + (t + 128) * 8));
    p3 = __ldg(reinterpret_cast<const int4*>(perm + kb0 + (t + 128) * 8 + 4));
  }
  // and the rest of the range's permutation into L2: otherwise each later pass (gate/up's third) waits a DRAM round
  // trip for it after the wait, the weight stream having evicted it since the last token. H200, 13B act-order decode,
  // same call: 384.8 / 383.5 -> 393.5 / 389.2 tok/s at context 1, 342.0 / 343.1 -> 349.1 / 346.3 at 2000
  if (perm && rows8 > 256) prefetch_l2(perm + kb0 + 2048, (kb1 - kb0 - 2048) * 4);
  // rope tiles: the f64 cos and sin of this step's position (rope_cos_sin: a pow and a sincos, a long chain of
  // dependent f64 operations) while the weights above are in flight, not in the epilogue, where they delayed the
  // tile's q or k, so the folded attention and the launch's end. The position is readable before the wait: a graph
  // replay's step buffer is written by a copy before the graph, and no kernel writes it. Clusters: only the leader
  // (rank 0) runs the epilogue; plain launches: any block may be the tile's last.
  if ((m.flags & 2) && t < 64 && (!CL || cluster_rank() == 0)) {
    double c, sn;
    rope_cos_sin(t, 128, m.theta, read_pos(a.pos_ptr, a.pos_imm), c, sn);
    ropeCs[t] = make_double2(c, sn);
  }
  pdl_wait();
  pdl_launch_dependents();
  TRACE_MARK(1);
  const float* normW = a.xNormW;
  float rstd = 1.f;
  // CL, xInShared (act-order): the loop over all of K below also copies x into shared memory, so the staging's
  // gathers through the permutation read it there; gathering from global memory (each warp load ~28 distinct
  // lines) left act-order without most of the clusters' gain: H200 lab, 13B layer, 51.8-52.5 -> 50.6 us (compat
  // 48.0; a cp.async copy without the sum measured 56.0; bench/cudaNotes.md, fifteenth pass). Otherwise the cluster
  // launch sums x² over each block's staged range (rangeNorm) and the leader applies rstd. Both are decided per
  // launch, not per block: a gate/up pair's cluster adds two matrices' sums, which must agree on who applies rstd
  // (the host asks for xInShared when any member gathers; a member that does not reads x linearly as before).
  const bool xShared = CL && a.xInShared;
  const bool rangeNorm = CL && normW && !xShared;
  float rangeSs = 0.f;
  if ((normW && !rangeNorm) || xShared) {
    float ss = 0.f;
    for (int i = t * 4; i < K; i += 512) {
      const float4 u = *reinterpret_cast<const float4*>(xsrc + i);
      ss = fmaf(u.x, u.x, fmaf(u.y, u.y, fmaf(u.z, u.z, fmaf(u.w, u.w, ss))));
      if (xShared) *reinterpret_cast<float4*>(xall + i) = u;
    }
    ss = warp_sum(ss);
    if (lane == 0) red[0][warp] = ss;
    __syncthreads();
    if (normW) rstd = rsqrtf((red[0][0] + red[0][1] + red[0][2] + red[0][3]) / K + a.xEps);
  }

  // Every thread runs the same iterations (rows8 is a multiple of 16, so the 4 lanes that hold one
  // block of 32 values are all live or all idle) because the block reductions below are warp shuffles.
  for (int base = 0; base < rows8; base += 128) {
    const int r = base + t;
    const bool live = r < rows8;
    const int kb = kb0 + r * 8;
    float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (live) {
      int idx[8];
      if (perm) {
        if (base == 128) {
          p0 = p2;
          p1 = p3;
        } else if (base != 0) {
          p0 = __ldg(reinterpret_cast<const int4*>(perm + kb));
          p1 = __ldg(reinterpret_cast<const int4*>(perm + kb + 4));
        }
        idx[0] = p0.x; idx[1] = p0.y; idx[2] = p0.z; idx[3] = p0.w;
        idx[4] = p1.x; idx[5] = p1.y; idx[6] = p1.z; idx[7] = p1.w;
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = xShared ? xall[idx[j]] : xsrc[idx[j]];
        if (rangeNorm) sum_squares8(v, rangeSs);
        if (normW && a.xNormPermuted) {
          scale8(v, normW + kb);
        } else if (normW) {
#pragma unroll
          for (int j = 0; j < 8; ++j) v[j] *= __ldg(normW + idx[j]);
        }
      } else {
        const float4 x0 = *reinterpret_cast<const float4*>(xsrc + kb);
        const float4 x1 = *reinterpret_cast<const float4*>(xsrc + kb + 4);
        v[0] = x0.x; v[1] = x0.y; v[2] = x0.z; v[3] = x0.w;
        v[4] = x1.x; v[5] = x1.y; v[6] = x1.z; v[7] = x1.w;
#pragma unroll
        for (int j = 0; j < 8; ++j) idx[j] = kb + j;
        if (rangeNorm) sum_squares8(v, rangeSs);
        if (normW) scale8(v, normW + kb);
      }
      if (normW && tile == 0) {
#pragma unroll
        for (int j = 0; j < 8; ++j) a.xNormOut[idx[j]] = rangeNorm ? v[j] : v[j] * rstd;  // rangeNorm: the leader scales it
      }
    }
    q4_stage_row(v, live, r, xs, xsum, xd);
  }
  __syncthreads();

  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  if (colLive) {
    for (; s < nHalves; s += 8) {
      q4_mul_half<GR, GH>(acc, wa, sa, za, xs + s * 8, xsum + s * 2, xd + s * 2, n0);
      if (s + 8 < nHalves) q4_load_half<GR, GH>(wa, sa, za, m.scales, m.qz, N, kb0 + (s + 8) * 64, n0, wcol, rowStride, gs);
      if (s + 4 >= nHalves) break;
      q4_mul_half<GR, GH>(acc, wb, sb, zb, xs + (s + 4) * 8, xsum + (s + 4) * 2, xd + (s + 4) * 2, n0);
      if (s + 12 < nHalves) q4_load_half<GR, GH>(wb, sb, zb, m.scales, m.qz, N, kb0 + (s + 12) * 64, n0, wcol, rowStride, gs);
    }
  }
#pragma unroll
  for (int c = 0; c < 4; ++c) red[warp][lane * 4 + c] = acc[c];
  if (rangeNorm) {  // (uniform per launch; the other cluster launches pass the leader a 0 it does not use)
    rangeSs = warp_sum(rangeSs);
    if (lane == 0) warpSs[warp] = rangeSs;
  }
  __syncthreads();
  TRACE_MARK(2);
  const float sum = (red[0][t] + red[1][t] + red[2][t] + red[3][t]) * rstd;
  const int n = col0 + t;
  float v;
  if constexpr (CL) {
    float s1, s2, ss;
    const float mySs = rangeNorm ? warpSs[0] + warpSs[1] + warpSs[2] + warpSs[3] : 0.f;
    if (!gemv_q4_cluster_sum(part, pair, sum, mySs, &s1, &s2, &ss)) return;
    const float r = rangeNorm ? rsqrtf(ss / K + a.xEps) : 1.f;  // (otherwise each block applied its own rstd)
    if (rangeNorm && tile == 0) q4_scale_norm(a.xNormOut, K, r);
    if (pair) {
      q4_swiglu_out(a, n, s1 * r, s2 * r);
      return;
    }
    v = s1 * r;
  } else if (!pair && gridDim.y == 1) {
    v = sum;
  } else if (!pair && (m.flags & 3) == 1 && m.cache == nullptr) {
    if (n < N) atomicAdd(m.y + n, sum);  // residual add: partial sums straight into y
    if (TAIL) q4_norm_tail(a, fin, &last);
    return;
  } else {
    float* ws = a.ws + (size_t)tile * 128;
    atomicAdd(ws + t, sum);
    const int tilesPerMat = a.m[0].tileEnd;
    // a SwiGLU pair's gate and up tiles share one ticket
    if (!block_ticket(a.counters + (pair ? tile % tilesPerMat : tile), (pair ? 2u : 1u) * gridDim.y, &last)) return;
    if (pair) {
      const int p = tile % tilesPerMat;
      const int np = p * 128 + t;
      float* wg = a.ws + (size_t)p * 128;
      float* wu = a.ws + (size_t)(tilesPerMat + p) * 128;
      const float g = __ldcg(wg + t), u = __ldcg(wu + t);
      __stcg(wg + t, 0.f);
      __stcg(wu + t, 0.f);
      q4_swiglu_out(a, np, g, u);
      return;
    }
    v = __ldcg(ws + t);
    __stcg(ws + t, 0.f);
  }
  if (m.flags & 2) {
    // rotary embedding, rotate-half, head = this tile: pair (i, i + 64), same rounding as rope_f32
    fin[t] = v;
    __syncthreads();
    const int i = t & 63;
    const double cs = ropeCs[i].x, sn = ropeCs[i].y;  // (written before the staging's barrier)
    const float x0 = fin[i], x1 = fin[i + 64];
    v = t < 64 ? (float)(x0 * cs - x1 * sn) : (float)(x1 * cs + x0 * sn);
  }
  if (n < N) {
    m.y[n] = (m.flags & 1) ? m.y[n] + v : v;
    if (m.cache) {
      const int pos = read_pos(a.pos_ptr, a.pos_imm);
      if (pos < a.maxSeq) m.cache[(size_t)pos * N + n] = __float2half(v);
    }
  }
  if (!TAIL && a.attnOut) q4_fold_attention(a, mi, col0 / 128, &last);
  if (TAIL) q4_norm_tail(a, fin, &last);
}

// gemv_q4_rpg*: any launch without the RMSNorm tail; gemv_q4_tail_rpg*: a residual add with it (normOut non-null,
// $QLLAMA_CUDA_NORM=tail), a build of its own because the tail's registers made every plain launch spill ~530 bytes
// (o_proj and down_proj included; without it none; decode within noise, bench/cudaNotes.md sixteenth pass);
// gemv_q4_cl_rpg*: launched as clusters of a tile's K ranges (gemvBatch.ts), built for sm_90 and later only (the
// host launches clusters nowhere else)
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
#define GEMV_Q4_CL(RPG)                                                                                           \
  extern "C" __global__ void __launch_bounds__(128, 4) gemv_q4_cl_rpg##RPG(const __grid_constant__ Q4Args a) {   \
    gemv_q4_fused<RPG, true, false>(a);                                                                           \
  }
#else
#define GEMV_Q4_CL(RPG)
#endif
#define GEMV_Q4(RPG)                                                                                              \
  extern "C" __global__ void __launch_bounds__(128, 4) gemv_q4_rpg##RPG(const __grid_constant__ Q4Args a) {      \
    gemv_q4_fused<RPG, false, false>(a);                                                                          \
  }                                                                                                               \
  extern "C" __global__ void __launch_bounds__(128, 4) gemv_q4_tail_rpg##RPG(const __grid_constant__ Q4Args a) { \
    gemv_q4_fused<RPG, false, true>(a);                                                                           \
  }                                                                                                               \
  GEMV_Q4_CL(RPG)
GEMV_Q4(16)
GEMV_Q4(8)
GEMV_Q4(4)
