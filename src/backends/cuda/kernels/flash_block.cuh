// Where a causal prompt-attention block works (attn_flash_<d>, attention_flash.cu; attn_flash_wg_128,
// attention_flash_wg.cu): grid (head, query tile of BQ rows), query tiles in reverse so blocks start in linear order
// with the longest (last) tiles of every head first and the short ones fill the last wave. (With grid (tile, head) each
// head's long tiles started after all earlier heads' short ones, and a long tile could run alone at the end: 13B at
// 2048 rows, H200, 0.314–0.322 → 0.273–0.276 ms per layer.) Rows t0 .. t0 + BQ − 1 are positions start + t0 ..;
// the block reads cache positions 0 .. nk − 1 of kv head kvh in tiles of BKV.
#pragma once
#include "common.cuh"

template <int BQ, int BKV, int D>
struct FlashBlock {
  int h, kvh, start, t0, nk, width, ntiles;
  const __half* kbase;  // kv head kvh's K at position 0 (rows `width` halves apart)
  const __half* vbase;
  __device__ __forceinline__ FlashBlock(const __half* kc, const __half* vc, const int* pos_ptr, int pos_imm, int rows, int heads,
                                        int kvHeads) {
    const int qt = gridDim.y - 1 - blockIdx.y;
    h = blockIdx.x;
    kvh = h / (heads / kvHeads);
    start = read_pos(pos_ptr, pos_imm);
    t0 = qt * BQ;
    nk = start + min(t0 + BQ, rows);
    width = kvHeads * D;
    ntiles = (nk + BKV - 1) / BKV;
    kbase = kc + (size_t)kvh * D;
    vbase = vc + (size_t)kvh * D;
  }
};
