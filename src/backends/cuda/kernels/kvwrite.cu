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
  if ((width & 3) == 0) {  // 4 values a load and a store (the host then sizes the grid for width / 4)
    const float4* k4 = reinterpret_cast<const float4*>(k + (size_t)t * width);
    const float4* v4 = reinterpret_cast<const float4*>(v + (size_t)t * width);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (width >> 2); i += gridDim.x * blockDim.x) {
      store_half4(kc + (size_t)pos * width + 4 * i, k4[i]);
      store_half4(vc + (size_t)pos * width + 4 * i, v4[i]);
    }
    return;
  }
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < width; i += gridDim.x * blockDim.x) {
    kc[(size_t)pos * width + i] = __float2half(k[(size_t)t * width + i]);
    vc[(size_t)pos * width + i] = __float2half(v[(size_t)t * width + i]);
  }
}
