// Pieces of the one-token int4 GEMV (gemv_q4.cu) that the few-rows variant (gemv_q4_multi.cu) shares:
// the weight stream's loads, the int8 dot products, and the staging of x as int8 per 32 values.
#pragma once
#include "common.cuh"

// Weights are read once: skip L1 so they don't evict x; volatile keeps the loads issued where written.
// GEMV_Q4_LD: the load instruction (bench/lab/gemvLab.cu builds variants with other cache hints).
#ifndef GEMV_Q4_LD
#define GEMV_Q4_LD "ld.global.nc.L1::no_allocate.v4.u32"
#endif
__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
  uint4 v;
  asm volatile(GEMV_Q4_LD " {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// Σ over the 8 values of one packed word of q·xq, added to acc (xe = x bytes 0, 2, 4, 6; xo = 1, 3, 5, 7)
__device__ __forceinline__ int dot8_q4_i8(uint32_t w, int xe, int xo, int acc) {
  acc = __dp4a((int)(w & 0x0F0F0F0Fu), xe, acc);
  return __dp4a((int)((w >> 4) & 0x0F0F0F0Fu), xo, acc);
}

// Loads half a slice (8 packed rows from value k) and its group scales / zeros. wcol: this lane's
// 16-byte column group in packed row 0; rowStride: uint4s between packed rows (N/4).
template <int GR, int GH>
__device__ __forceinline__ void q4_load_half(uint4 (&w)[8], uint2 (&s)[GH], uint32_t (&z)[GH], const __half* scales,
                                             const uint32_t* qz, int N, int k, int n0, const uint4* wcol, int rowStride, int gs) {
  const uint4* src = wcol + (size_t)(k >> 3) * rowStride;
#pragma unroll
  for (int r = 0; r < 8; ++r) w[r] = ld_stream(src + r * rowStride);
#pragma unroll
  for (int gi = 0; gi < GH; ++gi) {
    const int g = (k + gi * GR * 8) / gs;
    s[gi] = __ldg(reinterpret_cast<const uint2*>(scales + (size_t)g * N + n0));
    z[gi] = __ldg(qz + (size_t)g * (N >> 3) + (n0 >> 3));
  }
}

// acc[c] += Σ over the half's 8 packed rows of column n0 + c. xr: the half's 8 staged rows of int8 x
// (even, odd quads); xsum, xd: Σ xq and the step of each 4 packed rows (32 values), from the half's first.
template <int GR, int GH>
__device__ __forceinline__ void q4_mul_half(float (&acc)[4], const uint4 (&w)[8], const uint2 (&s)[GH], const uint32_t (&z)[GH],
                                            const uint2* xr, const int* xsum, const float* xd, int n0) {
#pragma unroll
  for (int gi = 0; gi < GH; ++gi) {
    const float2 s01 = __half22float2(u32_as_half2(s[gi].x)), s23 = __half22float2(u32_as_half2(s[gi].y));
    const float sc[4] = {s01.x, s01.y, s23.x, s23.y};
    const uint32_t zw = z[gi] >> ((n0 & 7) * 4);
    int zc[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) zc[c] = (int)(((zw >> (4 * c)) & 15u) + 1u);
    float gacc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int b = 0; b < GR / 4; ++b) {  // blocks of 4 packed rows: one x step each
      const int r0 = gi * GR + b * 4;
      const int xs = xsum[r0 >> 2];
      int iacc[4];
#pragma unroll
      for (int c = 0; c < 4; ++c) iacc[c] = -zc[c] * xs;
#pragma unroll
      for (int rr = 0; rr < 4; ++rr) {
        const uint2 xv = xr[r0 + rr];
        iacc[0] = dot8_q4_i8(w[r0 + rr].x, (int)xv.x, (int)xv.y, iacc[0]);
        iacc[1] = dot8_q4_i8(w[r0 + rr].y, (int)xv.x, (int)xv.y, iacc[1]);
        iacc[2] = dot8_q4_i8(w[r0 + rr].z, (int)xv.x, (int)xv.y, iacc[2]);
        iacc[3] = dot8_q4_i8(w[r0 + rr].w, (int)xv.x, (int)xv.y, iacc[3]);
      }
      const float d = xd[r0 >> 2];
#pragma unroll
      for (int c = 0; c < 4; ++c) gacc[c] = fmaf((float)iacc[c], d, gacc[c]);
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[c] = fmaf(gacc[c], sc[c], acc[c]);
  }
}

// A warp's weight stream over its units u, u + 4, u + 8, ... below `count` (gemv_q4_multi's half slices, gemv_q8's
// 32-value units; gemv_q4.cu writes the same loop out, its PTX unchanged since measured), two held in registers:
// the caller loaded units u and u + 4 into buffers a and b (before waiting for x's producer); each step multiplies
// one buffer and then reloads it with the unit 8 ahead, so while one buffer is multiplied the other's loads are in
// flight. mul(w, s, z, unit), load(w, s, z, unit).
template <class W, class S, class Z, class Mul, class Load>
__device__ __forceinline__ void stream_pair(W& wa, S& sa, Z& za, W& wb, S& sb, Z& zb, int u, int count, Mul&& mul, Load&& load) {
  for (; u < count; u += 8) {
    mul(wa, sa, za, u);
    if (u + 8 < count) load(wa, sa, za, u + 8);
    if (u + 4 >= count) break;
    mul(wb, sb, zb, u + 4);
    if (u + 12 < count) load(wb, sb, zb, u + 12);
  }
}

// v[j] *= w[j], j < 8 (w 16-byte aligned: two float4 loads)
__device__ __forceinline__ void scale8(float (&v)[8], const float* w) {
  const float4 w0 = __ldg(reinterpret_cast<const float4*>(w));
  const float4 w1 = __ldg(reinterpret_cast<const float4*>(w + 4));
  v[0] *= w0.x; v[1] *= w0.y; v[2] *= w0.z; v[3] *= w0.w;
  v[4] *= w1.x; v[5] *= w1.y; v[6] *= w1.z; v[7] *= w1.w;
}

// Quantizes one thread's staged packed row (8 values of x, v) to int8 and stores it at row r of xs, with its
// 32-value block's Σ xq and step in xsum / xd (lanes 4·i .. 4·i + 3 hold one block of 4 packed rows). Every
// lane of the warp must call it (the block's max and sum are warp shuffles); `live` lanes store.
// EVEN_ODD: bytes (q0, q2, q4, q6), (q1, q3, q5, q7), as the int4 kernels' nibble masks need; else
// (q0..q3), (q4..q7) in k order (gemv_q8.cu: 4 weight bytes per word).
template <bool EVEN_ODD = true>
__device__ __forceinline__ void q4_stage_row(const float (&v)[8], bool live, int r, uint2* xs, int* xsum, float* xd) {
  float amax = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j) amax = fmaxf(amax, fabsf(v[j]));
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
  const float qs = amax > 0.f ? 127.f / amax : 0.f;
  int q[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) q[j] = __float2int_rn(v[j] * qs);
  int sum4 = q[0] + q[1] + q[2] + q[3] + q[4] + q[5] + q[6] + q[7];
  sum4 += __shfl_xor_sync(0xffffffffu, sum4, 1);
  sum4 += __shfl_xor_sync(0xffffffffu, sum4, 2);
  if (live) {
    const int a = 0, b = EVEN_ODD ? 2 : 1, c = EVEN_ODD ? 4 : 2, d = EVEN_ODD ? 6 : 3;  // bytes of the first word
    const int e = EVEN_ODD ? 1 : 4, f = EVEN_ODD ? 3 : 5, g = EVEN_ODD ? 5 : 6, h = 7;                  // and of the second
    const uint32_t lo = (q[a] & 0xFF) | ((q[b] & 0xFF) << 8) | ((q[c] & 0xFF) << 16) | ((uint32_t)(q[d] & 0xFF) << 24);
    const uint32_t hi = (q[e] & 0xFF) | ((q[f] & 0xFF) << 8) | ((q[g] & 0xFF) << 16) | ((uint32_t)(q[h] & 0xFF) << 24);
    xs[r] = make_uint2(lo, hi);
    if ((r & 3) == 0) {
      xsum[r >> 2] = sum4;
      xd[r >> 2] = amax / 127.f;
    }
  }
}

// Stages rows 0 .. R−1 (those below `rows`) of x [rows, K] over the block's K range (kb0, rows8 packed rows of 8
// values) as int8 per 32 values (q4_stage_row), gathered through perm (null: read linearly). Every row's loads go
// out before the first quantization. Every thread of the block calls it (the quantizer's maxima are warp
// shuffles); the caller syncs before reading xs. Used by the few-rows kernels (gemv_q4_multi.cu, gemv_q8.cu).
template <int R, bool EVEN_ODD, int XROWS>
__device__ __forceinline__ void stage_x_rows(const float* __restrict__ x, int rows, int K, const int* __restrict__ perm, int kb0,
                                             int rows8, uint2 (&xs)[R][XROWS], int (&xsum)[R][XROWS / 4], float (&xd)[R][XROWS / 4]) {
  for (int base = 0; base < rows8; base += 128) {
    const int r = base + threadIdx.x;
    const bool live = r < rows8;
    const int kb = kb0 + r * 8;
    int idx[8];
    if (perm && live) {
      const int4 p0 = __ldg(reinterpret_cast<const int4*>(perm + kb));
      const int4 p1 = __ldg(reinterpret_cast<const int4*>(perm + kb + 4));
      idx[0] = p0.x; idx[1] = p0.y; idx[2] = p0.z; idx[3] = p0.w;
      idx[4] = p1.x; idx[5] = p1.y; idx[6] = p1.z; idx[7] = p1.w;
    }
    float v[R][8];
#pragma unroll
    for (int j = 0; j < R; ++j) {
#pragma unroll
      for (int i = 0; i < 8; ++i) v[j][i] = 0.f;
      if (!live || j >= rows) continue;
      const float* xr = x + (size_t)j * K;
      if (perm) {
#pragma unroll
        for (int i = 0; i < 8; ++i) v[j][i] = xr[idx[i]];
      } else {
        const float4 x0 = *reinterpret_cast<const float4*>(xr + kb);
        const float4 x1 = *reinterpret_cast<const float4*>(xr + kb + 4);
        v[j][0] = x0.x; v[j][1] = x0.y; v[j][2] = x0.z; v[j][3] = x0.w;
        v[j][4] = x1.x; v[j][5] = x1.y; v[j][6] = x1.z; v[j][7] = x1.w;
      }
    }
#pragma unroll
    for (int j = 0; j < R; ++j) q4_stage_row<EVEN_ODD>(v[j], live, r, xs[j], xsum[j], xd[j]);
  }
}
