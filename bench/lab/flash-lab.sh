#!/usr/bin/env bash
# Builds and runs the prefill-attention lab (bench/lab/flashLab.cu): attn_flash_128 (mma.sync) against the
# wgmma kernels of attention_flash_wg.cu at 13B shapes, after a correctness sweep against a CPU reference.
# Usage (repo root): bash bench/lab/flash-lab.sh        (QLLAMA_NVCC overrides the nvcc path)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nvcc="${QLLAMA_NVCC:-nvcc}"
out="${TMPDIR:-/tmp}/qllama-flash-lab"
echo "flash-lab: compiling $here/flashLab.cu"
"$nvcc" -O3 -std=c++17 -lineinfo -gencode arch=compute_90a,code=sm_90a -Xptxas -warn-spills -o "$out" "$here/flashLab.cu"
echo "flash-lab: running"
"$out" || {
  rc=$?
  echo "flash-lab: the lab exited with status $rc (no CUDA GPU here, a failed check, or an error printed above)" >&2
  exit "$rc"
}
