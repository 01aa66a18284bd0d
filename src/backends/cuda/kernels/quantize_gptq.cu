// GPTQ for one linear on the GPU (`qllama quantize --backend cuda`), f32, with the semantics of the
// CPU reference src/quantize/gptq.ts (GPTQ-for-LLaMa's fasterquant):
//   H = 2/n · Σ XᵀX (qz_h_finish scales and mirrors the lower-triangle sums of qz_gemm_f16);
//   dead columns (H[i,i] = 0): weight 0, H[i,i] = 1; act-order: columns visited by descending H[i,i];
//   A = reversed, permuted, damped H (qz_h_prepare); blocked Cholesky of A (qz_potrf_diag + qz_sgemm)
//   and the inverse X = L⁻¹; U = reverse(X) is the upper Cholesky factor of H⁻¹ (see linalg.ts);
//   columns quantized in blocks of ≤ 128 by qz_gptq_block (one thread per output row: GPTQ's in-block
//   loop is independent across rows), the lazy trailing update W[:, i2:] −= Errᵀ·U[i1:i2, i2:] by qz_sgemm.
#include "common.cuh"

// Scale and zero of one channel from its min and max: quantizer.ts's channelParams (the scale is
// rounded to fp16 before the zero point is derived; a zero point below 1 is avoided because the v1
// file stores zero − 1).
__device__ __forceinline__ void qz_channel_params(float mn, float mx, int maxq, int sym, float& scale, float& zero) {
  const float smallest = 5.9604644775390625e-8f;  // 2^-24, the smallest fp16
  float xmin = fminf(mn, 0.f), xmax = fmaxf(mx, 0.f);
  if (sym) {
    xmax = fmaxf(fabsf(xmin), xmax);
    if (xmin < 0.f) xmin = -xmax;
  }
  if (xmin == 0.f && xmax == 0.f) {
    xmin = -1.f;
    xmax = 1.f;
  }
  const float s = fmaxf(__half2float(__float2half_rn((xmax - xmin) / (float)maxq)), smallest);
  if (sym) {
    scale = s;
    zero = (float)((maxq + 1) / 2);
    return;
  }
  const float z = fminf((float)maxq, rintf(-xmin / s));
  if (z >= 1.f) {
    scale = s;
    zero = z;
    return;
  }
  scale = fmaxf(__half2float(__float2half_rn(xmax / (float)(maxq - 1))), smallest);
  zero = 1.f;
}

// H[i, j] = H[j, i] = f · S[i, j] for j ≤ i (S: lower-triangle sums, in place)
extern "C" __global__ void qz_h_finish(float* __restrict__ h, int n, float f) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y;
  if (j > i || i >= n) return;
  const float v = h[(size_t)i * n + j] * f;
  h[(size_t)i * n + j] = v;
  if (j != i) h[(size_t)j * n + i] = v;
}

extern "C" __global__ void qz_diag(float* __restrict__ d, const float* __restrict__ h, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) d[i] = h[(size_t)i * n + i];
}

// a[r, c] = H[p[n−1−r], p[n−1−c]] (p: visiting order → column), with the diagonal replaced by
// diag[p[n−1−r]] + damp (diag: H's diagonal with dead columns set to 1). The order reversal is the
// first step of linalg.ts's upperCholeskyOfInverse.
extern "C" __global__ void qz_h_prepare(float* __restrict__ a, const float* __restrict__ h, const int* __restrict__ perm,
                                        const float* __restrict__ diag, float damp, int n) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (c >= n || r >= n) return;
  const int pr = perm[n - 1 - r], pc = perm[n - 1 - c];
  a[(size_t)r * n + c] = r == c ? diag[pr] + damp : h[(size_t)pr * n + pc];
}

// Cholesky of the kb × kb (kb ≤ 64) diagonal block at (k0, k0) of a [n, n] (lower, in place, upper
// zeroed within the block), and its inverse into the same block of x. One block of 256 threads.
// A non-positive pivot is recorded in *info (1 + its index, first one only) and the host raises.
extern "C" __global__ void __launch_bounds__(256)
qz_potrf_diag(float* __restrict__ a, float* __restrict__ x, int n, int k0, int kb, int* __restrict__ info) {
  __shared__ float L[64][65];
  __shared__ float Xs[64][65];
  const int tid = threadIdx.x;
  for (int e = tid; e < 64 * 64; e += 256) {
    const int r = e >> 6, c = e & 63;
    L[r][c] = (r < kb && c <= r) ? a[(size_t)(k0 + r) * n + k0 + c] : 0.f;
  }
  __syncthreads();
  for (int j = 0; j < kb; ++j) {
    if (tid == 0) {
      const float d = L[j][j];
      if (!(d > 0.f) && atomicCAS(info, 0, k0 + j + 1) == 0) { /* recorded */ }
      L[j][j] = sqrtf(d);
    }
    __syncthreads();
    const float djj = L[j][j];
    for (int i = j + 1 + tid; i < kb; i += 256) L[i][j] /= djj;
    __syncthreads();
    const int m = kb - j - 1;  // trailing (i, k), j < k ≤ i < kb
    for (int e = tid; e < m * m; e += 256) {
      const int i = j + 1 + e / m, k = j + 1 + e % m;
      if (k <= i) L[i][k] -= L[i][j] * L[k][j];
    }
    __syncthreads();
  }
  // X = L⁻¹ by forward substitution, one column per thread
  if (tid < kb) {
    const int c = tid;
    for (int i = 0; i < kb; ++i) {
      if (i < c) {
        Xs[i][c] = 0.f;
        continue;
      }
      float s = i == c ? 1.f : 0.f;
      for (int k = c; k < i; ++k) s -= L[i][k] * Xs[k][c];
      Xs[i][c] = s / L[i][i];
    }
  }
  __syncthreads();
  for (int e = tid; e < kb * kb; e += 256) {
    const int r = e / kb, c = e % kb;
    a[(size_t)(k0 + r) * n + k0 + c] = L[r][c];
    x[(size_t)(k0 + r) * n + k0 + c] = Xs[r][c];
  }
}

// dst[r, c] = src[r, c], r < rows, c < cols
extern "C" __global__ void qz_copy2d(float* __restrict__ dst, int ldd, const float* __restrict__ src, int lds, int rows, int cols) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (c < cols && r < rows) dst[(size_t)r * ldd + c] = src[(size_t)r * lds + c];
}

// a[e] ↔ a[total − 1 − e]: a [n, n] reversed element by element (a[i, j] ↔ a[n−1−i, n−1−j])
extern "C" __global__ void qz_reverse(float* __restrict__ a, size_t total) {
  const size_t half_n = total / 2;
  for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < half_n; e += (size_t)gridDim.x * blockDim.x) {
    const size_t o = total - 1 - e;
    const float t = a[e];
    a[e] = a[o];
    a[o] = t;
  }
}

// wp[r, j] = dead[perm[j]] ? 0 : w[r, perm[j]]: the weights in visiting order, f32
extern "C" __global__ void qz_w_prepare(float* __restrict__ wp, const __half* __restrict__ w, const int* __restrict__ perm,
                                        const int* __restrict__ dead, int rows, int cols) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (j >= cols || r >= rows) return;
  const int c = perm[j];
  wp[(size_t)r * cols + j] = dead[c] ? 0.f : __half2float(w[(size_t)r * cols + c]);
}

// Parameters of group g (original columns [g·gs, min((g+1)·gs, cols))) of every row from the original
// fp16 weights; dead columns count as 0 when useDead (static groups; one-group mode reads them as they are).
extern "C" __global__ void qz_group_params(float* __restrict__ scales, uint8_t* __restrict__ zeros, const __half* __restrict__ w,
                                           const int* __restrict__ dead, int useDead, int rows, int cols, int gs, int maxq, int sym) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x, g = blockIdx.y;
  if (r >= rows) return;
  float mn = INFINITY, mx = -INFINITY;
  const int c1 = min((g + 1) * gs, cols);
  for (int c = g * gs; c < c1; ++c) {
    const float v = useDead && dead[c] ? 0.f : __half2float(w[(size_t)r * cols + c]);
    mn = fminf(mn, v);
    mx = fmaxf(mx, v);
  }
  float s, z;
  qz_channel_params(mn, mx, maxq, sym, s, z);
  scales[(size_t)g * rows + r] = s;
  zeros[(size_t)g * rows + r] = (uint8_t)z;
}

namespace qzq {
// dynamic shared: (MAXB·MAXB + MAXB·WLD)·4 = 98816 bytes (the U block and this block's weights)
constexpr int ROWS = 64, MAXB = 128, WLD = ROWS + 1;
}  // namespace qzq

// One GPTQ block [i1, i2) (i2 − i1 ≤ 128) for 64 output rows, one thread per row.
//   wp [rows, cols] f32 in visiting order (error-updated up to column i1); u [cols, cols] upper factor;
//   err [128, rows]: e_j = (w − ŵ) / U[j, j] of each column j − i1; qout [cols, rows]: levels at
//   row perm[j] (the original column order of the file); scales, zeros [groups, rows]; loss [rows] += Σ e².
//   mode 0: one group (params precomputed in group 0); 1: groups found at each group start from the
//   updated weights (columns past i2 read from wp: they hold every earlier block's update, and a group
//   that reaches past i2 starts at i1); 2: static groups, precomputed, group of column j = perm[j] / gs.
extern "C" __global__ void __launch_bounds__(64)
qz_gptq_block(float* __restrict__ wp, const float* __restrict__ u, float* __restrict__ err, uint8_t* __restrict__ qout,
              float* __restrict__ scales, uint8_t* __restrict__ zeros, float* __restrict__ loss, const int* __restrict__ perm,
              int rows, int cols, int i1, int i2, int gs, int mode, int maxq, int sym) {
  using namespace qzq;
  extern __shared__ __align__(16) float qzq_smem[];
  float* Us = qzq_smem;               // [MAXB][MAXB]
  float* Ws = qzq_smem + MAXB * MAXB;  // [MAXB][WLD]: Ws[c][row in block]
  const int bs = i2 - i1, tid = threadIdx.x, r0 = blockIdx.x * ROWS;
  for (int e = tid; e < bs * bs; e += ROWS) {
    const int r = e / bs, c = e % bs;
    Us[r * MAXB + c] = c >= r ? u[(size_t)(i1 + r) * cols + i1 + c] : 0.f;
  }
  for (int e = tid; e < ROWS * bs; e += ROWS) {
    const int rr = e / bs, c = e % bs, row = r0 + rr;
    Ws[c * WLD + rr] = row < rows ? wp[(size_t)row * cols + i1 + c] : 0.f;
  }
  __syncthreads();
  const int row = r0 + tid;
  if (row >= rows) return;  // no barrier below
  float scale = 0.f, zero = 0.f, lsum = 0.f;
  if (mode == 0) {
    scale = scales[row];
    zero = zeros[row];
  } else if (mode == 1 && i1 % gs != 0) {
    // a group wider than a block: its parameters were found when an earlier launch started it
    scale = scales[(size_t)(i1 / gs) * rows + row];
    zero = zeros[(size_t)(i1 / gs) * rows + row];
  }
  const float* wrow = wp + (size_t)row * cols;
  for (int jj = 0; jj < bs; ++jj) {
    const int j = i1 + jj;
    if (mode == 1 && j % gs == 0) {
      float mn = INFINITY, mx = -INFINITY;
      const int c1 = min(j + gs, cols);
      for (int c = j; c < c1; ++c) {
        const float v = c < i2 ? Ws[(c - i1) * WLD + tid] : wrow[c];
        mn = fminf(mn, v);
        mx = fmaxf(mx, v);
      }
      qz_channel_params(mn, mx, maxq, sym, scale, zero);
      scales[(size_t)(j / gs) * rows + row] = scale;
      zeros[(size_t)(j / gs) * rows + row] = (uint8_t)zero;
    } else if (mode == 2) {
      const int g = perm[j] / gs;
      scale = scales[(size_t)g * rows + row];
      zero = zeros[(size_t)g * rows + row];
    }
    const float w = Ws[jj * WLD + tid];
    const float q = fminf(fmaxf(rintf(w / scale) + zero, 0.f), (float)maxq);
    const float e = (w - scale * (q - zero)) / Us[jj * MAXB + jj];
    lsum += e * e;
    qout[(size_t)perm[j] * rows + row] = (uint8_t)q;
    err[(size_t)jj * rows + row] = e;
    for (int kk = jj + 1; kk < bs; ++kk) Ws[kk * WLD + tid] -= Us[jj * MAXB + kk] * e;
  }
  loss[row] += lsum;
}

// w16[o, i] = half(scales[g, o] · (q[i, o] − zeros[g, o])), g = gidx[i]: the weights a loader of the
// file sees, for the forward through the quantized linear (fp16, as GPTQ-for-LLaMa runs it)
extern "C" __global__ void qz_dequant_h(__half* __restrict__ w16, const uint8_t* __restrict__ q, const float* __restrict__ scales,
                                        const uint8_t* __restrict__ zeros, const int* __restrict__ gidx, int rows, int cols) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x, o = blockIdx.y;
  if (i >= cols || o >= rows) return;
  const size_t gi = (size_t)gidx[i] * rows + o;
  w16[(size_t)o * cols + i] = __float2half_rn(scales[gi] * ((float)q[(size_t)i * rows + o] - (float)zeros[gi]));
}
