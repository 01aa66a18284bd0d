// Tensor-core helpers shared by the prefill kernels (sm_80+: cp.async, ldmatrix, mma.sync m16n8k16).
// Fragment layouts (PTX ISA, mma.m16n8k16 f16 → f32), g = lane / 4, t = lane % 4:
//   A (16×16, row):  a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
//   B (16×8, col):   b0 (k 2t..2t+1, n g)  b1 (k 2t+8.., n g)
//   C (16×8):        c0,c1 (g, 2t..2t+1)  c2,c3 (g+8, 2t..2t+1)
#pragma once
#include "common.cuh"

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy global → shared; src_bytes = 0 fills the 16 bytes with zeros and reads nothing.
__device__ __forceinline__ void mma_cp16(void* dst, const void* src, int src_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(src_bytes) : "memory");
#endif
}
__device__ __forceinline__ void mma_cp_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void mma_cp_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3, const void* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(smem_u32(p)));
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3, const void* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(smem_u32(p)));
#endif
}

// c += a · b (m16n8k16, f16 inputs, f32 accumulators)
__device__ __forceinline__ void mma_16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// One k16 step of a warp's 64 × 32 tile in a 128 × 128 block tile (8 warps: wm = (warp / 4)·64,
// wn = (warp % 4)·32): A fragments from a [m][ast] fp16 tile, B fragments from an [n][bst] fp16 tile
// (K contiguous in both), column kk; acc[mt][nt] is the 16 × 8 piece (mt, nt) of the warp's tile.
template <int AST, int BST>
__device__ __forceinline__ void mma_warp_64x32_k16(float (&acc)[4][4][4], const __half* a, const __half* b, int wm, int wn,
                                                   int kk, int lane) {
  uint32_t af[4][4], bf[4][2];
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
    ldmatrix_x4(af[mt][0], af[mt][1], af[mt][2], af[mt][3], a + (wm + mt * 16 + (lane & 15)) * AST + kk + (lane >> 4) * 8);
#pragma unroll
  for (int np = 0; np < 2; ++np)
    ldmatrix_x4(bf[2 * np][0], bf[2 * np][1], bf[2 * np + 1][0], bf[2 * np + 1][1],
                b + (wn + np * 16 + (lane & 7) + (lane >> 4) * 8) * BST + kk + ((lane >> 3) & 1) * 8);
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) mma_16816(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
}

// Stores (accumulate: adds to) a warp's 64 × 32 f32 tile at rows row0.., columns col0.. of C [M, ldc],
// skipping rows ≥ M and column pairs at ≥ N (N and ldc even: float2 stores).
__device__ __forceinline__ void mma_store_64x32(float* C, int ldc, int M, int N, int row0, int col0, const float (&acc)[4][4][4],
                                                int lane, int accumulate) {
  const int g = lane >> 2, t = lane & 3;
  // per 16-row slab, the old values (accumulate) are loaded together before the stores: one round trip
  // per slab instead of one per value (gemm_wgmma.cuh's epilogue says why)
#pragma unroll
  for (int mt = 0; mt < 4; ++mt) {
    float2 old[4][2];
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const int col = col0 + nt * 8 + 2 * t, row = row0 + mt * 16 + g + hf * 8;
        old[nt][hf] = accumulate && col < N && row < M ? *reinterpret_cast<const float2*>(C + (size_t)row * ldc + col) : make_float2(0.f, 0.f);
      }
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const int col = col0 + nt * 8 + 2 * t;
      if (col >= N) continue;
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const int row = row0 + mt * 16 + g + hf * 8;
        if (row >= M) continue;
        float2 v = make_float2(acc[mt][nt][2 * hf], acc[mt][nt][2 * hf + 1]);
        if (accumulate) {
          v.x += old[nt][hf].x;
          v.y += old[nt][hf].y;
        }
        *reinterpret_cast<float2*>(C + (size_t)row * ldc + col) = v;
      }
    }
  }
}
