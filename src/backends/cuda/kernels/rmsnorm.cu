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

// One row of RMSNorm that also writes up to 3 copies of its output gathered into consumers' row
// orders (act-order GEMVs read them linearly): outP_i[j] = out[perm_i[j]]. out may alias x.
struct NormPerm {
  const int* perm[3];
  float* out[3];
  int count;
};
extern "C" __global__ void rmsnorm_perm_f32(float* out, const float* x, const float* __restrict__ w, float eps, int dim,
                                            const __grid_constant__ NormPerm p) {
  __shared__ float scratch[32];
  pdl_wait();
  pdl_launch_dependents();
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += x[i] * x[i];
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf(ss / dim + eps);
  for (int c = 0; c < p.count; ++c) {
    const int* pm = p.perm[c];
    float* o = p.out[c];
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
      const int i = __ldg(pm + j);
      o[j] = x[i] * inv * w[i];
    }
  }
  __syncthreads();  // every read of x is done before an in-place write
  for (int i = threadIdx.x; i < dim; i += blockDim.x) out[i] = x[i] * inv * w[i];
}
