// RMSNorm, one block per row.  out[t, i] = x[t, i] / sqrt(mean_j x[t, j]^2 + eps) * w[i]
// x, out: [rows, dim] f32 (out may alias x: each thread rewrites only what it read) · w: [dim] f32
// nx (one row only, see NextGemv in common.cuh): the output also in the next GEMV's act-order row
// order, permOut[inv[i]] = out[i].
#include "common.cuh"

// inverse-permutation entries a thread loads before waiting for x (dim ≤ 8 · blockDim.x)
#define NORM_INV_REGS 8

extern "C" __global__ void rmsnorm_f32(float* out, const float* x, const float* __restrict__ w, float eps, int dim,
                                       const __grid_constant__ NextGemv nx) {
  __shared__ float scratch[32];
  int inv[NORM_INV_REGS];
  if (nx.inv) {
#pragma unroll
    for (int j = 0; j < NORM_INV_REGS; ++j) {
      const int i = threadIdx.x + j * blockDim.x;
      inv[j] = i < dim ? __ldg(nx.inv + i) : 0;
    }
  }
  pdl_wait();
  pdl_launch_dependents();
  const float* xr = x + (size_t)blockIdx.x * dim;
  float* orow = out + (size_t)blockIdx.x * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, scratch);
  const float r = rsqrtf(ss / dim + eps);
  if (nx.inv) {
#pragma unroll
    for (int j = 0; j < NORM_INV_REGS; ++j) {
      const int i = threadIdx.x + j * blockDim.x;
      if (i < dim) nx.permOut[inv[j]] = xr[i] * r * w[i];
    }
    for (int i = threadIdx.x + NORM_INV_REGS * blockDim.x; i < dim; i += blockDim.x) nx.permOut[__ldg(nx.inv + i)] = xr[i] * r * w[i];
  }
  for (int i = threadIdx.x; i < dim; i += blockDim.x) orow[i] = xr[i] * r * w[i];
}
