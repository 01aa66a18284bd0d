// Elementwise ops over n = rows * cols f32 values.
//   swiglu:   out[i] = silu(gate[i]) * up[i],  silu(g) = g / (1 + e^-g)
//   add:      x[i] += y[i]
//   add_bias: y[t, j] += float(bias[j])      (bias: [cols] fp16)
#include "common.cuh"

extern "C" __global__ void swiglu_f32(float* __restrict__ out, const float* __restrict__ gate,
                                      const float* __restrict__ up, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.f + expf(-g)) * up[i];
  }
}

extern "C" __global__ void add_f32(float* x, const float* __restrict__ y, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] += y[i];
}

extern "C" __global__ void add_bias_f16(float* y, const __half* __restrict__ bias, int cols, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    y[i] += __half2float(bias[i % cols]);
}
