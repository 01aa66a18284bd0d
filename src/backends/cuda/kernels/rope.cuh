// Rotary embedding of one pair, Hugging Face rotate-half convention, in place; shared by rope_f32
// (rope.cu) and rope_rows_f32 (batch_decode.cu) so both round alike. For pair idx of a row, head
// h = idx / (d/2) and i = idx mod d/2, at position pos:
//   angle = f32(pos * f32(theta^(-2i/d)));  (a, b) -> (a cos - b sin, b cos + a sin)
// The frequency and the angle are rounded to f32 exactly like the CPU reference; cos/sin in f64.
// row: [heads, headDim] f32 of one row. rope_f32 (prompt rows) computes the angle once per (row, i) and
// rotates every head with it: the f64 pow and sincos per (head, pair) made it 0.1 ms a launch at 2048 rows.
// (Not a .cu: build-cuda.mjs includes every .cu into one unity build; this reaches it only through
// those two files, and #pragma once keeps it to one copy.)
#pragma once
#include "common.cuh"

// cos and sin of pair i's angle at position pos (f64, from the f32-rounded angle)
__device__ __forceinline__ void rope_cos_sin(int i, int headDim, float theta, int pos, double& c, double& s) {
  const float inv_freq = (float)(1.0 / pow((double)theta, (2.0 * i) / headDim));
  const float angle = (float)pos * inv_freq;
  sincos((double)angle, &s, &c);
}

// rotates pair (i, i + headDim/2) of one head's values p by (c, s)
__device__ __forceinline__ void rope_rotate(float* p, int i, int half_d, double c, double s) {
  const float a = p[i], b = p[i + half_d];
  p[i] = (float)(a * c - b * s);
  p[i + half_d] = (float)(b * c + a * s);
}

__device__ __forceinline__ void rope_pair(float* row, int idx, int headDim, float theta, int pos) {
  const int half_d = headDim >> 1;
  const int h = idx / half_d, i = idx - h * half_d;
  double c, s;
  rope_cos_sin(i, headDim, theta, pos, c, s);
  rope_rotate(row + (size_t)h * headDim, i, half_d, c, s);
}
