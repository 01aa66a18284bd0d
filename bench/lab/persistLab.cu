// Persistent-decode lab: what do launch boundaries cost a 13B decode step, and would a persistent kernel
// with grid barriers (and the next phase's first loads issued before the barrier) recover it?
// Reads the bytes of 40 layers × 5 phases (q/k/v, attention ~0, o, gate/up, down; 13B g128 sizes) with no
// arithmetic, four ways, each captured in a graph and replayed (median of 5):
//   pdl        one launch per phase, programmatic dependent launch, first loads after griddepcontrol.wait
//   pdl-pre    the same, first chunk's loads issued before griddepcontrol.wait (as gemv_q4 does)
//   persist    one kernel, grid barrier between phases, loads after the barrier
//   persist-pre one kernel, each block's first chunk of phase p loaded before waiting for phase p−1
// and one plain grid-stride read of all the step's bytes (no boundaries at all).
// Usage (GPU machine): nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o /tmp/persist-lab \
//   bench/lab/persistLab.cu && /tmp/persist-lab
#include <cuda_runtime.h>
#include "labHarness.cuh"
#include "labLoads.cuh"
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>


constexpr int kThreads = 128;
constexpr int kUnroll = 8;  // 16-byte loads in flight per thread: 16 KB per block, 64 KB per SM at 4 blocks
constexpr unsigned long long kChunk = (unsigned long long)kThreads * kUnroll;  // uint4 per block chunk


// loads chunk c of a phase into v (zeros past the end)
__device__ __forceinline__ void loadChunk(const Phase& ph, unsigned long long c, uint4 (&v)[kUnroll]) {
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const unsigned long long i = c * kChunk + (unsigned long long)u * kThreads + threadIdx.x;
    v[u] = i < ph.n ? ld_stream(ph.a + i) : make_uint4(0, 0, 0, 0);
  }
}
__device__ __forceinline__ void fold(uint4& acc, const uint4 (&v)[kUnroll]) {
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) { acc.x ^= v[u].x; acc.y ^= v[u].y; acc.z ^= v[u].z; acc.w ^= v[u].w; }
}
// streams the block's chunks of a phase, the first one already in v when `loaded`
__device__ __forceinline__ void streamPhase(const Phase& ph, uint4& acc, uint4 (&v)[kUnroll], bool loaded) {
  const unsigned long long chunks = (ph.n + kChunk - 1) / kChunk;
  unsigned long long c = blockIdx.x;
  if (c >= chunks) return;
  if (!loaded) loadChunk(ph, c, v);
  for (;;) {
    fold(acc, v);
    c += gridDim.x;
    if (c >= chunks) break;
    loadChunk(ph, c, v);
  }
}

extern "C" __global__ void __launch_bounds__(kThreads, 4) phase_pdl(Phase ph, int pre, unsigned* sink) {
  uint4 acc = make_uint4(0, 0, 0, 0), v[kUnroll];
  const bool loaded = pre && blockIdx.x < (ph.n + kChunk - 1) / kChunk;
  if (loaded) loadChunk(ph, blockIdx.x, v);
  pdl_wait();
  pdl_launch_dependents();
  streamPhase(ph, acc, v, loaded);
  if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x9E3779B9u) sink[threadIdx.x] = 1u;
}

// grid barrier: `bar` counts arrivals; phase p may start once gridDim.x * p blocks have arrived
__device__ __forceinline__ void gridArrive(unsigned* bar) {
  __syncthreads();
  if (threadIdx.x == 0) { __threadfence(); atomicAdd(bar, 1u); }
}
__device__ __forceinline__ void gridWait(const unsigned* bar, unsigned target) {
  if (threadIdx.x == 0) {
    unsigned seen;
    do { asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(bar) : "memory"); } while (seen < target);
  }
  __syncthreads();
}

extern "C" __global__ void __launch_bounds__(kThreads, 4) persist(const Phase* phases, int count, int pre, unsigned* bar, unsigned* sink) {
  uint4 acc = make_uint4(0, 0, 0, 0), v[kUnroll];
  for (int p = 0; p < count; ++p) {
    const Phase ph = phases[p];
    const bool loaded = pre && blockIdx.x < (ph.n + kChunk - 1) / kChunk;
    if (loaded) loadChunk(ph, blockIdx.x, v);
    if (p > 0) gridWait(bar, gridDim.x * (unsigned)p);
    streamPhase(ph, acc, v, loaded);
    gridArrive(bar);
  }
  if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x9E3779B9u) sink[threadIdx.x] = 1u;
}

extern "C" __global__ void read_linear(const uint4* __restrict__ a, unsigned long long n, unsigned* sink) {
  uint4 acc = make_uint4(0, 0, 0, 0);
  const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
  for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint4 v = ld_stream(a + i);
    acc.x ^= v.x; acc.y ^= v.y; acc.z ^= v.z; acc.w ^= v.w;
  }
  if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x9E3779B9u) sink[threadIdx.x] = 1u;
}


// GEMV weight-load patterns (loads only, no x, no arithmetic), one launch per matrix set as decode runs them.
// GPTQ layout: matrix [K/8, N] u32; a lane loads its 4 columns of a packed row as one uint4.
//   mode 0: block = one 128-column tile × a K range (gemvBatch's rule), warp w streams slices w, w+4, ...
//           (gemv_q4 today: the 4 warps of a block read 4 different row ranges)
//   mode 1: block = 4 adjacent tiles (512 columns) × a K range, warp w takes tile 4b + w and streams every
//           slice of the range: the block's 4 warps read 2 KB of the same packed row together
//   mode 2: as mode 0 over a tiled layout: each (tile, slice) of 16 packed rows × 128 columns is 8 KB in one piece
//   mode 3: as mode 0 with K split evenly (kPer not rounded to a multiple of 4 slices)
struct PatternArgs { const uint4* w; int K, N, mats, kPer, mode; };
extern "C" __global__ void __launch_bounds__(kThreads, 4) gemv_pattern(PatternArgs m, unsigned* sink) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int tilesPerMat = m.N / 128, slicesTotal = m.K / 128;
  const int sb0 = blockIdx.y * (m.kPer / 128), sb1 = min(slicesTotal, sb0 + m.kPer / 128);
  const bool byColumn = m.mode == 1;
  const int tile = byColumn ? blockIdx.x * 4 + warp : blockIdx.x;
  const int mat = tile / tilesPerMat, tc = tile % tilesPerMat;
  const bool valid = mat < m.mats;
  const size_t matU4 = (size_t)(m.K / 8) * m.N / 4;
  const uint4* base = m.w + (valid ? mat : 0) * matU4;
  const int step = byColumn ? 1 : 4;
  int s = byColumn ? sb0 : sb0 + warp;
  uint4 v[16], acc = make_uint4(0, 0, 0, 0);
  auto load = [&](int sl) {
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      const size_t i = m.mode == 2 ? (((size_t)tc * slicesTotal + sl) * 16 + r) * 32 + lane
                                   : (size_t)(sl * 16 + r) * (m.N / 4) + tc * 32 + lane;
      v[r] = ld_stream(base + i);
    }
  };
  const bool any = valid && s < sb1;
  if (any) load(s);  // first slice before the wait, as gemv_q4
  pdl_wait();
  pdl_launch_dependents();
  if (any) {
    for (;;) {
#pragma unroll
      for (int r = 0; r < 16; ++r) { acc.x ^= v[r].x; acc.y ^= v[r].y; acc.z ^= v[r].z; acc.w ^= v[r].w; }
      s += step;
      if (s >= sb1) break;
      load(s);
    }
  }
  if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x9E3779B9u) sink[threadIdx.x] = 1u;
}
extern "C" __global__ void tiny_phase(unsigned* sink) {
  pdl_wait();
  pdl_launch_dependents();
  if (threadIdx.x == 1023) sink[0] = 1u;
}

int main() {
  const LabDevice lab = labDevice();
  const cudaDeviceProp& prop = lab.prop;
  const int sms = lab.sms;
  cudaStream_t s = lab.s;
  unsigned* sink = lab.sink;
  unsigned* bar;
  CK(cudaMalloc(&bar, 64));

  const DecodeStep step = decodeStep13B();
  const std::vector<Phase>& host = step.phases;
  const int count = (int)host.size(), layers = count / 5;  // (5 phases per layer)
  const char* pool = step.pool;
  const size_t total = step.total;
  Phase* dev;
  CK(cudaMalloc(&dev, sizeof(Phase) * count));
  CK(cudaMemcpy(dev, host.data(), sizeof(Phase) * count, cudaMemcpyHostToDevice));

  int perSm = 0;
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, persist, kThreads, 0));
  const int grid = sms * std::min(perSm, 4);
  const double linearUs = timeGraphUs(s, [&] { read_linear<<<sms * 8, 256, 0, s>>>((const uint4*)pool, total / 16, sink); });
  const double ceiling = total / linearUs / 1e3;
  printf("persist-lab %s, %d SMs, %d blocks of %d (occupancy %d/SM): step %.1f MB; one linear read %.1f us = %.0f GB/s\n",
         prop.name, sms, grid, kThreads, perSm, total / 1e6, linearUs, ceiling);
  for (int pre = 0; pre < 2; ++pre) {
    const double us = timeGraphUs(s, [&] {
      for (int p = 0; p < count; ++p) launchPdl(phase_pdl, dim3(grid), dim3(kThreads), s, host[p], pre, sink);
    });
    printf("  %-12s %8.1f us per step  %5.1f%% of the linear read  (%.2f us per boundary over it)\n", pre ? "pdl-pre" : "pdl", us,
           100 * linearUs / us, (us - linearUs) / count);
  }
  for (int pre = 0; pre < 2; ++pre) {
    const double us = timeGraphUs(s, [&] {
      CK(cudaMemsetAsync(bar, 0, 4, s));
      persist<<<grid, kThreads, 0, s>>>(dev, count, pre, bar, sink);
    });
    printf("  %-12s %8.1f us per step  %5.1f%% of the linear read  (%.2f us per boundary over it)\n", pre ? "persist-pre" : "persist", us,
           100 * linearUs / us, (us - linearUs) / count);
  }

  // weight-load patterns over the same 40 layers (packed weights only: 158.6 MB per layer)
  struct MatSet { int K, N, mats; };
  const MatSet sets[4] = {{5120, 5120, 3}, {5120, 5120, 1}, {5120, 13824, 2}, {13824, 5120, 1}};
  size_t setBytes = 0;
  for (const MatSet& m : sets) setBytes += size_t(m.K / 8) * m.N * 4 * m.mats;
  const double stepBytes = double(setBytes) * layers;
  const char* modeNames[4] = {"tile x K-range, warps split K (now)", "4 tiles per block, warp = tile", "tiled layout (8 KB pieces)", "as now, K split evenly"};
  for (int mode = 0; mode < 4; ++mode) {
    const double us = timeGraphUs(s, [&] {
      size_t off2 = 0;
      for (int l = 0; l < layers; ++l) {
        for (int i = 0; i < 4; ++i) {
          const MatSet& m = sets[i];
          const int tiles = m.mats * m.N / 128, slices = m.K / 128;
          const int blocksX = mode == 1 ? (tiles + 3) / 4 : tiles;
          const int splits = std::max(1, grid / blocksX);
          int per = (slices + splits - 1) / splits;
          if (mode == 0 || mode == 2) per = (per + 3) / 4 * 4;
          per = std::max(std::min(per, 64), (slices + 63) / 64);
          const PatternArgs a = {(const uint4*)(pool + off2), m.K, m.N, m.mats, per * 128, mode};
          launchPdl(gemv_pattern, dim3(blocksX, (slices + per - 1) / per), dim3(kThreads), s, a, sink);
          off2 += size_t(m.K / 8) * m.N * 4 * m.mats;
          if (i == 0) launchPdl(tiny_phase, dim3(1), dim3(32), s, sink);  // attention's boundary
        }
      }
    });
    printf("  pattern %d %-38s %8.1f us per step  %5.1f%% of the linear read rate\n", mode, modeNames[mode], us,
           100 * (stepBytes / us / 1e3) / ceiling);
  }
  CK(cudaGetLastError());
  return 0;
}
