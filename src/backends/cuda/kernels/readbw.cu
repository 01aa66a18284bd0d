// Bandwidth probe for benchmarks: reads n 16-byte words once, folds them so the loads stay.
//   out[thread] = xor of every word the thread read
#include "common.cuh"

extern "C" __global__ void read_bw(const uint4* __restrict__ a, unsigned long long n, unsigned* out) {
  uint4 acc = make_uint4(0, 0, 0, 0);
  const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
  for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint4 v = __ldg(a + i);
    acc.x ^= v.x; acc.y ^= v.y; acc.z ^= v.z; acc.w ^= v.w;
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}
