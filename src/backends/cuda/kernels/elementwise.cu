// Elementwise ops over n = rows * cols f32 values.
//   swiglu:   out[i] = silu(gate[i]) * up[i],  silu(g) = g / (1 + e^-g)
//   add:      x[i] += y[i]
//   add_bias: y[t, j] += float(bias[j])      (bias: [cols] fp16)
#include "common.cuh"

extern "C" __global__ void swiglu_f32(float* __restrict__ out, const float* __restrict__ gate,
                                      const float* __restrict__ up, int n) {
  pdl_wait();
  pdl_launch_dependents();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.f + expf(-g)) * up[i];
  }
}

// SwiGLU of prompt rows, float4 at a time (n % 4 == 0), with the fused gate/up GEMMs' arithmetic (silu_mul); where
// outHalf is not null also the fp16 copy that down_proj's tensor-core GEMM reads (as rmsnorm_rows_f32 does).
extern "C" __global__ void swiglu_rows_f32(float* __restrict__ out, __half* __restrict__ outHalf, const float* __restrict__ gate,
                                           const float* __restrict__ up, int n) {
  pdl_wait();
  pdl_launch_dependents();
  const int n4 = n >> 2;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
    const float4 g = reinterpret_cast<const float4*>(gate)[i], u = reinterpret_cast<const float4*>(up)[i];
    const float4 o = make_float4(silu_mul(g.x, u.x), silu_mul(g.y, u.y), silu_mul(g.z, u.z), silu_mul(g.w, u.w));
    reinterpret_cast<float4*>(out)[i] = o;
    if (outHalf) store_half4(outHalf + 4 * (size_t)i, o);
  }
}

extern "C" __global__ void add_f32(float* x, const float* __restrict__ y, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] += y[i];
}

extern "C" __global__ void add_bias_f16(float* y, const __half* __restrict__ bias, int cols, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    y[i] += __half2float(bias[i % cols]);
}
