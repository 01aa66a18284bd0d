#!/usr/bin/env bash
# Builds the kernels with block timelines (src/backends/cuda/kernels/trace.cuh: -DQLLAMA_TRACE) for sm_90a into
# ${1:-/tmp/qllama-trace.fatbin}, for bench/cudaDecodeTrace.ts through QLLAMA_CUDA_FATBIN. Not the shipped build: the
# trace's stores and its 32 MB buffer change the timings a little; use it to see where a step's time goes, and
# cudaDecodeProfile with the shipped fatbin for rates.
# Usage (repo root, here or on the GPU machine): bash bench/lab/trace-build.sh [OUT]   (QLLAMA_NVCC overrides nvcc)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kernels="$here/../../src/backends/cuda/kernels"
out="${1:-/tmp/qllama-trace.fatbin}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$kernels"/*.cu "$kernels"/*.cuh "$work"/
(cd "$work" && ls *.cu | sed 's/.*/#include "&"/' > unity.txt && mv unity.txt qllama_trace_unity.cu)
"${QLLAMA_NVCC:-nvcc}" -fatbin -O3 -std=c++17 -DQLLAMA_TRACE -gencode arch=compute_90a,code=sm_90a -o "$out" "$work/qllama_trace_unity.cu"
echo "trace-build: $out"
