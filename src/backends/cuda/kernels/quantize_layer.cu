// Elementwise pieces of one decoder layer's forward for `qllama quantize --backend cuda`, with the
// formulas of the CPU reference (src/backends/cpu/kernels/elementwise.ts). The GEMM inputs are fp16
// (the tensor-core kernel's operands); the residual stream, q and k for rotary and the linears'
// outputs stay f32. Causal attention is attn_flash_<D> (attention_flash.cu).
#include "common.cuh"

// out[t, :] = half(x[t, :] / sqrt(mean(x[t, :]²) + eps) · w);  one block per row t
extern "C" __global__ void __launch_bounds__(256)
qz_rmsnorm_h(__half* __restrict__ out, const float* __restrict__ x, const float* __restrict__ w, float eps, int dim) {
  __shared__ float scratch[32];
  const float* xr = x + (size_t)blockIdx.x * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, scratch);
  const float inv = 1.f / sqrtf(ss / dim + eps);
  __half* o = out + (size_t)blockIdx.x * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = __float2half_rn(xr[i] * inv * w[i]);
}

// Rotary embedding in place, HF pairs (i, i + D/2) of every head, positions 0..rows-1:
// angle = f32(t · f32(theta^(−2i/D))), as the CPU's inverse-frequency table; one thread per (t, i), all heads.
extern "C" __global__ void qz_rope(float* __restrict__ x, int rows, int heads, int headDim, float theta, int stride) {
  const int half_d = headDim / 2;
  const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (size_t)rows * half_d) return;
  const int t = (int)(idx / half_d), i = (int)(idx % half_d);
  const float inv = (float)(1.0 / pow((double)theta, (2.0 * i) / headDim));
  const float angle = (float)t * inv;
  double s, c;
  sincos((double)angle, &s, &c);
  float* row = x + (size_t)t * stride;
  for (int h = 0; h < heads; ++h) {
    float* p = row + h * headDim;
    const double a = p[i], b = p[i + half_d];
    p[i] = (float)(a * c - b * s);
    p[i + half_d] = (float)(b * c + a * s);
  }
}

extern "C" __global__ void qz_to_half(__half* __restrict__ out, const float* __restrict__ in, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) out[i] = __float2half_rn(in[i]);
}

extern "C" __global__ void qz_to_float(float* __restrict__ out, const __half* __restrict__ in, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) out[i] = __half2float(in[i]);
}

// out = half(silu(gate) · up), silu(v) = v / (1 + e^−v)
extern "C" __global__ void qz_swiglu_h(__half* __restrict__ out, const float* __restrict__ gate, const float* __restrict__ up, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float g = gate[i];
    out[i] = __float2half_rn(g / (1.f + expf(-g)) * up[i]);
  }
}

// out[c, t] = in[t, c] for t < rows, 0 for rows ≤ t < cols_out (padding to the GEMM's K multiple);
// in [rows, n] fp16, out [n, ldo] fp16. 32 × 32 tiles through shared memory; block (32, 8).
extern "C" __global__ void qz_transpose_h(__half* __restrict__ out, int ldo, const __half* __restrict__ in, int rows, int n, int colsOut) {
  __shared__ __half tile[32][33];
  const int c0 = blockIdx.x * 32, t0 = blockIdx.y * 32;
  for (int r = threadIdx.y; r < 32; r += 8) {
    const int t = t0 + r, c = c0 + threadIdx.x;
    tile[r][threadIdx.x] = (t < rows && c < n) ? in[(size_t)t * n + c] : __float2half_rn(0.f);
  }
  __syncthreads();
  for (int r = threadIdx.y; r < 32; r += 8) {
    const int c = c0 + r, t = t0 + threadIdx.x;
    if (c < n && t < colsOut) out[(size_t)c * ldo + t] = tile[threadIdx.x][r];
  }
}
