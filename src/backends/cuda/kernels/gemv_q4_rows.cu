// GPTQ 4-bit linear for a few rows at once (batched decode: 2..16 tokens, one per sequence).
//   y[j, n] += Σ_k W[n, k] · x[j, perm[k]],   W[n, k] = s[g, n] · (q[k, n] − z[g, n]),  g = k / gs,  z = stored zero + 1
// (the host zeroes y first for a plain store; the bias is added afterwards, linearLaunch.ts)
// qweight: the q4 layout, [K/8, N] u32 (8 values of k per word, LSB first), rows reordered at upload
// for act-order so group g is rows g*gs..(g+1)*gs−1; perm maps a reordered row to its x index (null =
// identity). scales [G, N] fp16; qzeros [G, N/8] u32.  x: [rows, K] f32 · y: [rows, N] f32
//
// Why tensor cores: the one-row GEMV (gemv_q4.cu) spends ~5 instructions per 8 weights per row; for 8
// rows that is 8× the issue work for the same bytes, which would make the kernel compute-bound. Here
// each weight is dequantized to fp16 once (as gemm_q4_mma does) and multiplied into every row by
// mma.sync m16n8k16: the weights are the A operand (16 output columns), the batch is B (8 rows per
// n-tile, padded with zero rows), f32 accumulators. Dequantization is the only per-weight work
// (~15 instructions per 8 weights, whatever the batch), below the DRAM time on H100/H200.
//
// Grid: x = 128-column tiles, y = K ranges of kPerBlock values (split-K; partial sums go out with
// float atomics). Block: 4 warps, each owning all 128 columns of the tile and the 32-value units
// w, w+4, ... of the block's K range; a lane loads one packed row of 4 adjacent columns (16 bytes) in
// each of the tile's 4 slabs of 32 columns, two units ahead (registers). Measured on the H200 (13B
// shapes): a variant that copied all of a warp's units into shared memory at once (cp.async) was
// slower (40 vs 30 us for 5120x13824), and so were shorter K ranges; shared float atomics in the
// block reduction cost ~1/3 of the time (now plain adds, one warp after another).
// k order inside a unit: the dot product does not depend on the order of k, so each lane's packed
// row supplies its own mma k slots. Lane (g = lane/4, t = lane%4) holds packed row t of the unit (8
// values q0..q7 of k = 8t..8t+7 per column). The cheap fp16 unpack ((w >> 4j) & 0x000F000F | 0x6400..)
// yields the pairs P_j = (q_j, q_{j+4}); mma m ∈ {0, 1} takes P_{2m} in the fragment slots of k 2t, 2t+1
// and P_{2m+1} in those of k 2t+8, 2t+9. x is staged in the same order, 8 halves per packed row as
// (x0, x4, x1, x5, x2, x6, x3, x7), so mma m's B fragment is the 4 halves at 4m: one 16-byte shared load
// serves both. Columns: slab i's lane holds columns c0..c0+3 (c0 = 32i + 4g); mma tile T ∈ {0, 1} maps
// its rows g → column c0 + 2T and g + 8 → column c0 + 2T + 1.
#include "common.cuh"
#include "mma.cuh"

// fp16 x a block stages: rows (8 per n-tile) × kPerBlock; the host keeps kPerBlock ≤ Q4R_XS_HALVES / rows
#define Q4R_XS_HALVES 16384
// halves of padding per staged x row: the 8 lanes of one 16-byte load phase (2 rows × 4 k offsets) hit distinct bank quads
#define Q4R_PAD 32
// warps per block (the host launches 128 threads)
#define Q4R_WARPS 4

__device__ __forceinline__ uint4 q4r_ld_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// One unit (4 packed rows = 32 values of k, inside one group) of a lane's 4 slabs.
struct Q4rUnit {
  uint4 w[4];      // packed row t of slab i: columns c0..c0+3
  uint2 s[4];      // their 4 fp16 scales
  uint32_t z[4];   // their zeros word (shifted so column c0 is the low nibble)
};

// Loads the unit starting at k (group k / gs): lane (g, t) reads packed row k/8 + t.
__device__ __forceinline__ void q4r_load(Q4rUnit& u, const uint32_t* __restrict__ qw, const __half* __restrict__ scales,
                                         const uint32_t* __restrict__ qz, int k, int tig, int colLane, int N, int gs) {
  const int g = k / gs;
  const size_t p = (size_t)(k >> 3) + tig;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int n = colLane + 32 * i;
    if (n < N) {
      u.w[i] = q4r_ld_stream(reinterpret_cast<const uint4*>(qw + p * N + n));
      u.s[i] = __ldg(reinterpret_cast<const uint2*>(scales + (size_t)g * N + n));
      u.z[i] = __ldg(qz + (size_t)g * (N >> 3) + (n >> 3)) >> ((n & 7) * 4);
    } else {
      u.w[i] = make_uint4(0, 0, 0, 0);  // scale 0: the columns past N contribute zeros (never stored)
      u.s[i] = make_uint2(0, 0);
      u.z[i] = 0;
    }
  }
}

// acc[i][T][nt] += this unit's products. xrow: the lane's staged x of packed row t of the unit, batch row g.
template <int NT>
__device__ __forceinline__ void q4r_mul(float (&acc)[4][2][NT][4], const Q4rUnit& u, const __half* xrow, int xst) {
  uint4 xv[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) xv[nt] = *reinterpret_cast<const uint4*>(xrow + (size_t)nt * 8 * xst);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t words[4] = {u.w[i].x, u.w[i].y, u.w[i].z, u.w[i].w};
    const half2 s01 = u32_as_half2(u.s[i].x), s23 = u32_as_half2(u.s[i].y);
    const half2 s2c[4] = {__low2half2(s01), __high2half2(s01), __low2half2(s23), __high2half2(s23)};
    uint32_t P[4][4];  // P[c][j]: column c0 + c, pair (q_j, q_{j+4}) dequantized
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const uint32_t z = ((u.z[i] >> (4 * c)) & 15u) + 1u;
      const half2 z2 = u32_as_half2((0x6400u | z) * 0x10001u);  // 1024 + z in both halves
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t q = ((words[c] >> (4 * j)) & 0x000F000Fu) | 0x64006400u;  // 1024 + q
        const half2 v = __hmul2(__hsub2(u32_as_half2(q), z2), s2c[c]);
        P[c][j] = *reinterpret_cast<const uint32_t*>(&v);
      }
    }
#pragma unroll
    for (int T = 0; T < 2; ++T)
#pragma unroll
      for (int m = 0; m < 2; ++m) {
        const uint32_t a[4] = {P[2 * T][2 * m], P[2 * T + 1][2 * m], P[2 * T][2 * m + 1], P[2 * T + 1][2 * m + 1]};
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const uint32_t b0 = m == 0 ? xv[nt].x : xv[nt].z, b1 = m == 0 ? xv[nt].y : xv[nt].w;
          mma_16816(acc[i][T][nt], a, b0, b1);
        }
      }
  }
}

template <int NT>
__device__ __forceinline__ void gemv_q4_rows_body(float* __restrict__ y, const float* __restrict__ x, int rows, int N, int K,
                                                  const uint32_t* __restrict__ qw, const __half* __restrict__ scales,
                                                  const uint32_t* __restrict__ qz, const int* __restrict__ perm, int gs,
                                                  int kPerBlock) {
  constexpr int R = 8 * NT;
  constexpr int XST = Q4R_XS_HALVES / R + Q4R_PAD;  // staged x row stride in halves (16-byte multiple)
  __shared__ __align__(16) __half xs[R * XST];
  __shared__ float red[R][128];
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int gid = lane >> 2, tig = lane & 3;
  const int col0 = blockIdx.x * 128;
  const int colLane = col0 + 4 * gid;
  const int kb0 = blockIdx.y * kPerBlock;
  const int kb1 = min(K, kb0 + kPerBlock);
  const int units = (kb1 - kb0) >> 5;
  const int rows8 = (kb1 - kb0) >> 3;

  // the first two units' weights go out before x is staged; from then on two units per warp stay in flight
  Q4rUnit ua, ub;
  int u = warp;
  if (u < units) q4r_load(ua, qw, scales, qz, kb0 + u * 32, tig, colLane, N, gs);
  if (u + 4 < units) q4r_load(ub, qw, scales, qz, kb0 + (u + 4) * 32, tig, colLane, N, gs);

  // x rows as fp16 in the pair order, gathered through perm for act-order (the 8 indices loaded once for
  // all rows, so each thread has rows × 8 independent loads in flight); rows ≥ `rows` are zeros
  for (int p = t; p < rows8; p += 128) {
    const int k = kb0 + p * 8;
    int idx[8];
    if (perm) {
      const int4 i0 = __ldg(reinterpret_cast<const int4*>(perm + k)), i1 = __ldg(reinterpret_cast<const int4*>(perm + k + 4));
      idx[0] = i0.x; idx[1] = i0.y; idx[2] = i0.z; idx[3] = i0.w;
      idx[4] = i1.x; idx[5] = i1.y; idx[6] = i1.z; idx[7] = i1.w;
    }
#pragma unroll 4
    for (int j = 0; j < R; ++j) {
      float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      if (j < rows) {
        const float* xr = x + (size_t)j * K;
        if (perm) {
#pragma unroll
          for (int e = 0; e < 8; ++e) v[e] = xr[idx[e]];
        } else {
          const float4 a = *reinterpret_cast<const float4*>(xr + k), b = *reinterpret_cast<const float4*>(xr + k + 4);
          v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
          v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
        }
      }
      *reinterpret_cast<uint4*>(xs + (size_t)j * XST + p * 8) =
          make_uint4(pack_half2(v[0], v[4]), pack_half2(v[1], v[5]), pack_half2(v[2], v[6]), pack_half2(v[3], v[7]));
    }
  }
  __syncthreads();

  float acc[4][2][NT][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int T = 0; T < 2; ++T)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[i][T][nt][r] = 0.f;
  const __half* xlane = xs + (size_t)gid * XST + tig * 8;  // + unit * 32: packed row t of the unit, batch row g
  for (; u < units; u += 8) {
    q4r_mul<NT>(acc, ua, xlane + u * 32, XST);
    if (u + 8 < units) q4r_load(ua, qw, scales, qz, kb0 + (u + 8) * 32, tig, colLane, N, gs);
    if (u + 4 >= units) break;
    q4r_mul<NT>(acc, ub, xlane + (u + 4) * 32, XST);
    if (u + 12 < units) q4r_load(ub, qw, scales, qz, kb0 + (u + 12) * 32, tig, colLane, N, gs);
  }

  // the 4 warps' sums meet in shared memory, one warp after another (plain stores and adds: shared float
  // atomics contend 4 ways on every address). C fragments: c0, c1 = (tile row g, batch rows 2t, 2t+1),
  // c2, c3 = (tile row g + 8, same batch rows)
#pragma unroll 1
  for (int w = 0; w < Q4R_WARPS; ++w) {
    if (warp == w) {
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int T = 0; T < 2; ++T)
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            const int c = 32 * i + 4 * gid + 2 * T, b = nt * 8 + 2 * tig;
            const float* a = acc[i][T][nt];
            if (w == 0) {
              red[b][c] = a[0]; red[b + 1][c] = a[1]; red[b][c + 1] = a[2]; red[b + 1][c + 1] = a[3];
            } else {
              red[b][c] += a[0]; red[b + 1][c] += a[1]; red[b][c + 1] += a[2]; red[b + 1][c + 1] += a[3];
            }
          }
    }
    __syncthreads();
  }
  const int n = col0 + t;
  if (n < N)
    for (int j = 0; j < rows; ++j) atomicAdd(y + (size_t)j * N + n, red[j][t]);
}

#define GEMV_Q4_ROWS(NT, MINB)                                                                                  \
  extern "C" __global__ void __launch_bounds__(128, MINB) gemv_q4_rows##NT(                                     \
      float* y, const float* x, int rows, int N, int K, const uint32_t* qw, const __half* scales,               \
      const uint32_t* qz, const int* perm, int gs, int kPerBlock) {                                             \
    pdl_wait();                                                                                                  \
    pdl_launch_dependents();                                                                                     \
    gemv_q4_rows_body<NT>(y, x, rows, N, K, qw, scales, qz, perm, gs, kPerBlock);                              \
  }
GEMV_Q4_ROWS(1, 4)
GEMV_Q4_ROWS(2, 3)
