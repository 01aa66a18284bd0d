#!/usr/bin/env bash
# Builds and runs the prefill GEMM lab (bench/lab/gemmLab.cu): the shipped gemm_q4_mma against Hopper wgmma
# kernels (dequantize-to-fp16 + wgmma, and fused int4 wgmma; src/backends/cuda/kernels/gemm_wgmma.cuh) at the 13B shapes with
# M = 2048 and 512, the dequantization kernels (first and tiled, ms and GB/s), the product's sliced path (wg256s)
# and one 13B layer as the product runs it (old dequant + whole GEMM vs tiled dequant vs slices of N, M = 2048
# and 1024), plus the prefill attention kernel, then (if PyTorch sees the GPU) cuBLAS fp16 GEMMs at the same
# shapes for comparison. The probe of "deq" checks dequant_q4_tile byte-equal to the first kernel.
# Only some variants: bash bench/lab/gemm-lab.sh wg256,wg256s,deq   (probes and the full run of those alone)
# Each wgmma variant first runs a small-shape probe in its own process under `timeout` (a pipeline bug
# hangs or traps only that process); the full run times only the variants whose probe passed.
# Exit status: non-zero when the build fails, any probe or check fails, or the full run fails.
# Usage (repo root): bash bench/lab/gemm-lab.sh        (QLLAMA_NVCC overrides the nvcc path)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nvcc="${QLLAMA_NVCC:-nvcc}"
out="${TMPDIR:-/tmp}/qllama-gemm-lab"
echo "gemm-lab: compiling $here/gemmLab.cu (sm_90a)"
# the -gencode form: with nvcc 13.0, -arch=sm_90a also runs a plain sm_90 pass that rejects wgmma/setmaxnreg
"$nvcc" -O3 -std=c++17 -lineinfo -gencode arch=compute_90a,code=sm_90a -Xptxas -warn-spills -o "$out" "$here/gemmLab.cu" || {
  echo "gemm-lab: build failed" >&2
  exit 1
}
echo "gemm-lab: built $out"
status=0
ok=()
# an optional first argument limits the run to those variants (comma-separated names from gemmLab --list)
variants="$("$out" --list)"
[ "$#" -ge 1 ] && variants="$(echo "$1" | tr ',' ' ')"
for v in $variants; do
  echo "gemm-lab: probe $v"
  timeout 120 "$out" --probe "$v"
  rc=$?
  if [ "$rc" -eq 0 ]; then
    ok+=("$v")
  else
    why="status $rc"
    [ "$rc" -eq 124 ] && why="timed out after 120 s: a hang"
    echo "gemm-lab: probe of $v FAILED ($why); it is left out of the full run" >&2
    status=1
  fi
done
if [ "${#ok[@]}" -eq 0 ]; then
  echo "gemm-lab: no variant passed its probe (no CUDA GPU, not an sm_90 device, or every kernel broken)" >&2
  exit 1
fi
list="$(IFS=,; echo "${ok[*]}")"
echo "gemm-lab: full run of $list"
timeout 420 "$out" --only "$list"
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "gemm-lab: the full run exited with status $rc (a failed check, a timeout (124), or an error printed above)" >&2
  status=1
fi
if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gemm-lab: cuBLAS (PyTorch fp16 matmul) at the same shapes, for comparison"
  timeout 120 python3 "$here/gemm_torch_ref.py" || echo "gemm-lab: the PyTorch comparison failed (ignored)" >&2
else
  echo "gemm-lab: no PyTorch with CUDA here: cuBLAS comparison skipped"
fi
echo "gemm-lab: done, status $status"
exit "$status"
