// Helpers of the labs that do not include a product kernel (persistLab.cu, preloadLab.cu; the GEMV labs get the
// device ones from gemv_q4.cu): the product GEMV's streaming 16-byte weight load, programmatic dependent launch, and
// a 13B decode step's bytes as phases.
#pragma once
#include <cuda_runtime.h>
#include <vector>

__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void pdl_launch_dependents() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }

// A phase of a decode step as the labs read it: n 16-byte units from a
struct Phase { const uint4* a; unsigned long long n; };

// The bytes of a 13B g128 decode step in one pool: 40 layers × (q/k/v, attention at context 1 (a few KB), o,
// gate/up, down), each phase rounded up to 256 bytes. Host side: include after labHarness.cuh (CK).
struct DecodeStep {
  std::vector<Phase> phases;
  const char* pool;
  size_t total;
};
static DecodeStep decodeStep13B() {
  const double mb[5] = {40.9, 0.06, 13.6, 73.5, 36.8};
  const int layers = 40, perLayer = 5, count = layers * perLayer;
  std::vector<size_t> bytes(count);
  size_t total = 0;
  for (int p = 0; p < count; ++p) { bytes[p] = (size_t(mb[p % perLayer] * 1e6) + 255) / 256 * 256; total += bytes[p]; }
  char* pool;
  CK(cudaMalloc(&pool, total));
  CK(cudaMemset(pool, 0x5A, total));
  DecodeStep step{std::vector<Phase>(count), pool, total};
  size_t off = 0;
  for (int p = 0; p < count; ++p) { step.phases[p] = {(const uint4*)(pool + off), bytes[p] / 16}; off += bytes[p]; }
  return step;
}
