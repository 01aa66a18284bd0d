// Dense fp16 GEMV for one token (lm_head):  y[n] = Σ_k W[n, k] · x[k]   (+ y[n] when accumulate)
// W: [N, K] fp16 row-major, K % 8 == 0. One warp per row, 16-byte weight loads, x read through L1.
#include "common.cuh"
#include "trace.cuh"  // lab builds' block timelines (empty otherwise)

extern "C" __global__ void __launch_bounds__(256) gemv_f16(float* y, const float* __restrict__ x,
                                                           const uint4* __restrict__ w, int K, int N, int accumulate) {
  TRACE_BEGIN(TRACE_GEMV_F16);
  pdl_wait();
  pdl_launch_dependents();
  TRACE_MARK(1);
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= N) return;
  const int vecs = K >> 3;
  const uint4* wr = w + (size_t)row * vecs;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float acc = 0.f;
#pragma unroll 4
  for (int c = lane; c < vecs; c += 32) {
    const uint4 u = __ldg(wr + c);
    const float4 a = __ldg(x4 + 2 * c), b = __ldg(x4 + 2 * c + 1);
    const float2 w0 = __half22float2(u32_as_half2(u.x)), w1 = __half22float2(u32_as_half2(u.y));
    const float2 w2 = __half22float2(u32_as_half2(u.z)), w3 = __half22float2(u32_as_half2(u.w));
    acc = fmaf(w0.x, a.x, acc); acc = fmaf(w0.y, a.y, acc); acc = fmaf(w1.x, a.z, acc); acc = fmaf(w1.y, a.w, acc);
    acc = fmaf(w2.x, b.x, acc); acc = fmaf(w2.y, b.y, acc); acc = fmaf(w3.x, b.z, acc); acc = fmaf(w3.y, b.w, acc);
  }
  acc = warp_sum(acc);
  if (lane == 0) y[row] = accumulate ? y[row] + acc : acc;
}
