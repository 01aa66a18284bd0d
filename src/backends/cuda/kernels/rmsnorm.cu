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

// RMSNorm of prompt rows (rows > 1), one block of RN_THREADS per row: the row is loaded once as float4 into
// registers (dim % 4 == 0, dim ≤ 4 · RN_THREADS · RN_VEC), one block reduction, then out = x · r · w, and,
// where outHalf is not null, also its fp16 copy (what x_to_half would write for a GEMM that reads x
// linearly: gemm_mma.cu), so that GEMM's conversion pass is skipped (halfCopies.ts). rmsnorm_f32 read
// each row twice with scalar loads in 1024-thread blocks: 57 us at 2048 × 5120 on an H200.
// perm (not null with outHalf): the copy in an act-order GEMM's row order, outHalf[k] = half(out[perm[k]]), what
// x_to_half gathers for it (its consumers, q/k/v or gate/up, share one permutation): the finished row goes through
// dynamic shared memory (dim floats) and is gathered from there, so act-order prompts skip that pass too.
// out null (with outHalf): the fp16 copy only, where the caller knows nothing reads the f32 rows (PromptOps.rmsNorm:
// only GEMMs that read the copy), which saves 2 of the 5 bytes per element the launch moves.
// rmsnorm_rows_f32 holds RN_VEC = 8 float4 per thread (rows up to 8192) in 55 registers, so 4 blocks fit an SM (50%
// occupancy; Nsight on an H200 at 2048 × 5120: 19 µs, 54% of DRAM bandwidth, latency-bound); rmsnorm_rows_f32_narrow
// holds 5 (rows up to 5120: LLaMA 7B and 13B) in 32 registers, so 8 fit. The same arithmetic in the same order: the
// wide kernel's extra float4 are zeros, whose squares add nothing.
#define RN_THREADS 256
#define RN_VEC 8
#define RN_VEC_NARROW 5
// 8 blocks of 256 where an SM holds 2048 threads; sm_86 / sm_89 hold 1536 (6)
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 860 || __CUDA_ARCH__ == 870 || __CUDA_ARCH__ == 890)
#define RN_NARROW_MIN_BLOCKS 6
#else
#define RN_NARROW_MIN_BLOCKS 8
#endif

template <int VEC>
__device__ __forceinline__ void rmsnorm_rows(float* out, __half* outHalf, const float* x, const float* __restrict__ w, float eps, int dim,
                                             const int* __restrict__ perm) {
  __shared__ float scratch[32];
  extern __shared__ float rowOut[];  // perm: the finished row
  pdl_wait();
  pdl_launch_dependents();
  const int n4 = dim >> 2;
  const float4* xr = reinterpret_cast<const float4*>(x + (size_t)blockIdx.x * dim);
  float4 v[VEC];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    const int i = threadIdx.x + j * RN_THREADS;
    v[j] = i < n4 ? xr[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    ss += v[j].x * v[j].x + v[j].y * v[j].y + v[j].z * v[j].z + v[j].w * v[j].w;
  }
  ss = block_sum(ss, scratch);
  const float r = rsqrtf(ss / dim + eps);
  float4* orow = out ? reinterpret_cast<float4*>(out + (size_t)blockIdx.x * dim) : nullptr;
  const float4* w4 = reinterpret_cast<const float4*>(w);
  __half* hrow = outHalf ? outHalf + (size_t)blockIdx.x * dim : nullptr;
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    const int i = threadIdx.x + j * RN_THREADS;
    if (i >= n4) break;
    const float4 g = w4[i];
    const float4 o = make_float4(v[j].x * r * g.x, v[j].y * r * g.y, v[j].z * r * g.z, v[j].w * r * g.w);
    if (orow) orow[i] = o;
    if (perm) reinterpret_cast<float4*>(rowOut)[i] = o;
    else if (outHalf) store_half4(hrow + 4 * i, o);
  }
  if (!perm) return;
  __syncthreads();
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    const int i = threadIdx.x + j * RN_THREADS;
    if (i >= n4) break;
    store_gathered_half4(hrow, rowOut, perm, i);
  }
}

extern "C" __global__ void __launch_bounds__(RN_THREADS) rmsnorm_rows_f32(float* out, __half* outHalf, const float* x,
                                                                         const float* __restrict__ w, float eps, int dim,
                                                                         const int* __restrict__ perm) {
  rmsnorm_rows<RN_VEC>(out, outHalf, x, w, eps, dim, perm);
}
extern "C" __global__ void __launch_bounds__(RN_THREADS, RN_NARROW_MIN_BLOCKS) rmsnorm_rows_f32_narrow(float* out, __half* outHalf, const float* x,
                                                                                   const float* __restrict__ w, float eps, int dim,
                                                                                   const int* __restrict__ perm) {
  rmsnorm_rows<RN_VEC_NARROW>(out, outHalf, x, w, eps, dim, perm);
}
