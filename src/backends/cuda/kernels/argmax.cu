// Greedy argmax of f32 rows, one block per row: id = min { i : x[i] = max_j x[j] }
// (ties go to the lowest index, like the CPU reference; NaN is never chosen over a number; a row with
// nothing above -inf gives 0). argmax_f32 does one row (a single sequence's decode), argmax_rows_f32
// every row of a batched decode step's logits in one launch, so the host waits once for B ids.
// Each thread issues all its loads before comparing (up to 8 float4 = 32768 values for 1024 threads in
// one round trip; a loop of dependent scalar passes took 16 us for 32000 logits on the H100), and the
// kernels are launched with programmatic dependent launch like the lm_head GEMV before them.
#include "common.cuh"

// The argmax of x[0..n) by the whole block (blockDim.x a multiple of 32, at most 1024); the answer is
// valid in thread 0 only.
__device__ __forceinline__ int block_argmax(const float* __restrict__ x, int n) {
  __shared__ float best_v[32];
  __shared__ int best_i[32];
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
  }
  return bi == 0x7fffffff ? 0 : bi;
}

// out[0] = argmax of x[0..n)
extern "C" __global__ void argmax_f32(int* out, const float* __restrict__ x, int n) {
  pdl_wait();
  pdl_launch_dependents();
  const int id = block_argmax(x, n);
  if (threadIdx.x == 0) out[0] = id;
}

// out[r] = argmax of row r of x [rows, n]; grid = rows blocks. Rows start 16-byte aligned when n % 4 == 0
// (the float4 path; block_argmax checks each row's address).
extern "C" __global__ void argmax_rows_f32(int* out, const float* __restrict__ x, int n) {
  pdl_wait();
  pdl_launch_dependents();
  const int id = block_argmax(x + static_cast<size_t>(blockIdx.x) * n, n);
  if (threadIdx.x == 0) out[blockIdx.x] = id;
}
