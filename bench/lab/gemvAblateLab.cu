// Decode GEMV ablation lab: which part of gemv_q4 (src/backends/cuda/kernels/gemv_q4.cu) costs the points between
// its weight-load skeleton (~88% of the read ceiling in persistLab) and the product (~64% in the model)?
// A 13B decode layer's four GEMV launches (q/k/v with the input norm, o + residual add, gate/up + norm + SwiGLU,
// down + residual add), 8 layers of distinct weights (1.3 GB, beyond L2), launched with PDL as the decode graph
// does and replayed as one graph, µs per layer (and per launch of each linear alone):
//   - the product kernel's compat path as plain launches before clusters (a copy of gemv_q4_fused as it was, with
//     parts switched off at compile time): bit 1 no input norm and no x staging (the loop multiplies whatever shared
//     memory holds), bit 2 no arithmetic (the loaded words folded with xor; the loads stay live), bit 4 no epilogue
//     (no split-K workspace, ticket or atomics; range 0's blocks store their partial sums);
//   - the product kernels as the model launches them, plain and as clusters (gemv_q4_cl_rpg16 for q/k/v and
//     gate/up), compat and act-order (gathers from global memory; x copied to shared memory, xInShared; x already
//     in row order, what a permuted copy of the residual would give).
// Figures: BENCHMARKS.md, session 11.
// Usage (GPU machine): nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o /tmp/abl bench/lab/gemvAblateLab.cu && /tmp/abl
#include <cuda_runtime.h>

#include <cstdio>
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "../../src/backends/cuda/kernels/gemv_q4.cu"
#include "labHarness.cuh"
#include "readCeiling.cuh"

template <int ABL>
__device__ __forceinline__ void gemv_abl(const Q4Args& a) {
  constexpr int GR = 8, GH = 1;
  __shared__ uint2 xs[XS_ROWS];
  __shared__ int xsum[XS_ROWS / 4];
  __shared__ float xd[XS_ROWS / 4];
  __shared__ float red[4][128];
  __shared__ float fin[128];
  __shared__ int last;
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
  const int rowStride = N >> 2;
  const uint4* wcol = m.qw + (n0 >> 2);
  const float* xsrc = a.x;
  uint4 wa[8], wb[8];
  uint2 sa[GH], sb[GH];
  uint32_t za[GH], zb[GH];
  int s = warp;
  const int nHalves = 2 * nSlices;
  if (colLive && s < nHalves) q4_load_half<GR, GH>(wa, sa, za, m.scales, m.qz, N, kb0 + s * 64, n0, wcol, rowStride, gs);
  if (colLive && s + 4 < nHalves) q4_load_half<GR, GH>(wb, sb, zb, m.scales, m.qz, N, kb0 + (s + 4) * 64, n0, wcol, rowStride, gs);
  pdl_wait();
  pdl_launch_dependents();
  const float* normW = a.xNormW;
  float rstd = 1.f;
  if (!(ABL & 1)) {
    if (normW) {
      float ss = 0.f;
      for (int i = t * 4; i < K; i += 512) {
        const float4 u = *reinterpret_cast<const float4*>(xsrc + i);
        ss = fmaf(u.x, u.x, fmaf(u.y, u.y, fmaf(u.z, u.z, fmaf(u.w, u.w, ss))));
      }
      ss = warp_sum(ss);
      if (lane == 0) red[0][warp] = ss;
      __syncthreads();
      rstd = rsqrtf((red[0][0] + red[0][1] + red[0][2] + red[0][3]) / K + a.xEps);
    }
    for (int base = 0; base < rows8; base += 128) {
      const int r = base + t;
      const bool live = r < rows8;
      const int kb = kb0 + r * 8;
      float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      if (live) {
        const float4 x0 = *reinterpret_cast<const float4*>(xsrc + kb);
        const float4 x1 = *reinterpret_cast<const float4*>(xsrc + kb + 4);
        v[0] = x0.x; v[1] = x0.y; v[2] = x0.z; v[3] = x0.w;
        v[4] = x1.x; v[5] = x1.y; v[6] = x1.z; v[7] = x1.w;
        if (normW) scale8(v, normW + kb);
        if (normW && tile == 0) {
#pragma unroll
          for (int j = 0; j < 8; ++j) a.xNormOut[kb + j] = v[j] * rstd;
        }
      }
      q4_stage_row(v, live, r, xs, xsum, xd);
    }
  }
  __syncthreads();
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  uint32_t fold = 0;
  if (colLive) {
    for (; s < nHalves; s += 8) {
      if (ABL & 2) { for (int r = 0; r < 8; ++r) fold ^= wa[r].x ^ wa[r].y ^ wa[r].z ^ wa[r].w ^ sa[0].x ^ za[0]; }
      else q4_mul_half<GR, GH>(acc, wa, sa, za, xs + s * 8, xsum + s * 2, xd + s * 2, n0);
      if (s + 8 < nHalves) q4_load_half<GR, GH>(wa, sa, za, m.scales, m.qz, N, kb0 + (s + 8) * 64, n0, wcol, rowStride, gs);
      if (s + 4 >= nHalves) break;
      if (ABL & 2) { for (int r = 0; r < 8; ++r) fold ^= wb[r].x ^ wb[r].y ^ wb[r].z ^ wb[r].w ^ sb[0].x ^ zb[0]; }
      else q4_mul_half<GR, GH>(acc, wb, sb, zb, xs + (s + 4) * 8, xsum + (s + 4) * 2, xd + (s + 4) * 2, n0);
      if (s + 12 < nHalves) q4_load_half<GR, GH>(wb, sb, zb, m.scales, m.qz, N, kb0 + (s + 12) * 64, n0, wcol, rowStride, gs);
    }
  }
  if (ABL & 2) acc[0] = (float)(fold & 1u);
#pragma unroll
  for (int c = 0; c < 4; ++c) red[warp][lane * 4 + c] = acc[c];
  __syncthreads();
  const float sum = (red[0][t] + red[1][t] + red[2][t] + red[3][t]) * rstd;
  const int n = col0 + t;
  if (ABL & 4) {
    if (blockIdx.y == 0 && n < N) m.y[n] = sum;
    return;
  }
  const bool pair = a.swiglu != nullptr;
  float v;
  if (!pair && gridDim.y == 1) {
    v = sum;
  } else if (!pair && (m.flags & 3) == 1) {
    if (n < N) atomicAdd(m.y + n, sum);
    return;
  } else {
    float* ws = a.ws + (size_t)tile * 128;
    atomicAdd(ws + t, sum);
    const int tilesPerMat = a.m[0].tileEnd;
    if (!block_ticket(a.counters + (pair ? tile % tilesPerMat : tile), (pair ? 2u : 1u) * gridDim.y, &last)) return;
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
        a.swiglu[np] = g / (1.f + expf(-g)) * u;
      }
      return;
    }
    v = __ldcg(ws + t);
    __stcg(ws + t, 0.f);
  }
  (void)fin;
  if (n < N) m.y[n] = (m.flags & 1) ? m.y[n] + v : v;
}

#define ABL_KERNEL(A) \
  extern "C" __global__ void __launch_bounds__(128, 4) gemv_abl_##A(const __grid_constant__ Q4Args a) { gemv_abl<A>(a); }
ABL_KERNEL(0)
ABL_KERNEL(1)
ABL_KERNEL(2)
ABL_KERNEL(4)
ABL_KERNEL(6)
ABL_KERNEL(7)


template <typename Kernel>
static void launchCluster(Kernel k, dim3 grid, dim3 cluster, cudaStream_t s, const Q4Args& a, size_t shared = 0) {
  cudaLaunchConfig_t cfg = {};
  cfg.dynamicSmemBytes = shared;
  cfg.gridDim = grid;
  cfg.blockDim = dim3(128);
  cfg.stream = s;
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  attr[1].id = cudaLaunchAttributeClusterDimension;
  attr[1].val.clusterDim.x = cluster.x;
  attr[1].val.clusterDim.y = cluster.y;
  attr[1].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 2;
  CK(cudaLaunchKernelEx(&cfg, k, a));
}

__global__ void fill_words(uint32_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 15; h *= 2246822519u; h ^= h >> 13;
    p[i] = h;
  }
}
__global__ void fill_halves(__half* p, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    p[i] = __float2half(0.002f + 0.004f * (float)((i * 7919u) % 1000u) / 1000.f);
}
struct Lin { int K, N, mats; bool norm, swiglu, residual; };
struct Mat { uint4* qw; __half* sc; uint32_t* qz; };

static int kPer(int K, int tiles, int sms) {
  const int slices = K / 128, splits = std::max(1, sms * 4 / tiles);
  int per = std::max((slices + splits - 1) / splits, 4);
  per = std::min(per, 64);
  return per * 128;
}

int main() {
  const LabDevice lab = labDevice();
  const cudaDeviceProp& prop = lab.prop;
  const int sms = lab.sms;
  cudaStream_t s = lab.s;
  unsigned* sink = lab.sink;
  const double ceiling = readCeilingGBs(s, sms, sink);
  printf("gemv-ablate-lab %s, %d SMs: read ceiling %.0f GB/s\n", prop.name, sms, ceiling);

  const Lin lins[4] = {{5120, 5120, 3, true, false, false}, {5120, 5120, 1, false, false, true},
                       {5120, 13824, 2, true, true, false}, {13824, 5120, 1, false, false, true}};
  const char* names[4] = {"qkv+norm", "o+add", "gateup+norm", "down+add"};
  const int layers = 8;
  std::vector<Q4Args> args;   // layer-major, 4 per layer
  double layerBytes = 0;
  float *x, *nw, *nout, *ys, *sw, *ws;
  unsigned* ctr;
  CK(cudaMalloc(&x, 13824 * 4));
  CK(cudaMalloc(&nw, 13824 * 4));
  CK(cudaMalloc(&nout, 13824 * 4));
  CK(cudaMalloc(&ys, 3 * 13824 * 4));
  CK(cudaMalloc(&sw, 13824 * 4));
  CK(cudaMalloc(&ws, 1024 * 128 * 4));
  CK(cudaMalloc(&ctr, 1024 * 4));
  {
    std::vector<float> hx(13824), ones(13824, 1.f);
    for (int i = 0; i < 13824; ++i) hx[i] = (float)((i * 37) % 2001 - 1000) / 1000.f;
    CK(cudaMemcpy(x, hx.data(), hx.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(nw, ones.data(), ones.size() * 4, cudaMemcpyHostToDevice));
  }
  CK(cudaMemset(ys, 0, 3 * 13824 * 4));
  CK(cudaMemset(ws, 0, 1024 * 128 * 4));
  CK(cudaMemset(ctr, 0, 1024 * 4));
  std::vector<dim3> grids;
  uint32_t seed = 1;
  for (int l = 0; l < layers; ++l) {
    for (int li = 0; li < 4; ++li) {
      const Lin& L = lins[li];
      Q4Args a;
      memset(&a, 0, sizeof a);
      const int tilesPer = L.N / 128;
      for (int mi = 0; mi < L.mats; ++mi) {
        const size_t qn = size_t(L.K / 8) * L.N, sn = size_t(L.K / 128) * L.N, zn = size_t(L.K / 128) * (L.N / 8);
        Mat w;
        CK(cudaMalloc(&w.qw, qn * 4));
        CK(cudaMalloc(&w.sc, sn * 2));
        CK(cudaMalloc(&w.qz, zn * 4));
        fill_words<<<1024, 256>>>((uint32_t*)w.qw, qn, seed++);
        fill_halves<<<1024, 256>>>(w.sc, sn);
        fill_words<<<256, 256>>>(w.qz, zn, seed++);
        if (l == 0) layerBytes += qn * 4 + sn * 2 + zn * 4;
        a.m[mi] = Q4Mat{w.qw, w.sc, w.qz, nullptr, ys + size_t(mi) * 13824, nullptr, L.N, tilesPer * (mi + 1), L.residual ? 1 : 0, 0.f};
      }
      a.ws = ws;
      a.counters = ctr;
      a.swiglu = L.swiglu ? sw : nullptr;
      a.x = x;
      a.count = L.mats;
      a.K = L.K;
      a.gs = 128;
      const int tiles = tilesPer * L.mats;
      a.kPerBlock = kPer(L.K, tiles, sms);
      if (L.norm) { a.xNormW = nw; a.xNormOut = nout; a.xEps = 1e-6f; }
      args.push_back(a);
      if (l == 0) {
        grids.push_back(dim3(tiles, L.K / a.kPerBlock));
        printf("  %-12s grid %dx%d, %d slices per block\n", names[li], tiles, L.K / a.kPerBlock, a.kPerBlock / 128);
      }
    }
  }
  CK(cudaDeviceSynchronize());
  const double idealUs = layerBytes / ceiling / 1e3;
  printf("  layer: %.1f MB of weights, %.2f us at the ceiling\n", layerBytes / 1e6, idealUs);
  struct V { const char* name; void (*k)(Q4Args); };
  const V vs[] = {{"product (copy)", gemv_abl_0}, {"- norm/staging", gemv_abl_1}, {"- arithmetic", gemv_abl_2}, {"- epilogue", gemv_abl_4},
                  {"- arith - epi", gemv_abl_6}, {"- all three", gemv_abl_7}};
  const V prod = {"product kernel", gemv_q4_rpg16};
  std::vector<V> all(vs, vs + 6);
  all.insert(all.begin(), prod);
  for (const V& v : all) {
    cudaFuncAttributes fa;
    CK(cudaFuncGetAttributes(&fa, v.k));
    const double us = timeGraphUs(s, [&] {
      for (size_t i = 0; i < args.size(); ++i) launchPdl(v.k, grids[i % 4], dim3(128), s, args[i]);
    }) / layers;
    // each linear alone (all layers' copies of it), for the per-launch split
    double per[4];
    for (int li = 0; li < 4; ++li)
      per[li] = timeGraphUs(s, [&] {
        for (int l = 0; l < layers; ++l) launchPdl(v.k, grids[li], dim3(128), s, args[l * 4 + li]);
      }) / layers;
    printf("  %-16s %3d regs %4d B local: layer %6.2f us, %5.1f%% of the ceiling | alone: qkv %5.2f o %5.2f gu %5.2f down %5.2f\n", v.name,
           fa.numRegs, (int)fa.localSizeBytes, us, 100 * idealUs / us, per[0], per[1], per[2], per[3]);
  }

  // the product kernels (gemv_q4_rpg16, and gemv_q4_cl_rpg16 for q/k/v and gate/up), compat and act-order: q/k/v and
  // gate/up gather x through one shared permutation each with the norm weight in their row order, o reads x already
  // permuted (flag 4), down reads linearly
  {
    std::vector<int> hp(5120);
    for (int i = 0; i < 5120; ++i) hp[i] = i;
    std::mt19937 rng(7);
    std::shuffle(hp.begin(), hp.end(), rng);
    int* dperm;
    CK(cudaMalloc(&dperm, 5120 * 4));
    CK(cudaMemcpy(dperm, hp.data(), 5120 * 4, cudaMemcpyHostToDevice));
    float* xperm;  // x "already permuted" for the pre-permuted variants (values do not matter for timing)
    CK(cudaMalloc(&xperm, 13824 * 4));
    CK(cudaMemcpy(xperm, x, 13824 * 4, cudaMemcpyDeviceToDevice));
    // ao: 0 compat, 1 act-order (gathers from global memory), 3 act-order whose q/k/v and gate/up read x already
    // permuted (flag 4, linear staging): what a permuted copy of the residual would give, 5 act-order with x copied
    // into shared memory first (xInShared, as the product launches it)
    for (int ao : {0, 1, 3, 5}) {
      std::vector<Q4Args> as = args;
      if (ao == 1 || ao == 3 || ao == 5) {
        for (int l = 0; l < layers; ++l) {
          for (int li : {0, 2}) {
            Q4Args& a = as[l * 4 + li];
            for (int mi = 0; mi < a.count; ++mi) {
              a.m[mi].perm = ao == 3 ? reinterpret_cast<const int*>(xperm) : dperm;
              if (ao == 3) a.m[mi].flags |= 4;
            }
            a.xNormPermuted = 1;
            a.xInShared = ao == 5;
          }
          Q4Args& o = as[l * 4 + 1];
          o.m[0].perm = reinterpret_cast<const int*>(x);
          o.m[0].flags |= 4;
        }
      }
      for (int cl = ao == 5 ? 1 : 0; cl < 2; ++cl) {
        auto launchLin = [&](int li, const Q4Args& a) {
          if (cl && li == 0) launchCluster(gemv_q4_cl_rpg16, grids[0], dim3(1, grids[0].y), s, a, ao == 5 ? 5120 * 4 : 0);
          else if (cl && li == 2) launchCluster(gemv_q4_cl_rpg16, grids[2], dim3(2, grids[2].y), s, a, ao == 5 ? 5120 * 4 : 0);
          else launchPdl(gemv_q4_rpg16, grids[li], dim3(128), s, a);
        };
        const double us = timeGraphUs(s, [&] {
          for (size_t i = 0; i < as.size(); ++i) launchLin(i % 4, as[i]);
        }) / layers;
        double per[4];
        for (int li = 0; li < 4; ++li)
          per[li] = timeGraphUs(s, [&] {
            for (int l = 0; l < layers; ++l) launchLin(li, as[l * 4 + li]);
          }) / layers;
        static const char* aoNames[] = {"compat", "act-order", "", "ao+xperm", "", "ao+shared-x"};
        printf("  product %-11s %-8s layer %6.2f us, %5.1f%% of the ceiling | alone: qkv %5.2f o %5.2f gu %5.2f down %5.2f\n",
               aoNames[ao], cl ? "clusters" : "plain", us, 100 * idealUs / us, per[0], per[1], per[2], per[3]);
      }
    }
  }
  return 0;
}
