// Embedding lookup.  out[t, i] = float(table[ids[t], i])
// table: [vocab, dim] fp16 · ids: [rows] int32 on the device · out: [rows, dim] f32
// An id outside the vocabulary writes NaN so the error is visible (the host checks eager calls).
#include "common.cuh"

extern "C" __global__ void embed_f16(float* __restrict__ out, const __half* __restrict__ table,
                                     const int* __restrict__ ids, int dim, int vocab) {
  const int t = blockIdx.y;
  const int id = ids[t];
  const bool ok = id >= 0 && id < vocab;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < dim; i += gridDim.x * blockDim.x)
    out[(size_t)t * dim + i] = ok ? __half2float(table[(size_t)id * dim + i]) : __int_as_float(0x7fc00000);
}
