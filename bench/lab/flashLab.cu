// Lab: causal prefill attention at head size 128, the mma.sync kernel (attention_flash.cu, attn_flash_128)
// against the wgmma kernels (attention_flash_wg.cu) in the same run.
//   1. correctness: each kernel against a double-precision CPU reference (GQA, prompts continuing a cache,
//      rows not multiples of the tiles, NaN poison in the cache past the live positions);
//   2. timing at 13B shapes (40 heads, cache [2048, 5120] fp16): ms per launch (median of 25, after warm-up)
//      and TFLOP/s of the causal products (4 · d · Σ visible positions per head).
// Build and run: bash bench/lab/flash-lab.sh
#include <cuda_runtime.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../../src/backends/cuda/kernels/attention_flash.cu"
#include "../../src/backends/cuda/kernels/attention_flash_wg.cu"

namespace fwg {
// d[16] (scale_d = 0: =) += A(64x16, desc a) * B(16x32, desc b): the 32-key build's S product
__device__ __forceinline__ void wgmma_m64n32k16(float (&d)[16], uint64_t a, uint64_t b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, 0;\n}\n"
      : WG_F8(0), WG_F8(8)
      : "l"(a), "l"(b), "r"(scale_d));
}
template <>
__device__ __forceinline__ void wgmma_s<32>(float (&d)[16], uint64_t a, uint64_t b, int scale_d) { wgmma_m64n32k16(d, a, b, scale_d); }
}  // namespace fwg

// the wgmma kernel's other builds (the product takes fwg::BKV = 64 keys per tile, one block per SM)
#define FWG_LAB(NAME, BKV, NWG, MINB, PIPE)                                                                                   \
  extern "C" __global__ void __launch_bounds__(128 * NWG, MINB) NAME(float* out, const float* q, const __half* kc,   \
                                                                         const __half* vc, const int* pos_ptr, int pos_imm, \
                                                                         int rows, int heads, int kvHeads, float scale_log2) { \
    fwg::attn_flash_wg<BKV, NWG, PIPE>(out, q, kc, vc, pos_ptr, pos_imm, rows, heads, kvHeads, scale_log2);                          \
  }
FWG_LAB(attn_flash_wg_lab_product, fwg::BKV, fwg::NWG, 1, false)  // attn_flash_wg_128 without its fp16 copy of out
FWG_LAB(attn_flash_wg_lab_k128, 128, 2, 1, false)
FWG_LAB(attn_flash_wg_lab_k64x2, 64, 2, 2, false)
FWG_LAB(attn_flash_wg_lab_q192, 64, 3, 1, false)
FWG_LAB(attn_flash_wg_lab_q192k32, 32, 3, 1, false)
FWG_LAB(attn_flash_wg_lab_pipe, 64, 2, 1, true)
FWG_LAB(attn_flash_wg_lab_pipe128, 128, 2, 1, true)
FWG_LAB(attn_flash_wg_lab_pipe192, 64, 3, 1, true)

#define CK(x)                                                                                  \
  do {                                                                                         \
    cudaError_t e_ = (x);                                                                      \
    if (e_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(2);                                                                            \
    }                                                                                          \
  } while (0)

typedef void (*Kern)(float*, const float*, const __half*, const __half*, const int*, int, int, int, int, float);
struct Variant {
  const char* name;
  Kern k;
  int bq, threads, smem;
};
static int wgSmem(int bkv, int nwg = 2, int stages = 2) { return 64 * nwg * 128 * 2 + stages * 2 * bkv * 128 * 2 + 1024; }
static std::vector<Variant> variants() {
  return {{"mma (attn_flash_128)", attn_flash_128, 64, 128, 2 * 2 * 64 * (128 + 8) * 2},
          {"wgmma (attn_flash_wg_128)", attn_flash_wg_lab_product, 128, 256, wgSmem(fwg::BKV)},
          {"wgmma BKV 128", attn_flash_wg_lab_k128, 128, 256, wgSmem(128)},
          {"wgmma BKV 64, 2/SM", attn_flash_wg_lab_k64x2, 128, 256, wgSmem(64)},
          {"wgmma 192 rows", attn_flash_wg_lab_q192, 192, 384, wgSmem(64, 3)},
          {"wgmma 192 rows, BKV 32", attn_flash_wg_lab_q192k32, 192, 384, wgSmem(32, 3)},
          {"wgmma pipelined", attn_flash_wg_lab_pipe, 128, 256, wgSmem(64, 2, 3)},
          {"wgmma pipelined, BKV 128", attn_flash_wg_lab_pipe128, 128, 256, wgSmem(128, 2, 3)},
          {"wgmma pipelined, 192 rows", attn_flash_wg_lab_pipe192, 192, 384, wgSmem(64, 3, 3)}};
}
static void launch(const Variant& v, float* out, const float* q, const __half* kc, const __half* vc, int start, int rows, int heads,
                   int kvHeads) {
  dim3 grid(heads, (rows + v.bq - 1) / v.bq);
  v.k<<<grid, v.threads, v.smem>>>(out, q, kc, vc, nullptr, start, rows, heads, kvHeads, (float)(M_LOG2E / std::sqrt(128.0)));
}

static uint32_t rng = 12345u;
static float frand() {
  rng = rng * 1664525u + 1013904223u;
  return ((rng >> 8) / 16777216.f) * 2.f - 1.f;
}

static bool check(const std::vector<Variant>& vs, int heads, int kvHeads, int start, int rows) {
  const int D = 128, maxSeq = start + rows + 64, width = kvHeads * D;
  std::vector<__half> K((size_t)maxSeq * width), V(K.size());
  std::vector<float> Kf(K.size()), Vf(K.size()), Q((size_t)rows * heads * D);
  for (size_t i = 0; i < K.size(); ++i) {
    const bool live = (int)(i / width) < start + rows;
    K[i] = live ? __float2half(frand()) : __float2half(NAN);
    V[i] = live ? __float2half(frand()) : __float2half(NAN);
    Kf[i] = __half2float(K[i]);
    Vf[i] = __half2float(V[i]);
  }
  for (auto& x : Q) x = frand() * 2.f;
  // reference
  std::vector<double> ref((size_t)rows * heads * D);
  for (int r = 0; r < rows; ++r)
    for (int h = 0; h < heads; ++h) {
      const int kvh = h / (heads / kvHeads), n = start + r + 1;
      std::vector<double> s(n);
      double mx = -1e300;
      for (int p = 0; p < n; ++p) {
        double a = 0;
        for (int d = 0; d < D; ++d) a += (double)Q[((size_t)r * heads + h) * D + d] * Kf[(size_t)p * width + kvh * D + d];
        s[p] = a / std::sqrt((double)D);
        mx = std::max(mx, s[p]);
      }
      double l = 0;
      for (int p = 0; p < n; ++p) l += (s[p] = std::exp(s[p] - mx));
      for (int d = 0; d < D; ++d) {
        double a = 0;
        for (int p = 0; p < n; ++p) a += s[p] * Vf[(size_t)p * width + kvh * D + d];
        ref[((size_t)r * heads + h) * D + d] = a / l;
      }
    }
  float *dq, *dout;
  __half *dk, *dv;
  CK(cudaMalloc(&dq, Q.size() * 4));
  CK(cudaMalloc(&dout, Q.size() * 4));
  CK(cudaMalloc(&dk, K.size() * 2));
  CK(cudaMalloc(&dv, V.size() * 2));
  CK(cudaMemcpy(dq, Q.data(), Q.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dk, K.data(), K.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dv, V.data(), V.size() * 2, cudaMemcpyHostToDevice));
  bool ok = true;
  for (const auto& v : vs) {
    CK(cudaMemset(dout, 0xff, Q.size() * 4));  // NaN poison
    launch(v, dout, dq, dk, dv, start, rows, heads, kvHeads);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    std::vector<float> got(Q.size());
    CK(cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost));
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double e = got[i] - ref[i];
      num += std::isfinite(got[i]) ? e * e : 1e30;
      den += ref[i] * ref[i];
    }
    const double err = std::sqrt(num / den);
    const bool pass = err < 3e-3;
    ok = ok && pass;
    std::printf("check %-26s heads %2d/%2d start %4d rows %4d: err %.2e %s\n", v.name, heads, kvHeads, start, rows, err,
                pass ? "ok" : "FAIL");
  }
  CK(cudaFree(dq));
  CK(cudaFree(dout));
  CK(cudaFree(dk));
  CK(cudaFree(dv));
  return ok;
}

static void timeShape(const std::vector<Variant>& vs, int start, int rows) {
  const int heads = 40, kvHeads = 40, D = 128, maxSeq = 2048, width = kvHeads * D;
  float *dq, *dout;
  __half *dk, *dv;
  CK(cudaMalloc(&dq, (size_t)rows * heads * D * 4));
  CK(cudaMalloc(&dout, (size_t)rows * heads * D * 4));
  CK(cudaMalloc(&dk, (size_t)maxSeq * width * 2));
  CK(cudaMalloc(&dv, (size_t)maxSeq * width * 2));
  std::vector<__half> h((size_t)maxSeq * width);
  for (auto& x : h) x = __float2half(frand());
  CK(cudaMemcpy(dk, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
  for (auto& x : h) x = __float2half(frand());
  CK(cudaMemcpy(dv, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
  std::vector<float> qh((size_t)rows * heads * D);
  for (auto& x : qh) x = frand();
  CK(cudaMemcpy(dq, qh.data(), qh.size() * 4, cudaMemcpyHostToDevice));
  double visible = 0;
  for (int r = 0; r < rows; ++r) visible += start + r + 1;
  const double flop = 4.0 * D * heads * visible;
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (const auto& v : vs) {
    for (int i = 0; i < 3; ++i) launch(v, dout, dq, dk, dv, start, rows, heads, kvHeads);
    CK(cudaDeviceSynchronize());
    std::vector<float> ms;
    for (int i = 0; i < 25; ++i) {
      CK(cudaEventRecord(a));
      launch(v, dout, dq, dk, dv, start, rows, heads, kvHeads);
      CK(cudaEventRecord(b));
      CK(cudaEventSynchronize(b));
      float t;
      CK(cudaEventElapsedTime(&t, a, b));
      ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    const float med = ms[ms.size() / 2];
    std::printf("time  %-26s start %4d rows %4d: %.4f ms per 13B layer, %.0f TFLOP/s\n", v.name, start, rows, med, flop / med / 1e9);
  }
  CK(cudaFree(dq));
  CK(cudaFree(dout));
  CK(cudaFree(dk));
  CK(cudaFree(dv));
}

int main() {
  cudaDeviceProp p;
  CK(cudaGetDeviceProperties(&p, 0));
  std::printf("device: %s (%d SMs)\n", p.name, p.multiProcessorCount);
  const auto vs = variants();
  for (const auto& v : vs) CK(cudaFuncSetAttribute(v.k, cudaFuncAttributeMaxDynamicSharedMemorySize, v.smem));
  bool ok = true;
  const int cases[][4] = {{4, 4, 0, 1}, {4, 4, 0, 37}, {4, 2, 0, 128}, {4, 4, 0, 200}, {2, 1, 300, 129}, {4, 4, 0, 700}, {2, 2, 1000, 257}};
  for (const auto& c : cases) ok = check(vs, c[0], c[1], c[2], c[3]) && ok;
  for (const auto& s : {std::make_pair(0, 2048), std::make_pair(0, 512), std::make_pair(1536, 512)}) timeShape(vs, s.first, s.second);
  std::printf(ok ? "flash-lab: all checks passed\n" : "flash-lab: CHECKS FAILED\n");
  return ok ? 0 : 1;
}
