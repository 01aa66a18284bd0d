// RMSNorm, one block per row.  out[t, i] = x[t, i] / sqrt(mean_j x[t, j]^2 + eps) * w[i]
// x, out: [rows, dim] f32 (out may alias x: each thread rewrites only what it read) · w: [dim] f32
#include "common.cuh"

extern "C" __global__ void rmsnorm_f32(float* out, const float* x, const float* __restrict__ w, float eps, int dim) {
  __shared__ float scratch[32];
  pdl_wait();
  pdl_launch_dependents();
  const float* xr = x + (size_t)blockIdx.x * dim;
  float* orow = out + (size_t)blockIdx.x * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf(ss / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) orow[i] = xr[i] * inv * w[i];
}
