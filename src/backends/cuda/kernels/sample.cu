// Sampling of the next token on the device, so only its id comes back: one block of 1024 threads over
// one f32 logits row. It picks what the CPU Sampler (src/generate/sampler.ts) picks for the same
// uniform u in [0, 1) (drawn on the host from the Sampler's PRNG), up to f32 rounding at a boundary:
//   s_i = f32(x_i · (1/T))        the host multiplies by the double 1/T and rounds to f32; here 1/T comes
//                                 as two floats inv_hi + inv_lo and the product is rounded once (FMA)
//   w_i = exp(s_i − max s)        s − max taken exactly (TwoSum), as the host's f32 − f32 in double; expf
//   temperature only (drawFromAll): the first id, in id order, whose prefix mass Σ_{j ≤ i} w_j > u · Σ w
//   otherwise (drawFromCandidates), ranks by s descending, id ascending on ties:
//     top-k   the first k ranks; M = their mass (without top-k, M = the whole row's mass)
//     top-p   the first n ranks, n the first rank whose prefix mass reaches p · M, plus one
//     min-p   then only the leading ranks with w ≥ min_p (rank 0 has w = 1)
//     draw    the first kept rank whose prefix mass > u · (mass of the kept ranks); if rounding leaves
//             none, the last kept rank with w > 0
// Candidates are found without sorting the row, then gathered (≤ SAMPLE_CAP) into shared memory and
// bitonic-sorted as (key << 32 | ~id) descending, key = the order-preserving u32 of s:
//   top-k        radix select on the key (digits of 11, 11, 10 bits, histograms in shared memory): the
//                first digit whose rows with key ≥ it number ≥ k and ≤ SAMPLE_CAP sets the threshold;
//                if the k-th key's ties overflow and weigh 0 (−∞), only the rows above it are kept
//   top-p/min-p  a histogram of d = max − s in bins of 1/16 nat (count and mass), like the Sampler's
//                octave prefilter: bins up to the one where the mass reaches p · M (one spare bin for
//                the f32 bin masses), and up to min-p's distance −ln(min_p) + 1e-6 (one spare bin)
// Sums are f32 (expf ≤ 2 ulp, ≤ 32 sequential adds per thread, then a tree over threads): a prefix mass
// differs from the host's double one by a few 1e-6 of the total, so the pick differs only when u · M
// sits that close to a boundary (test/cuda/sampling.test.ts checks this).
// out[0] = the id, or −1 when the host must sample from the logits instead (the result is always the
// Sampler's): a NaN, a +∞ or no finite s (the Sampler's special cases), more candidates than
// SAMPLE_CAP (flat rows, > SAMPLE_CAP ties of weight > 0 at the top-k threshold, top-k > SAMPLE_CAP),
// or a top-p cut that did not fall inside the gathered bins.
// Launcher: sampleLaunch.ts (CudaBackend.sample); test: test/cuda/sampling.test.ts.
#include <climits>
#include "common.cuh"

#define SAMPLE_THREADS 1024
#define SAMPLE_CAP 4096
#define SAMPLE_DBINS 1024  // distance bins of 1/16 nat; the last also holds everything further (and −∞)
#define SAMPLE_RBINS 2048  // radix digit bins

namespace qsample {

constexpr unsigned FULL = 0xffffffffu;
constexpr int PER_RANK = SAMPLE_CAP / SAMPLE_THREADS;  // ranks per thread after the sort
static_assert(SAMPLE_DBINS == SAMPLE_THREADS, "one distance bin per thread");
static_assert(SAMPLE_RBINS == 2 * SAMPLE_THREADS, "two radix bins per thread");

struct Shared {
  union {
    unsigned long long cand[SAMPLE_CAP];  // candidates (key << 32 | ~id); sorted descending
    struct {
      int count[SAMPLE_RBINS];
      float mass[SAMPLE_DBINS];
    } hist;  // before the gather
  };
  float part[SAMPLE_THREADS];  // inclusive prefix sums in thread order
  float red_f[32];
  int red_i[32];
  int n_cand;
  int sel_ge, sel_gt;  // radix select: rows with key ≥ / > the chosen digit
  float kept;
};

// f32(x · (hi + lo)): x·hi exactly as p + e (FMA), plus x·lo, rounded once.
__device__ __forceinline__ float scale(float x, float hi, float lo) {
  const float p = x * hi;
  if (!isfinite(p)) return p;  // ±∞, NaN
  const float s = p + fmaf(x, lo, fmaf(x, hi, -p));
  return s == 0.f ? 0.f : s;  // −0 ranks with +0: the host compares by subtraction
}

__device__ __forceinline__ uint32_t key_of(float s) {
  const uint32_t b = __float_as_uint(s);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float value_of(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// exp(s − mx) with the difference exact: TwoSum gives s − mx = hi + lo, exp(hi + lo) ≈ exp(hi)(1 + lo)
__device__ __forceinline__ float weight(float s, float mx) {
  const float hi = s - mx;
  if (!(hi > -104.f)) return 0.f;  // expf underflows (−∞ included)
  const float bb = hi - s;
  const float lo = (s - (hi - bb)) + (-mx - bb);
  const float e = expf(hi);
  return fmaf(e, lo, e);
}

// distance bin: 16 per nat below the max, monotone in s (the gather recomputes the same value)
__device__ __forceinline__ int dbin(float s, float mx) {
  const float d = (mx - s) * 16.f;
  return d < (float)(SAMPLE_DBINS - 1) ? (int)d : SAMPLE_DBINS - 1;
}

// Histogram adds, one atomic per distinct bin in the warp (all 32 lanes call; bin < 0 adds nothing).
__device__ __forceinline__ void hist_inc(int* count, int bin) {
  const unsigned peers = __match_any_sync(FULL, bin);
  if (bin >= 0 && (threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(count + bin, __popc(peers));
}

__device__ __forceinline__ void hist_add(int* count, float* mass, int bin, float w) {
  const unsigned peers = __match_any_sync(FULL, bin);
  if (peers == FULL) {  // the whole warp in one bin (flat rows)
    w = warp_sum(w);
    if ((threadIdx.x & 31) == 0 && bin >= 0) {
      atomicAdd(count + bin, 32);
      atomicAdd(mass + bin, w);
    }
  } else if (bin >= 0) {
    if ((threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(count + bin, __popc(peers));
    atomicAdd(mass + bin, w);
  }
}

struct MaxF { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };
struct SumF { __device__ float operator()(float a, float b) const { return a + b; } };
struct MinI { __device__ int operator()(int a, int b) const { return min(a, b); } };
struct MaxI { __device__ int operator()(int a, int b) const { return max(a, b); } };

// Reduction over the block; every thread gets the result. `scratch` holds 32 values.
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, T* scratch, T ident, Op op) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(FULL, v, o));
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : ident;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(FULL, v, o));
  return v;
}

template <typename T>
__device__ __forceinline__ T warp_incl_scan(T v) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const T y = __shfl_up_sync(FULL, v, o);
    if (lane >= o) v += y;
  }
  return v;
}

// Inclusive prefix sum in thread order; `total` gets the block's sum. `scratch` holds 32 values.
template <typename T>
__device__ __forceinline__ T block_incl_scan(T v, T* scratch, T& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_incl_scan(v);
  __syncthreads();
  if (lane == 31) scratch[warp] = v;
  __syncthreads();
  const T t = warp_incl_scan(lane < warps ? scratch[lane] : T(0));  // every warp scans the warp totals
  const T before = __shfl_sync(FULL, t, (warp + 31) & 31);
  total = __shfl_sync(FULL, t, warps - 1);
  return (warp > 0 ? before : T(0)) + v;
}

// Mass of the threads before this one; part[t] = mass up to thread t, so thread t's range is
// [part[t − 1], part[t]) and adjacent ranges share their bound exactly.
__device__ __forceinline__ float block_prefix(float v, Shared& sh) {
  float total;
  sh.part[threadIdx.x] = block_incl_scan(v, sh.red_f, total);
  __syncthreads();
  return threadIdx.x > 0 ? sh.part[threadIdx.x - 1] : 0.f;
}

// Appends v when `take` (all 32 lanes call): one shared atomic per warp.
__device__ __forceinline__ void append(Shared& sh, bool take, unsigned long long v) {
  const unsigned ballot = __ballot_sync(FULL, take);
  if (ballot == 0) return;
  const int lane = threadIdx.x & 31, leader = __ffs(ballot) - 1;
  int base = 0;
  if (lane == leader) base = atomicAdd(&sh.n_cand, __popc(ballot));
  base = __shfl_sync(FULL, base, leader);
  const int at = base + __popc(ballot & ((1u << lane) - 1u));
  if (take && at < SAMPLE_CAP) sh.cand[at] = v;
}

// Bitonic sort, descending, of a[0..size), size a power of two.
__device__ __forceinline__ void sort_desc(unsigned long long* a, int size) {
  for (int k = 2; k <= size; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int t = threadIdx.x; t < (size >> 1); t += blockDim.x) {
        const int i = 2 * t - (t & (j - 1)), l = i + j;
        const unsigned long long x = a[i], y = a[l];
        if ((x < y) == ((i & k) == 0)) {
          a[i] = y;
          a[l] = x;
        }
      }
      __syncthreads();
    }
  }
}

}  // namespace qsample

// out[0] = the sampled id or −1 (see above). Launch: one block of SAMPLE_THREADS threads.
// inv_hi + inv_lo = 1/T; top_k: 0 = off, else < n; top_p: 1 = off; min_p: 0 = off; u in [0, 1).
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS, 1)
sample_f32(int* out, const float* __restrict__ x, int n, float inv_hi, float inv_lo, int top_k, double top_p,
           double min_p, double u) {
  using namespace qsample;
  __shared__ Shared sh;
  pdl_wait();
  pdl_launch_dependents();
  const int tid = threadIdx.x, nt = blockDim.x;
  const bool by_k = top_k > 0 && top_k < n, by_p = top_p < 1.0, by_min = min_p > 0.0;
  if (nt != SAMPLE_THREADS || (by_k && top_k > SAMPLE_CAP)) {
    if (tid == 0) out[0] = -1;
    return;
  }

  // 1. the max of s; NaN, +∞ or nothing finite go to the host. Top-k: the first radix digit's histogram.
  for (int b = tid; b < SAMPLE_RBINS; b += nt) sh.hist.count[b] = 0;
  if (tid == 0) sh.n_cand = 0;
  __syncthreads();
  float mx = -INFINITY;
  bool bad = false;
  for (int base = 0; base < n; base += nt) {
    const int i = base + tid;
    const float s = i < n ? scale(__ldg(x + i), inv_hi, inv_lo) : -INFINITY;
    bad |= s != s;
    mx = fmaxf(mx, s);
    if (by_k) hist_inc(sh.hist.count, i < n ? (int)(key_of(s) >> 21) : -1);
  }
  mx = block_reduce(mx, sh.red_f, -INFINITY, MaxF());
  bad = __syncthreads_or(bad) != 0;
  if (bad || !(mx > -INFINITY) || mx == INFINITY) {
    if (tid == 0) out[0] = -1;
    return;
  }

  if (!by_k && !by_p && !by_min) {
    // 2a. temperature only: ids in order, thread t owns [t·per, t·per + per)
    const int per = (n + nt - 1) / nt;
    const int lo = min(n, tid * per), hi = min(n, lo + per);
    float local = 0.f;
    int last = -1;
    for (int i = lo; i < hi; ++i) {
      const float w = weight(scale(__ldg(x + i), inv_hi, inv_lo), mx);
      local += w;
      if (w > 0.f) last = i;
    }
    const float before = block_prefix(local, sh);
    const float target = (float)(u * (double)sh.part[nt - 1]);
    // the first range with mass that ends past the target holds the pick
    const int walker = block_reduce(local > 0.f && sh.part[tid] > target ? tid : INT_MAX, sh.red_i, INT_MAX, MinI());
    if (walker == INT_MAX) {  // rounding put the target at the very end: the last token with weight
      last = block_reduce(last, sh.red_i, -1, MaxI());
      if (tid == 0) out[0] = max(last, 0);
    } else if (tid == walker) {
      int pick = last;  // the walk's f32 sum fell short of the range's: its last token with weight
      float cum = before;
      for (int i = lo; i < hi; ++i) {
        const float w = weight(scale(__ldg(x + i), inv_hi, inv_lo), mx);
        cum += w;
        if (w > 0.f && cum > target) {
          pick = i;
          break;
        }
      }
      out[0] = pick;
    }
    return;
  }

  float mass_all = 0.f;    // Σ w over the row: top-p's M without top-k
  bool p_bounded = false;  // the gathered ranks end at top-p's spare bin, not at min-p's or the row's end
  int m_k = top_k;         // the top-k ranks that can be drawn
  if (by_k) {
    // 2b. top-k: radix select of a key threshold with ≥ k and ≤ SAMPLE_CAP rows at or above it
    uint32_t prefix = 0, pmask = 0;
    int above = 0;  // rows whose fixed digits are above the prefix
    bool found = false;
    for (int level = 0; level < 3 && !found; ++level) {
      const int shift = level == 0 ? 21 : level == 1 ? 10 : 0;
      const uint32_t dmask = level == 2 ? 0x3ffu : 0x7ffu;
      if (level > 0) {
        for (int b = tid; b < SAMPLE_RBINS; b += nt) sh.hist.count[b] = 0;
        __syncthreads();
        for (int base = 0; base < n; base += nt) {
          const int i = base + tid;
          int bin = -1;
          if (i < n) {
            const uint32_t k = key_of(scale(__ldg(x + i), inv_hi, inv_lo));
            if ((k & pmask) == prefix) bin = (int)((k >> shift) & dmask);
          }
          hist_inc(sh.hist.count, bin);
        }
      }
      __syncthreads();
      // G(b) = rows with the prefix and digit ≥ b; thread t holds bins 2047 − 2t and 2046 − 2t
      const int b_hi = SAMPLE_RBINS - 1 - 2 * tid, b_lo = b_hi - 1;
      const int c_hi = sh.hist.count[b_hi], c_lo = sh.hist.count[b_lo];
      int total;
      const int g_lo = block_incl_scan(c_hi + c_lo, sh.red_i, total), g_hi = g_lo - c_lo;
      // the largest digit with above + G(digit) ≥ k holds the k-th row
      const int mine = above + g_hi >= top_k ? b_hi : above + g_lo >= top_k ? b_lo : -1;
      const int digit = block_reduce(mine, sh.red_i, -1, MaxI());
      if (digit == b_hi) { sh.sel_ge = above + g_hi; sh.sel_gt = above + g_hi - c_hi; }
      if (digit == b_lo) { sh.sel_ge = above + g_lo; sh.sel_gt = above + g_lo - c_lo; }
      __syncthreads();
      prefix |= (uint32_t)digit << shift;
      pmask |= dmask << shift;
      found = sh.sel_ge <= SAMPLE_CAP;  // rows with key ≥ prefix (lower bits 0): above + G(digit)
      above = sh.sel_gt;
    }
    // More than SAMPLE_CAP rows tie at the k-th key (prefix is that key now). If their weight is 0
    // (−∞ or underflow), only the `above` rows before them matter: the rest are never drawn, add no
    // mass and fail min-p. Otherwise the host decides.
    if (!found) {
      if (weight(value_of(prefix), mx) > 0.f) {
        if (tid == 0) out[0] = -1;
        return;
      }
      m_k = above;
    }
    for (int base = 0; base < n; base += nt) {
      const int i = base + tid;
      const uint32_t k = i < n ? key_of(scale(__ldg(x + i), inv_hi, inv_lo)) : 0u;
      append(sh, i < n && (found ? k >= prefix : k > prefix), ((unsigned long long)k << 32) | (uint32_t)~i);
    }
  } else {
    // 2c. top-p / min-p: count and mass per distance bin, then the bins that hold the kept ranks
    for (int b = tid; b < SAMPLE_DBINS; b += nt) sh.hist.mass[b] = 0.f;
    __syncthreads();
    float local = 0.f;
    for (int base = 0; base < n; base += nt) {
      const int i = base + tid;
      int bin = -1;
      float w = 0.f;
      if (i < n) {
        const float s = scale(__ldg(x + i), inv_hi, inv_lo);
        w = weight(s, mx);
        bin = dbin(s, mx);
        local += w;
      }
      hist_add(sh.hist.count, sh.hist.mass, bin, w);
    }
    mass_all = block_reduce(local, sh.red_f, 0.f, SumF());  // its syncs publish the histogram
    int count_total;
    float mass_total;
    const int count_upto = block_incl_scan(sh.hist.count[tid], sh.red_i, count_total);
    const float mass_upto = block_incl_scan(sh.hist.mass[tid], sh.red_f, mass_total);
    int b_p = SAMPLE_DBINS - 1, b_m = SAMPLE_DBINS - 1;
    if (by_p) {
      const float goal = (float)(top_p * (double)mass_total) + 1e-4f * mass_total;  // margin: f32 atomics
      const int b = block_reduce(mass_upto >= goal ? tid : INT_MAX, sh.red_i, INT_MAX, MinI());
      b_p = b >= SAMPLE_DBINS - 1 ? SAMPLE_DBINS - 1 : b + 1;
    }
    if (by_min) {
      const double bins = (-log(min_p) + 1e-6) * 16.0;  // the Sampler's maxDistance, in bins
      b_m = bins < (double)(SAMPLE_DBINS - 2) ? (int)bins + 1 : SAMPLE_DBINS - 1;
    }
    const int b_last = min(b_p, b_m);
    p_bounded = by_p && b_p < b_m;
    if (tid == b_last) sh.sel_ge = count_upto;
    __syncthreads();
    if (sh.sel_ge > SAMPLE_CAP) {
      if (tid == 0) out[0] = -1;
      return;
    }
    __syncthreads();  // every thread has read the histogram before the gather overwrites it
    for (int base = 0; base < n; base += nt) {
      const int i = base + tid;
      bool take = false;
      uint32_t k = 0;
      if (i < n) {
        const float s = scale(__ldg(x + i), inv_hi, inv_lo);
        take = dbin(s, mx) <= b_last;
        k = key_of(s);
      }
      append(sh, take, ((unsigned long long)k << 32) | (uint32_t)~i);
    }
  }

  // 3. sort the candidates: s descending, id ascending (padding 0 sorts below key(−∞) = 0x007fffff)
  __syncthreads();
  const int c = min(sh.n_cand, SAMPLE_CAP);
  int size = 2;
  while (size < c) size <<= 1;
  for (int r = c + tid; r < size; r += nt) sh.cand[r] = 0ull;
  __syncthreads();
  qsample::sort_desc(sh.cand, size);

  // 4. top-p, min-p and the draw over ranks; thread t owns ranks [t·per, t·per + per), per ≤ PER_RANK
  const int m = by_k ? m_k : c;
  const int per = (m + nt - 1) / nt;
  const int r0 = min(m, tid * per);
  const int mine = min(per, m - r0);  // ranks this thread owns
  float w[PER_RANK];
  float local = 0.f;
#pragma unroll
  for (int j = 0; j < PER_RANK; ++j) {
    w[j] = j < mine ? weight(value_of((uint32_t)(sh.cand[r0 + j] >> 32)), mx) : 0.f;
    local += w[j];
  }
  const float before = block_prefix(local, sh);
  int keep = m;
  bool reached_p = false, reached_m = false;
  if (by_p) {  // the first rank whose prefix mass reaches p · M stays, the rest go
    const float goal = (float)(top_p * (double)(by_k ? sh.part[nt - 1] : mass_all));
    int first = INT_MAX;
    float cum = before;
#pragma unroll
    for (int j = 0; j < PER_RANK; ++j) {
      cum += w[j];
      if (j < mine && first == INT_MAX && cum >= goal) first = r0 + j;
    }
    first = block_reduce(first, sh.red_i, INT_MAX, MinI());
    if (first != INT_MAX) {
      keep = first + 1;
      reached_p = true;
    }
  }
  if (by_min) {  // ranks from the first with w < min_p go (rank 0 always stays)
    const float thr = (float)min_p;
    int first = INT_MAX;
#pragma unroll
    for (int j = 0; j < PER_RANK; ++j) {
      if (j < mine && first == INT_MAX && r0 + j >= 1 && w[j] < thr) first = r0 + j;
    }
    first = block_reduce(first, sh.red_i, INT_MAX, MinI());
    if (first != INT_MAX) {
      keep = min(keep, first);
      reached_m = true;
    }
  }
  if (p_bounded && !reached_p && !reached_m) {  // the top-p cut lies past the gathered bins
    if (tid == 0) out[0] = -1;
    return;
  }
  {  // the kept mass: the prefix at rank keep − 1, from its owner's running sum
    float cum = before;
#pragma unroll
    for (int j = 0; j < PER_RANK; ++j) {
      cum += w[j];
      if (j < mine && r0 + j == keep - 1) sh.kept = cum;
    }
  }
  __syncthreads();
  const float target = (float)(u * (double)sh.kept);
  int first = INT_MAX, last = -1;
  {
    float cum = before;
#pragma unroll
    for (int j = 0; j < PER_RANK; ++j) {
      cum += w[j];
      if (j < mine && r0 + j < keep && w[j] > 0.f) {
        last = r0 + j;
        if (first == INT_MAX && cum > target) first = r0 + j;
      }
    }
  }
  first = block_reduce(first, sh.red_i, INT_MAX, MinI());
  if (first == INT_MAX) first = max(0, block_reduce(last, sh.red_i, -1, MaxI()));
  if (tid == 0) out[0] = (int)~(uint32_t)sh.cand[first];
}
