// Rotary embedding of rows at consecutive positions startPos + t, in place: rope_pair (rope.cuh) on
// every (head, pair) of every row.
// x: [rows, rowStride] f32 (heads*headDim used). Grid: x covers heads·headDim/2 pairs, y = row.
#include "common.cuh"
#include "rope.cuh"

extern "C" __global__ void rope_f32(float* x, int rowStride, int heads, int headDim, float theta,
                                    const int* pos_ptr, int pos_imm) {
  const int t = blockIdx.y;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= heads * (headDim >> 1)) return;
  rope_pair(x + (size_t)t * rowStride, idx, headDim, theta, read_pos(pos_ptr, pos_imm) + t);
}
