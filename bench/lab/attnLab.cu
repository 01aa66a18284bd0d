// Lab: decode attention over the fp16 KV cache at 13B shapes, the kernel in attention.cu against the
// one it replaces (commit 0dc9393, copied verbatim below with names suffixed _old), in the same run.
//   40 heads (kvHeads 40), d 128, caches [maxSeq 2048, 5120] fp16 per layer; 32 layers' caches
//   (1.34 GB) rotate so L2 (50 MB) holds none of them. Each timing: a CUDA graph of 32 attention
//   launches (one per layer, PDL attribute as the backend), median of 60 replays / 32.
//   Effective GB/s = K+V bytes of the live context / time; ceiling = read_bw (readbw.cu) over 2 GiB.
// Also: a correctness sweep against a double-precision CPU reference (GQA, d 64/128/256, rows 1 and 3,
// NaN past the live positions) and a sweep of splits / tile sizes for the new kernel.
// Build and run: bash bench/lab/attn-lab.sh
#include <cuda_runtime.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../src/backends/cuda/kernels/attention.cu"
#include "../../src/backends/cuda/kernels/readbw.cu"

// A tile-size variant of the new kernel: 16 loads per lane per tile (d 128: 32 positions per warp tile).
extern "C" __global__ void __launch_bounds__(128, 3) attn_split_128_ni16(
    float* out, float* part, unsigned* tickets, const float* q, const __half* kc, const __half* vc,
    const int* pos_ptr, int pos_imm, int heads, int kvHeads, int chunk, int splits, float scale) {
  (void)chunk;
  attn_decode<128, 16>(out, part, tickets, q, kc, vc, pos_ptr, pos_imm, heads, kvHeads, splits, scale);
}
// The shipped kernel without its early first tile (EARLY: K/V loads before the programmatic-launch wait).
extern "C" __global__ void __launch_bounds__(128, ATTN_MIN_BLOCKS) attn_split_128_noearly(
    float* out, float* part, unsigned* tickets, const float* q, const __half* kc, const __half* vc,
    const int* pos_ptr, int pos_imm, int heads, int kvHeads, int chunk, int splits, float scale) {
  (void)chunk;
  attn_decode<128, AttnNI<128>::value>(out, part, tickets, q, kc, vc, pos_ptr, pos_imm, heads, kvHeads, splits, scale);
}
// The shipped kernel in the lab's launch signature (attn_split_<d> itself takes no chunk and a NextGemv).
#define ATTN_SPLIT_LAB(D)                                                                                    \
  extern "C" __global__ void __launch_bounds__(128, ATTN_MIN_BLOCKS) attn_split_lab_##D(                      \
      float* out, float* part, unsigned* tickets, const float* q, const __half* kc, const __half* vc,        \
      const int* pos_ptr, int pos_imm, int heads, int kvHeads, int chunk, int splits, float scale) {         \
    (void)chunk;                                                                                             \
    attn_decode<D, AttnNI<D>::value, false, true>(out, part, tickets, q, kc, vc, pos_ptr, pos_imm, heads, kvHeads, splits, scale); \
  }
ATTN_SPLIT_LAB(64)
ATTN_SPLIT_LAB(128)
ATTN_SPLIT_LAB(256)

// ---------------------------------------------------------------------------------------------
// The previous attention.cu (commit 0dc9393), verbatim except the _old / _OLD names.
// ---------------------------------------------------------------------------------------------
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

// most splits per (row, head): attentionLaunch.ts never plans more
#define ATTN_MAX_SPLITS_OLD 64

// E/2 half2 of one lane's output dims of one V row
template <int E>
struct __align__(E * 2) VSliceOld { half2 h[E / 2]; };

template <int D>
__device__ __forceinline__ void attn_split_old(float* __restrict__ out, float* __restrict__ part, unsigned* __restrict__ tickets,
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
      VSliceOld<E> vv[VB];
#pragma unroll
      for (int j = 0; j < VB; ++j)
        if (j < cnt) vv[j] = *reinterpret_cast<const VSliceOld<E>*>(vcol + (size_t)(base + j) * width);
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
            if (b + j < cnt) vv[j] = *reinterpret_cast<const VSliceOld<E>*>(vcol + (size_t)(base + b + j) * width);
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
  const int active = min(min(splits, ATTN_MAX_SPLITS_OLD), (n + chunk - 1) / chunk);
  __shared__ float sm[ATTN_MAX_SPLITS_OLD], sl[ATTN_MAX_SPLITS_OLD], sf[ATTN_MAX_SPLITS_OLD];
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

#define ATTN_SPLIT_OLD(D)                                                                                         \
  extern "C" __global__ void __launch_bounds__(128) attn_split_old_##D(                                           \
      float* out, float* part, unsigned* tickets, const float* q, const __half* kc, const __half* vc,         \
      const int* pos_ptr, int pos_imm, int heads, int kvHeads, int chunk, int splits, float scale) {          \
    attn_split_old<D>(out, part, tickets, q, kc, vc, pos_ptr, pos_imm, heads, kvHeads, chunk, splits, scale);     \
  }
ATTN_SPLIT_OLD(64)
ATTN_SPLIT_OLD(128)
ATTN_SPLIT_OLD(256)
// ---------------------------------------------------------------------------------------------

#define CK(x)                                                                                 \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, __LINE__, #x); \
      exit(1);                                                                                \
    }                                                                                         \
  } while (0)

typedef void (*AttnFn)(float*, float*, unsigned*, const float*, const __half*, const __half*, const int*, int, int, int,
                       int, int, float);

// deterministic pseudo-random fill: uniform in [-a, a); NaN from `nanFrom` (row index) on
__global__ void fill_half(__half* p, size_t n, unsigned seed, float a, size_t rowLen, size_t nanFrom) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    unsigned x = (unsigned)i * 2654435761u ^ seed * 40503u ^ (unsigned)(i >> 32) * 97u;
    x ^= x >> 15; x *= 2246822519u; x ^= x >> 13; x *= 3266489917u; x ^= x >> 16;
    const float v = ((x >> 8) * (1.f / 16777216.f) * 2.f - 1.f) * a;
    p[i] = (i / rowLen) >= nanFrom ? __float2half(NAN) : __float2half(v);
  }
}
__global__ void fill_float(float* p, size_t n, unsigned seed, float a) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    unsigned x = (unsigned)i * 2654435761u ^ seed * 40503u;
    x ^= x >> 15; x *= 2246822519u; x ^= x >> 13; x *= 3266489917u; x ^= x >> 16;
    p[i] = ((x >> 8) * (1.f / 16777216.f) * 2.f - 1.f) * a;
  }
}

static int g_sms = 132;

static void launch(AttnFn fn, int heads, int splits, int rows, cudaStream_t st, float* out, float* part, unsigned* tickets,
                   const float* q, const __half* kc, const __half* vc, const int* posPtr, int posImm, int kvHeads, int chunk,
                   float scale) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(heads, splits, rows);
  cfg.blockDim = dim3(128);
  cfg.stream = st;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  CK(cudaLaunchKernelEx(&cfg, fn, out, part, tickets, q, kc, vc, posPtr, posImm, heads, kvHeads, chunk, splits, scale));
}

// Plans. Old (attentionLaunch.ts at 0dc9393): chunks of 128 positions, up to 64 splits (rows 1).
struct Plan { int chunk, splits; };
static Plan planOld(int maxPos, int rows, int heads) {
  const int tiles = std::max(1, (maxPos + 127) / 128);
  const int wanted = std::min(64, rows == 1 ? tiles : std::max(1, std::min(tiles, (2 * g_sms + rows * heads - 1) / (rows * heads))));
  const int chunk = 128 * ((tiles + wanted - 1) / wanted);
  return {chunk, (tiles * 128 + chunk - 1) / chunk};
}
// New (attentionLaunch.ts now): fill 5 blocks per SM once, capped by the rounds maxPos can use.
static Plan planNew(int maxPos, int rows, int heads, int d, int blocksPerSm = 5) {
  const int chunk = 4 * (8 * 256 / d);
  const int rounds = std::max(1, (maxPos + chunk - 1) / chunk);
  const int fill = blocksPerSm * g_sms / (rows * heads);
  return {chunk, std::max(1, std::min(std::min(fill, rounds), 128))};
}
// the backend's graph buckets (positionBucket): positions <= 128, <= 512, else the cache
static int bucket(int endPos, int maxSeq) { return endPos <= 128 ? 128 : endPos <= 512 ? 512 : maxSeq; }

// double-precision reference: out[t, h, :] for rows t (position pos + t), cache rows [maxSeq, kvHeads*d]
static void reference(std::vector<double>& out, const std::vector<float>& q, const std::vector<__half>& k,
                      const std::vector<__half>& v, int pos, int rows, int heads, int kvHeads, int d) {
  const int width = kvHeads * d, group = heads / kvHeads;
  out.assign((size_t)rows * heads * d, 0.0);
  std::vector<double> s;
  for (int t = 0; t < rows; ++t)
    for (int h = 0; h < heads; ++h) {
      const int n = pos + t + 1, kvh = h / group;
      s.assign(n, 0.0);
      double mx = -INFINITY;
      for (int p = 0; p < n; ++p) {
        double acc = 0;
        for (int i = 0; i < d; ++i) acc += (double)q[((size_t)t * heads + h) * d + i] * __half2float(k[(size_t)p * width + kvh * d + i]);
        s[p] = acc / std::sqrt((double)d);
        mx = std::max(mx, s[p]);
      }
      double den = 0;
      for (int p = 0; p < n; ++p) { s[p] = std::exp(s[p] - mx); den += s[p]; }
      double* o = &out[((size_t)t * heads + h) * d];
      for (int p = 0; p < n; ++p)
        for (int i = 0; i < d; ++i) o[i] += s[p] / den * __half2float(v[(size_t)p * width + kvh * d + i]);
    }
}

// max |a - ref| / max |ref|
static double maxNormErr(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num = std::max(num, std::fabs(a[i] - ref[i]));
    den = std::max(den, std::fabs(ref[i]));
  }
  return num / std::max(den, 1e-30);
}
static double maxNormErr(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<double> r(b.begin(), b.end());
  return maxNormErr(a, r);
}

static float medianOf(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

static AttnFn newFn(int d) { return d == 64 ? attn_split_lab_64 : d == 128 ? attn_split_lab_128 : attn_split_lab_256; }

// ---- correctness sweep: small shapes against the CPU reference --------------------------------
static bool correctness(cudaStream_t st) {
  struct Case { int heads, kvHeads, d; };
  const Case cases[] = {{8, 8, 128}, {8, 2, 64}, {4, 4, 256}, {32, 8, 128}, {40, 40, 128}};
  const int maxSeq = 2200;
  const int positions[] = {0, 36, 127, 999, 2096};
  bool ok = true;
  printf("correctness vs double-precision CPU (NaN in the cache past the live positions), max |err| / max |ref|:\n");
  for (const Case& cs : cases) {
    const int width = cs.kvHeads * cs.d;
    for (int rows : {1, 3}) {
      for (int pos : positions) {
        const int live = pos + rows;
        __half *k, *v;
        float *q, *out, *part;
        unsigned* tickets;
        int* dpos;
        CK(cudaMalloc(&k, (size_t)maxSeq * width * 2));
        CK(cudaMalloc(&v, (size_t)maxSeq * width * 2));
        CK(cudaMalloc(&q, (size_t)rows * cs.heads * cs.d * 4));
        CK(cudaMalloc(&out, (size_t)rows * cs.heads * cs.d * 4));
        CK(cudaMalloc(&part, (size_t)rows * cs.heads * 128 * (cs.d + 2) * 4));
        CK(cudaMalloc(&tickets, (size_t)rows * cs.heads * 4));
        CK(cudaMalloc(&dpos, 4));
        CK(cudaMemsetAsync(tickets, 0, (size_t)rows * cs.heads * 4, st));
        CK(cudaMemcpyAsync(dpos, &pos, 4, cudaMemcpyHostToDevice, st));
        fill_half<<<256, 256, 0, st>>>(k, (size_t)maxSeq * width, 11 + pos, 1.f, width, live);
        fill_half<<<256, 256, 0, st>>>(v, (size_t)maxSeq * width, 23 + pos, 1.f, width, live);
        fill_float<<<64, 256, 0, st>>>(q, (size_t)rows * cs.heads * cs.d, 37 + pos, 3.f);
        std::vector<float> hq((size_t)rows * cs.heads * cs.d), hout(hq.size());
        std::vector<__half> hk((size_t)maxSeq * width), hv(hk.size());
        CK(cudaMemcpyAsync(hq.data(), q, hq.size() * 4, cudaMemcpyDeviceToHost, st));
        CK(cudaMemcpyAsync(hk.data(), k, hk.size() * 2, cudaMemcpyDeviceToHost, st));
        CK(cudaMemcpyAsync(hv.data(), v, hv.size() * 2, cudaMemcpyDeviceToHost, st));
        std::vector<double> ref;
        CK(cudaStreamSynchronize(st));
        reference(ref, hq, hk, hv, pos, rows, cs.heads, cs.kvHeads, cs.d);
        // as planned eagerly (maxPositions = live) and as inside a decode graph of the whole cache;
        // twice each, so a ticket left non-zero would show
        double worst = 0;
        for (int maxPos : {live, maxSeq})
          for (int rep = 0; rep < 2; ++rep) {
            CK(cudaMemsetAsync(out, 0xff, hout.size() * 4, st));  // NaN
            const Plan p = planNew(maxPos, rows, cs.heads, cs.d);
            launch(newFn(cs.d), cs.heads, p.splits, rows, st, out, part, tickets, q, k, v, rep ? dpos : nullptr, pos, cs.kvHeads,
                   p.chunk, 1.f / std::sqrt((float)cs.d));
            CK(cudaMemcpyAsync(hout.data(), out, hout.size() * 4, cudaMemcpyDeviceToHost, st));
            CK(cudaStreamSynchronize(st));
            worst = std::max(worst, maxNormErr(hout, ref));
          }
        std::vector<unsigned> ht((size_t)rows * cs.heads);
        CK(cudaMemcpy(ht.data(), tickets, ht.size() * 4, cudaMemcpyDeviceToHost));
        const bool ticketsZero = std::all_of(ht.begin(), ht.end(), [](unsigned x) { return x == 0; });
        const bool pass = worst < 1e-3 && ticketsZero;
        ok = ok && pass;
        printf("  heads %2d kv %2d d %3d rows %d pos %4d: err %.2e%s %s\n", cs.heads, cs.kvHeads, cs.d, rows, pos, worst,
               ticketsZero ? "" : " (tickets left non-zero)", pass ? "ok" : "FAIL");
        cudaFree(k); cudaFree(v); cudaFree(q); cudaFree(out); cudaFree(part); cudaFree(tickets); cudaFree(dpos);
      }
    }
  }
  return ok;
}

// ---- 13B timing ---------------------------------------------------------------------------------
struct Bench {
  static const int L = 32, HEADS = 40, D = 128, MAXSEQ = 2048, WIDTH = 40 * 128;
  cudaStream_t st;
  __half* kv;  // [L][2][MAXSEQ][WIDTH]
  float *q, *out, *part;
  unsigned* tickets;
  int* dpos;
  const __half* k(int l) const { return kv + (size_t)(2 * l) * MAXSEQ * WIDTH; }
  const __half* v(int l) const { return kv + (size_t)(2 * l + 1) * MAXSEQ * WIDTH; }
  float* qL(int l) const { return q + (size_t)l * HEADS * D; }
  float* outL(int l) const { return out + (size_t)l * HEADS * D; }

  void setPos(int pos) { CK(cudaMemcpyAsync(dpos, &pos, 4, cudaMemcpyHostToDevice, st)); CK(cudaStreamSynchronize(st)); }

  // µs per call: a graph of L launches (layer l reads cache l), median of `reps` replays
  float time(AttnFn fn, Plan p, int reps = 60) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int l = 0; l < L; ++l)
      launch(fn, HEADS, p.splits, 1, st, outL(l), part, tickets, qL(l), k(l), v(l), dpos, 0, HEADS, p.chunk, 1.f / std::sqrt((float)D));
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 5; ++i) CK(cudaGraphLaunch(ge, st));
    std::vector<float> ms;
    for (int i = 0; i < reps; ++i) {
      CK(cudaEventRecord(a, st));
      CK(cudaGraphLaunch(ge, st));
      CK(cudaEventRecord(b, st));
      CK(cudaEventSynchronize(b));
      float t;
      CK(cudaEventElapsedTime(&t, a, b));
      ms.push_back(t);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    return medianOf(ms) * 1000.f / L;
  }
  std::vector<float> outputs(int l) {
    std::vector<float> h((size_t)HEADS * D);
    CK(cudaStreamSynchronize(st));
    CK(cudaMemcpy(h.data(), outL(l), h.size() * 4, cudaMemcpyDeviceToHost));
    return h;
  }
};

static double ceilingGBs(cudaStream_t st) {
  const size_t bytes = (size_t)2 << 30;
  uint4* buf;
  unsigned* sink;
  CK(cudaMalloc(&buf, bytes));
  CK(cudaMalloc(&sink, (size_t)g_sms * 8 * 256 * 4));
  CK(cudaMemsetAsync(buf, 1, bytes, st));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int i = 0; i < 23; ++i) {
    CK(cudaEventRecord(a, st));
    read_bw<<<g_sms * 8, 256, 0, st>>>(buf, bytes / 16, sink);
    CK(cudaEventRecord(b, st));
    CK(cudaEventSynchronize(b));
    float t;
    CK(cudaEventElapsedTime(&t, a, b));
    if (i >= 3) ms.push_back(t);
  }
  CK(cudaFree(buf));
  CK(cudaFree(sink));
  return bytes / (medianOf(ms) * 1e-3) / 1e9;
}

int main() {
  int dev = 0;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, dev));
  g_sms = prop.multiProcessorCount;
  printf("%s, %d SMs\n", prop.name, g_sms);
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  for (AttnFn f : {(AttnFn)attn_split_lab_128, (AttnFn)attn_split_128_noearly, (AttnFn)attn_split_128_ni16, (AttnFn)attn_split_old_128}) {
    cudaFuncAttributes fa;
    CK(cudaFuncGetAttributes(&fa, (const void*)f));
    int blocks = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, f, 128, 0));
    printf("  %-22s %3d registers, %5zu B smem, %d blocks/SM\n",
           f == attn_split_lab_128 ? "attn_split_128 (new)" : f == attn_split_128_noearly ? "attn_split_128 (no early tile)"
           : f == attn_split_128_ni16 ? "attn_split_128_ni16" : "attn_split_old_128",
           fa.numRegs, fa.sharedSizeBytes, blocks);
  }

  const bool ok = correctness(st);

  const double ceil = ceilingGBs(st);
  printf("\nread ceiling (read_bw, 2 GiB, 16-byte loads): %.0f GB/s\n", ceil);

  Bench B;
  B.st = st;
  const size_t layerHalves = (size_t)Bench::MAXSEQ * Bench::WIDTH;
  CK(cudaMalloc(&B.kv, (size_t)Bench::L * 2 * layerHalves * 2));
  CK(cudaMalloc(&B.q, (size_t)Bench::L * Bench::HEADS * Bench::D * 4));
  CK(cudaMalloc(&B.out, (size_t)Bench::L * Bench::HEADS * Bench::D * 4));
  CK(cudaMalloc(&B.part, (size_t)Bench::HEADS * 128 * (Bench::D + 2) * 4));
  CK(cudaMalloc(&B.tickets, Bench::HEADS * 4));
  CK(cudaMalloc(&B.dpos, 4));
  CK(cudaMemsetAsync(B.tickets, 0, Bench::HEADS * 4, st));
  fill_half<<<g_sms * 8, 256, 0, st>>>(B.kv, (size_t)Bench::L * 2 * layerHalves, 5, 1.f, Bench::WIDTH, (size_t)1 << 62);
  fill_float<<<g_sms, 256, 0, st>>>(B.q, (size_t)Bench::L * Bench::HEADS * Bench::D, 9, 3.f);
  CK(cudaStreamSynchronize(st));
  printf("13B attention: 40 heads, kvHeads 40, d 128, %d layers' caches of [%d, %d] fp16 (%.2f GB), graph of %d launches\n",
         Bench::L, Bench::MAXSEQ, Bench::WIDTH, Bench::L * 2.0 * layerHalves * 2 / 1e9, Bench::L);

  struct Row { int ctx; Plan po, pn; float old_us, new_us, new_full_us; double err; };
  std::vector<Row> rows;
  for (int ctx : {1, 128, 512, 1024, 2048}) {
    B.setPos(ctx - 1);
    const int maxPos = bucket(ctx, Bench::MAXSEQ);
    Row r;
    r.ctx = ctx;
    r.po = planOld(maxPos, 1, Bench::HEADS);
    r.pn = planNew(maxPos, 1, Bench::HEADS, Bench::D);
    r.old_us = B.time(attn_split_old_128, r.po);
    const std::vector<float> o = B.outputs(Bench::L - 1);
    r.new_us = B.time(attn_split_lab_128, r.pn);
    const std::vector<float> nw = B.outputs(Bench::L - 1);
    r.err = maxNormErr(nw, o);
    r.new_full_us = B.time(attn_split_lab_128, planNew(Bench::MAXSEQ, 1, Bench::HEADS, Bench::D));
    rows.push_back(r);
  }

  // the early first tile (EARLY) against the same kernel without it, same plans
  printf("\nearly first tile, us per call (new / without it):");
  for (const Row& r : rows) {
    B.setPos(r.ctx - 1);
    printf("  ctx %d: %.2f / %.2f", r.ctx, B.time(attn_split_lab_128, r.pn), B.time(attn_split_128_noearly, r.pn));
  }
  printf("\n");

  // sweep: splits x tile size, grid for the whole cache (as the 'any' bucket)
  printf("\nsweep of the new kernel, us per call (grid (40, splits); NI = 16-byte loads per lane per tile):\n");
  const int splitList[] = {8, 10, 13, 16, 20, 26, 32, 40, 64};
  printf("  %-14s", "ctx / splits");
  for (int s : splitList) printf("%7d", s);
  printf("\n");
  for (int ctx : {512, 1024, 2048}) {
    B.setPos(ctx - 1);
    for (int ni : {8, 16}) {
      printf("  %4d NI %-2d    ", ctx, ni);
      for (int s : splitList) {
        const Plan p = {4 * ni * 2, s};
        printf("%7.2f", B.time(ni == 8 ? attn_split_lab_128 : attn_split_128_ni16, p, 30));
      }
      printf("\n");
    }
  }

  const double bytesPerPos = 2.0 * Bench::WIDTH * 2;  // K + V, fp16
  printf("\n13B decode attention per layer (%s; ceiling %.0f GB/s; grid as the backend's graph buckets <=128, <=512, 2048;\n"
         "'new@2048' = new kernel with the whole-cache grid):\n", prop.name, ceil);
  printf("  %5s | %-10s %8s %8s | %-10s %8s %8s %6s | %8s | %7s | %9s\n", "ctx", "old grid", "old us", "old GB/s", "new grid",
         "new us", "new GB/s", "ceil%", "new@2048", "speedup", "err");
  for (const Row& r : rows) {
    const double bytes = bytesPerPos * r.ctx;
    char go[16], gn[16];
    snprintf(go, sizeof go, "40x%dx%d", r.po.splits, r.po.chunk);
    snprintf(gn, sizeof gn, "40x%d", r.pn.splits);
    printf("  %5d | %-10s %8.2f %8.0f | %-10s %8.2f %8.0f %5.0f%% | %8.2f | %6.2fx | %9.2e\n", r.ctx, go, r.old_us,
           bytes / (r.old_us * 1e3), gn, r.new_us, bytes / (r.new_us * 1e3), 100 * bytes / (r.new_us * 1e3) / ceil, r.new_full_us,
           r.old_us / r.new_us, r.err);
  }
  bool errOk = true;
  for (const Row& r : rows) errOk = errOk && r.err < 1e-3;
  printf("correctness sweep %s; new vs old outputs %s (max |new-old| / max |old| < 1e-3)\n", ok ? "passed" : "FAILED",
         errOk ? "agree" : "DISAGREE");
  return ok && errOk ? 0 : 1;
}
