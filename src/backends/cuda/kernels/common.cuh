// Shared helpers for the qllama kernels. Every kernel is extern "C" so the host finds it by name.
#pragma once
#include <cuda_fp16.h>
#include <stdint.h>

// Positions come either as an immediate (eager calls) or from device memory that the host
// refreshes before each graph replay, so one captured decode step serves every position.
__device__ __forceinline__ int read_pos(const int* pos_ptr, int pos_imm) {
  return pos_ptr ? *pos_ptr : pos_imm;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a block of up to 1024 threads; `scratch` holds 32 floats. Every thread gets the sum.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.f;
  return warp_sum(v);
}

__device__ __forceinline__ half2 u32_as_half2(uint32_t u) {
  return *reinterpret_cast<half2*>(&u);
}

// Extracts the `bits`-wide value at bit offset `bit` of a column packed along rows of `stride`
// words (GPTQ qweight: value k of column n starts at bit k*bits of the column's word stream;
// 3-bit values may straddle two words).
__device__ __forceinline__ uint32_t extract_bits(const uint32_t* __restrict__ base, size_t stride, uint32_t bit, int bits) {
  const uint32_t word = bit >> 5, shift = bit & 31;
  uint32_t v = __ldg(base + (size_t)word * stride) >> shift;
  if (shift + bits > 32) v |= __ldg(base + (size_t)(word + 1) * stride) << (32 - shift);
  return v & ((1u << bits) - 1u);
}

// Programmatic dependent launch (sm_90+; no-ops elsewhere and when launched without the attribute).
// pdl_wait: blocks until the previous kernel in the stream has finished and its writes are visible;
// every kernel the host launches with the attribute calls it before touching what that kernel wrote.
// pdl_launch_dependents: lets the next kernel's blocks start (they run up to their own pdl_wait).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// L2 prefetch of byte ranges that the next kernel will read (gemvBatch.ts fills them in when it knows
// that kernel: the next GEMV's packed weights, scales and zeros). Each block of the issuing launch takes
// an equal share of the ranges laid end to end. sm_90: cp.async.bulk.prefetch.L2 (the TMA unit fetches
// while the SM goes on); older GPUs: prefetch.global.L2 per 128-byte line over the calling threads.
// A hint: nothing waits for it, and the results do not depend on it.
#define L2PF_RANGES 32
struct L2Prefetch {
  const char* ptr[L2PF_RANGES];  // 16-byte aligned
  unsigned bytes[L2PF_RANGES];   // multiples of 16
  unsigned long long total;      // Σ bytes
  int count;                     // 0: nothing to prefetch
  int pad;
};
static_assert(sizeof(L2Prefetch) == 400, "L2Prefetch layout is mirrored by l2Prefetch.ts");

// One range into L2 (16-byte aligned, bytes a multiple of 16), issued by the calling threads: on sm_90
// in pieces of L2PF_PIECE bytes, one per thread in turn (many requests in the TMA unit's queue rather
// than one long one).
#define L2PF_PIECE 32768u
__device__ __forceinline__ void l2_prefetch_bytes(const void* ptr, unsigned bytes, unsigned tid, unsigned nthreads) {
  const char* a = static_cast<const char*>(ptr);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  for (unsigned o = tid * L2PF_PIECE; o < bytes; o += nthreads * L2PF_PIECE) {
    const unsigned n = bytes - o < L2PF_PIECE ? bytes - o : L2PF_PIECE;
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a + o), "r"(n) : "memory");
  }
#else
  for (unsigned o = tid * 128u; o < bytes; o += nthreads * 128u) asm volatile("prefetch.global.L2 [%0];" ::"l"(a + o));
#endif
}

// Share `part` of `parts` of p, issued by the calling threads (thread index tid of nthreads).
__device__ __forceinline__ void l2_prefetch_share(const L2Prefetch& p, unsigned part, unsigned parts, unsigned tid, unsigned nthreads) {
  if (p.count == 0) return;
  const unsigned long long lo = (p.total * part / parts) & ~15ull;
  const unsigned long long hi = part + 1 == parts ? p.total : (p.total * (part + 1) / parts) & ~15ull;
  unsigned long long base = 0;
  for (int r = 0; r < p.count && base < hi; ++r) {
    const unsigned long long b0 = base;
    base += p.bytes[r];
    const unsigned long long s = lo > b0 ? lo : b0, e = hi < base ? hi : base;
    if (s >= e) continue;
    l2_prefetch_bytes(p.ptr[r] + (s - b0), (unsigned)(e - s), tid, nthreads);
  }
}

// What a kernel whose one-row output feeds the next GEMV does for that GEMV (gemvBatch.ts holds the
// kernel back until the GEMV is known): with inv non-null it also writes its output in the GEMV's
// act-order row order, permOut[inv[i]] = out[i], so the GEMV stages x without a gather; and it prefetches
// the GEMV's weights into L2 (pf) while it runs.
struct NextGemv {
  const int* inv;   // [dim] row of each x index in the consumer's order, or null
  float* permOut;   // [dim]
  L2Prefetch pf;
};
static_assert(sizeof(NextGemv) == 416, "NextGemv layout is mirrored by l2Prefetch.ts");
