// Gathers of output columns at upload, for a linear whose outputs the caller reorders (linearUpload.ts,
// outputOrder): output n of the result is output cols[n] of the file's layer.
// gather_cols<T>: out[r, n] = in[r, cols[n]] of a row-major matrix [rows, N] of T. GPTQ's qweight
// [K·bits/32, N] (u32) packs along the input dim, so each column is one output and the gather moves
// whole words; its scales [G, N] (u16: fp16 bits) gather the same way. Grid (ceil(N / 256), rows),
// 256 threads: consecutive threads read and write one row.
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void gather_cols(T* __restrict__ out, const T* __restrict__ in, const int* __restrict__ cols, int N) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  const size_t row = (size_t)blockIdx.y * N;
  out[row + n] = in[row + cols[n]];
}

// The host looks the entry points up by these names (linearUpload.ts).
extern "C" __global__ void u32_gather_cols(uint32_t* __restrict__ out, const uint32_t* __restrict__ in,
                                           const int* __restrict__ cols, int N) {
  gather_cols(out, in, cols, N);
}

extern "C" __global__ void u16_gather_cols(uint16_t* __restrict__ out, const uint16_t* __restrict__ in,
                                           const int* __restrict__ cols, int N) {
  gather_cols(out, in, cols, N);
}

// Values of `bits`-bit streams packed along each row, LSB first (GPTQ qzeros [G, N·bits/32]), gathered
// within the row: value n of out's row = value cols[n] of in's row. bits 2, 4 or 8 (values never straddle
// words). Grid (ceil(words / 256), rows): a thread writes one word, 32 / bits values.
extern "C" __global__ void packed_gather_cols(uint32_t* __restrict__ out, const uint32_t* __restrict__ in,
                                              const int* __restrict__ cols, int N, int bits) {
  const int per = 32 / bits, words = N / per;
  const int w = blockIdx.x * blockDim.x + threadIdx.x;
  if (w >= words) return;
  const uint32_t mask = (1u << bits) - 1u;
  const uint32_t* src = in + (size_t)blockIdx.y * words;
  uint32_t v = 0;
  for (int i = 0; i < per; ++i) {
    const int c = cols[w * per + i];
    v |= ((src[c / per] >> ((c % per) * bits)) & mask) << (i * bits);
  }
  out[(size_t)blockIdx.y * words + w] = v;
}

// out[i] = in[idx[i]], i < n: a vector in a linear's act-order row order (the input norm's weight, gemvBatch.ts).
extern "C" __global__ void f32_gather(float* __restrict__ out, const float* __restrict__ in, const int* __restrict__ idx, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[idx[i]];
}

// 2- and 3-bit GPTQ weights widened to the q4 layout at upload (linearUpload.ts), so they run every 4-bit
// kernel: out [K/8, N] u32, word (r, n) = values k = 8r .. 8r+7 of column n as nibbles, LSB first, from
// GPTQ's stream of K `bits`-bit values per column along rows of N words (3-bit values straddle words).
// Grid (ceil(N / 256), K / 8), 256 threads.
extern "C" __global__ void gptq_widen_q4(uint32_t* __restrict__ out, const uint32_t* __restrict__ qw, int N, int bits) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  const uint32_t k0 = blockIdx.y * 8u;
  uint32_t w = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) w |= extract_bits(qw + n, N, (k0 + j) * bits, bits) << (4 * j);
  out[(size_t)blockIdx.y * N + n] = w;
}

// Their zero points the same way: out [G, N/8] u32 nibbles from qzeros [G, N·bits/32] packed along each row.
// Grid (ceil(N / 8 / 256), G), 256 threads: a thread writes one word, 8 zeros.
extern "C" __global__ void gptq_widen_zeros_q4(uint32_t* __restrict__ out, const uint32_t* __restrict__ qz, int N, int bits) {
  const int w = blockIdx.x * blockDim.x + threadIdx.x;
  if (w >= N / 8) return;
  const uint32_t* row = qz + (size_t)blockIdx.y * ((size_t)N * bits / 32);
  uint32_t v = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) v |= extract_bits(row, 1, (uint32_t)(8 * w + j) * bits, bits) << (4 * j);
  out[(size_t)blockIdx.y * (N / 8) + w] = v;
}

// Act-order repack at upload (linearUpload.ts): out row k' takes in row perm[k'], for qweight packed along k
// with 32 / BITS values per word (q4: nibbles, q8: bytes), so each group's rows end up contiguous:
//   out[k' / P, n] value (k' % P) = in[perm[k'] / P, n] value (perm[k'] % P),   P = 32 / BITS
// Grid (ceil(N / 256), K / P), 256 threads.
template <int BITS>
__device__ __forceinline__ void reorder_packed_rows(uint32_t* __restrict__ out, const uint32_t* __restrict__ in, const int* __restrict__ perm, int N) {
  constexpr int P = 32 / BITS;
  constexpr uint32_t MASK = (1u << BITS) - 1u;
  const int r = blockIdx.y;
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  uint32_t word = 0;
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int k = perm[r * P + j];
    word |= ((in[(size_t)(k / P) * N + n] >> ((k % P) * BITS)) & MASK) << (BITS * j);
  }
  out[(size_t)r * N + n] = word;
}
extern "C" __global__ void q4_reorder_rows(uint32_t* __restrict__ out, const uint32_t* __restrict__ in, const int* __restrict__ perm, int N) {
  reorder_packed_rows<4>(out, in, perm, N);
}
extern "C" __global__ void q8_reorder_rows(uint32_t* __restrict__ out, const uint32_t* __restrict__ in, const int* __restrict__ perm, int N) {
  reorder_packed_rows<8>(out, in, perm, N);
}
