# Sourced on the lent GPU machine from the repository root, after scripts/gpu-bundle.sh here and a run that carries
# .gpu/bundle: puts node on PATH, unpacks dist/ and the production node_modules at the root, the quantizer's fixtures
# into .gpu/shared (test/cuda/quantizeSupport.ts looks there) and ExLlamaV2's source into .peer (bench:cuda's peer).
# The kernels are the tracked src/backends/cuda/qllama-kernels.fatbin.br. Usage: . scripts/gpu-setup.sh
_b=.gpu/bundle
if [ ! -f "$_b/node.xz" ] || [ ! -f "$_b/dist.tar.xz" ]; then
  echo "gpu-setup: no $_b/node.xz or $_b/dist.tar.xz: run scripts/gpu-bundle.sh where Node is, and carry .gpu/bundle" >&2
  return 1 2>/dev/null || exit 1
fi
mkdir -p /tmp/qllama-node/bin && xz -dc "$_b/node.xz" > /tmp/qllama-node/bin/node && chmod +x /tmp/qllama-node/bin/node
export PATH="/tmp/qllama-node/bin:$PATH"
tar -xJf "$_b/dist.tar.xz"
if [ -f "$_b/fixtures.tar.xz" ]; then mkdir -p .gpu/shared && tar -xJf "$_b/fixtures.tar.xz" -C .gpu/shared; fi
if [ -f "$_b/peer.tar.xz" ]; then mkdir -p .peer && tar -xJf "$_b/peer.tar.xz" -C .peer; fi
echo "gpu-setup: node $(node --version); $(nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
unset _b
