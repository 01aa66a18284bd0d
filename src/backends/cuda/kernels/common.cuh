// Shared helpers for the qllama kernels. Every kernel is extern "C" so the host finds it by name.
#pragma once
#include <cuda_fp16.h>
#include <stdint.h>

// Positions come either as an immediate (eager calls) or from device memory that the host
// refreshes before each graph replay, so one captured decode step serves every position.
__device__ __forceinline__ int read_pos(const int* pos_ptr, int pos_imm) {
  return pos_ptr ? *pos_ptr : pos_imm;
}

// silu(g) · u, as every prompt-row SwiGLU computes it (swiglu_rows_f32, the fused gate/up GEMMs' epilogues, which must
// agree bit for bit): __expf and __fdividef, within a few f32 ulps of g / (1 + e^−g) · u and far below the fp16 rounding
// of the copy down_proj reads. The accurate expf and IEEE division cost the register-A gate/up GEMM's epilogue 5% of its
// time (H200, 13B, 2048 rows: 0.909 → 0.863 ms per layer). e^−g past f32's range gives 0 (g → −∞), the limit.
__device__ __forceinline__ float silu_mul(float g, float u) { return __fdividef(g, 1.f + __expf(-g)) * u; }

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

// four f32 as fp16 (round to nearest) in one 8-byte store (p 8-byte aligned)
__device__ __forceinline__ void store_half4(__half* p, float4 v) {
  const half2 a = __floats2half2_rn(v.x, v.y), b = __floats2half2_rn(v.z, v.w);
  uint2 u;
  u.x = *reinterpret_cast<const uint32_t*>(&a);
  u.y = *reinterpret_cast<const uint32_t*>(&b);
  *reinterpret_cast<uint2*>(p) = u;
}

// out[4i .. 4i+3] = half(row[perm[4i .. 4i+3]]): one step of an act-order gather from a row staged in shared memory
// (rmsnorm_rows_f32's gathered copy, x_to_half_gather_rows)
__device__ __forceinline__ void store_gathered_half4(__half* out, const float* row, const int* __restrict__ perm, int i) {
  const int4 p = __ldg(reinterpret_cast<const int4*>(perm) + i);
  store_half4(out + 4 * i, make_float4(row[p.x], row[p.y], row[p.z], row[p.w]));
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

// A block's arrival at a ticket that `expected` blocks take (every thread calls it after its last write that the
// group's last block reads): true in the last block to arrive, which then sees every arrived block's writes; the
// counter goes back to zero for the next launch. flag: a shared int of the block's. The cooperative-groups grid
// barrier's pattern: the barrier orders every thread's earlier writes before thread 0's fence, which is cumulative, so
// one fence per block releases them all (and one acquires for the last block) instead of one per thread each way.
__device__ __forceinline__ bool block_ticket(unsigned* counter, unsigned expected, int* flag) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    const bool isLast = atomicAdd(counter, 1u) == expected - 1;
    if (isLast) {
      *counter = 0u;
      __threadfence();
    }
    *flag = isLast;
  }
  __syncthreads();
  return *flag != 0;
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

// What a kernel whose one-row output feeds the next GEMV does for that GEMV (gemvBatch.ts holds the
// kernel back until the GEMV is known): with inv non-null it also writes its output in the GEMV's
// act-order row order, permOut[inv[i]] = out[i], so the GEMV stages x without a gather.
struct NextGemv {
  const int* inv;   // [dim] row of each x index in the consumer's order, or null
  float* permOut;   // [dim]
};
static_assert(sizeof(NextGemv) == 16, "NextGemv layout is mirrored by gemvBatch.ts");
