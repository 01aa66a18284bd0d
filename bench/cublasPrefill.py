"""The prefill ceiling that cuBLAS sets: a LLaMA layer's four prompt linears (q/k/v fused, o, gate/up fused, down)
as PyTorch fp16 GEMMs (cuBLAS), weights resident, `rows` prompt rows, run back to back for `seconds` so the card
reaches its sustained clock under tensor load (the power limit), not a short burst's. Prints one JSON line:
ms per layer, TFLOP/s, the prompt rate the linears alone would allow (rows / (layers * ms)), and the mean SM
clock and board power meanwhile (nvidia-smi every 50 ms into a file, read afterwards: its pipe output comes in
blocks, and the caller's sampler saw none of this phase's).
Run by bench/cudaBench.ts on the GPU machine (needs torch with CUDA). Usage:
  python3 bench/cublasPrefill.py HIDDEN FFN LAYERS [ROWS [SECONDS]]
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import torch


def main() -> None:
    hidden, ffn, layers = (int(a) for a in sys.argv[1:4])
    rows = int(sys.argv[4]) if len(sys.argv) > 4 else 2048
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 4.0
    dev = torch.device("cuda")
    shapes = [(3 * hidden, hidden), (hidden, hidden), (2 * ffn, hidden), (hidden, ffn)]  # (N, K) of y = x W^T
    xs = [torch.randn(rows, k, device=dev, dtype=torch.float16) for _, k in shapes]
    ws = [torch.randn(n, k, device=dev, dtype=torch.float16) for n, k in shapes]
    flop = sum(2 * rows * n * k for n, k in shapes)
    for _ in range(3):
        for x, w in zip(xs, ws):
            x @ w.t()
    torch.cuda.synchronize()
    log = tempfile.NamedTemporaryFile(suffix=".csv", delete=False).name
    smi = None
    for power in ("power.draw.instant", "power.draw"):  # (older drivers lack the instant reading: nvidia-smi exits)
        try:
            smi = subprocess.Popen(["nvidia-smi", f"--query-gpu=clocks.sm,{power},power.limit", "--format=csv,noheader,nounits",
                                    "-lms", "50", "-f", log], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            smi = None
            break
        time.sleep(0.3)
        if smi.poll() is None:
            break
        smi = None
    t0 = time.time()
    iters = 0
    while time.time() - t0 < seconds:
        for _ in range(10):
            for x, w in zip(xs, ws):
                x @ w.t()
        torch.cuda.synchronize()
        iters += 10
    t1 = time.time()
    clocks = None
    if smi is not None:
        smi.terminate()
        smi.wait()
        rows_ = []
        with open(log) as f:
            for line in f:
                parts = [p.strip() for p in line.split(",")]
                try:
                    rows_.append(tuple(float(p) for p in parts[:3]))
                except ValueError:
                    pass
        if rows_:
            n = len(rows_)
            clocks = {"samples": n, "smMHz": round(sum(r[0] for r in rows_) / n), "watts": round(sum(r[1] for r in rows_) / n),
                      "limitW": round(sum(r[2] for r in rows_) / n)}
    if os.path.exists(log):
        os.unlink(log)
    ms = (t1 - t0) / iters * 1e3
    print(json.dumps({
        "clocks": clocks,
        "device": torch.cuda.get_device_name(0), "rows": rows, "msPerLayer": round(ms, 4),
        "tflops": round(flop / (ms / 1e3) / 1e12, 1), "linearsOnlyTokS": round(rows / (layers * ms / 1e3)),
        "t0": int(t0 * 1000), "t1": int(t1 * 1000),
    }))


if __name__ == "__main__":
    main()
