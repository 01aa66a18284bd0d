// Causal attention over the fp16 KV cache, split along positions (flash-decoding style).
// Row t (position pos + t) of query head h reads kv head h / (heads / kvHeads) at positions 0..pos+t:
//   s_p = (q · k_p) / sqrt(d);   out = Σ_p softmax(s)_p · v_p
// Pass 1, attn_split_<d>: block (h, split, t), 4 warps, covers positions [split*chunk, min(+chunk, n)).
//   A warp takes 32 positions at a time: lane j computes s for position base + j (q in shared memory),
//   then the warp folds the tile into its running (m, l, acc) with lanes owning d/32 output dims each.
//   Writes part[((t*heads + h)*splits + split)*(d+2) ..] = (m, l, acc[d]) with
//   m = max s, l = Σ e^(s−m), acc = Σ e^(s−m) v   (m = −inf, l = 0 for an empty split).
// Then the split that finishes last for (t, h) (ticket counter, left at zero) combines them:
//   out[t, h, :] = Σ_s e^(m_s−M) acc_s / Σ_s e^(m_s−M) l_s,  M = max_s m_s   (one launch per layer, no
//   second kernel: at short context the second launch and its gap cost more than the attention itself).
// V rows are loaded 16 positions at a time before they are used (one round trip per 16 positions
// instead of one per position), and the first batch goes out before the q·k dot products.
// q, out: [rows, heads*d] f32 · kc, vc: one layer's cache [maxSeq, kvHeads*d] fp16
#include "common.cuh"

// most splits per (row, head): attentionLaunch.ts never plans more
#define ATTN_MAX_SPLITS 64

// E/2 half2 of one lane's output dims of one V row
template <int E>
struct __align__(E * 2) VSlice { half2 h[E / 2]; };

template <int D>
__device__ __forceinline__ void attn_split(float* __restrict__ out, float* __restrict__ part, unsigned* __restrict__ tickets,
                                           const float* __restrict__ q, const __half* __restrict__ kc, const __half* __restrict__ vc,
                                           const int* pos_ptr, int pos_imm, int heads, int kvHeads,
                                           int chunk, int splits, float scale) {
  constexpr int E = D / 32;
  constexpr int VB = 16;  // V rows loaded per batch
  __shared__ float qs[D];
  __shared__ float wm[4], wl[4];
  __shared__ float wacc[4][D];
  __shared__ int last;
  pdl_wait();
  pdl_launch_dependents();
  const int h = blockIdx.x, split = blockIdx.y, t = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n = read_pos(pos_ptr, pos_imm) + t + 1;
  const int kvh = h / (heads / kvHeads);
  const int width = kvHeads * D;
  const int p0 = split * chunk, p1 = min(p0 + chunk, n);
  float m = -INFINITY, l = 0.f, acc[E];
#pragma unroll
  for (int i = 0; i < E; ++i) acc[i] = 0.f;
  if (p0 < p1) {  // blocks past the current length (captured graphs cover the whole cache) skip to the ticket
    for (int i = threadIdx.x; i < D; i += blockDim.x) qs[i] = q[((size_t)t * heads + h) * D + i] * scale;
    __syncthreads();
    for (int base = p0 + warp * 32; base < p1; base += 128) {
      const int cnt = min(32, p1 - base);
      const __half* vcol = vc + (size_t)kvh * D + lane * E;
      VSlice<E> vv[VB];
#pragma unroll
      for (int j = 0; j < VB; ++j)
        if (j < cnt) vv[j] = *reinterpret_cast<const VSlice<E>*>(vcol + (size_t)(base + j) * width);
      const int p = base + lane;
      float s = -INFINITY;
      if (p < p1) {
        const uint4* kp = reinterpret_cast<const uint4*>(kc + (size_t)p * width + (size_t)kvh * D);
        uint4 ku[D / 8];
#pragma unroll
        for (int c = 0; c < D / 8; ++c) ku[c] = __ldg(kp + c);
        float dot = 0.f;
#pragma unroll
        for (int c = 0; c < D / 8; ++c) {
          const half2* h2 = reinterpret_cast<const half2*>(&ku[c]);
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const float2 f = __half22float2(h2[j]);
            dot = fmaf(f.x, qs[c * 8 + 2 * j], dot);
            dot = fmaf(f.y, qs[c * 8 + 2 * j + 1], dot);
          }
        }
        s = dot;
      }
      const float m_new = fmaxf(m, warp_max(s));  // finite: lane 0's position is always valid
      const float corr = __expf(m - m_new);
      const float e = p < p1 ? __expf(s - m_new) : 0.f;
      l = l * corr + warp_sum(e);
#pragma unroll
      for (int i = 0; i < E; ++i) acc[i] *= corr;
#pragma unroll
      for (int b = 0; b < 32; b += VB) {
        if (b > 0) {
#pragma unroll
          for (int j = 0; j < VB; ++j)
            if (b + j < cnt) vv[j] = *reinterpret_cast<const VSlice<E>*>(vcol + (size_t)(base + b + j) * width);
        }
#pragma unroll
        for (int j = 0; j < VB; ++j) {
          const float ej = __shfl_sync(0xffffffffu, e, b + j);  // 0 past cnt
          if (b + j < cnt) {
#pragma unroll
            for (int i = 0; i < E / 2; ++i) {
              const float2 f = __half22float2(vv[j].h[i]);
              acc[2 * i] = fmaf(ej, f.x, acc[2 * i]);
              acc[2 * i + 1] = fmaf(ej, f.y, acc[2 * i + 1]);
            }
          }
        }
      }
      m = m_new;
    }
  }
  if (lane == 0) { wm[warp] = m; wl[warp] = l; }
#pragma unroll
  for (int i = 0; i < E; ++i) wacc[warp][lane * E + i] = acc[i];
  __syncthreads();

  const float M = fmaxf(fmaxf(wm[0], wm[1]), fmaxf(wm[2], wm[3]));
  float* head = part + ((size_t)t * heads + h) * splits * (D + 2);
  float* dst = head + (size_t)split * (D + 2);
  const bool empty = M == -INFINITY;
  float f[4];
#pragma unroll
  for (int w = 0; w < 4; ++w) f[w] = empty ? 0.f : __expf(wm[w] - M);
  if (threadIdx.x == 0) {
    dst[0] = M;
    dst[1] = wl[0] * f[0] + wl[1] * f[1] + wl[2] * f[2] + wl[3] * f[3];
  }
  for (int i = threadIdx.x; i < D; i += blockDim.x)
    dst[2 + i] = wacc[0][i] * f[0] + wacc[1][i] * f[1] + wacc[2][i] * f[2] + wacc[3][i] * f[3];

  // the last split of (t, h) to finish combines all of them
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* ticket = tickets + (size_t)t * heads + h;
    const bool isLast = atomicAdd(ticket, 1u) == (unsigned)splits - 1;
    if (isLast) *ticket = 0u;
    last = isLast;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  // every split's (m, l) at once into shared memory, then each dimension's sums with 8 loads in flight
  // (a loop of dependent L2 round trips here cost ~10 us per layer at 16 splits)
  const int active = min(min(splits, ATTN_MAX_SPLITS), (n + chunk - 1) / chunk);
  __shared__ float sm[ATTN_MAX_SPLITS], sl[ATTN_MAX_SPLITS], sf[ATTN_MAX_SPLITS];
  if (threadIdx.x < active) {
    sm[threadIdx.x] = __ldcg(head + (size_t)threadIdx.x * (D + 2));
    sl[threadIdx.x] = __ldcg(head + (size_t)threadIdx.x * (D + 2) + 1);
  }
  __syncthreads();
  float MM = -INFINITY;
  for (int sp = 0; sp < active; ++sp) MM = fmaxf(MM, sm[sp]);
  if (threadIdx.x < active) {
    const float ms = sm[threadIdx.x];
    sf[threadIdx.x] = ms == -INFINITY ? 0.f : __expf(ms - MM);  // an empty split weighs nothing
  }
  __syncthreads();
  float den = 0.f;
  for (int sp = 0; sp < active; ++sp) den = fmaf(sf[sp], sl[sp], den);
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    float num = 0.f;
#pragma unroll 8
    for (int sp = 0; sp < active; ++sp) num = fmaf(sf[sp], __ldcg(head + (size_t)sp * (D + 2) + 2 + i), num);
    out[((size_t)t * heads + h) * D + i] = num / den;
  }
}

#define ATTN_SPLIT(D)                                                                                         \
  extern "C" __global__ void __launch_bounds__(128) attn_split_##D(                                           \
      float* out, float* part, unsigned* tickets, const float* q, const __half* kc, const __half* vc,         \
      const int* pos_ptr, int pos_imm, int heads, int kvHeads, int chunk, int splits, float scale) {          \
    attn_split<D>(out, part, tickets, q, kc, vc, pos_ptr, pos_imm, heads, kvHeads, chunk, splits, scale);     \
  }
ATTN_SPLIT(64)
ATTN_SPLIT(128)
ATTN_SPLIT(256)
