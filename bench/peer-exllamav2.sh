#!/usr/bin/env bash
# Runs ExLlamaV2 (the peer in issue #3's table) on a model folder, on the GPU machine, in the same call
# as `npm run bench:cuda`: decode speed over context (-s) and prompt speed over length (-ps).
# ExLlamaV2's source is NOT part of qllama: fetch turboderp/exllamav2 yourself into .peer/exllamav2
# (git ignores .peer/; its exllamav2/ package and test_inference.py), and carry .peer to the GPU machine.
# It needs torch, ninja, safetensors, sentencepiece/tokenizers there; it JIT-builds its extension (~95 s).
# Usage: bash bench/peer-exllamav2.sh MODEL_DIR [OUT_DIR]
set -uo pipefail
model=${1:?usage: peer-exllamav2.sh MODEL_DIR [OUT_DIR]}
out=${2:-/tmp}
peer=$(dirname "$0")/../.peer/exllamav2
if [ ! -f "$peer/test_inference.py" ]; then
  echo "peer-exllamav2: no ExLlamaV2 source at $peer (fetch turboderp/exllamav2 there)"; exit 2
fi
missing=$(python3 - <<'PY'
import importlib
need = ["torch", "ninja", "safetensors", "sentencepiece", "tokenizers", "rich", "pygments", "regex", "numpy", "websockets", "pandas", "fastparquet"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PY
)
[ -n "$missing" ] && echo "peer-exllamav2: python modules missing here: $missing"
# test_inference.py imports its perplexity-dataset readers (fastparquet, pandas) and the server's websockets
# at start even for the speed tests, which never use them: empty stand-ins in /tmp let it start
stubs=/tmp/peer-exllamav2-stubs
for m in fastparquet websockets; do
  case " $missing " in *" $m "*) mkdir -p "$stubs/$m" && : > "$stubs/$m/__init__.py";; esac
done
export PYTHONPATH="$stubs${PYTHONPATH:+:$PYTHONPATH}"
export TORCH_CUDA_ARCH_LIST=9.0
cd "$peer"
t0=$(date +%s)
python3 test_inference.py -m "$model" -s -l 2048 > "$out/exllamav2-speed.log" 2>&1; rc1=$?
t1=$(date +%s)
python3 test_inference.py -m "$model" -ps -l 2048 > "$out/exllamav2-prompt.log" 2>&1; rc2=$?
t2=$(date +%s)
echo "peer-exllamav2: -s rc=$rc1 ($((t1 - t0)) s, build included), -ps rc=$rc2 ($((t2 - t1)) s)"
grep -E "\*\* (Position|Length)|Error|error" "$out/exllamav2-speed.log" "$out/exllamav2-prompt.log" | grep -E "Position +(1|1920|1024) |Length +(512|2048) |rror" | head -20
