// GPTQ GEMV for any width (2, 3, 4, 8 bits) and any group map, one token: the simple path.
//   y[n] += Σ_{k in split} s[g, n] · (q[k, n] − z[g, n]) · x[k],   g = gidx[k],  z = stored zero + 1
// qweight: column n is a stream of K values of `bits` bits along rows of N words (3-bit values may
// straddle words); qzeros [G, N*bits/32] packed the same way along n. One thread per column,
// blockIdx.y splits K; partial sums are added atomically into y (zeroed by the host or residual).
#include "common.cuh"

extern "C" __global__ void gemv_qn(float* y, const float* __restrict__ x, const uint32_t* __restrict__ qw,
                                   const __half* __restrict__ scales, const uint32_t* __restrict__ qzeros,
                                   const int* __restrict__ gidx, int K, int N, int bits, int kPerSplit) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  const int k0 = blockIdx.y * kPerSplit, k1 = min(K, k0 + kPerSplit);
  const size_t zeroWords = ((size_t)N * bits) >> 5;
  float acc = 0.f;
  for (int k = k0; k < k1; ++k) {
    const int g = gidx[k];
    const float q = (float)extract_bits(qw + n, N, (uint32_t)k * bits, bits);
    const float z = (float)(extract_bits(qzeros + g * zeroWords, 1, (uint32_t)n * bits, bits) + 1u);
    acc = fmaf(__half2float(scales[(size_t)g * N + n]) * (q - z), __ldg(x + k), acc);
  }
  atomicAdd(y + n, acc);
}
