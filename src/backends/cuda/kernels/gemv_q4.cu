// GPTQ 4-bit GEMV for one token, reading the weights once with 16-byte loads.
//   y[n] += Σ_k s[g, n] · (q[k, n] − z[g, n]) · x[perm[k]],   g = k / gs,  z = stored zero + 1
// qweight [K/8, N] u32 (8 values of k per word, LSB first), its rows reordered at upload for act-order
// models so group g is rows g*gs..(g+1)*gs−1 (perm maps a reordered row to its x index; null = identity);
// scales [G, N] fp16; qzeros [G, N/8] u32. y is zeroed by the host first, or is the residual stream.
// Block: 4 warps. A lane owns 4 adjacent columns, so one packed row is one 16-byte load per lane and
// 512 contiguous bytes per warp; the block covers 128 columns and warp w the k slice of 128 values
// (16 packed rows) number blockIdx.y*4 + w. The 4 slices are summed in shared memory and added to y
// with one atomic per column (split-K keeps every SM busy for the narrow 5120-wide outputs).
// Dequantization in half2: OR-ing a nibble into the mantissa of 1024.0 gives 1024 + q exactly, so
// (1024 + q) − (1024 + z) = q − z with one HSUB2; x is staged interleaved to match the nibble pairs.
#include "common.cuh"

// Weights are read once: skip L1 so they don't evict x; volatile keeps all 16 loads issued up front.
__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// 8 weights of one column (one u32) dotted with x pairs (x0,x4) (x1,x5) (x2,x6) (x3,x7)
__device__ __forceinline__ float dot8_q4(uint32_t w, half2 xa, half2 xb, half2 xc, half2 xd, half2 z1024, half2 z64) {
  const uint32_t MAGIC = 0x64006400u;       // half2(1024, 1024)
  const half2 SIXTEENTH = __halves2half2(__ushort_as_half(0x2C00), __ushort_as_half(0x2C00));
  const half2 a = __hsub2(u32_as_half2((w & 0x000F000Fu) | MAGIC), z1024);                 // q0, q4
  const half2 b = __hfma2(u32_as_half2((w & 0x00F000F0u) | MAGIC), SIXTEENTH, z64);        // q1, q5 (×16 in mantissa)
  const uint32_t w2 = w >> 8;
  const half2 c = __hsub2(u32_as_half2((w2 & 0x000F000Fu) | MAGIC), z1024);                // q2, q6
  const half2 d = __hfma2(u32_as_half2((w2 & 0x00F000F0u) | MAGIC), SIXTEENTH, z64);       // q3, q7
  half2 acc = __hmul2(a, xa);
  acc = __hfma2(b, xb, acc);
  acc = __hfma2(c, xc, acc);
  acc = __hfma2(d, xd, acc);
  const float2 f = __half22float2(acc);
  return f.x + f.y;
}

// RPG: packed rows per group inside a 16-row slice (16 when gs % 128 == 0, else gs / 8).
template <int RPG>
__device__ __forceinline__ void gemv_q4(float* y, const float* __restrict__ x, const uint4* __restrict__ qw,
                                        const __half* __restrict__ scales, const uint32_t* __restrict__ qzeros,
                                        const int* __restrict__ perm, int K, int N, int gs) {
  __shared__ __align__(16) half2 xs[4][16][4];
  __shared__ float red[4][128];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int slice = blockIdx.y * 4 + warp;
  const int k0 = slice * 128;
  const int n0 = blockIdx.x * 128 + lane * 4;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  const bool live = k0 < K && n0 < N;
  const int rowVecs = N >> 2;  // uint4 per packed row
  uint4 w[16];
  uint2 sraw[16 / RPG];
  uint32_t zraw[16 / RPG];
  if (live) {
    // Weights first: their DRAM round trip overlaps the x gather below instead of following it.
    const uint4* src = qw + (size_t)(k0 >> 3) * rowVecs + (n0 >> 2);
#pragma unroll
    for (int r = 0; r < 16; ++r) w[r] = ld_stream(src + (size_t)r * rowVecs);
#pragma unroll
    for (int gi = 0; gi < 16 / RPG; ++gi) {
      const int g = (k0 + gi * RPG * 8) / gs;
      sraw[gi] = __ldg(reinterpret_cast<const uint2*>(scales + (size_t)g * N + n0));
      zraw[gi] = __ldg(qzeros + (size_t)g * (N >> 3) + (n0 >> 3));
    }
    // Pin: no arithmetic may move above this point, so all 16 loads are in flight before the first use.
#pragma unroll
    for (int r = 0; r < 16; ++r) asm volatile("" : "+r"(w[r].x), "+r"(w[r].y), "+r"(w[r].z), "+r"(w[r].w));
  }
  if (k0 < K) {
    if (lane < 16) {
      float v[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int k = k0 + lane * 8 + j;
        v[j] = x[perm ? perm[k] : k];
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) xs[warp][lane][j] = __floats2half2_rn(v[j], v[j + 4]);
    }
    __syncwarp();
    if (live) {
#pragma unroll
      for (int gi = 0; gi < 16 / RPG; ++gi) {
        const float2 s01 = __half22float2(u32_as_half2(sraw[gi].x)), s23 = __half22float2(u32_as_half2(sraw[gi].y));
        const float s[4] = {s01.x, s01.y, s23.x, s23.y};
        const uint32_t zw = zraw[gi] >> ((n0 & 7) * 4);
        half2 z1024[4], z64[4];
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const float z = (float)(((zw >> (4 * c)) & 15u) + 1u);
          z1024[c] = __float2half2_rn(1024.f + z);
          z64[c] = __float2half2_rn(-(64.f + z));
        }
        float gacc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int rr = 0; rr < RPG; ++rr) {
          const int r = gi * RPG + rr;
          const uint4 xv = *reinterpret_cast<const uint4*>(&xs[warp][r][0]);
          const half2 xa = u32_as_half2(xv.x), xb = u32_as_half2(xv.y), xc = u32_as_half2(xv.z), xd = u32_as_half2(xv.w);
          gacc[0] += dot8_q4(w[r].x, xa, xb, xc, xd, z1024[0], z64[0]);
          gacc[1] += dot8_q4(w[r].y, xa, xb, xc, xd, z1024[1], z64[1]);
          gacc[2] += dot8_q4(w[r].z, xa, xb, xc, xd, z1024[2], z64[2]);
          gacc[3] += dot8_q4(w[r].w, xa, xb, xc, xd, z1024[3], z64[3]);
        }
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[c] = fmaf(gacc[c], s[c], acc[c]);
      }
    }
  }
#pragma unroll
  for (int c = 0; c < 4; ++c) red[warp][lane * 4 + c] = acc[c];
  __syncthreads();
  const int n = blockIdx.x * 128 + threadIdx.x;
  if (n < N) atomicAdd(y + n, red[0][threadIdx.x] + red[1][threadIdx.x] + red[2][threadIdx.x] + red[3][threadIdx.x]);
}

#define GEMV_Q4(RPG)                                                                                             \
  extern "C" __global__ void __launch_bounds__(128) gemv_q4_rpg##RPG(                                            \
      float* y, const float* x, const uint4* qw, const __half* scales, const uint32_t* qzeros, const int* perm,  \
      int K, int N, int gs) {                                                                                    \
    gemv_q4<RPG>(y, x, qw, scales, qzeros, perm, K, N, gs);                                                      \
  }
GEMV_Q4(16)
GEMV_Q4(8)
GEMV_Q4(4)

// Act-order repack at upload: out row k' takes in row perm[k'] (nibble granularity).
//   out[k'/8, n] nibble (k' % 8) = in[perm[k'] / 8, n] nibble (perm[k'] % 8)
extern "C" __global__ void q4_reorder_rows(uint32_t* __restrict__ out, const uint32_t* __restrict__ in,
                                          const int* __restrict__ perm, int N) {
  const int r = blockIdx.y;
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  uint32_t word = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int k = perm[r * 8 + j];
    const uint32_t q = (in[(size_t)(k >> 3) * N + n] >> ((k & 7) * 4)) & 15u;
    word |= q << (4 * j);
  }
  out[(size_t)r * N + n] = word;
}
