#!/usr/bin/env bash
# Builds and runs the decode GEMV lab (bench/lab/gemvLab.cu) once per weight-load cache hint
# (GEMV_Q4_LD in gemv_q4.cu) and with 2, 4 and 8 blocks per SM for the default hint.
# Usage (repo root, on a GPU machine): bash bench/lab/gemv-lab.sh     (QLLAMA_NVCC overrides nvcc)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nvcc="${QLLAMA_NVCC:-nvcc}"
out="${TMPDIR:-/tmp}/qllama-gemv-lab"
status=0
declare -A hints=(
  [default]="ld.global.nc.L1::no_allocate.v4.u32"
  [l2-256B]="ld.global.nc.L1::no_allocate.L2::256B.v4.u32"
  [l2-128B]="ld.global.nc.L1::no_allocate.L2::128B.v4.u32"
  [cs]="ld.global.cs.nc.v4.u32"
)
for tag in default l2-256B l2-128B cs; do
  "$nvcc" -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o "$out-$tag" \
    -DGEMV_Q4_LD="\"${hints[$tag]}\"" -DGEMV_LAB_TAG="\"$tag\"" "$here/gemvLab.cu" || { echo "gemv-lab: build $tag failed" >&2; status=1; continue; }
  "$out-$tag" || status=1
done
for b in 2 8; do "$out-default" --blocks-per-sm "$b" || status=1; done
"$out-default" --sweep || status=1
exit $status
