// GPTQ 4-bit GEMV for one token over up to 3 matrices that share the input x, in one launch.
//   y_m[n] (+)= Σ_k s_m[g, n] · (q_m[k, n] − z_m[g, n]) · x[perm_m[k]],   g = k / gs,  z = stored zero + 1
// qweight [K/8, N] u32 (8 values of k per word, LSB first), its rows reordered at upload for act-order
// models so group g is rows g*gs..(g+1)*gs−1 (perm maps a reordered row to its x index; null = identity);
// scales [G, N] fp16; qzeros [G, N/8] u32.
// Grid: x = 128-column tiles of all matrices back to back, y = K ranges of kPerBlock values (split-K);
// the host sizes it to about one wave of 4 blocks per SM.
// Block: 4 warps. A lane owns 4 adjacent columns, so one packed row is one 16-byte load per lane and
// 512 contiguous bytes per warp. Warp w streams the 128-value slices w, w+4, ... of the block's K range
// as two halves of 8 packed rows held in registers: while one half is being multiplied, the other
// half's next loads are in flight, so each warp keeps loading until its range ends.
// Programmatic dependent launch (sm_90): the first slice's weights, scales and the act-order
// permutation are loaded before griddepcontrol.wait, i.e. while the kernel that produces x is still
// finishing; x, y, the workspace and the KV cache are touched only after it.
// x is staged once per block into shared memory as fp16 pairs (x_j, x_{j+4}) per packed row, gathered
// through perm for act-order layers, so both layouts run the same inner loop.
// Reduction: the 4 warps' sums meet in shared memory; then
//   one K range (gridDim.y == 1): the block runs the epilogue itself, no atomics;
//   y += result only (residual add): float atomics straight into y, no workspace;
//   otherwise: split-K sums go into a workspace (zero between launches), the tile's last block (ticket
//   counter) reads them, restores the workspace and the counter to zero, and runs the epilogue.
// Epilogue: store or add into y (residual stream), rotary embedding (one tile = one head of 128) and
// the fp16 KV-cache write, or SwiGLU of a gate/up pair.
// Dequantization in half2: OR-ing a nibble into the mantissa of 1024.0 gives 1024 + q exactly, so
// (1024 + q) − (1024 + z) = q − z with one HSUB2; x is staged interleaved to match the nibble pairs.
#include "common.cuh"

// Weights are read once: skip L1 so they don't evict x; volatile keeps the loads issued where written.
__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// cp.async (sm_80+): global -> shared without registers; .cg skips L1 (16-byte only), .ca for 8/4 bytes.
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async8(void* dst, const void* src) {
  const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" :: "r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src) {
  const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" :: "r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }

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
  int flags;         // 1: y += result, 2: rotary embedding (head size 128) before storing, 4: perm is x pre-permuted (f32)
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
  int kPerBlock;           // K values per block (multiple of 128, at most XS_ROWS * 8)
  const int* swigluInv;    // non-null: also swigluPerm[swigluInv[n]] = swiglu[n] (the consumer's row order)
  float* swigluPerm;
};
static_assert(sizeof(Q4Mat) == 64, "Q4Mat layout is mirrored by gemvBatch.ts");
static_assert(sizeof(Q4Args) == 272, "Q4Args layout is mirrored by gemvBatch.ts");

// packed rows of x a block stages (its K range / 8): 64 slices of 128 values
#define XS_ROWS 1024

// Loads half a slice (8 packed rows from value k) and its group scales / zeros.
template <int GR, int GH>
__device__ __forceinline__ void q4_load_half(uint4 (&w)[8], uint2 (&s)[GH], uint32_t (&z)[GH], const Q4Mat& m,
                                             int k, int n0, int rowVecs, int gs) {
  const uint4* src = m.qw + (size_t)(k >> 3) * rowVecs + (n0 >> 2);
#pragma unroll
  for (int r = 0; r < 8; ++r) w[r] = ld_stream(src + (size_t)r * rowVecs);
#pragma unroll
  for (int gi = 0; gi < GH; ++gi) {
    const int g = (k + gi * GR * 8) / gs;
    s[gi] = __ldg(reinterpret_cast<const uint2*>(m.scales + (size_t)g * m.N + n0));
    z[gi] = __ldg(m.qz + (size_t)g * (m.N >> 3) + (n0 >> 3));
  }
}

// acc[c] += Σ over the half's 8 packed rows of column n0 + c, x from shared memory (8 rows at xr)
template <int GR, int GH>
__device__ __forceinline__ void q4_mul_half(float (&acc)[4], const uint4 (&w)[8], const uint2 (&s)[GH], const uint32_t (&z)[GH],
                                            const uint4* xr, int n0) {
#pragma unroll
  for (int gi = 0; gi < GH; ++gi) {
    const float2 s01 = __half22float2(u32_as_half2(s[gi].x)), s23 = __half22float2(u32_as_half2(s[gi].y));
    const float sc[4] = {s01.x, s01.y, s23.x, s23.y};
    const uint32_t zw = z[gi] >> ((n0 & 7) * 4);
    half2 z1024[4], z64[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const float zf = (float)(((zw >> (4 * c)) & 15u) + 1u);
      z1024[c] = __float2half2_rn(1024.f + zf);
      z64[c] = __float2half2_rn(-(64.f + zf));
    }
    float gacc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int rr = 0; rr < GR; ++rr) {
      const int r = gi * GR + rr;
      const uint4 xv = xr[r];
      const half2 xa = u32_as_half2(xv.x), xb = u32_as_half2(xv.y), xc = u32_as_half2(xv.z), xd = u32_as_half2(xv.w);
      gacc[0] += dot8_q4(w[r].x, xa, xb, xc, xd, z1024[0], z64[0]);
      gacc[1] += dot8_q4(w[r].y, xa, xb, xc, xd, z1024[1], z64[1]);
      gacc[2] += dot8_q4(w[r].z, xa, xb, xc, xd, z1024[2], z64[2]);
      gacc[3] += dot8_q4(w[r].w, xa, xb, xc, xd, z1024[3], z64[3]);
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[c] = fmaf(gacc[c], sc[c], acc[c]);
  }
}

__device__ __forceinline__ uint32_t half2_as_u32(half2 h) {
  return *reinterpret_cast<uint32_t*>(&h);
}

// Ring variant: each warp's half slices (8 packed rows = 4 KB per warp, plus their scales and zeros)
// land in shared memory through cp.async, RING_STAGES per warp, RING_STAGES − 1 of them in flight
// while one is multiplied; a lane reads back only what it copied itself, so no barrier is needed.
#define RING_STAGES 4
template <int GH>
__host__ __device__ constexpr int ring_stage_bytes() { return 8 * 32 * 16 + GH * 32 * 8 + GH * 32 * 4; }

template <int GR, int GH>
__device__ __forceinline__ void q4_ring_issue(char* stage, const Q4Mat& m, int k, int n0, int rowVecs, int gs, int lane) {
  const uint4* src = m.qw + (size_t)(k >> 3) * rowVecs + (n0 >> 2);
  uint4* w = reinterpret_cast<uint4*>(stage);
#pragma unroll
  for (int r = 0; r < 8; ++r) cp_async16(w + r * 32 + lane, src + (size_t)r * rowVecs);
  uint2* s = reinterpret_cast<uint2*>(stage + 8 * 32 * 16);
  uint32_t* z = reinterpret_cast<uint32_t*>(stage + 8 * 32 * 16 + GH * 32 * 8);
#pragma unroll
  for (int gi = 0; gi < GH; ++gi) {
    const int g = (k + gi * GR * 8) / gs;
    cp_async8(s + gi * 32 + lane, m.scales + (size_t)g * m.N + n0);
    cp_async4(z + gi * 32 + lane, m.qz + (size_t)g * (m.N >> 3) + (n0 >> 3));
  }
}

template <int RPG, bool RING>
__device__ __forceinline__ void gemv_q4_fused(const Q4Args& a) {
  constexpr int GR = RPG < 8 ? RPG : 8;  // packed rows per group inside a half slice
  constexpr int GH = 8 / GR;             // groups per half slice
  constexpr int SB = ring_stage_bytes<GH>();
  __shared__ uint4 xs[XS_ROWS];
  __shared__ float red[4][128];
  __shared__ float fin[128];
  __shared__ int last;
  extern __shared__ uint4 ring_smem[];   // RING: [4 warps][RING_STAGES][SB bytes]
  const int tile = blockIdx.x;
  const int mi = tile < a.m[0].tileEnd ? 0 : tile < a.m[1].tileEnd ? 1 : 2;
  const Q4Mat& m = a.m[mi];
  const int tileStart = mi == 0 ? 0 : a.m[mi - 1].tileEnd;
  const int K = a.K, N = m.N, gs = a.gs;
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int kb0 = blockIdx.y * a.kPerBlock;
  const int kb1 = min(K, kb0 + a.kPerBlock);
  const int nSlices = (kb1 - kb0) >> 7;
  const int rows8 = (kb1 - kb0) >> 3;
  const int col0 = (tile - tileStart) * 128;
  const int n0 = col0 + lane * 4;
  const bool colLive = n0 < N;
  const int rowVecs = N >> 2;
  // flags & 4: m.perm is x already gathered into this matrix's row order (f32 [K]), read linearly
  const bool xPermuted = (m.flags & 4) != 0;
  const int* perm = xPermuted ? nullptr : m.perm;
  const float* xsrc = xPermuted ? reinterpret_cast<const float*>(m.perm) : a.x;

  // weights of the first slice(s), and the first permutation entries, before waiting for x's producer
  uint4 wa[8], wb[8];
  uint2 sa[GH], sb[GH];
  uint32_t za[GH], zb[GH];
  int s = warp;
  const int nh = warp < nSlices ? 2 * ((nSlices - warp + 3) >> 2) : 0;  // RING: this warp's half slices
  char* ring = reinterpret_cast<char*>(ring_smem) + (size_t)warp * RING_STAGES * SB;
  if constexpr (RING) {
#pragma unroll
    for (int h = 0; h < RING_STAGES - 1; ++h) {
      if (colLive && h < nh) q4_ring_issue<GR, GH>(ring + h * SB, m, kb0 + (warp + 4 * (h >> 1)) * 128 + (h & 1) * 64, n0, rowVecs, gs, lane);
      cp_async_commit();
    }
  } else {
    if (colLive && s < nSlices) {
      q4_load_half<GR, GH>(wa, sa, za, m, kb0 + s * 128, n0, rowVecs, gs);
      q4_load_half<GR, GH>(wb, sb, zb, m, kb0 + s * 128 + 64, n0, rowVecs, gs);
    }
  }
  int4 p0 = make_int4(0, 0, 0, 0), p1 = p0;
  if (perm && t < rows8) {
    p0 = __ldg(reinterpret_cast<const int4*>(perm + kb0 + t * 8));
    p1 = __ldg(reinterpret_cast<const int4*>(perm + kb0 + t * 8 + 4));
  }
  pdl_wait();
  pdl_launch_dependents();

  for (int r = t; r < rows8; r += 128) {
    const int kb = kb0 + r * 8;
    float v[8];
    if (perm) {
      if (r != t) {
        p0 = __ldg(reinterpret_cast<const int4*>(perm + kb));
        p1 = __ldg(reinterpret_cast<const int4*>(perm + kb + 4));
      }
      v[0] = xsrc[p0.x]; v[1] = xsrc[p0.y]; v[2] = xsrc[p0.z]; v[3] = xsrc[p0.w];
      v[4] = xsrc[p1.x]; v[5] = xsrc[p1.y]; v[6] = xsrc[p1.z]; v[7] = xsrc[p1.w];
    } else {
      const float4 x0 = *reinterpret_cast<const float4*>(xsrc + kb);
      const float4 x1 = *reinterpret_cast<const float4*>(xsrc + kb + 4);
      v[0] = x0.x; v[1] = x0.y; v[2] = x0.z; v[3] = x0.w;
      v[4] = x1.x; v[5] = x1.y; v[6] = x1.z; v[7] = x1.w;
    }
    uint4 o;
    o.x = half2_as_u32(__floats2half2_rn(v[0], v[4]));
    o.y = half2_as_u32(__floats2half2_rn(v[1], v[5]));
    o.z = half2_as_u32(__floats2half2_rn(v[2], v[6]));
    o.w = half2_as_u32(__floats2half2_rn(v[3], v[7]));
    xs[r] = o;
  }
  __syncthreads();

  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  if constexpr (RING) {
    for (int h = 0; h < nh; ++h) {
      const int hn = h + RING_STAGES - 1;  // refills the slot read in iteration h − 1
      if (colLive && hn < nh) q4_ring_issue<GR, GH>(ring + (hn % RING_STAGES) * SB, m, kb0 + (warp + 4 * (hn >> 1)) * 128 + (hn & 1) * 64, n0, rowVecs, gs, lane);
      cp_async_commit();
      cp_async_wait<RING_STAGES - 1>();
      if (colLive) {
        const char* st = ring + (h % RING_STAGES) * SB;
        const uint4* w = reinterpret_cast<const uint4*>(st);
        const uint2* sp = reinterpret_cast<const uint2*>(st + 8 * 32 * 16);
        const uint32_t* zp = reinterpret_cast<const uint32_t*>(st + 8 * 32 * 16 + GH * 32 * 8);
#pragma unroll
        for (int r = 0; r < 8; ++r) wa[r] = w[r * 32 + lane];
#pragma unroll
        for (int gi = 0; gi < GH; ++gi) { sa[gi] = sp[gi * 32 + lane]; za[gi] = zp[gi * 32 + lane]; }
        q4_mul_half<GR, GH>(acc, wa, sa, za, xs + (warp + 4 * (h >> 1)) * 16 + (h & 1) * 8, n0);
      }
    }
    cp_async_wait<0>();
  } else {
    if (colLive) {
      for (; s < nSlices; s += 4) {
        const bool more = s + 4 < nSlices;
        const int kn = kb0 + (s + 4) * 128;
        q4_mul_half<GR, GH>(acc, wa, sa, za, xs + s * 16, n0);
        if (more) q4_load_half<GR, GH>(wa, sa, za, m, kn, n0, rowVecs, gs);
        q4_mul_half<GR, GH>(acc, wb, sb, zb, xs + s * 16 + 8, n0);
        if (more) q4_load_half<GR, GH>(wb, sb, zb, m, kn + 64, n0, rowVecs, gs);
      }
    }
  }
#pragma unroll
  for (int c = 0; c < 4; ++c) red[warp][lane * 4 + c] = acc[c];
  __syncthreads();
  const float sum = red[0][t] + red[1][t] + red[2][t] + red[3][t];
  const bool pair = a.swiglu != nullptr;
  const int n = col0 + t;
  float v;
  if (!pair && gridDim.y == 1) {
    v = sum;
  } else if (!pair && (m.flags & 3) == 1 && m.cache == nullptr) {
    if (n < N) atomicAdd(m.y + n, sum);  // residual add: partial sums straight into y
    return;
  } else {
    float* ws = a.ws + (size_t)tile * 128;
    atomicAdd(ws + t, sum);
    __threadfence();
    __syncthreads();
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
      const int np = p * 128 + t;
      float* wg = a.ws + (size_t)p * 128;
      float* wu = a.ws + (size_t)(tilesPerMat + p) * 128;
      const float g = __ldcg(wg + t), u = __ldcg(wu + t);
      __stcg(wg + t, 0.f);
      __stcg(wu + t, 0.f);
      if (np < a.m[0].N) {
        a.m[0].y[np] = g;
        a.m[1].y[np] = u;
        const float h = g / (1.f + expf(-g)) * u;
        a.swiglu[np] = h;
        if (a.swigluInv) a.swigluPerm[__ldg(a.swigluInv + np)] = h;
      }
      return;
    }
    v = __ldcg(ws + t);
    __stcg(ws + t, 0.f);
  }
  if (m.flags & 2) {
    // rotary embedding, rotate-half, head = this tile: pair (i, i + 64), same rounding as rope_f32
    fin[t] = v;
    __syncthreads();
    const int i = t & 63;
    const int pos = read_pos(a.pos_ptr, a.pos_imm);
    const float inv_freq = (float)(1.0 / pow((double)m.theta, (2.0 * i) / 128.0));
    const float angle = (float)pos * inv_freq;
    double sn, cs;
    sincos((double)angle, &sn, &cs);
    const float x0 = fin[i], x1 = fin[i + 64];
    v = t < 64 ? (float)(x0 * cs - x1 * sn) : (float)(x1 * cs + x0 * sn);
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
  extern "C" __global__ void __launch_bounds__(128, 4) gemv_q4_rpg##RPG(const __grid_constant__ Q4Args a) { \
    gemv_q4_fused<RPG, false>(a);                                                            \
  }                                                                                          \
  extern "C" __global__ void __launch_bounds__(128, 2) gemv_q4r_rpg##RPG(const __grid_constant__ Q4Args a) { \
    gemv_q4_fused<RPG, true>(a);                                                             \
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
