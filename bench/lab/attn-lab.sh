#!/usr/bin/env bash
# Builds and runs the decode-attention lab (bench/lab/attnLab.cu): the kernel in
# src/backends/cuda/kernels/attention.cu against the previous one at 13B shapes, plus a correctness sweep.
# Usage (repo root): bash bench/lab/attn-lab.sh        (QLLAMA_NVCC overrides the nvcc path)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nvcc="${QLLAMA_NVCC:-nvcc}"
out="${TMPDIR:-/tmp}/qllama-attn-lab"
echo "attn-lab: compiling $here/attnLab.cu"
"$nvcc" -O3 -arch=sm_90 -std=c++17 -lineinfo -Xptxas -warn-spills -o "$out" "$here/attnLab.cu"
echo "attn-lab: built $out"
echo "attn-lab: running"
"$out" || {
  rc=$?
  echo "attn-lab: the lab exited with status $rc (no CUDA GPU here, a failed check, or an error printed above)" >&2
  exit "$rc"
}
