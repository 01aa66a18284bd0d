// GPTQ 4-bit linears for 2..4 rows at once (batched decode of a few sequences), the one-token GEMV's way, over up
// to 3 matrices that read the same x in one launch (q/k/v; gate/up with SwiGLU):
//   y_m[j, n] (+)= Σ_k s_m[g, n] · (q_m[k, n] − z_m[g, n]) · x[j, perm_m[k]],   g = k / gs,  z = stored zero + 1,  j < rows
// Layouts as gemv_q4.cu: qweight [K/8, N] u32 in the q4 layout (rows reordered at upload for act-order,
// perm maps a reordered row to its x index, null = identity), scales [G, N] fp16, qzeros [G, N/8] u32;
// x [rows, K] f32, y [rows, N] f32.
//
// Why not gemv_q4_rows (tensor cores) for so few rows: that kernel dequantizes every weight to fp16
// (~15 instructions per 8 weights whatever the batch) and reaches 25–35% of the H200's read ceiling at
// 2..8 rows (bench/cudaNotes.md). The one-token kernel's integer path costs 2 instructions per 8 weights
// for the unpacking plus 2 dp4a per row, so up to 4 rows stay below what the card issues while the
// weights stream at the one-token kernel's rate; each weight is still read once for all rows.
//
// Grid: x = 128-column tiles of all matrices back to back, y = K ranges of kPerBlock values (at most QM_XS_ROWS · 8). Block: 4 warps
// streaming the 64-value half slices w, w+4, ... of the block's K range, two held in registers, as
// gemv_q4.cu; each half is multiplied into every row's staged int8 x. Epilogue:
//   one K range: the block stores (or adds into) y itself;
//   accumulate (y += result): float atomics straight into y;
//   otherwise: split-K sums go into a workspace (zero between launches), the tile's last block (ticket
//   counter) stores them and restores the workspace and the counter to zero, as gemv_q4.cu does. So a
//   plain store needs no memset of y before it, which in a recorded step would also break the chain of
//   programmatic launches (a memset node is not a kernel). A SwiGLU pair (m[0] gate, m[1] up, swiglu
//   non-null): gate tile p and up tile p share one ticket, and the last of their blocks writes
//   swiglu[j, n] = silu(gate) · up (and gate, up where their y is non-null), as gemv_q4.cu's pair epilogue.
#include "gemv_q4.cuh"

// packed rows of x a block stages per row: K ranges of at most 2048 values
#define QM_XS_ROWS 256

struct QMMat {
  const uint4* qw;
  const __half* scales;
  const uint32_t* qz;
  const int* perm;  // null: identity
  float* y;         // [rows, N]; null: not stored (a SwiGLU pair's gate or up)
  int N;
  int tileEnd;      // tiles of matrices 0..m (cumulative)
};
struct QMArgs {
  QMMat m[3];
  const float* x;      // [rows, K]
  float* ws;           // [tiles · R · 128] f32, zero between launches
  unsigned* counters;  // [tiles] tickets, zero between launches
  float* swiglu;       // non-null: m[0] = gate, m[1] = up, swiglu [rows, N]
  int rows;
  int K;
  int gs;
  int kPerBlock;
  int accumulate;      // y += result (one matrix)
  int pad;
};
static_assert(sizeof(QMMat) == 48, "QMMat layout is mirrored by smallBatchLinear.ts");
static_assert(sizeof(QMArgs) == 200, "QMArgs layout is mirrored by smallBatchLinear.ts");

template <int RPG, int R>
__device__ __forceinline__ void gemv_q4_multi_body(const QMArgs& a) {
  constexpr int GR = RPG < 8 ? RPG : 8;  // packed rows per group inside a half slice
  constexpr int GH = 8 / GR;             // groups per half slice
  __shared__ uint2 xs[R][QM_XS_ROWS];
  __shared__ int xsum[R][QM_XS_ROWS / 4];
  __shared__ float xd[R][QM_XS_ROWS / 4];
  __shared__ float red[R][4][128];
  __shared__ int last;
  const int tile = blockIdx.x;
  const int mi = tile < a.m[0].tileEnd ? 0 : tile < a.m[1].tileEnd ? 1 : 2;
  const QMMat& m = a.m[mi];
  const int tileStart = mi == 0 ? 0 : a.m[mi - 1].tileEnd;
  const int N = m.N, K = a.K, gs = a.gs, rows = a.rows;
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int kb0 = blockIdx.y * a.kPerBlock;
  const int kb1 = min(K, kb0 + a.kPerBlock);
  const int nSlices = (kb1 - kb0) >> 7;
  const int rows8 = (kb1 - kb0) >> 3;
  const int col0 = (tile - tileStart) * 128;
  const int n0 = col0 + lane * 4;
  const bool colLive = n0 < N;
  const int rowStride = N >> 2;
  const uint4* wcol = m.qw + (n0 >> 2);

  // the first two half slices' weights before waiting for x's producer (a no-op wait without PDL)
  uint4 wa[8], wb[8];
  uint2 sa[GH], sb[GH];
  uint32_t za[GH], zb[GH];
  int s = warp;
  const int nHalves = 2 * nSlices;
  if (colLive && s < nHalves) q4_load_half<GR, GH>(wa, sa, za, m.scales, m.qz, N, kb0 + s * 64, n0, wcol, rowStride, gs);
  if (colLive && s + 4 < nHalves) q4_load_half<GR, GH>(wb, sb, zb, m.scales, m.qz, N, kb0 + (s + 4) * 64, n0, wcol, rowStride, gs);
  pdl_wait();
  pdl_launch_dependents();

  // x of every row, staged as int8 per 32 values
  stage_x_rows<R, true, QM_XS_ROWS>(a.x, rows, K, m.perm, kb0, rows8, xs, xsum, xd);
  __syncthreads();

  float acc[R][4];
#pragma unroll
  for (int j = 0; j < R; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  if (colLive) {
    stream_pair(wa, sa, za, wb, sb, zb, s, nHalves,
      [&](const auto& w, const auto& sc, const auto& z, int h) {
#pragma unroll
        for (int j = 0; j < R; ++j)
          if (j < rows) q4_mul_half<GR, GH>(acc[j], w, sc, z, xs[j] + h * 8, xsum[j] + h * 2, xd[j] + h * 2, n0);
      },
      [&](auto& w, auto& sc, auto& z, int h) { q4_load_half<GR, GH>(w, sc, z, m.scales, m.qz, N, kb0 + h * 64, n0, wcol, rowStride, gs); });
  }
#pragma unroll
  for (int j = 0; j < R; ++j)
#pragma unroll
    for (int c = 0; c < 4; ++c) red[j][warp][lane * 4 + c] = acc[j][c];
  __syncthreads();
  const int n = col0 + t;
  float sum[R];
#pragma unroll
  for (int j = 0; j < R; ++j) sum[j] = red[j][0][t] + red[j][1][t] + red[j][2][t] + red[j][3][t];
  const bool pair = a.swiglu != nullptr;
  if (!pair && (gridDim.y == 1 || a.accumulate)) {
    if (n >= N) return;
#pragma unroll
    for (int j = 0; j < R; ++j) {
      if (j >= rows) continue;
      float* out = m.y + (size_t)j * N + n;
      if (!a.accumulate) *out = sum[j];
      else if (gridDim.y == 1) *out += sum[j];
      else atomicAdd(out, sum[j]);
    }
    return;
  }
  // split K, plain store: through the workspace, the tile's last block stores (a SwiGLU pair's gate and up tiles
  // share one ticket, and the last of their blocks writes both and SwiGLU)
  float* wt = a.ws + (size_t)tile * R * 128;
#pragma unroll
  for (int j = 0; j < R; ++j)
    if (j < rows) atomicAdd(wt + j * 128 + t, sum[j]);
  const int tilesPerMat = a.m[0].tileEnd;
  const int p = tile % tilesPerMat;
  if (!block_ticket(a.counters + (pair ? p : tile), (pair ? 2u : 1u) * gridDim.y, &last)) return;
  if (pair) {
    float* wg = a.ws + (size_t)p * R * 128;
    float* wu = a.ws + (size_t)(tilesPerMat + p) * R * 128;
    const int np = p * 128 + t;
#pragma unroll
    for (int j = 0; j < R; ++j) {
      if (j >= rows) continue;
      const float g = __ldcg(wg + j * 128 + t), u = __ldcg(wu + j * 128 + t);
      __stcg(wg + j * 128 + t, 0.f);
      __stcg(wu + j * 128 + t, 0.f);
      if (np >= a.m[0].N) continue;
      const size_t o = (size_t)j * a.m[0].N + np;
      if (a.m[0].y) a.m[0].y[o] = g;
      if (a.m[1].y) a.m[1].y[o] = u;
      a.swiglu[o] = g / (1.f + expf(-g)) * u;
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < R; ++j) {
    if (j >= rows) continue;
    const float v = __ldcg(wt + j * 128 + t);
    __stcg(wt + j * 128 + t, 0.f);
    if (n < N) m.y[(size_t)j * N + n] = v;
  }
}

// gemv_q4_multi<R>_rpg<RPG>: up to R rows (fewer rows skip the rest: a uniform branch); RPG = packed rows per group
// (gs 128 → 16, 64 → 8, 32 → 4). Blocks per SM: 4 as the one-token kernel for 2 rows; 3 for 3..4 (more
// accumulators and staged x), which is also why 3 rows run the 4-row kernel rather than one of their own.
#define GEMV_Q4_MULTI(R, RPG, MINB)                                                                                       \
  extern "C" __global__ void __launch_bounds__(128, MINB) gemv_q4_multi##R##_rpg##RPG(const __grid_constant__ QMArgs a) { \
    gemv_q4_multi_body<RPG, R>(a);                                                                                       \
  }
GEMV_Q4_MULTI(2, 16, 4)
GEMV_Q4_MULTI(2, 8, 4)
GEMV_Q4_MULTI(2, 4, 4)
GEMV_Q4_MULTI(4, 16, 3)
GEMV_Q4_MULTI(4, 8, 3)
GEMV_Q4_MULTI(4, 4, 3)
