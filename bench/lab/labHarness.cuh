// Host-side harness shared by the GPU labs (gemvLab.cu, persistLab.cu): checked runtime calls, launches with
// programmatic dependent launch, and timing of a captured graph (median of 5 replays).
#pragma once
#include <cuda_runtime.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(call)                                                                                  \
  do {                                                                                            \
    cudaError_t e_ = (call);                                                                      \
    if (e_ != cudaSuccess) {                                                                      \
      fprintf(stderr, "lab: %s failed: %s (line %d)\n", #call, cudaGetErrorString(e_), __LINE__); \
      exit(1);                                                                                    \
    }                                                                                             \
  } while (0)

// launches k with programmatic stream serialization (its griddepcontrol.wait orders it after the previous kernel),
// with `smem` bytes of dynamic shared memory
template <typename Kernel, typename... Args>
static void launchPdlShared(Kernel k, dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  CK(cudaLaunchKernelEx(&cfg, k, args...));
}
template <typename Kernel, typename... Args>
static void launchPdl(Kernel k, dim3 grid, dim3 block, cudaStream_t s, Args... args) {
  launchPdlShared(k, grid, block, 0, s, args...);
}

// µs per replay of what `record` issues on s, captured once into a graph: median of 5 timed replays after one untimed
template <typename F>
static double timeGraphUs(cudaStream_t s, F&& record) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
  record();
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  CK(cudaGraphLaunch(ge, s));
  CK(cudaStreamSynchronize(s));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int r = 0; r < 5; ++r) {
    CK(cudaEventRecord(e0, s));
    CK(cudaGraphLaunch(ge, s));
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    float ms = 0.f;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(ms * 1000.0);
  }
  std::sort(t.begin(), t.end());
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  return t[2];
}

// The device a lab runs on: its properties and SM count, a non-blocking stream, a 1 MB scratch buffer (sink)
struct LabDevice {
  cudaDeviceProp prop;
  int sms;
  cudaStream_t s;
  unsigned* sink;
};
static LabDevice labDevice() {
  LabDevice d;
  CK(cudaGetDeviceProperties(&d.prop, 0));
  d.sms = d.prop.multiProcessorCount;
  CK(cudaStreamCreateWithFlags(&d.s, cudaStreamNonBlocking));
  CK(cudaMalloc(&d.sink, 1 << 20));
  return d;
}
