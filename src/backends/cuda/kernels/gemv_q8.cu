// GPTQ 8-bit GEMV for one token (the q8 layout: GPTQ's own packing, rows group-contiguous):
//   y[n] (+)= Σ_k s[g, n] · (q[k, n] − z[g, n]) · x[perm[k]],   g = k / gs,  z = stored zero + 1
// qweight [K/4, N] u32 (4 values of k per word, LSB first), its rows reordered at upload for act-order
// layers so group g is rows g·gs .. (g+1)·gs − 1 (perm maps a reordered row to its x index; null =
// identity); scales [G, N] fp16; qzeros [G, N/4] u32 (4 zeros per word).
// Why a kernel of its own: the generic gemv_qn reads one scalar weight per thread and k (13B 8-bit decode
// on the H200: 29.5 tok/s); this one streams 16-byte loads as gemv_q4 does and multiplies with dp4a.
// Grid: x = 128-column tiles, y = K ranges of kPerBlock values (kSplit.ts); 128 threads. A lane owns 4
// adjacent columns, so one packed row (4 k) is one 16-byte load per lane; warp w streams the 32-value units
// (8 packed rows) w, w + 4, ... of the block's K range, two held in registers, the first two loaded
// before griddepcontrol.wait. x is staged once per block as int8 per 32 values (one unit: one step d and
// Σ xq), in natural byte order, gathered through perm for act-order layers. Per unit and column:
//   y += s · d · (Σ q·xq − z · Σ xq)     (Σ q·xq: 8 dp4a of unsigned weight bytes against signed x bytes)
// The 4 warps' sums meet in shared memory; the block adds them into y (zeroed by the host first unless the
// call accumulates): atomically when K is split, plainly when the block is the tile's only K range.
// gemv_q8_r4 does the same for up to 4 rows of x (batched decode), each weight read once for all rows.
#include "gemv_q4.cuh"

// Σ over 4 bytes of unsigned w · signed x, plus c
__device__ __forceinline__ int dp4a_us(uint32_t w, int x, int c) {
  int d;
  asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(w), "r"(x), "r"(c));
  return d;
}

// words of x a block stages per row (4 values each): K ranges of at most 64 slices of 128 (linearLaunch.ts
// Q8_K_SPLIT); gemv_q8_r4 stages half as many per row, for 4 rows (Q8_R4_K_SPLIT: 32 slices)
#define Q8_XS_ROWS 2048

__device__ __forceinline__ void q8_load_unit(uint4 (&w)[8], uint2& s, uint32_t& z, const uint4* wcol, int rowStride, int k,
                                             const __half* scales, const uint32_t* qz, int N, int n0, int gs) {
  const uint4* src = wcol + (size_t)(k >> 2) * rowStride;
#pragma unroll
  for (int r = 0; r < 8; ++r) w[r] = ld_stream(src + r * rowStride);
  const int g = k / gs;
  s = __ldg(reinterpret_cast<const uint2*>(scales + (size_t)g * N + n0));
  z = __ldg(qz + (size_t)g * (N >> 2) + (n0 >> 2));
}

__device__ __forceinline__ void q8_mul_unit(float (&acc)[4], const uint4 (&w)[8], uint2 s, uint32_t z, const uint32_t* xr, int xsum, float d) {
  const float2 s01 = __half22float2(u32_as_half2(s.x)), s23 = __half22float2(u32_as_half2(s.y));
  const float sc[4] = {s01.x, s01.y, s23.x, s23.y};
  int iacc[4];
#pragma unroll
  for (int c = 0; c < 4; ++c) iacc[c] = -(int)(((z >> (8 * c)) & 255u) + 1u) * xsum;
#pragma unroll
  for (int r = 0; r < 8; ++r) {
    const int xv = (int)xr[r];
    iacc[0] = dp4a_us(w[r].x, xv, iacc[0]);
    iacc[1] = dp4a_us(w[r].y, xv, iacc[1]);
    iacc[2] = dp4a_us(w[r].z, xv, iacc[2]);
    iacc[3] = dp4a_us(w[r].w, xv, iacc[3]);
  }
#pragma unroll
  for (int c = 0; c < 4; ++c) acc[c] = fmaf((float)iacc[c] * d, sc[c], acc[c]);
}

// R rows of x at once (R = 1: the one-token GEMV; R = 4: a few sequences of a batched step, each weight read
// once for all of them); XS: packed words of x staged per row (K ranges of at most XS · 4 values)
template <int R, int XS>
__device__ __forceinline__ void gemv_q8_body(float* __restrict__ y, const float* __restrict__ x, int rows, const uint4* __restrict__ qw,
                                             const __half* __restrict__ scales, const uint32_t* __restrict__ qz, const int* __restrict__ perm,
                                             int N, int K, int gs, int kPerBlock) {
  __shared__ uint2 xs[R][XS / 2];     // int8 x, 4 values per word in k order (a uint2: 8 values)
  __shared__ int xsum[R][XS / 8];     // Σ xq per 32 values
  __shared__ float xd[R][XS / 8];     // x's quantization step per 32 values
  __shared__ float red[R][4][128];
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int kb0 = blockIdx.y * kPerBlock, kb1 = min(K, kb0 + kPerBlock);
  const int units = (kb1 - kb0) >> 5;
  const int col0 = blockIdx.x * 128, n0 = col0 + lane * 4;
  const bool colLive = n0 < N;
  const int rowStride = N >> 2;
  const uint4* wcol = qw + (n0 >> 2);

  uint4 wa[8], wb[8];
  uint2 sa, sb;
  uint32_t za, zb;
  int u = warp;
  if (colLive && u < units) q8_load_unit(wa, sa, za, wcol, rowStride, kb0 + u * 32, scales, qz, N, n0, gs);
  if (colLive && u + 4 < units) q8_load_unit(wb, sb, zb, wcol, rowStride, kb0 + (u + 4) * 32, scales, qz, N, n0, gs);
  pdl_wait();
  pdl_launch_dependents();

  // x of every row, staged as int8 per 32 values in k order (4 lanes = one block of 32)
  stage_x_rows<R, false, XS / 2>(x, rows, K, perm, kb0, (kb1 - kb0) >> 3, xs, xsum, xd);
  __syncthreads();

  float acc[R][4];
#pragma unroll
  for (int j = 0; j < R; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  if (colLive) {
    stream_pair(wa, sa, za, wb, sb, zb, u, units,
      [&](const auto& w, const auto& sc, const auto& z, int k) {
#pragma unroll
        for (int j = 0; j < R; ++j)
          if (j < rows) q8_mul_unit(acc[j], w, sc, z, reinterpret_cast<const uint32_t*>(xs[j]) + k * 8, xsum[j][k], xd[j][k]);
      },
      [&](auto& w, auto& sc, auto& z, int k) { q8_load_unit(w, sc, z, wcol, rowStride, kb0 + k * 32, scales, qz, N, n0, gs); });
  }
#pragma unroll
  for (int j = 0; j < R; ++j)
#pragma unroll
    for (int c = 0; c < 4; ++c) red[j][warp][lane * 4 + c] = acc[j][c];
  __syncthreads();
  const int n = col0 + t;
  if (n >= N) return;
#pragma unroll
  for (int j = 0; j < R; ++j) {
    if (j >= rows) continue;
    const float sum = red[j][0][t] + red[j][1][t] + red[j][2][t] + red[j][3][t];
    float* out = y + (size_t)j * N + n;
    if (gridDim.y == 1) *out += sum;  // the host zeroed y unless the call accumulates; one block per output
    else atomicAdd(out, sum);
  }
}

// one row; K ranges of at most 64 slices of 128 (Q8_XS_ROWS words per row)
extern "C" __global__ void __launch_bounds__(128, 4)
    gemv_q8(float* __restrict__ y, const float* __restrict__ x, const uint4* __restrict__ qw, const __half* __restrict__ scales,
            const uint32_t* __restrict__ qz, const int* __restrict__ perm, int N, int K, int gs, int kPerBlock) {
  gemv_q8_body<1, Q8_XS_ROWS>(y, x, 1, qw, scales, qz, perm, N, K, gs, kPerBlock);
}

// up to 4 rows (x [rows, K], y [rows, N]); K ranges of at most 32 slices (static shared memory: 4 rows of staged x)
extern "C" __global__ void __launch_bounds__(128, 3)
    gemv_q8_r4(float* __restrict__ y, const float* __restrict__ x, int rows, const uint4* __restrict__ qw, const __half* __restrict__ scales,
               const uint32_t* __restrict__ qz, const int* __restrict__ perm, int N, int K, int gs, int kPerBlock) {
  gemv_q8_body<4, Q8_XS_ROWS / 2>(y, x, rows, qw, scales, qz, perm, N, K, gs, kPerBlock);
}
