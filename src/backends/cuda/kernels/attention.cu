// Causal attention over the fp16 KV cache, split along positions (flash-decoding style).
// Row t (position pos + t) of query head h reads kv head h / (heads / kvHeads) at positions 0..pos+t:
//   s_p = (q · k_p) / sqrt(d);   out = Σ_p softmax(s)_p · v_p
// Pass 1, attn_split_<d>: block (h, split, t), 4 warps, covers positions [split*chunk, min(+chunk, n)).
//   A warp takes 32 positions at a time: lane j computes s for position base + j (q in shared memory),
//   then the warp folds the tile into its running (m, l, acc) with lanes owning d/32 output dims each.
//   Writes part[((t*heads + h)*splits + split)*(d+2) ..] = (m, l, acc[d]) with
//   m = max s, l = Σ e^(s−m), acc = Σ e^(s−m) v   (m = −inf, l = 0 for an empty split).
// Pass 2, attn_combine: out[t, h, :] = Σ_s e^(m_s−M) acc_s / Σ_s e^(m_s−M) l_s,  M = max_s m_s.
// q, out: [rows, heads*d] f32 · kc, vc: one layer's cache [maxSeq, kvHeads*d] fp16
#include "common.cuh"

template <int D>
__device__ __forceinline__ void attn_split(float* __restrict__ part, const float* __restrict__ q,
                                           const __half* __restrict__ kc, const __half* __restrict__ vc,
                                           const int* pos_ptr, int pos_imm, int heads, int kvHeads,
                                           int chunk, int splits, float scale) {
  constexpr int E = D / 32;
  __shared__ float qs[D];
  __shared__ float wm[4], wl[4];
  __shared__ float wacc[4][D];
  pdl_wait();
  pdl_launch_dependents();
  const int h = blockIdx.x, split = blockIdx.y, t = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n = read_pos(pos_ptr, pos_imm) + t + 1;
  const int kvh = h / (heads / kvHeads);
  const int width = kvHeads * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x) qs[i] = q[((size_t)t * heads + h) * D + i] * scale;
  __syncthreads();

  const int p0 = split * chunk, p1 = min(p0 + chunk, n);
  float m = -INFINITY, l = 0.f, acc[E];
#pragma unroll
  for (int i = 0; i < E; ++i) acc[i] = 0.f;
  for (int base = p0 + warp * 32; base < p1; base += 128) {
    const int p = base + lane;
    float s = -INFINITY;
    if (p < p1) {
      const uint4* kp = reinterpret_cast<const uint4*>(kc + (size_t)p * width + (size_t)kvh * D);
      float dot = 0.f;
#pragma unroll
      for (int c = 0; c < D / 8; ++c) {
        uint4 u = __ldg(kp + c);
        const half2* h2 = reinterpret_cast<const half2*>(&u);
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
    const int cnt = min(32, p1 - base);
    for (int j = 0; j < cnt; ++j) {
      const float ej = __shfl_sync(0xffffffffu, e, j);
      const half2* vp = reinterpret_cast<const half2*>(vc + (size_t)(base + j) * width + (size_t)kvh * D + lane * E);
#pragma unroll
      for (int i = 0; i < E / 2; ++i) {
        const float2 f = __half22float2(vp[i]);
        acc[2 * i] = fmaf(ej, f.x, acc[2 * i]);
        acc[2 * i + 1] = fmaf(ej, f.y, acc[2 * i + 1]);
      }
    }
    m = m_new;
  }
  if (lane == 0) { wm[warp] = m; wl[warp] = l; }
#pragma unroll
  for (int i = 0; i < E; ++i) wacc[warp][lane * E + i] = acc[i];
  __syncthreads();

  float M = fmaxf(fmaxf(wm[0], wm[1]), fmaxf(wm[2], wm[3]));
  float* dst = part + (((size_t)t * heads + h) * splits + split) * (D + 2);
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
}

#define ATTN_SPLIT(D)                                                                                         \
  extern "C" __global__ void __launch_bounds__(128) attn_split_##D(                                           \
      float* part, const float* q, const __half* kc, const __half* vc, const int* pos_ptr, int pos_imm,       \
      int heads, int kvHeads, int chunk, int splits, float scale) {                                           \
    attn_split<D>(part, q, kc, vc, pos_ptr, pos_imm, heads, kvHeads, chunk, splits, scale);                   \
  }
ATTN_SPLIT(64)
ATTN_SPLIT(128)
ATTN_SPLIT(256)

// Block (h, t), d threads. Only splits that hold positions (ceil(n / chunk) of them) are read.
extern "C" __global__ void attn_combine(float* __restrict__ out, const float* __restrict__ part, int heads, int d,
                                        int chunk, int splits, const int* pos_ptr, int pos_imm) {
  pdl_wait();
  pdl_launch_dependents();
  const int h = blockIdx.x, t = blockIdx.y;
  const int n = read_pos(pos_ptr, pos_imm) + t + 1;
  const int active = min(splits, (n + chunk - 1) / chunk);
  const float* src = part + ((size_t)t * heads + h) * splits * (d + 2);
  float M = -INFINITY;
  for (int s = 0; s < active; ++s) M = fmaxf(M, src[s * (d + 2)]);
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float num = 0.f, den = 0.f;
    for (int s = 0; s < active; ++s) {
      const float* p = src + s * (d + 2);
      if (p[0] == -INFINITY) continue;
      const float f = __expf(p[0] - M);
      num = fmaf(f, p[2 + i], num);
      den = fmaf(f, p[1], den);
    }
    out[((size_t)t * heads + h) * d + i] = num / den;
  }
}
