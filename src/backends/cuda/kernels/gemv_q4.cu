// GPTQ 4-bit GEMV for one token over up to 3 matrices that share the input x, in one launch.
//   y_m[n] (+)= Σ_k s_m[g, n] · (q_m[k, n] − z_m[g, n]) · x[perm_m[k]],   g = k / gs,  z = stored zero + 1
// qweight [K/8, N] u32 (8 values of k per word, LSB first), its rows reordered at upload for act-order
// models so group g is rows g*gs..(g+1)*gs−1 (perm maps a reordered row to its x index; null = identity);
// scales [G, N] fp16; qzeros [G, N/8] u32.
// Grid: x = 128-column tiles of all matrices back to back, y = 512-value slices of K (split-K).
// Block: 4 warps. A lane owns 4 adjacent columns, so one packed row is one 16-byte load per lane and
// 512 contiguous bytes per warp; warp w reads the k slice of 128 values (16 packed rows) number
// blockIdx.y*4 + w, all 16 loads issued before any arithmetic.
// Split-K without memsets: each block adds its 128 partial sums into a workspace (zero between
// launches), then takes a ticket; the tile's last block reads the sums, restores the workspace and the
// ticket counter to zero, and runs the epilogue: store or add into y (residual stream), rotary
// embedding (one tile = one head of 128) and the fp16 KV-cache write, or SwiGLU of a gate/up pair.
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


struct Q4Mat {
  const uint4* qw;
  const __half* scales;
  const uint32_t* qz;
  const int* perm;   // null: identity
  float* y;          // [N]
  __half* cache;     // KV cache layer [maxSeq, N] fp16, or null
  int N;
  int tileEnd;       // tiles of matrices 0..m (cumulative)
  int flags;         // 1: y += result, 2: rotary embedding (head size 128) before storing
  float theta;
};
struct Q4Args {
  Q4Mat m[3];
  float* ws;               // [tiles * 128] f32, zero between launches
  unsigned* counters;      // [tiles] tickets, zero between launches
  float* swiglu;           // non-null: m[0] = gate, m[1] = up, swiglu[n] = silu(gate[n]) * up[n]
  const float* x;          // [K]
  const int* pos_ptr;
  int pos_imm;
  int count;
  int K;
  int gs;
  int maxSeq;
  int pad;
};
static_assert(sizeof(Q4Mat) == 64, "Q4Mat layout is mirrored by gemvBatch.ts");
static_assert(sizeof(Q4Args) == 256, "Q4Args layout is mirrored by gemvBatch.ts");

template <int RPG>
__device__ __forceinline__ void gemv_q4_fused(const Q4Args& a) {
  __shared__ __align__(16) half2 xs[4][16][4];
  __shared__ float red[4][128];
  __shared__ float fin[128];
  __shared__ int last;
  const int tile = blockIdx.x;
  const int mi = tile < a.m[0].tileEnd ? 0 : tile < a.m[1].tileEnd ? 1 : 2;
  const Q4Mat& m = a.m[mi];
  const int tileStart = mi == 0 ? 0 : a.m[mi - 1].tileEnd;
  const int K = a.K, N = m.N, gs = a.gs;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int slice = blockIdx.y * 4 + warp;
  const int k0 = slice * 128;
  const int col0 = (tile - tileStart) * 128;
  const int n0 = col0 + lane * 4;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  const bool live = k0 < K && n0 < N;
  const int rowVecs = N >> 2;  // uint4 per packed row
  uint4 w[16];
  uint2 sraw[16 / RPG];
  uint32_t zraw[16 / RPG];
  if (live) {
    const uint4* src = m.qw + (size_t)(k0 >> 3) * rowVecs + (n0 >> 2);
#pragma unroll
    for (int r = 0; r < 16; ++r) w[r] = ld_stream(src + (size_t)r * rowVecs);
#pragma unroll
    for (int gi = 0; gi < 16 / RPG; ++gi) {
      const int g = (k0 + gi * RPG * 8) / gs;
      sraw[gi] = __ldg(reinterpret_cast<const uint2*>(m.scales + (size_t)g * N + n0));
      zraw[gi] = __ldg(m.qz + (size_t)g * (N >> 3) + (n0 >> 3));
    }
#pragma unroll
    for (int r = 0; r < 16; ++r) asm volatile("" : "+r"(w[r].x), "+r"(w[r].y), "+r"(w[r].z), "+r"(w[r].w));
  }
  if (k0 < K) {
    if (lane < 16) {
      const int kb = k0 + lane * 8;
      float v[8];
      if (m.perm) {
        const int4 p0 = __ldg(reinterpret_cast<const int4*>(m.perm + kb));
        const int4 p1 = __ldg(reinterpret_cast<const int4*>(m.perm + kb + 4));
        v[0] = a.x[p0.x]; v[1] = a.x[p0.y]; v[2] = a.x[p0.z]; v[3] = a.x[p0.w];
        v[4] = a.x[p1.x]; v[5] = a.x[p1.y]; v[6] = a.x[p1.z]; v[7] = a.x[p1.w];
      } else {
        const float4 x0 = *reinterpret_cast<const float4*>(a.x + kb);
        const float4 x1 = *reinterpret_cast<const float4*>(a.x + kb + 4);
        v[0] = x0.x; v[1] = x0.y; v[2] = x0.z; v[3] = x0.w;
        v[4] = x1.x; v[5] = x1.y; v[6] = x1.z; v[7] = x1.w;
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
  const int t = threadIdx.x;
  float* ws = a.ws + (size_t)tile * 128;
  atomicAdd(ws + t, red[0][t] + red[1][t] + red[2][t] + red[3][t]);
  __threadfence();
  __syncthreads();
  const bool pair = a.swiglu != nullptr;
  const int tilesPerMat = a.m[0].tileEnd;
  if (t == 0) {
    const int ctr = pair ? tile % tilesPerMat : tile;
    const unsigned expected = (pair ? 2u : 1u) * gridDim.y;
    const bool isLast = atomicAdd(a.counters + ctr, 1u) == expected - 1;
    if (isLast) a.counters[ctr] = 0u;
    last = isLast;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  if (pair) {
    const int p = tile % tilesPerMat;
    const int n = p * 128 + t;
    float* wg = a.ws + (size_t)p * 128;
    float* wu = a.ws + (size_t)(tilesPerMat + p) * 128;
    const float g = __ldcg(wg + t), u = __ldcg(wu + t);
    __stcg(wg + t, 0.f);
    __stcg(wu + t, 0.f);
    if (n < a.m[0].N) {
      a.m[0].y[n] = g;
      a.m[1].y[n] = u;
      a.swiglu[n] = g / (1.f + expf(-g)) * u;
    }
    return;
  }
  float v = __ldcg(ws + t);
  __stcg(ws + t, 0.f);
  const int n = col0 + t;
  if (m.flags & 2) {
    // rotary embedding, rotate-half, head = this tile: pair (i, i + 64), same rounding as rope_f32
    fin[t] = v;
    __syncthreads();
    const int i = t & 63;
    const int pos = read_pos(a.pos_ptr, a.pos_imm);
    const float inv_freq = (float)(1.0 / pow((double)m.theta, (2.0 * i) / 128.0));
    const float angle = (float)pos * inv_freq;
    double s, c;
    sincos((double)angle, &s, &c);
    const float x0 = fin[i], x1 = fin[i + 64];
    v = t < 64 ? (float)(x0 * c - x1 * s) : (float)(x1 * c + x0 * s);
  }
  if (n < N) {
    m.y[n] = (m.flags & 1) ? m.y[n] + v : v;
    if (m.cache) {
      const int pos = read_pos(a.pos_ptr, a.pos_imm);
      if (pos < a.maxSeq) m.cache[(size_t)pos * N + n] = __float2half(v);
    }
  }
}

#define GEMV_Q4(RPG)                                                                         \
  extern "C" __global__ void __launch_bounds__(128) gemv_q4_rpg##RPG(const __grid_constant__ Q4Args a) { \
    gemv_q4_fused<RPG>(a);                                                                   \
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
