// Batched-decode linear lab: the small-batch int4 kernels (src/backends/cuda/kernels/gemv_q4_rows.cu, included
// as is) at the LLaMA-13B shapes and 2..16 rows, on the card it runs on, without the host's launch costs:
//   regs   gemv_q4_rows<NT> (weights in registers, two units per warp in flight), grid as smallBatchLinear.ts plans it
//   ring   gemv_q4_rr<NT> (cp.async ring of Q4RR_STAGES units per warp), grid as ringPlan plans it
//   loads  the ring kernel with its arithmetic replaced by a fold of the words (what its memory pipeline allows)
// Each shape has enough copies that one round exceeds L2; a round of launches (one per copy) is captured in a
// graph and replayed (median of 5), so the figure is µs per launch on the device. Printed with the share of a
// 2 GiB read ceiling measured in the same process. ring is checked against regs on the first copy first.
// Usage: rows-lab [--kper K]   (built by bench/lab/rows-lab.sh, once per Q4RR_STAGES)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../src/backends/cuda/kernels/gemv_q4_rows.cu"
#include "../../src/backends/cuda/kernels/readbw.cu"
#include "labHarness.cuh"

template <int NT, bool MATH>
__global__ void __launch_bounds__(128, 2) lab_rr(float* y, const float* x, int rows, int N, int K, const uint32_t* qw,
                                                 const __half* scales, const uint32_t* qz, const int* perm, int gs, int kPerBlock) {
  gemv_q4_rr_body<NT, MATH>(y, x, rows, N, K, qw, scales, qz, perm, gs, kPerBlock);
}

// smallBatchLinear.ts's planners (H200-style limits read from the device)
static int kPerBlock(int K, int tiles, int slots, int maxPer) {
  const int splits = std::max(1, slots / tiles);
  const int per = (K + splits - 1) / splits;
  return std::max(128, std::min((per + 127) / 128 * 128, maxPer));
}
static int ringShared(int nt, int kPer) { return 4 * Q4RR_STAGES * 4 * 32 * 16 + 8 * nt * (kPer + Q4R_PAD) * 2 + 8 * nt * (kPer / 32) * 4; }

struct Shape { const char* name; int K, N; };

int main(int argc, char** argv) {
  int kOverride = 0;
  for (int i = 1; i < argc; ++i)
    if (!strcmp(argv[i], "--kper") && i + 1 < argc) kOverride = atoi(argv[++i]);
  int dev = 0, sms = 0, perBlock = 0, perSm = 0;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  CK(cudaDeviceGetAttribute(&perBlock, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  CK(cudaDeviceGetAttribute(&perSm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, dev));
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  CK(cudaFuncSetAttribute(lab_rr<1, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, perBlock));
  CK(cudaFuncSetAttribute(lab_rr<2, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, perBlock));
  CK(cudaFuncSetAttribute(lab_rr<1, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, perBlock));
  CK(cudaFuncSetAttribute(lab_rr<2, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, perBlock));

  // ceiling
  const size_t cbytes = size_t(1) << 31;
  uint4* cbuf;
  unsigned* sink;
  CK(cudaMalloc(&cbuf, cbytes));
  CK(cudaMalloc(&sink, sms * 8 * 256 * 4));
  CK(cudaMemset(cbuf, 1, cbytes));
  const double ceilUs = timeGraphUs(s, [&] { read_bw<<<sms * 8, 256, 0, s>>>(cbuf, cbytes / 16, sink); });
  const double ceiling = cbytes / (ceilUs * 1e-6) / 1e9;
  CK(cudaFree(cbuf));
  printf("rows-lab: %s, %d SMs, shared %d per block / %d per SM, Q4RR_STAGES %d, read ceiling %.0f GB/s\n", prop.name, sms, perBlock,
         perSm, Q4RR_STAGES, ceiling);

  const Shape shapes[] = {{"o", 5120, 5120}, {"up", 5120, 13824}, {"down", 13824, 5120}};
  std::mt19937 rng(7);
  int status = 0;
  for (const Shape& sh : shapes) {
    const int K = sh.K, N = sh.N, gs = 128, G = K / gs;
    const size_t qwBytes = size_t(K / 8) * N * 4, scBytes = size_t(G) * N * 2, qzBytes = size_t(G) * (N / 8) * 4;
    const double bytes = double(qwBytes + scBytes + qzBytes);
    const int copies = std::max(2, int(std::ceil(200e6 / bytes)));
    std::vector<uint32_t> hq(qwBytes / 4), hz(qzBytes / 4);
    std::vector<__half> hs(scBytes / 2);
    for (auto& v : hq) v = rng();
    for (auto& v : hz) v = rng();
    for (auto& v : hs) v = __float2half(0.01f + 0.02f * float(rng() % 1000) / 1000.f);
    std::vector<uint32_t*> qw(copies), qz(copies);
    std::vector<__half*> sc(copies);
    for (int c = 0; c < copies; ++c) {
      CK(cudaMalloc(&qw[c], qwBytes));
      CK(cudaMalloc(&sc[c], scBytes));
      CK(cudaMalloc(&qz[c], qzBytes));
      CK(cudaMemcpy(qw[c], hq.data(), qwBytes, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(sc[c], hs.data(), scBytes, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(qz[c], hz.data(), qzBytes, cudaMemcpyHostToDevice));
    }
    float *x, *y, *y2;
    std::vector<float> hx(16 * K);
    for (auto& v : hx) v = float(rng() % 2001) / 1000.f - 1.f;
    CK(cudaMalloc(&x, 16 * K * 4));
    CK(cudaMalloc(&y, 16 * N * 4));
    CK(cudaMalloc(&y2, 16 * N * 4));
    CK(cudaMemcpy(x, hx.data(), 16 * K * 4, cudaMemcpyHostToDevice));
    const int tiles = (N + 127) / 128;
    for (int rows : {2, 4, 8, 16}) {
      const int nt = rows <= 8 ? 1 : 2;
      const int regsPer = kPerBlock(K, tiles, sms * (nt == 1 ? 4 : 3), nt == 1 ? 2048 : 1024);
      const bool twoFit = 2 * (ringShared(nt, 512) + 1024) <= perSm;
      const int budget = twoFit ? std::min(perBlock, perSm / 2 - 1024) : perBlock;
      const int maxPer = std::max(128, (budget - ringShared(nt, 0)) / (8 * nt * 17 / 8) / 128 * 128);
      const int ringPer = kOverride ? kOverride : kPerBlock(K, tiles, sms * (twoFit ? 2 : 1), maxPer);
      const int shared = ringShared(nt, ringPer);
      auto regs = [&](int c, float* out) {
        if (nt == 1) gemv_q4_rows1<<<dim3(tiles, (K + regsPer - 1) / regsPer), 128, 0, s>>>(out, x, rows, N, K, qw[c], sc[c], qz[c], nullptr, gs, regsPer);
        else gemv_q4_rows2<<<dim3(tiles, (K + regsPer - 1) / regsPer), 128, 0, s>>>(out, x, rows, N, K, qw[c], sc[c], qz[c], nullptr, gs, regsPer);
      };
      auto ring = [&](int c, float* out, bool math) {
        const dim3 grid(tiles, (K + ringPer - 1) / ringPer);
        if (nt == 1 && math) lab_rr<1, true><<<grid, 128, shared, s>>>(out, x, rows, N, K, qw[c], sc[c], qz[c], nullptr, gs, ringPer);
        else if (nt == 1) lab_rr<1, false><<<grid, 128, shared, s>>>(out, x, rows, N, K, qw[c], sc[c], qz[c], nullptr, gs, ringPer);
        else if (math) lab_rr<2, true><<<grid, 128, shared, s>>>(out, x, rows, N, K, qw[c], sc[c], qz[c], nullptr, gs, ringPer);
        else lab_rr<2, false><<<grid, 128, shared, s>>>(out, x, rows, N, K, qw[c], sc[c], qz[c], nullptr, gs, ringPer);
      };
      // check: ring against regs on copy 0
      CK(cudaMemsetAsync(y, 0, 16 * N * 4, s));
      CK(cudaMemsetAsync(y2, 0, 16 * N * 4, s));
      regs(0, y);
      ring(0, y2, true);
      CK(cudaStreamSynchronize(s));
      CK(cudaGetLastError());
      std::vector<float> a(rows * N), b(rows * N);
      CK(cudaMemcpy(a.data(), y, rows * N * 4, cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(b.data(), y2, rows * N * 4, cudaMemcpyDeviceToHost));
      double num = 0, den = 0;
      for (size_t i = 0; i < a.size(); ++i) { num += (a[i] - b[i]) * (a[i] - b[i]); den += a[i] * a[i]; }
      const double err = std::sqrt(num / std::max(den, 1e-30));
      if (!(err < 5e-3)) { printf("  %s rows %d: ring differs from regs, normalized error %.3g\n", sh.name, rows, err); status = 1; }
      const int reps = 3;
      const double tr = timeGraphUs(s, [&] { for (int r = 0; r < reps; ++r) for (int c = 0; c < copies; ++c) regs(c, y); }) / (reps * copies);
      const double tg = timeGraphUs(s, [&] { for (int r = 0; r < reps; ++r) for (int c = 0; c < copies; ++c) ring(c, y, true); }) / (reps * copies);
      const double tl = timeGraphUs(s, [&] { for (int r = 0; r < reps; ++r) for (int c = 0; c < copies; ++c) ring(c, y, false); }) / (reps * copies);
      auto pct = [&](double us) { return 100.0 * bytes / (us * 1e-6) / 1e9 / ceiling; };
      printf("  %-4s %5dx%-5d rows %2d: regs %6.1f us (%4.1f%%, kPer %4d) | ring %6.1f us (%4.1f%%, kPer %4d, %6d B) | loads %6.1f us (%4.1f%%) | err %.2g\n",
             sh.name, K, N, rows, tr, pct(tr), regsPer, tg, pct(tg), ringPer, shared, tl, pct(tl), err);
    }
    for (int c = 0; c < copies; ++c) {
      CK(cudaFree(qw[c]));
      CK(cudaFree(sc[c]));
      CK(cudaFree(qz[c]));
    }
    CK(cudaFree(x));
    CK(cudaFree(y));
    CK(cudaFree(y2));
  }
  return status;
}
