// Batched decode (continuous batching): row t of the operands is the next token of sequence t, which
// has its own KV cache seqs[t] and position pos[t]. One launch per op covers every row (grid y or z =
// row). seqs and pos live in small device tables the host refreshes only when they change
// (batchTables.ts: positions once per step, the cache table when the batch's sequences change).
// Caches: [layers, maxSeq, width] fp16 for K and for V (width = kvHeads · headDim); each sequence's
// cache may have its own maxSeq, so the layer offset is per row.
#include "common.cuh"
#include "attention.cu"  // attn_decode (attention.cu is #pragma once: the unity build includes it first)
#include "rope.cuh"      // rope_pair

struct BatchSeq {
  __half* k;   // [layers, maxSeq, width]
  __half* v;
  int maxSeq;
  int pad;
};
static_assert(sizeof(BatchSeq) == 24, "BatchSeq layout is mirrored by batchTables.ts (BATCH_SEQ_BYTES)");

// Rotary embedding of row t at position pos[t]: rope_pair (rope.cuh), as rope_f32 (rope.cu).
// x: [rows, rowStride] f32 (heads·headDim used). Grid: x covers heads·headDim/2 pairs, y = row.
extern "C" __global__ void rope_rows_f32(float* x, int rowStride, int heads, int headDim, float theta, const int* pos) {
  pdl_wait();
  pdl_launch_dependents();
  const int t = blockIdx.y;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= heads * (headDim >> 1)) return;
  rope_pair(x + (size_t)t * rowStride, idx, headDim, theta, pos[t]);
}

// Both at once (a batched step's rope of q and k and their KV write, BatchOps.ropeKvRows): row t of q [rows, qCols]
// (heads·headDim used) and of k [rows, width] rotated at pos[t] as rope_rows_f32 rotates them, and the rotated k
// and v (as fp16) written into seqs[t]'s cache at pos[t] as kv_write_rows writes them. A thread rotates one pair
// of q and, below the k pairs, one of k and stores that pair of k and of v. Grid: x covers heads·headDim/2 pairs,
// y = row.
extern "C" __global__ void rope_kv_rows(float* q, int qCols, int heads, float* k, const float* __restrict__ v, int kvHeads, int headDim,
                                        float theta, const int* __restrict__ pos, const BatchSeq* __restrict__ seqs, int layer) {
  pdl_wait();
  pdl_launch_dependents();
  const int t = blockIdx.y;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  const int half_d = headDim >> 1, p = pos[t];
  if (idx < heads * half_d) rope_pair(q + (size_t)t * qCols, idx, headDim, theta, p);
  if (idx >= kvHeads * half_d) return;
  const int width = kvHeads * headDim;
  const int h = idx / half_d, i = idx - h * half_d;
  float* kr = k + (size_t)t * width + (size_t)h * headDim;
  double c, sn;
  rope_cos_sin(i, headDim, theta, p, c, sn);
  rope_rotate(kr, i, half_d, c, sn);
  const BatchSeq s = seqs[t];
  if (p < 0 || p >= s.maxSeq) return;
  const size_t at = ((size_t)layer * s.maxSeq + p) * width + (size_t)h * headDim + i;
  const float* vr = v + (size_t)t * width + (size_t)h * headDim;
  s.k[at] = __float2half(kr[i]);
  s.k[at + half_d] = __float2half(kr[i + half_d]);
  s.v[at] = __float2half(vr[i]);
  s.v[at + half_d] = __float2half(vr[i + half_d]);
}

// KV write of row t of k and v (as fp16) at position pos[t] of layer `layer` in seqs[t]'s cache:
//   K_t[layer, pos[t], i] = half(k[t, i]);  same for v.   k, v: [rows, width] f32
// Positions outside [0, maxSeq) are dropped (the host refuses them first).
extern "C" __global__ void kv_write_rows(const BatchSeq* __restrict__ seqs, const int* __restrict__ pos, int layer,
                                         const float* __restrict__ k, const float* __restrict__ v, int width) {
  pdl_wait();
  pdl_launch_dependents();
  const int t = blockIdx.y;
  const BatchSeq s = seqs[t];
  const int p = pos[t];
  if (p < 0 || p >= s.maxSeq) return;
  const size_t at = ((size_t)layer * s.maxSeq + p) * width;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < width; i += gridDim.x * blockDim.x) {
    s.k[at + i] = __float2half(k[(size_t)t * width + i]);
    s.v[at + i] = __float2half(v[(size_t)t * width + i]);
  }
}

// Decode attention of row t over positions 0..pos[t] of seqs[t]'s cache: attn_decode (attention.cu:
// split along positions, the last block of each (row, head) merging), block (h, split, t), with the
// row's own cache layer. attn_decode takes the live length as pos_imm + t + 1 (rows of one sequence
// at consecutive positions); here every row has its own position, so pos_imm = pos[t] − t.
// q, out: [rows, heads·d] f32 · part: [rows, heads, splits, d+2] f32 · tickets: [rows·heads] u32 (zero)
#define ATTN_ROWS(D)                                                                                             \
  extern "C" __global__ void __launch_bounds__(128, ATTN_MIN_BLOCKS) attn_rows_##D(                               \
      float* out, float* part, unsigned* tickets, const float* q, const BatchSeq* seqs, const int* pos, int layer, \
      int heads, int kvHeads, int splits, float scale) {                                                         \
    const int t = blockIdx.z;                                                                                    \
    const BatchSeq s = seqs[t];                                                                                  \
    const size_t off = (size_t)layer * s.maxSeq * kvHeads * D;                                                   \
    attn_decode<D, AttnNI<D>::value>(out, part, tickets, q, s.k + off, s.v + off, nullptr, pos[t] - t, heads,    \
                                     kvHeads, splits, scale, nullptr);                                           \
  }
ATTN_ROWS(64)
ATTN_ROWS(128)
ATTN_ROWS(256)
