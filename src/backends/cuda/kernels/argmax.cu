// Greedy argmax of one f32 row, one block: out[0] = min { i : x[i] = max_j x[j] }
// (ties go to the lowest index, like the CPU reference; NaN is never chosen over a number)
// Each thread issues all its loads before comparing (up to 8 float4 = 32768 values for 1024 threads in
// one round trip; a loop of dependent scalar passes took 16 us for 32000 logits on the H100), and the
// kernel is launched with programmatic dependent launch like the lm_head GEMV before it.
#include "common.cuh"

extern "C" __global__ void argmax_f32(int* out, const float* __restrict__ x, int n) {
  __shared__ float best_v[32];
  __shared__ int best_i[32];
  pdl_wait();
  pdl_launch_dependents();
  float bv = -INFINITY;
  int bi = 0x7fffffff;
  const int n4 = (n & 3) == 0 && (reinterpret_cast<size_t>(x) & 15) == 0 ? n >> 2 : 0;  // float4 part
  constexpr int R = 8;
  float4 v[R];
#pragma unroll
  for (int j = 0; j < R; ++j) {
    const int c = threadIdx.x + j * blockDim.x;
    v[j] = c < n4 ? __ldg(reinterpret_cast<const float4*>(x) + c) : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
  }
#pragma unroll
  for (int j = 0; j < R; ++j) {  // ascending index within a thread: strict > keeps the lowest on ties
    const int i = (threadIdx.x + j * blockDim.x) * 4;
    if (v[j].x > bv) { bv = v[j].x; bi = i; }
    if (v[j].y > bv) { bv = v[j].y; bi = i + 1; }
    if (v[j].z > bv) { bv = v[j].z; bi = i + 2; }
    if (v[j].w > bv) { bv = v[j].w; bi = i + 3; }
  }
  for (int c = threadIdx.x + R * blockDim.x; c < n4; c += blockDim.x) {
    const float4 u = __ldg(reinterpret_cast<const float4*>(x) + c);
    if (u.x > bv) { bv = u.x; bi = 4 * c; }
    if (u.y > bv) { bv = u.y; bi = 4 * c + 1; }
    if (u.z > bv) { bv = u.z; bi = 4 * c + 2; }
    if (u.w > bv) { bv = u.w; bi = 4 * c + 3; }
  }
  for (int i = n4 * 4 + threadIdx.x; i < n; i += blockDim.x) {
    const float u = x[i];
    if (u > bv) { bv = u; bi = i; }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) { best_v[warp] = bv; best_i[warp] = bi; }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    bv = lane < warps ? best_v[lane] : -INFINITY;
    bi = lane < warps ? best_i[lane] : 0x7fffffff;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
    }
    if (lane == 0) out[0] = bi == 0x7fffffff ? 0 : bi;
  }
}
