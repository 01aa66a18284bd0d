// Rotary embedding of rows at consecutive positions startPos + t, in place (rope.cuh's convention and
// rounding). One thread per (row t, pair i, chunk of ROPE_HEADS heads): the f64 angle once, then the
// chunk's pairs i loaded together and rotated by it. (One thread per (head, pair), each with its own f64
// pow and sincos, took 0.1 ms a launch at 2048 rows of 13B on an H200; one per (row, pair) over all 40
// heads left too few loads in flight.)
// x: [rows, rowStride] f32 (heads*headDim used). Grid: x covers rows · headDim/2 threads, y = ⌈heads / ROPE_HEADS⌉.
#include "common.cuh"
#include "rope.cuh"

#define ROPE_HEADS 8

extern "C" __global__ void rope_f32(float* x, int rowStride, int heads, int headDim, float theta,
                                    const int* pos_ptr, int pos_imm, int rows) {
  const int half_d = headDim >> 1;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= rows * half_d) return;
  const int t = idx / half_d, i = idx - t * half_d;
  double c, s;
  rope_cos_sin(i, headDim, theta, read_pos(pos_ptr, pos_imm) + t, c, s);
  const int h0 = blockIdx.y * ROPE_HEADS, hn = min(ROPE_HEADS, heads - h0);
  float* p = x + (size_t)t * rowStride + (size_t)h0 * headDim;
  float a[ROPE_HEADS], b[ROPE_HEADS];
#pragma unroll
  for (int h = 0; h < ROPE_HEADS; ++h)
    if (h < hn) {
      a[h] = p[h * headDim + i];
      b[h] = p[h * headDim + i + half_d];
    }
#pragma unroll
  for (int h = 0; h < ROPE_HEADS; ++h)
    if (h < hn) {
      p[h * headDim + i] = (float)(a[h] * c - b[h] * s);
      p[h * headDim + i + half_d] = (float)(b[h] * c + a[h] * s);
    }
}
