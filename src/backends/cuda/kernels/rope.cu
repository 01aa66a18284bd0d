// Rotary embedding of rows at consecutive positions startPos + t, in place (rope.cuh's convention and
// rounding). One thread per (row t, pair i, chunk of ROPE_HEADS heads): the f64 angle once, then the
// chunk's pairs i loaded together and rotated by it. (One thread per (head, pair), each with its own f64
// pow and sincos, took 0.1 ms a launch at 2048 rows of 13B on an H200; one per (row, pair) over all 40
// heads left too few loads in flight.)
// x: [rows, rowStride] f32 (heads*headDim used). Grid: x covers rows · headDim/2 threads, y = ⌈heads / ROPE_HEADS⌉.
#include "common.cuh"
#include "rope.cuh"

#define ROPE_HEADS 8

// pairs (i, i + headDim/2) of the chunk's first hn ≤ ROPE_HEADS heads of one row (p: the chunk's first head), loaded together
__device__ __forceinline__ void load_chunk_pairs(const float* p, int headDim, int i, int hn, float (&a)[ROPE_HEADS], float (&b)[ROPE_HEADS]) {
#pragma unroll
  for (int h = 0; h < ROPE_HEADS; ++h)
    if (h < hn) {
      a[h] = p[h * headDim + i];
      b[h] = p[h * headDim + i + (headDim >> 1)];
    }
}

// those pairs rotated by (c, s) and stored back in f32 (rope.cuh's rounding)
__device__ __forceinline__ void store_rotated_pairs(float* p, int headDim, int i, int hn, const float (&a)[ROPE_HEADS], const float (&b)[ROPE_HEADS],
                                                    double c, double s) {
#pragma unroll
  for (int h = 0; h < ROPE_HEADS; ++h)
    if (h < hn) {
      p[h * headDim + i] = (float)(a[h] * c - b[h] * s);
      p[h * headDim + i + (headDim >> 1)] = (float)(b[h] * c + a[h] * s);
    }
}

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
  load_chunk_pairs(p, headDim, i, hn, a, b);
  store_rotated_pairs(p, headDim, i, hn, a, b, c, s);
}

// A prompt chunk's rotary embedding and KV-cache write in one pass (CudaBackend.ropeKv): q rotated in place as
// rope_f32 does; k rotated and written as fp16 into the cache at positions startPos + t, v written as fp16, as
// kv_write does, the same bits as rope_f32 + rope_f32 + kv_write (k itself is left unrotated: only the cache holds
// it rotated). Saves k's f32 write and re-read and two launches per layer.
// Grid: x covers rows · headDim/2 threads; y = ⌈heads / ROPE_HEADS⌉ chunks of q heads, then ⌈kvHeads / ROPE_HEADS⌉
// of k heads, then as many of v heads. q: [rows, heads·headDim], k, v: [rows, kvHeads·headDim] f32; kc, vc: one
// layer's cache [maxSeq, kvHeads·headDim] fp16. Positions past maxSeq are dropped (the host refuses them first).
extern "C" __global__ void rope_kv_f32(float* q, const float* k, const float* v, __half* __restrict__ kc, __half* __restrict__ vc, int heads,
                                       int kvHeads, int headDim, float theta, int pos_imm, int rows, int maxSeq) {
  const int half_d = headDim >> 1;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= rows * half_d) return;
  const int t = idx / half_d, i = idx - t * half_d, pos = pos_imm + t;
  const int qChunks = (heads + ROPE_HEADS - 1) / ROPE_HEADS, kvChunks = (kvHeads + ROPE_HEADS - 1) / ROPE_HEADS;
  const int chunk = blockIdx.y, kind = chunk < qChunks ? 0 : chunk < qChunks + kvChunks ? 1 : 2;  // q, k, v
  const int h0 = (kind == 0 ? chunk : kind == 1 ? chunk - qChunks : chunk - qChunks - kvChunks) * ROPE_HEADS;
  const int hn = min(ROPE_HEADS, (kind == 0 ? heads : kvHeads) - h0), width = kvHeads * headDim;
  if (kind > 0 && pos >= maxSeq) return;
  const float* src = kind == 0 ? q + (size_t)t * heads * headDim : (kind == 1 ? k : v) + (size_t)t * width;
  src += (size_t)h0 * headDim;
  float a[ROPE_HEADS], b[ROPE_HEADS];
  load_chunk_pairs(src, headDim, i, hn, a, b);
  if (kind == 2) {
    __half* dst = vc + (size_t)pos * width + (size_t)h0 * headDim;
#pragma unroll
    for (int h = 0; h < ROPE_HEADS; ++h)
      if (h < hn) {
        dst[h * headDim + i] = __float2half_rn(a[h]);
        dst[h * headDim + i + half_d] = __float2half_rn(b[h]);
      }
    return;
  }
  double c, s;
  rope_cos_sin(i, headDim, theta, pos, c, s);
  if (kind == 0) {
    store_rotated_pairs(q + (size_t)t * heads * headDim + (size_t)h0 * headDim, headDim, i, hn, a, b, c, s);
    return;
  }
  __half* dst = kc + (size_t)pos * width + (size_t)h0 * headDim;
#pragma unroll
  for (int h = 0; h < ROPE_HEADS; ++h)
    if (h < hn) {
      dst[h * headDim + i] = __float2half_rn((float)(a[h] * c - b[h] * s));
      dst[h * headDim + i + half_d] = __float2half_rn((float)(b[h] * c + a[h] * s));
    }
}

// The (cos, sin) of pair i at positions pos0 + m, m < rows: tab[m · headDim/2 + i] (rope_cos_sin's values), which
// gemm_rs_256_qkv_rope's epilogue (f64) or _rope32's (rounded to f32) reads for every layer of a prompt chunk.
// Grid: x covers rows · headDim/2 threads.
template <typename CS>
__device__ __forceinline__ void rope_table(CS* __restrict__ tab, int headDim, float theta, int pos0, int rows) {
  const int half_d = headDim >> 1, idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= rows * half_d) return;
  const int m = idx / half_d, i = idx - m * half_d;
  double c, s;
  rope_cos_sin(i, headDim, theta, pos0 + m, c, s);
  tab[idx] = CS{static_cast<decltype(CS::x)>(c), static_cast<decltype(CS::x)>(s)};
}
extern "C" __global__ void rope_table_f64(double2* __restrict__ tab, int headDim, float theta, int pos0, int rows) {
  rope_table(tab, headDim, theta, pos0, rows);
}
extern "C" __global__ void rope_table_f32(float2* __restrict__ tab, int headDim, float theta, int pos0, int rows) {
  rope_table(tab, headDim, theta, pos0, rows);
}
