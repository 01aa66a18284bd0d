// The read ceiling the GEMV labs compare with: a grid-stride read of 2 GiB with 16-byte streaming loads, launched 4
// times with PDL in one graph. Include after gemv_q4.cu or labLoads.cuh (ld_stream, pdl_wait) and labHarness.cuh.
#pragma once

extern "C" __global__ void read_linear(const uint4* __restrict__ a, unsigned long long n, unsigned* sink) {
  pdl_wait();
  pdl_launch_dependents();
  uint4 acc = make_uint4(0, 0, 0, 0);
  const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
  for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint4 v = ld_stream(a + i);
    acc.x ^= v.x; acc.y ^= v.y; acc.z ^= v.z; acc.w ^= v.w;
  }
  if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x9E3779B9u) sink[threadIdx.x] = 1u;  // keeps the loads
}

// GB/s of read_linear over 2 GiB on `sms` SMs (8 blocks of 256 per SM); sink: a scratch buffer of ≥ 1 KB
static double readCeilingGBs(cudaStream_t s, int sms, unsigned* sink) {
  const size_t bytes = size_t(1) << 31;
  uint4* big;
  CK(cudaMalloc(&big, bytes));
  CK(cudaMemset(big, 0x5A, bytes));
  const double us = timeGraphUs(s, [&] {
    for (int i = 0; i < 4; ++i) launchPdl(read_linear, dim3(sms * 8), dim3(256), s, (const uint4*)big, (unsigned long long)(bytes / 16), sink);
  }) / 4;
  CK(cudaFree(big));
  return bytes / us / 1e3;
}
