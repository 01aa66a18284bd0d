// Rotary embedding, Hugging Face rotate-half convention, in place.
// For head h, pair (i, i + d/2), pos = startPos + t:
//   angle = f32(pos * f32(theta^(-2i/d)));  (a, b) -> (a cos - b sin, b cos + a sin)
// The frequency and the angle are rounded to f32 exactly like the CPU reference; cos/sin in f64.
// x: [rows, rowStride] f32 (heads*headDim used)
#include "common.cuh"

extern "C" __global__ void rope_f32(float* x, int rowStride, int heads, int headDim, float theta,
                                    const int* pos_ptr, int pos_imm) {
  const int half_d = headDim >> 1;
  const int t = blockIdx.y;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= heads * half_d) return;
  const int h = idx / half_d, i = idx - h * half_d;
  const int pos = read_pos(pos_ptr, pos_imm) + t;
  const float inv_freq = (float)(1.0 / pow((double)theta, (2.0 * i) / headDim));
  const float angle = (float)pos * inv_freq;
  double s, c;
  sincos((double)angle, &s, &c);
  float* p = x + (size_t)t * rowStride + (size_t)h * headDim;
  const float a = p[i], b = p[i + half_d];
  p[i] = (float)(a * c - b * s);
  p[i + half_d] = (float)(b * c + a * s);
}
