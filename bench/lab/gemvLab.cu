// Decode GEMV lab: where the int4 GEMV's time goes at the LLaMA-13B shapes, on the card it runs on.
// For each shape (o, q/k/v fused, gate/up + SwiGLU, down), enough copies that the set exceeds L2, launched
// back to back with programmatic dependent launch and replayed as one CUDA graph (as the decode graph
// runs them), it times:
//   gemv      the product kernel gemv_q4_rpg16 (src/backends/cuda/kernels/gemv_q4.cu; this file includes it,
//             and gemv-lab.sh builds it once per GEMV_Q4_LD cache hint), grid sized as gemvBatch.ts does
//             with B blocks per SM (--blocks-per-sm, default 4)
//   loads     the same grid and the same weight loads with no arithmetic (what the access pattern allows)
//   linear    read_bw-style grid-stride reads of the same bytes per launch (what the size allows)
// and prints µs per launch, GB/s and the ratio to a 2 GiB read ceiling measured in the same process.
// The GEMV's output is checked against a host dot product on the first copy before timing.
// --sweep: also times the product kernel at other K ranges per block (kPerBlock 512..4096) per shape.
// Usage: gemv-lab [--blocks-per-sm B] [--sweep]     (built by bench/lab/gemv-lab.sh)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../src/backends/cuda/kernels/gemv_q4.cu"
#include "labHarness.cuh"
#include "readCeiling.cuh"


#ifndef GEMV_LAB_TAG
#define GEMV_LAB_TAG "default"
#endif

// The GEMV's weight loads alone: same grid, same slices per warp, 16 packed rows per slice.
extern "C" __global__ void __launch_bounds__(128, 4) gemv_loads_only(const uint4* qw, int N, int K, int kPerBlock, unsigned* sink) {
  pdl_wait();
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n0 = blockIdx.x * 128 + lane * 4;
  const int kb0 = blockIdx.y * kPerBlock, kb1 = min(K, kb0 + kPerBlock);
  const int nSlices = (kb1 - kb0) >> 7, rowStride = N >> 2;
  uint4 acc = make_uint4(0, 0, 0, 0);
  if (n0 < N) {
    const uint4* wcol = qw + (n0 >> 2);
    for (int s = warp; s < nSlices; s += 4) {
      const uint4* src = wcol + (size_t)((kb0 + s * 128) >> 3) * rowStride;
      uint4 v[16];
#pragma unroll
      for (int r = 0; r < 16; ++r) v[r] = ld_stream(src + r * rowStride);
#pragma unroll
      for (int r = 0; r < 16; ++r) {
        acc.x ^= v[r].x; acc.y ^= v[r].y; acc.z ^= v[r].z; acc.w ^= v[r].w;
      }
    }
  }
  if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x9E3779B9u) sink[threadIdx.x] = 1u;  // keeps the loads
}

struct Shape {
  const char* name;
  int K, N, mats;
  bool swiglu;    // gate/up pair: SwiGLU epilogue
  bool residual;  // y += result (atomics straight into y)
};

static float halfToFloat(__half h) { return __half2float(h); }

// gemvBatch.ts GemvBatch.kPerBlock
static int kPerBlock(int K, int tiles, int sms, int blocksPerSm) {
  const int slices = (K + 127) / 128;
  const int splits = std::max(1, (sms * blocksPerSm) / tiles);
  int per = ((((slices + splits - 1) / splits) + 3) / 4) * 4;
  per = std::max(std::min(per, 64), (slices + 63) / 64);
  return per * 128;
}

// µs per launch: `launches` captured once into a graph, replayed; median of 5 timed replays.
template <typename F>
static double timeGraph(cudaStream_t s, int launches, F&& record) {
  return timeGraphUs(s, record) / launches;
}

int main(int argc, char** argv) {
  int blocksPerSm = 4;
  bool sweep = false;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--blocks-per-sm") && i + 1 < argc) blocksPerSm = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--sweep")) sweep = true;
  }
  const LabDevice lab = labDevice();
  const cudaDeviceProp& prop = lab.prop;
  const int sms = lab.sms;
  cudaStream_t s = lab.s;
  unsigned* sink = lab.sink;

  const double ceiling = readCeilingGBs(s, sms, sink);
  printf("gemv-lab [%s] %s, %d SMs: read ceiling %.0f GB/s (2 GiB), %d blocks per SM\n", GEMV_LAB_TAG, prop.name, sms, ceiling, blocksPerSm);

  const Shape shapes[] = {
      {"o+add", 5120, 5120, 1, false, true},
      {"qkv", 5120, 5120, 3, false, false},
      {"gate/up+swiglu", 5120, 13824, 2, true, false},
      {"down+add", 13824, 5120, 1, false, true},
  };
  std::mt19937 rng(1234);
  for (const Shape& sh : shapes) {
    const int K = sh.K, N = sh.N, G = K / 128;
    const size_t qBytes = size_t(K / 8) * N * 4, sBytes = size_t(G) * N * 2, zBytes = size_t(G) * (N / 8) * 4;
    const size_t matBytes = qBytes + sBytes + zBytes;
    const int copies = std::max(4, (int)std::ceil(512e6 / (sh.mats * (double)matBytes)));
    const int nm = copies * sh.mats;
    // one allocation for all copies' weights, so `linear` can read the same bytes
    uint8_t* pool;
    CK(cudaMalloc(&pool, matBytes * nm));
    {
      std::vector<uint32_t> hq(qBytes / 4);
      std::vector<__half> hs(size_t(G) * N);
      std::vector<uint32_t> hz(zBytes / 4);
      for (int m = 0; m < nm; ++m) {
        for (auto& v : hq) v = rng();
        for (auto& v : hs) v = __float2half(0.002f + 0.004f * (rng() % 1000) / 1000.f);
        for (auto& v : hz) v = rng();
        uint8_t* base = pool + matBytes * m;
        CK(cudaMemcpy(base, hq.data(), qBytes, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(base + qBytes, hs.data(), sBytes, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(base + qBytes + sBytes, hz.data(), zBytes, cudaMemcpyHostToDevice));
        if (m == 0) {  // keep copy 0 on the host for the check
          std::vector<float> hx(K);
          for (int k = 0; k < K; ++k) hx[k] = (float)((int)(rng() % 2001) - 1000) / 1000.f;
          float* dx;
          CK(cudaMalloc(&dx, K * 4));
          CK(cudaMemcpy(dx, hx.data(), K * 4, cudaMemcpyHostToDevice));
          // check: y = W x through the product kernel, one matrix, plain store (flags 0)
          const int tiles = (N + 127) / 128, kPer = kPerBlock(K, tiles, sms, blocksPerSm);
          float *dy, *ws;
          unsigned* ctr;
          CK(cudaMalloc(&dy, N * 4));
          CK(cudaMalloc(&ws, size_t(tiles) * 128 * 4));
          CK(cudaMalloc(&ctr, tiles * 4));
          CK(cudaMemset(ws, 0, size_t(tiles) * 128 * 4));
          CK(cudaMemset(ctr, 0, tiles * 4));
          CK(cudaMemset(dy, 0xFF, N * 4));  // poison
          Q4Args a;
          memset(&a, 0, sizeof a);
          a.m[0] = Q4Mat{(const uint4*)base, (const __half*)(base + qBytes), (const uint32_t*)(base + qBytes + sBytes), nullptr, dy, nullptr, N, tiles, 0, 0.f};
          a.ws = ws;
          a.counters = ctr;
          a.x = dx;
          a.count = 1;
          a.K = K;
          a.gs = 128;
          a.kPerBlock = kPer;
          launchPdl(gemv_q4_rpg16, dim3(tiles, (K + kPer - 1) / kPer), dim3(128), s, a);
          CK(cudaStreamSynchronize(s));
          std::vector<float> hy(N);
          CK(cudaMemcpy(hy.data(), dy, N * 4, cudaMemcpyDeviceToHost));
          double err = 0, ref2 = 0;
          for (int n = 0; n < N; n += 97) {
            double acc = 0;
            for (int k = 0; k < K; ++k) {
              const int q = (hq[size_t(k / 8) * N + n] >> ((k % 8) * 4)) & 15;
              const int z = ((hz[size_t(k / 128) * (N / 8) + n / 8] >> ((n % 8) * 4)) & 15) + 1;
              acc += halfToFloat(hs[size_t(k / 128) * N + n]) * (q - z) * hx[k];
            }
            err += (hy[n] - acc) * (hy[n] - acc);
            ref2 += acc * acc;
          }
          const double rel = std::sqrt(err / ref2);
          printf("  check %-15s rel. error %.2e (int8 x: expect ~1e-2 or less)\n", sh.name, rel);
          if (!(rel < 0.03)) {
            fprintf(stderr, "gemv-lab: %s check failed\n", sh.name);
            return 1;
          }
          CK(cudaFree(dx));
          CK(cudaFree(dy));
          CK(cudaFree(ws));
          CK(cudaFree(ctr));
        }
      }
    }
    const int tilesPer = (N + 127) / 128, tiles = tilesPer * sh.mats;
    const int kPer = kPerBlock(K, tiles, sms, blocksPerSm);
    const dim3 grid(tiles, (K + kPer - 1) / kPer);
    float *x, *ys, *ws, *sw;
    unsigned* ctr;
    CK(cudaMalloc(&x, K * 4));
    CK(cudaMemset(x, 0, K * 4));
    CK(cudaMalloc(&ys, size_t(3) * N * 4));
    CK(cudaMemset(ys, 0, size_t(3) * N * 4));
    CK(cudaMalloc(&sw, N * 4));
    CK(cudaMalloc(&ws, size_t(tiles) * 128 * 4));
    CK(cudaMemset(ws, 0, size_t(tiles) * 128 * 4));
    CK(cudaMalloc(&ctr, tiles * 4));
    CK(cudaMemset(ctr, 0, tiles * 4));
    std::vector<Q4Args> args(copies);
    for (int c = 0; c < copies; ++c) {
      Q4Args& a = args[c];
      memset(&a, 0, sizeof a);
      for (int i = 0; i < sh.mats; ++i) {
        uint8_t* base = pool + matBytes * (size_t(c) * sh.mats + i);
        a.m[i] = Q4Mat{(const uint4*)base, (const __half*)(base + qBytes), (const uint32_t*)(base + qBytes + sBytes), nullptr,
                       ys + size_t(i) * N, nullptr, N, tilesPer * (i + 1), sh.residual ? 1 : 0, 0.f};
      }
      a.ws = ws;
      a.counters = ctr;
      a.swiglu = sh.swiglu ? sw : nullptr;
      a.x = x;
      a.count = sh.mats;
      a.K = K;
      a.gs = 128;
      a.kPerBlock = kPer;
    }
    const double bytes = double(matBytes) * sh.mats;
    const double gemvUs = timeGraph(s, copies, [&] {
      for (int c = 0; c < copies; ++c) launchPdl(gemv_q4_rpg16, grid, dim3(128), s, args[c]);
    });
    const double loadsUs = timeGraph(s, copies * sh.mats, [&] {
      for (int c = 0; c < copies * sh.mats; ++c)
        launchPdl(gemv_loads_only, dim3(tilesPer * sh.mats, grid.y), dim3(128), s, (const uint4*)(pool + matBytes * size_t(c)), N, K, kPer, sink);
    }) * sh.mats;  // (one launch per matrix here: µs per GEMV launch = per matrix × mats)
    const double linearUs = timeGraph(s, copies, [&] {
      for (int c = 0; c < copies; ++c)
        launchPdl(read_linear, dim3(sms * 8), dim3(256), s, (const uint4*)(pool + matBytes * size_t(c) * sh.mats),
                  (unsigned long long)(matBytes * sh.mats / 16), sink);
    });
    // the same launches normalizing their input themselves (gemv_q4.cu xNormW), where the model does that
    double normUs = 0;
    float *nw = nullptr, *nout = nullptr;
    if (!sh.residual) {
      CK(cudaMalloc(&nw, K * 4));
      CK(cudaMalloc(&nout, K * 4));
      std::vector<float> ones(K, 1.f);
      CK(cudaMemcpy(nw, ones.data(), K * 4, cudaMemcpyHostToDevice));
      std::vector<Q4Args> as = args;
      for (auto& a : as) {
        a.xNormW = nw;
        a.xNormOut = nout;
        a.xEps = 1e-6f;
      }
      normUs = timeGraph(s, copies, [&] {
        for (int c = 0; c < copies; ++c) launchPdl(gemv_q4_rpg16, grid, dim3(128), s, as[c]);
      });
      CK(cudaFree(nw));
      CK(cudaFree(nout));
    }
    const double gemvGBs = bytes / gemvUs / 1e3, loadsGBs = qBytes * sh.mats / loadsUs / 1e3, linGBs = bytes / linearUs / 1e3;
    printf("  %-15s %5.1f MB  grid %4dx%-3d  gemv %6.2f us %5.0f GB/s %5.1f%% | loads-only %6.2f us %5.1f%% | linear %6.2f us %5.1f%%\n",
           sh.name, bytes / 1e6, grid.x, grid.y, gemvUs, gemvGBs, 100 * gemvGBs / ceiling, loadsUs, 100 * loadsGBs / ceiling, linearUs,
           100 * linGBs / ceiling);
    if (normUs > 0) printf("    with the input norm: gemv %6.2f us (+%.2f)\n", normUs, normUs - gemvUs);
    if (sweep) {
      printf("    kPerBlock sweep:");
      for (int kp = 512; kp <= 4096 && kp <= K; kp += 256) {
        std::vector<Q4Args> as = args;
        for (auto& a : as) a.kPerBlock = kp;
        const dim3 g(tiles, (K + kp - 1) / kp);
        const double us = timeGraph(s, copies, [&] {
          for (int c = 0; c < copies; ++c) launchPdl(gemv_q4_rpg16, g, dim3(128), s, as[c]);
        });
        printf(" %d:%.2f%s", kp, us, kp == kPer ? "*" : "");
      }
      printf("  (us; * = gemvBatch's choice)\n");
    }
    CK(cudaFree(pool));
    CK(cudaFree(x));
    CK(cudaFree(ys));
    CK(cudaFree(sw));
    CK(cudaFree(ws));
    CK(cudaFree(ctr));
  }
  return 0;
}
