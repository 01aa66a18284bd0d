#!/usr/bin/env bash
# Packs what a run on the lent GPU machine needs beside the tracked tree (which travels by itself): that machine has
# the CUDA driver and Python with torch but no Node.js and no network, and what travels is capped at 64 MiB.
#   node.xz          this machine's node binary (xz)
#   dist.tar.xz      the compiled dist/ (the kernels are the tracked src/.../qllama-kernels.fatbin.br) and the
#                    production node_modules (npm ci --omit=dev, minus koffi's musl build and docs)
#   fixtures.tar.xz  from ../shared: tiny-vicuna-4k fp16, the C4 sample, WikiText-2 (the quantizer's GPU tests)
#   peer.tar.xz      .peer/exllamav2 (ExLlamaV2's source, fetched by you, never committed), if present
# Then on the GPU machine, from the repository root: `. scripts/gpu-setup.sh`, then e.g. `node scripts/run-tests.mjs
# /cuda/` or `node dist/bench/cudaBench.js /tmp/m13` (see README, Development).
# Usage: bash scripts/gpu-bundle.sh            (writes .gpu/bundle, which git ignores; carry that folder)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/.gpu/bundle"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

node_bin="$(command -v node)"
stamp="$out/node.version"
if [ ! -f "$out/node.xz" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$(node --version)" ]; then
  echo "gpu-bundle: node $(node --version) -> node.xz"
  xz -T0 -9e -c "$node_bin" > "$out/node.xz.tmp" && mv "$out/node.xz.tmp" "$out/node.xz"
  node --version > "$stamp"
fi

echo "gpu-bundle: dist + production node_modules -> dist.tar.xz"
(cd "$root" && npx tsc -p tsconfig.json)
mkdir -p "$work/slim" "$work/prod"
cp "$root/package.json" "$root/package-lock.json" "$work/prod/"
(cd "$work/prod" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
cp -r "$root/dist" "$work/slim/dist"
rm -f "$work/slim/dist/src/backends/cuda/"*.fatbin*  # (a copy that older builds left in dist: unused)
mv "$work/prod/node_modules" "$work/slim/node_modules"
rm -rf "$work/slim/node_modules/@koromix/koffi-linux-x64/musl_x64" "$work/slim/node_modules/koffi/doc" "$work/slim/node_modules/koffi/vendor"
(cd "$work/slim" && tar -cf - dist node_modules | xz -T0 -9 > "$out/dist.tar.xz.tmp") && mv "$out/dist.tar.xz.tmp" "$out/dist.tar.xz"

shared="$root/../shared"
if [ -d "$shared/fixtures/tiny-vicuna-4k/fp16" ]; then
  echo "gpu-bundle: ../shared fixtures -> fixtures.tar.xz"
  (cd "$shared" && tar -cf - fixtures/tiny-vicuna-4k/fp16 data/c4/c4_sample.jsonl data/wikitext-2/wikitext2_test_gptq_join_lf.txt \
    | xz -T0 -6 > "$out/fixtures.tar.xz.tmp") && mv "$out/fixtures.tar.xz.tmp" "$out/fixtures.tar.xz"
else
  echo "gpu-bundle: no ../shared here: no fixtures, so the quantizer's fixture test fails there (it names what is missing)" >&2
  rm -f "$out/fixtures.tar.xz"
fi

if [ -f "$root/.peer/exllamav2/test_inference.py" ]; then
  echo "gpu-bundle: .peer/exllamav2 -> peer.tar.xz"
  (cd "$root/.peer" && tar -cf - exllamav2 | xz -T0 -9 > "$out/peer.tar.xz.tmp") && mv "$out/peer.tar.xz.tmp" "$out/peer.tar.xz"
else
  rm -f "$out/peer.tar.xz"
fi

# what travels: tracked files, untracked files git does not ignore, and the carried bundle (limit 64 MiB)
tree=$(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
bundle=$(du -sb "$out" | cut -f1)
total=$((tree + bundle))
(cd "$out" && ls -l | awk 'NR > 1 {printf "gpu-bundle: %-16s %6.1f MB\n", $9, $5 / 1e6}')
awk -v t="$tree" -v b="$bundle" 'BEGIN {printf "gpu-bundle: tree %.1f MB + bundle %.1f MB = %.1f MB of the 67.1 MB (64 MiB) that may travel\n", t / 1e6, b / 1e6, (t + b) / 1e6}'
[ "$total" -le 67108864 ] || { echo "gpu-bundle: over the limit: leave the peer or the fixtures out" >&2; exit 1; }
