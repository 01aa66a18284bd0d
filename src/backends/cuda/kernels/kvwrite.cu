// KV cache write: store rows of K and V at positions startPos.. of one layer, as fp16.
//   kc[(startPos + t) * width + i] = half(k[t, i]);  same for v      (width = kvHeads * headDim)
// kc, vc: one layer's cache [maxSeq, width] fp16 · k, v: [rows, width] f32
// Positions past maxSeq are dropped (the host refuses them before launching eager calls).
#include "common.cuh"

extern "C" __global__ void kv_write(__half* __restrict__ kc, __half* __restrict__ vc, const float* __restrict__ k,
                                    const float* __restrict__ v, int width, int maxSeq, const int* pos_ptr, int pos_imm) {
  const int t = blockIdx.y;
  const int pos = read_pos(pos_ptr, pos_imm) + t;
  if (pos >= maxSeq) return;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < width; i += gridDim.x * blockDim.x) {
    kc[(size_t)pos * width + i] = __float2half(k[(size_t)t * width + i]);
    vc[(size_t)pos * width + i] = __float2half(v[(size_t)t * width + i]);
  }
}
