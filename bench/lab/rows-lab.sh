#!/usr/bin/env bash
# Builds and runs the batched-decode linear lab (bench/lab/rowsLab.cu) once per ring depth (Q4RR_STAGES in
# gemv_q4_rows.cu), and the default depth at a few fixed K ranges per block.
# Usage (repo root, on a GPU machine): bash bench/lab/rows-lab.sh [STAGES ...]   (QLLAMA_NVCC overrides nvcc)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nvcc="${QLLAMA_NVCC:-nvcc}"
out="${TMPDIR:-/tmp}/qllama-rows-lab"
status=0
stages=("$@")
[ "${#stages[@]}" -eq 0 ] && stages=(4 8 12)
for st in "${stages[@]}"; do
  "$nvcc" -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -DQ4RR_STAGES="$st" -o "$out-$st" "$here/rowsLab.cu" || { echo "rows-lab: build (stages $st) failed" >&2; status=1; continue; }
  "$out-$st" || status=1
done
for k in 512 1024; do "$out-${stages[0]}" --kper "$k" || status=1; done
exit $status
