// Hopper prefill GEMM (d), "register A": y[m, n] (+)= Σ_k xh[m, k] · W[n, k] on int4 GPTQ weights in the q4 layout
// (gemm_wgmma.cuh says what that is), without an fp16 copy of W anywhere. The product is computed transposed,
// yᵀ = W · xhᵀ, so that W is wgmma's A operand, which may come from registers: each consumer thread reads the
// packed words of its own A fragment from shared memory and dequantizes them into the registers the wgmma
// reads, while xh (B: [tokens][K], K contiguous, 128-byte swizzled) comes from shared memory through TMA as in
// gemm_wgmma.cuh. Variant (c) there dequantized into an fp16 B tile in shared memory with 3 producer warps and
// reached 239 TFLOP/s; (b), dequant_q4_tile into a scratch then the fp16 GEMM, costs a 0.8 GB round trip per
// 13B layer (0.3–0.4 ms of a 2.8 ms layer at 2048 rows) and the slicing of N that the scratch needs.
//
// Block tile: RS_BW = 128 rows of W (2 consumer warpgroups × 64: warp w of warpgroup c holds W rows
// c·64 + 16w .. +15; its A row g is W row c·64 + 16w + 2g and A row g + 8 the next one) × BT tokens (wgmma m64nBTk16, BT = 256 or 128). Per 64-wide K slice one TMA stage holds
// the xh tile [BT][64] fp16, the packed words qweight[8 rows][128 columns] u32, and the slice's group rows of
// scales [sg][128] fp16 and qzeros [sg][16] u32 (sg = 2 when gs = 32, else 1: gs % 64 == 0).
// A fragment (mma.m16n8k16's, per warp; lane l: g = l / 4, t = l % 4): a0 = (row g, k 2t, 2t+1),
// a1 = (row g + 8, k 2t, 2t+1), a2 = (row g, k 2t+8, 2t+9), a3 = (row g + 8, k 2t+8, 2t+9). In the q4 layout
// k 16s .. 16s+7 of a column are packed row 2s and k 16s+8 .. 16s+15 packed row 2s+1, nibble i = k % 8 at bit 4i,
// so every A register is byte t of one word: 4 shared-memory words per k16 step, each shared by the 4 lanes of a g,
// and a thread's two W rows being neighbours, its two words of a packed row are one 8-byte load (and its two scales
// one word, its two zeros the same word). With A rows g and g + 8 on W rows 8 apart, the loads were 4-byte ones:
// H200, 13B prompt, same call, 2048 tokens 21,174 / 21,180 → 21,303 / 21,294 tok/s, 512 tokens 17,853 / 17,812 →
// 17,970 / 18,003.
// The weight is s · (q − (z + 1)) as in dq8: (1024 + q) − (1024 + z + 1) is exact, one rounding in the product,
// so the GEMM multiplies the same fp16 weights as (b).
// Each k16 step of a slice has its own A registers (a[4][4]) and wgmma group: before a step redefines its registers
// it waits for the previous slice's same step (wgmma.wait_group 3), so up to 4 steps stay in flight while the
// consumers dequantize the next one.
// Accumulator (per warpgroup, m64nBT): d[4j + 0, 1] = (A row g, tokens 8j + 2t, +1), d[4j + 2, 3] = (A row g + 8,
// the same tokens); the epilogue stores y[token][n, n + 1] as one float2 per token (8 lanes of one t write 16
// consecutive floats of a row).
// SWIGLU and ROPE split a warp's lanes: lanes g < 4 and g ≥ 4 (partners, lane ^ 16) hold the same two adjacent
// columns of gate and of up (SWIGLU), or columns o, o + 1 and o + 64, o + 65 of a head (ROPE), so every thread still
// reads its two W rows with one 8-byte load per packed row, as the plain layout does, and one shuffle per token and
// pair in the epilogue brings each thread both factors it needs. (Laying the pair on A rows g and g + 8 of one thread
// took two 4-byte loads per packed row and two of each scale and zero: H200, 13B, 2048 rows, ~8% of the q/k/v launch.)
// SWIGLU: a tile holds 64 outputs (two TMA boxes of 64 columns, gate's and up's); after the exchange the gate lane
// holds output o's factors and the up lane output o + 1's; each writes silu(g) · u (silu_mul) into y[token][o] (unless
// y is null) and its fp16 copy yh (rows ldy apart).
// ROPE (with MATS = 3; q, k, v of 128-wide heads, one head per tile): after the exchange the lower lane holds the
// rotary pair (o, o + 64) and its partner (o + 1, o + 65); each rotates its pair by the (cos, sin) table rope ([M][64]:
// ROPE = 64, rope_table_f64's doubles and an f64 rotation, rope_kv_f32's bits; 32, rope_table_f32's floats and an f32
// one) and writes q rotated into y, k rotated and v as fp16 into the KV cache rows kc / vc (M rows of N, the chunk's
// first position's), as rope_kv_f32 does. With yh not null, q goes there instead as half(q · qScale): what
// attn_flash_wg_128 makes of the f32 q when it loads its Q tile (its qh). With ready not null, each finished tile
// adds 1 to ready[head] (after a fence): attention launched behind this kernel waits on those counters instead of
// for the whole grid, so it runs on the SMs the last partial wave leaves idle.
// Persistent grid over work units: whole tiles (tile t = (token tile t % mtiles, W tile t / mtiles): concurrent tiles
// share W), or with splits > 1 each tile's K in that many ranges added atomically (wg_gemm_rs_body says more).
// The consumers' wait for a stage is a plain spin, without gemm_wgmma.cuh's watchdog trap (a divergent exit in the
// wgmma loop, which ptxas answers by serializing the wgmmas): a pipeline bug hangs here instead of failing the launch.
// Needs K % 64 == 0, N % 32 == 0 (the qzeros rows must be 16-byte multiples for the TMA; SWIGLU: N % 64 == 0), ldy even,
// gs == 32 or gs % 64 == 0, 16-byte aligned buffers; M and N need not be tile multiples (TMA zero-fills).
#pragma once
#include <type_traits>
#include "common.cuh"  // pdl_wait, pdl_launch_dependents
#include "gemm_wgmma.cuh"

namespace wg {

constexpr int RS_BW = 128;  // W rows per block tile (SWIGLU: 64 gate + 64 up rows)
// Block: two consumer warpgroups and no producer warpgroup (thread 0 also issues the TMA copies): 8 warps, 2 per SM
// sub-partition, leave ptxas 255 registers per thread for the 128 accumulators, the A fragments and the
// dequantization. With a producer warpgroup (384 threads, setmaxnreg) or a producer warp (288: 3 warps on one
// sub-partition) ptxas compiled under 168 registers, and at BT = 256 it spilled and serialized the wgmmas.
constexpr int RS_THREADS = 256;

// one A register: byte t of packed word w, i.e. two consecutive k of one W row, as fp16 s · (q − (z + 1)) in the
// low / high half, in 4 instructions: prmt (sel = rs_byte_sel(t)) puts byte t in bytes 0 and 2 and byte 0x64 (from
// the register k64 = rs_exp64()) in bytes 1 and 3; the mask then leaves 1024's exponent with the low nibble at bit 0
// and the high one at bit 4 of the high half, i.e. (1024 + q0, 1024 + 16 q1), both exact; one fma scales the high
// half by 1/16 and subtracts (1024 + z + 1, 64 + z + 1), which is exact (the results are small integers), and the
// product with s is the one rounding, so the weights are bit for bit those of dq8 and dequant_q4_tile. (Masking
// byte t alone and OR-ing 1024's exponent in took two LOP3s, as a LOP3 takes one immediate: 5 instructions; shifting
// w by 4 for the high nibble took another.) rs_zero gives the fma's offsets for a row's group.
__device__ __forceinline__ uint32_t rs_byte_sel(uint32_t t) { return t | 0x40u | (t << 8) | 0x4000u; }
// 0x64646464 in a register the compiler cannot see through, so prmt reads it as its second source instead of a
// constant being folded into a LOP3 again
__device__ __forceinline__ uint32_t rs_exp64() {
  uint32_t k;
  asm volatile("mov.b32 %0, 0x64646464;" : "=r"(k));
  return k;
}
// (q4: 4 · the row's column, whose low 5 bits are 4 · (n % 8): the row's nibble's shift in its qzeros word)
__device__ __forceinline__ half2 rs_zero(uint32_t zword, uint32_t q4) {
  const uint32_t z1 = ((zword >> (q4 & 28u)) & 15u) + 1u;  // 1..16
  // fp16 −(1024 + z1) is 0xE400 | z1 (ulp 1 above 1024), −(64 + z1) is 0xD400 | z1 · 16 (ulp 1/16 above 64)
  const uint32_t u = 0xD400E400u | z1 | (z1 << 20);
  return *reinterpret_cast<const half2*>(&u);
}
__device__ __forceinline__ uint32_t rs_dequant_pair(uint32_t w, uint32_t k64, uint32_t sel, half2 zoff, half2 s2) {
  uint32_t v = __byte_perm(w, k64, sel) & 0x64F0640Fu;  // (1024 + q0, 1024 + 16 q1)
  const half2 h = __hmul2(__hfma2(*reinterpret_cast<const half2*>(&v), __floats2half2_rn(1.f, 0.0625f), zoff), s2);
  return *reinterpret_cast<const uint32_t*>(&h);
}

template <int BT, int R>
struct RsCfg {
  static constexpr int X_BYTES = BT * BK * 2;           // xh tile [BT][64], 128-byte swizzled
  static constexpr int Q_BYTES = (BK / 8) * RS_BW * 4;  // packed words [8][128] (SWIGLU: gate [8][64], then up at +Q_BYTES / 2)
  static constexpr int S_BYTES = 2 * RS_BW * 2;         // scales [sg][128] (SWIGLU: gate [sg][64], up at +256)
  static constexpr int Z_BYTES = 256;                   // qzeros [sg][16] (SWIGLU: gate [sg][8], up at +128)
  static constexpr int OFF_X = 0;
  static constexpr int OFF_Q = OFF_X + R * X_BYTES;
  static constexpr int OFF_S = OFF_Q + R * Q_BYTES;
  static constexpr int OFF_Z = OFF_S + R * S_BYTES;
  static constexpr int SMEM = OFF_Z + R * Z_BYTES + 1024;  // the base is rounded up to 1024 bytes
  static_assert(BT == 128 || BT == 256, "BT");
  static_assert(R >= 2, "R");
  static_assert(X_BYTES % 1024 == 0 && Q_BYTES % 128 == 0 && S_BYTES % 256 == 0 && Z_BYTES % 256 == 0, "TMA destinations stay aligned");
};

#ifdef WG_SM90A

// d[128] (scale_d = 0: =) += A(64x16: this thread's registers a, the mma.m16n8k16 A fragment of its warp's 16 rows) * B(16x256, desc b)
__device__ __forceinline__ void wgmma_rs_m64n256k16(float (&d)[128], const uint32_t (&a)[4], uint64_t b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 " WG_REGS128 ", {%128, %129, %130, %131}, %132, p, 1, 1, 0;\n}\n"
      : WG_ACC128
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale_d));
}
// d[64] (scale_d = 0: =) += A(64x16: this thread's registers a, the mma.m16n8k16 A fragment of its warp's 16 rows) * B(16x128, desc b)
__device__ __forceinline__ void wgmma_rs_m64n128k16(float (&d)[64], const uint32_t (&a)[4], uint64_t b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " WG_REGS64 ", {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
      : WG_ACC64
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale_d));
}

// tma_2d and mbar_expect_tx of gemm_wgmma.cuh as predicated instructions (no branch around them)
__device__ __forceinline__ void tma_2d_if(bool go, uint32_t dst, const CUtensorMap* map, int c0, int c1, uint32_t bar) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %5, 0;\n"
      "@p cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n}\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar), "r"((int)go)
      : "memory");
}
// a 3-D copy (c2: the outermost coordinate), predicated the same way
__device__ __forceinline__ void tma_3d_if(bool go, uint32_t dst, const CUtensorMap* map, int c0, int c1, int c2, uint32_t bar) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %6, 0;\n"
      "@p cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n}\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar), "r"((int)go)
      : "memory");
}
__device__ __forceinline__ void mbar_expect_tx_if(bool go, uint32_t bar, uint32_t bytes) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %2, 0;\n"
      "@p mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n}\n" ::"r"(bar), "r"(bytes), "r"((int)go)
      : "memory");
}

template <int BT>
__device__ __forceinline__ void wgmma_rs_bt(float (&d)[BT / 2], const uint32_t (&a)[4], uint64_t b, int scale_d);
template <>
__device__ __forceinline__ void wgmma_rs_bt<256>(float (&d)[128], const uint32_t (&a)[4], uint64_t b, int scale_d) {
  wgmma_rs_m64n256k16(d, a, b, scale_d);
}
template <>
__device__ __forceinline__ void wgmma_rs_bt<128>(float (&d)[64], const uint32_t (&a)[4], uint64_t b, int scale_d) {
  wgmma_rs_m64n128k16(d, a, b, scale_d);
}

// The ROPE epilogue of one tile (the header says what): acc[4j + e] is the head's column col and acc[4j + 2 + e]
// column col + 1 (col even; the head starts at column n0), for token m0 + 8j + t2 + e. Lanes with col < 64 rotate
// pair col, their partners (col − 64 + 1 ≥ 0) pair col − 63. The (cos, sin) of 4 token groups are loaded DEPTH − 1
// groups of 4 ahead of their rotations, as the plain epilogue's old values are.
// F64: the table is double2 and the rotation f64 (rope.cuh's rounding, bit for bit); else float2 and an f32 rotation.
// (cos, sin) chunks in flight in the f32 epilogue: 3 against 2, H200, 13B, 2048 rows, same call: 24,234 / 24,215 /
// 24,194 vs 24,173 / 24,145 / 24,146 tok/s (250 registers; a depth of 4 spills). A macro so a lab build can set it.
#ifndef ROPE_CS_DEPTH
#define ROPE_CS_DEPTH 3
#endif
template <int BT, int F64>
__device__ __forceinline__ void rope_epilogue(const float (&acc)[BT / 2], int m0, int n0, int col, int t2, int M, int N, int mat,
                                              float* __restrict__ q, __half* __restrict__ kc, __half* __restrict__ vc,
                                              const void* __restrict__ ropeTable, __half* __restrict__ qh, float qScale) {
  using CS = typename std::conditional<F64 != 0, double2, float2>::type;
  const CS* __restrict__ rope = static_cast<const CS*>(ropeTable);
  // DEPTH chunks of (cos, sin) in flight: the table is read from L2 (a tile's rows are 128 KB), whose latency one
  // chunk of rotations does not cover
  constexpr int CH = 4, NCH = BT / 8 / CH, DEPTH = F64 != 0 ? 2 : ROPE_CS_DEPTH;
  auto row = [&](int jt, int e) { return m0 + 8 * jt + t2 + e; };
  if (mat == 2) {  // v: into the cache as it is, both columns in one store
#pragma unroll
    for (int jt = 0; jt < BT / 8; ++jt)
#pragma unroll
      for (int e = 0; e < 2; ++e)
        if (row(jt, e) < M) {
          *reinterpret_cast<half2*>(vc + (size_t)row(jt, e) * N + n0 + col) = __floats2half2_rn(acc[4 * jt + e], acc[4 * jt + 2 + e]);
        }
    return;
  }
  const bool hi = col >= 64;             // this lane holds o + 64, o + 65 (its partner o, o + 1)
  const int pr = hi ? col - 63 : col;    // the pair it rotates: columns pr and pr + 64 of the head
  const int n = n0 + pr;
  CS cs[DEPTH][CH][2];
  auto loadCs = [&](int j0, CS (&o)[CH][2]) {
#pragma unroll
    for (int qd = 0; qd < CH; ++qd)
#pragma unroll
      for (int e = 0; e < 2; ++e) o[qd][e] = row(j0 + qd, e) < M ? rope[(size_t)row(j0 + qd, e) * 64 + pr] : CS{1, 0};
  };
#pragma unroll
  for (int ch = 0; ch + 1 < DEPTH; ++ch) loadCs(ch * CH, cs[ch]);
#pragma unroll
  for (int ch = 0; ch < NCH; ++ch) {
    if (ch + DEPTH - 1 < NCH) loadCs((ch + DEPTH - 1) * CH, cs[(ch + DEPTH - 1) % DEPTH]);
#pragma unroll
    for (int qd = 0; qd < CH; ++qd)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int jt = ch * CH + qd, m = row(jt, e);
        // the lower lane sends col + 1 and keeps col, the upper one sends o + 64 and keeps o + 65 (every lane shuffles)
        const float other = __shfl_xor_sync(0xffffffffu, hi ? acc[4 * jt + e] : acc[4 * jt + 2 + e], 16);
        if (m >= M) continue;
        const CS cse = cs[ch % DEPTH][qd][e];
        const float a = hi ? other : acc[4 * jt + e], b = hi ? acc[4 * jt + 2 + e] : other;
        float ra, rb;
        if constexpr (F64 != 0) {  // rope.cuh's rounding
          ra = (float)(a * (double)cse.x - b * (double)cse.y);
          rb = (float)(b * (double)cse.x + a * (double)cse.y);
        } else {
          ra = __fmaf_rn(a, (float)cse.x, -(b * (float)cse.y));
          rb = __fmaf_rn(b, (float)cse.x, a * (float)cse.y);
        }
        if (mat == 0 && qh != nullptr) {  // q as attention's Q tile takes it: half(q · qScale)
          __half* p = qh + (size_t)m * N + n;
          p[0] = __float2half_rn(ra * qScale);
          p[64] = __float2half_rn(rb * qScale);
        } else if (mat == 0) {
          float* p = q + (size_t)m * N + n;
          p[0] = ra;
          p[64] = rb;
        } else {
          __half* p = kc + (size_t)m * N + n;
          p[0] = __float2half_rn(ra);
          p[64] = __float2half_rn(rb);
        }
      }
  }
}

// y (+)= xh · Wᵀ as the header says. Maps (the calling kernel's own __grid_constant__ parameters):
//   tmX: xh fp16 [M][K], box {64, BT}, 128-byte swizzle
//   tmQ: qweight u32 [K/8][N], box {128, 8}; tmS: scales fp16 [K/gs][N], box {128, sg}; tmZ: qzeros u32 [K/gs][N/8], box {16, sg}
//   SWIGLU: tmQ / tmS / tmZ are gate's and tmQ2 / tmS2 / tmZ2 up's, boxes of 64 columns ({64, 8}, {64, sg}, {8, sg});
//   N counts outputs (gate's columns), y / yh rows are ldy apart. Otherwise tmQ2.. are unused and yh may be null.
//   MATS = 3 (not with SWIGLU): three matrices of one shape [K][N] and x (q, k and v), tiled as one of 3N outputs:
//   matrix 0 has tmQ / tmS / tmZ and y, 1 tmQ2 / tmS2 / tmZ2 and y1, 2 *tmQ3 / *tmS3 / *tmZ3 and y2 (13B's q/k/v at
//   2048 rows: 960 tiles, 7.3 waves on 132 SMs, 91% of their turns filled, where three launches of 320 fill 81%).
// splits > 1 (not with SWIGLU): each tile's K slices in that many ranges, one work unit each, whose sums are added
// into y with float atomics (so launches of few tiles fill the SMs; the sum's order then varies between runs).
// Block b runs units b, b + G, ...; their K slices form one sequence j = 0, 1, ... through the R-stage ring, and
// thread 0 keeps the ring R slices ahead (first R at the start, then slice j + R once all 8 warps have waited for
// slice j's wgmmas, met at a named barrier).
template <int BT, int R, bool SWIGLU, int MATS = 1, bool PAIRED = false, int ROPE = 0>
__device__ __forceinline__ void wg_gemm_rs_body(float* __restrict__ y, int M, int N, int ldy, int K, int accumulate, int gs, int splits,
                                                const CUtensorMap& tmX, const CUtensorMap& tmQ, const CUtensorMap& tmS,
                                                const CUtensorMap& tmZ, const CUtensorMap& tmQ2, const CUtensorMap& tmS2,
                                                const CUtensorMap& tmZ2, __half* __restrict__ yh, float* __restrict__ y1 = nullptr,
                                                float* __restrict__ y2 = nullptr, const CUtensorMap* tmQ3 = nullptr,
                                                const CUtensorMap* tmS3 = nullptr, const CUtensorMap* tmZ3 = nullptr,
                                                __half* __restrict__ kc = nullptr, __half* __restrict__ vc = nullptr,
                                                const void* __restrict__ rope = nullptr, float qScale = 1.f, unsigned* ready = nullptr) {
  static_assert(MATS == 1 || (MATS == 3 && !SWIGLU), "MATS");
  static_assert(!PAIRED || SWIGLU, "PAIRED");
  static_assert(ROPE == 0 || (MATS == 3 && (ROPE == 32 || ROPE == 64)), "ROPE");
  using C = RsCfg<BT, R>;
  constexpr int TW = SWIGLU ? RS_BW / 2 : RS_BW;  // outputs per tile
  constexpr int KS = BK / 16;                      // k16 steps per slice
  extern __shared__ unsigned char wg_smem[];
  __shared__ __align__(8) uint64_t bar_full[R];
  const uint32_t sbase = (saddr(wg_smem) + 1023u) & ~1023u;
  const unsigned char* gbase = wg_smem + (sbase - saddr(wg_smem));  // generic pointer to the same byte
  const int tid = threadIdx.x, c = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2;
  const int mtiles = (M + BT - 1) / BT, ntPer = (N + TW - 1) / TW, tiles = mtiles * MATS * ntPer, nk = K / BK;
  // work units: unit u is tile u % tiles over the K slices of its split u / tiles; block b runs units b, b + G, ...
  const int G = gridDim.x, units = tiles * splits;
  auto unitRange = [&](int u, int& tile, int& kb0, int& kb1) {
    tile = u % tiles;
    const int sp = u / tiles;
    kb0 = sp * nk / splits;
    kb1 = (sp + 1) * nk / splits;
  };
  int total = 0;  // this block's K slices
  for (int u = blockIdx.x; u < units; u += G) {
    int t, k0, k1;
    unitRange(u, t, k0, k1);
    total += k1 - k0;
  }
  const int sg = gs < BK ? BK / gs : 1;
  const uint32_t full0 = saddr(&bar_full[0]);
  const uint32_t tx = C::X_BYTES + C::Q_BYTES + sg * (RS_BW * 2 + (RS_BW / 8) * 4);

  // The producer's cursor: the next slice to load (its tile's coordinates, k slice and stage), kept by every
  // thread with adds only (divisions once per unit), so that the copies can be predicated instructions of
  // thread 0 rather than a branch: ptxas serializes the wgmmas around a divergent path in their loop.
  // pGrow: the slice's first group row of scales / zeros, kept without dividing by gs: with spg slices per group
  // (gs ≥ 64) it steps every spg slices, with gs = 32 it is 2 · pKb
  const int spg = gs >= BK ? gs / BK : 0;
  int pLeft = total, pUnit = blockIdx.x, pKb = 0, pKb1 = 0, pStage = 0, pM0 = 0, pN0 = 0, pGrow = 0, pSub = 0, pMat = 0;
  auto tileOrigin = [&](int tile, int& m0, int& n0, int& mat) {  // (mat: which of the MATS matrices)
    m0 = (tile % mtiles) * BT;
    const int wt = tile / mtiles;
    mat = MATS == 1 ? 0 : wt / ntPer;
    n0 = (wt - mat * ntPer) * TW;
  };
  auto cursorAt = [&](int u) {  // the cursor at unit u's first slice
    int tile;
    unitRange(u, tile, pKb, pKb1);
    tileOrigin(tile, pM0, pN0, pMat);
    pGrow = spg == 0 ? 2 * pKb : pKb / spg;
    pSub = spg == 0 ? 0 : pKb % spg;
  };
  if (pLeft > 0) cursorAt(pUnit);
  // go: this thread issues the slice's weight copies (and arms its barrier for all its bytes); goX: its xh copy
  auto issueNext = [&](bool go, bool goX) {
    const uint32_t full = full0 + 8 * pStage, grow = pGrow;
    const uint32_t q = sbase + C::OFF_Q + pStage * C::Q_BYTES, sc = sbase + C::OFF_S + pStage * C::S_BYTES;
    const uint32_t z = sbase + C::OFF_Z + pStage * C::Z_BYTES;
    mbar_expect_tx_if(go, full, tx);
    tma_2d_if(goX, sbase + C::OFF_X + pStage * C::X_BYTES, &tmX, pKb * BK, pM0, full);
    // (MATS = 3: the slice's matrix; selects between kernel parameters, no branch)
    const CUtensorMap* mq = MATS == 1 ? &tmQ : pMat == 0 ? &tmQ : pMat == 1 ? &tmQ2 : tmQ3;
    const CUtensorMap* ms = MATS == 1 ? &tmS : pMat == 0 ? &tmS : pMat == 1 ? &tmS2 : tmS3;
    const CUtensorMap* mz = MATS == 1 ? &tmZ : pMat == 0 ? &tmZ : pMat == 1 ? &tmZ2 : tmZ3;
    if (PAIRED) {  // gate's and up's box in one copy each: [2][8][64] words, [2][sg][64] scales, [2][sg][8] zeros
      tma_3d_if(go, q, &tmQ, pN0, pKb * (BK / 8), 0, full);
      tma_3d_if(go, sc, &tmS, pN0, grow, 0, full);
      tma_3d_if(go, z, &tmZ, pN0 / 8, grow, 0, full);
    } else {
      tma_2d_if(go, q, mq, pN0, pKb * (BK / 8), full);
      tma_2d_if(go, sc, ms, pN0, grow, full);
      tma_2d_if(go, z, mz, pN0 / 8, grow, full);
    }
    if (SWIGLU && !PAIRED) {
      tma_2d_if(go, q + C::Q_BYTES / 2, &tmQ2, pN0, pKb * (BK / 8), full);
      tma_2d_if(go, sc + 256, &tmS2, pN0, grow, full);
      tma_2d_if(go, z + 128, &tmZ2, pN0 / 8, grow, full);
    }
    --pLeft;
    pStage = pStage + 1 == R ? 0 : pStage + 1;
    if (spg == 0) {
      pGrow += 2;
    } else if (++pSub == spg) {
      pSub = 0;
      ++pGrow;
    }
    if (++pKb == pKb1) {
      pUnit += G;
      if (pLeft > 0) cursorAt(pUnit);
    }
  };
  // every warp has waited for the wgmmas of the oldest slice in the ring: its stage is free, and is refilled at
  // once (a named barrier of the 256 threads per slice). H200, 13B prompt through this kernel, same call: refilling
  // two stages per barrier 18,851 / 18,908 tok/s at 2048 rows, 19,909 / 19,906 at 768; three 18,122 / 18,163 and
  // 19,242 / 19,227; one 19,908 and 21,019. The ring's depth counts for more than the barriers (7% of the warps'
  // stall samples at two). Empty mbarriers polled by thread 0 instead of the barrier (no lockstep) measured 16.7k
  // at 2048 rows: the refills then waited for warp 0's polls.
  auto release = [&]() {
    if (pLeft == 0) return;  // (uniform)
    consumers_sync();
    issueNext(tid == 0, tid == 0);
  };

  if (tid == 0) {
#pragma unroll
    for (int i = 0; i < R; ++i) mbar_init(full0 + 8 * i, 1);  // thread 0's arrive.expect_tx (+ the TMA bytes)
    mbar_fence_init();
    prefetch_map(&tmX);
    prefetch_map(&tmQ);
    prefetch_map(&tmS);
    prefetch_map(&tmZ);
    if ((SWIGLU && !PAIRED) || MATS == 3) {
      prefetch_map(&tmQ2);
      prefetch_map(&tmS2);
      prefetch_map(&tmZ2);
    }
    if (MATS == 3) {
      prefetch_map(tmQ3);
      prefetch_map(tmS3);
      prefetch_map(tmZ3);
    }
  }
  // this thread's two W rows of the tile (A rows g and g + 8 of its warp: columns col and col + 1 of one matrix):
  // byte offsets of the lower row into a stage's packed words, scales and zeros (the upper row's are 4, 2 and 0
  // bytes on), and the prmt selector of its byte. They go through shared memory and back, because ptxas recomputed
  // them from threadIdx in every K slice (~25 of the slice's ~290 instructions per warp); values loaded from shared
  // memory cannot be recomputed, so they stay in registers. col: the tile column (plain), gate's or up's (SWIGLU:
  // lanes g ≥ 4 read up's boxes, which follow gate's), the head's (ROPE: lanes g ≥ 4 the head's upper half). With the
  // 4-instruction dequantization (rs_dequant_pair), H200, 13B prompt, same call: 2048 tokens 20,464 / 20,442 → 21,074
  // / 21,059 tok/s, 512 tokens 17,249 → 18,048.
  __shared__ uint4 threadOffsets[RS_THREADS];
  {
    const int pairCol = c * 32 + warp * 8 + 2 * (g & 3), upper = g >> 2;  // (SWIGLU, ROPE: the lane split)
    const int col = SWIGLU ? pairCol : ROPE != 0 ? pairCol + 64 * upper : c * 64 + warp * 16 + 2 * g;
    const int mat = SWIGLU ? upper : 0;  // up's packed words, scales and zeros follow gate's
    const uint32_t upS = PAIRED ? sg * 128 : 256, upZ = PAIRED ? sg * 32 : 128;
    threadOffsets[tid] = make_uint4(mat * (C::Q_BYTES / 2) + col * 4, mat * upS + col * 2, mat * upZ + (col >> 3) * 4, rs_byte_sel(lane & 3));
  }
  __syncthreads();
  // The first R slices (every thread keeps the cursor): their weights at once, their xh once the kernel before this
  // one has finished (launched with programmatic dependent launch, this block may start while that kernel's last
  // blocks run, and fetch its first weights meanwhile; the cursor is wound back for the xh copies). Every thread
  // waits, since the epilogue reads and writes y. Without the launch attribute pdl_wait returns at once.
  {
    const int l = pLeft, un = pUnit, kb = pKb, kb1 = pKb1, st = pStage, m0 = pM0, n0 = pN0, gr = pGrow, sb = pSub, mt = pMat;
    for (int i = 0; i < R && pLeft > 0; ++i) issueNext(tid == 0, false);
    pLeft = l, pUnit = un, pKb = kb, pKb1 = kb1, pStage = st, pM0 = m0, pN0 = n0, pGrow = gr, pSub = sb, pMat = mt;
    pdl_wait();
    pdl_launch_dependents();
    for (int i = 0; i < R && pLeft > 0; ++i) issueNext(false, tid == 0);
  }

  const uint4 offs = threadOffsets[tid];
  const uint32_t qLo = offs.x, sLo = offs.y, zLo = offs.z, sh = offs.w, k64 = rs_exp64();
  const int col = (int)((SWIGLU ? qLo % (C::Q_BYTES / 2) : qLo) >> 2);
  constexpr uint32_t qRow = (SWIGLU ? RS_BW / 2 : RS_BW) * 4, sRow = (SWIGLU ? RS_BW / 2 : RS_BW) * 2;
  constexpr uint32_t zRow = (SWIGLU ? RS_BW / 16 : RS_BW / 8) * 4;
  float acc[BT / 2];
  uint32_t a[KS][4];  // the A fragments of a slice's k16 steps
  int cStage = 0;
  uint32_t cPhase = 0;
  for (int u = blockIdx.x; u < units; u += G) {
    int tile, kb0, kb1, m0, n0, mat;
    unitRange(u, tile, kb0, kb1);
    tileOrigin(tile, m0, n0, mat);
    for (int kb = kb0; kb < kb1; ++kb) {
      // (a plain spin: mbar_wait's watchdog trap is a divergent exit inside the wgmma pipeline, around which
      // ptxas serializes the wgmmas)
      while (!mbar_try(full0 + 8 * cStage, cPhase)) {
      }
      const unsigned char* q = gbase + C::OFF_Q + cStage * C::Q_BYTES;
      const unsigned char* sc = gbase + C::OFF_S + cStage * C::S_BYTES;
      const unsigned char* z = gbase + C::OFF_Z + cStage * C::Z_BYTES;
      const uint64_t db = desc_sw128(sbase + C::OFF_X + cStage * C::X_BYTES);
      if (++cStage == R) {
        cStage = 0;
        cPhase ^= 1u;
      }
      // the slice's packed words first (they do not wait for the wgmmas), so the shared-memory latency
      // overlaps the waits below
      uint32_t w[KS][4];
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        const unsigned char* r0 = q + (2 * kk) * qRow;  // k 16kk .. 16kk+7; packed row 2kk + 1: k 16kk+8 ..
        // columns col and col + 1: one 8-byte load per packed row
        const uint2 p0 = *reinterpret_cast<const uint2*>(r0 + qLo), p1 = *reinterpret_cast<const uint2*>(r0 + qRow + qLo);
        w[kk][0] = p0.x, w[kk][1] = p0.y, w[kk][2] = p1.x, w[kk][3] = p1.y;
      }
      half2 sLo2, sHi2, zLo2, zHi2;  // the group's scale and rs_zero offsets of the two W rows
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        if (kk == 0 || (kk == 2 && sg == 2)) {  // gs = 32: k16 steps 2, 3 are the slice's second group row
          const int gl = kk >> 1;
          // columns col and col + 1: their scales in one word, their zeros in the same one (col is even; qLo's low
          // 5 bits are 4 · (col % 8), up's offset being a multiple of 32)
          const half2 s01 = *reinterpret_cast<const half2*>(sc + gl * sRow + sLo);
          const uint32_t zw = *reinterpret_cast<const uint32_t*>(z + gl * zRow + zLo);
          sLo2 = __low2half2(s01);
          sHi2 = __high2half2(s01);
          zLo2 = rs_zero(zw, qLo);
          zHi2 = rs_zero(zw, qLo + 4);
        }
        if (kb > kb0) {
          // a[kk] was read by the previous slice's step kk: wait for it (KS − 1 later steps may still run);
          // after the last step, that whole slice is done and its stage goes back
          wg_wait<KS - 1>();
          if (kk == KS - 1) release();
        }
        a[kk][0] = rs_dequant_pair(w[kk][0], k64, sh, zLo2, sLo2);
        a[kk][1] = rs_dequant_pair(w[kk][1], k64, sh, zHi2, sHi2);
        a[kk][2] = rs_dequant_pair(w[kk][2], k64, sh, zLo2, sLo2);
        a[kk][3] = rs_dequant_pair(w[kk][3], k64, sh, zHi2, sHi2);
        wg_fence();
        wgmma_rs_bt<BT>(acc, a[kk], db + 2 * kk, kb > kb0 || kk > 0);  // +32 bytes per k16; the unit's first overwrites
        wg_commit();
      }
    }
    wg_wait<0>();
    fence_regs(acc);
    release();
    const int t2 = 2 * (lane & 3);  // the thread's first token of each group of 8
    if (SWIGLU) {
      const bool upLane = (lane & 16) != 0;  // holds up's col, col + 1; its partner gate's
      const int o = n0 + col + (upLane ? 1 : 0);
#pragma unroll
      for (int jt = 0; jt < BT / 8; ++jt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          // the gate lane sends gate's col + 1 and keeps col, the up lane sends up's col and keeps col + 1
          const float lo = acc[4 * jt + e], hi = acc[4 * jt + 2 + e];  // (selected, not indexed: acc stays in registers)
          const float mine = upLane ? hi : lo, other = __shfl_xor_sync(0xffffffffu, upLane ? lo : hi, 16);
          const int m = m0 + 8 * jt + t2 + e;
          if (m >= M || o >= N) continue;
          const float v = upLane ? silu_mul(other, mine) : silu_mul(mine, other);
          if (y != nullptr) y[(size_t)m * ldy + o] = v;  // (null: down_proj reads only the copy)
          yh[(size_t)m * ldy + o] = __float2half_rn(v);
        }
      continue;
    }
    if (ROPE != 0) {
      rope_epilogue<BT, ROPE == 64 ? 1 : 0>(acc, m0, n0, col, t2, M, N, mat, y, kc, vc, rope, yh, qScale);
      if (ready != nullptr) {  // (uniform) this tile of head n0 / 128 is written: one more on its counter
        consumers_sync();      // every thread's stores of the tile are issued
        if (tid == 0) {
          __threadfence();
          atomicAdd(ready + n0 / RS_BW, 1u);
        }
      }
      continue;
    }
    const int nLo = n0 + col;
    float* __restrict__ yt = MATS == 1 ? y : mat == 0 ? y : mat == 1 ? y1 : y2;  // the tile's matrix's output
    // The thread's two outputs are columns nLo and nLo + 1 (acc[4j + 0, 1] and acc[4j + 2, 3] for tokens 8j + 2t, +1):
    // one 8-byte access per token (ldy and nLo are even, N % 32 == 0, so nLo < N takes both)
    auto at = [&](int jt, int e) { return reinterpret_cast<float2*>(yt + (size_t)(m0 + 8 * jt + t2 + e) * ldy + nLo); };
    auto live = [&](int jt, int e) { return m0 + 8 * jt + t2 + e < M && nLo < N; };
    if (splits > 1) {  // one of the tile's K ranges: added into y (zeroed by the host unless accumulating)
#pragma unroll
      for (int jt = 0; jt < BT / 8; ++jt)
#pragma unroll
        for (int e = 0; e < 2; ++e)
          if (live(jt, e)) atomicAdd(at(jt, e), make_float2(acc[4 * jt + e], acc[4 * jt + 2 + e]));
      continue;
    }
    // Stores, or y += acc: the old values of EP_CHUNK token groups are loaded before the previous chunk's stores, so
    // one load latency is exposed per tile rather than one per chunk (the stores may alias nothing the loads read,
    // but the compiler cannot know it, so the order is written out). With the 8-byte accesses, H200, 13B prompt, same
    // call: 2048 tokens 21,183 / 21,197 → 21,402 / 21,418 tok/s, 512 tokens 18,069 → 18,829 (measured together with
    // an addressing change since dropped, which alone was −0.6%: ring addresses kept in registers)
    constexpr int EP_CHUNK = 4, EP_N = BT / 8 / EP_CHUNK;
    float2 old[2][EP_CHUNK][2];  // [buffer][token group][token parity]
    auto loadOld = [&](int jc, float2 (&o)[EP_CHUNK][2]) {
#pragma unroll
      for (int qd = 0; qd < EP_CHUNK; ++qd)
#pragma unroll
        for (int e = 0; e < 2; ++e) o[qd][e] = accumulate && live(jc + qd, e) ? *at(jc + qd, e) : make_float2(0.f, 0.f);
    };
    loadOld(0, old[0]);
#pragma unroll
    for (int ch = 0; ch < EP_N; ++ch) {  // (ch: the chunk; c is the thread's warpgroup)
      if (ch + 1 < EP_N) loadOld((ch + 1) * EP_CHUNK, old[(ch + 1) & 1]);
#pragma unroll
      for (int qd = 0; qd < EP_CHUNK; ++qd)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int jt = ch * EP_CHUNK + qd;
          const float2 o = old[ch & 1][qd][e];
          if (live(jt, e)) *at(jt, e) = make_float2(acc[4 * jt + e] + o.x, acc[4 * jt + 2 + e] + o.y);
        }
    }
  }
}

// the lab's plain entry (gemm_wgmma.cuh's WgFn signature: tmX, tmQ, tmS, tmZ in the places of tmA, tmB, tmS, tmZ;
// flags ignored: whole tiles only)
template <int BT, int R>
__global__ void __launch_bounds__(RS_THREADS, 1)
    wg_gemm_rs(float* __restrict__ y, int M, int N, int ldy, int K, int accumulate, int gs, const __grid_constant__ CUtensorMap tmX,
               const __grid_constant__ CUtensorMap tmQ, const __grid_constant__ CUtensorMap tmS,
               const __grid_constant__ CUtensorMap tmZ, int* __restrict__ flags) {
  wg_gemm_rs_body<BT, R, false>(y, M, N, ldy, K, accumulate, gs, 1, tmX, tmQ, tmS, tmZ, tmQ, tmS, tmZ, nullptr);
}

#endif  // WG_SM90A

}  // namespace wg
