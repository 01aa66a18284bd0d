"""cuBLAS fp16 GEMMs (PyTorch) at the 13B prefill shapes, for comparison with bench/lab/gemmLab.cu.

y[M, N] = x[M, K] @ W[N, K]^T, fp16 in and out (as ExLlamaV2 runs its large batches after dequantizing),
median of 15 launches timed with CUDA events, L2 flushed (256 MB write) before each, like the lab.
Run by bench/lab/gemm-lab.sh when PyTorch sees the GPU.
"""
import torch

SHAPES = [("qkv", 15360, 5120), ("o", 5120, 5120), ("gate_up", 27648, 5120), ("down", 5120, 13824)]


def main() -> None:
    dev = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    for M in (2048, 512):
        total = 0.0
        flop = 0.0
        for name, N, K in SHAPES:
            x = torch.randn(M, K, device=dev, dtype=torch.float16)
            w = torch.randn(N, K, device=dev, dtype=torch.float16)
            for _ in range(3):
                y = x @ w.t()
            torch.cuda.synchronize()
            times = []
            for i in range(15):
                flush.fill_(i & 0xFF)
                a = torch.cuda.Event(enable_timing=True)
                b = torch.cuda.Event(enable_timing=True)
                a.record()
                y = x @ w.t()
                b.record()
                b.synchronize()
                times.append(a.elapsed_time(b))
            ms = sorted(times)[len(times) // 2]
            total += ms
            flop += 2.0 * M * N * K
            print(f"  M {M:4d} {name:8s} N {N:5d} K {K:5d}: {ms:7.3f} ms {2.0 * M * N * K / ms / 1e9:6.1f} TFLOP/s")
            del x, w, y
        print(f"  M {M:4d} 4 linears: {total:.3f} ms/layer, {flop / total / 1e9:.1f} TFLOP/s, x40 -> {M / (40 * total * 1e-3):.0f} tok/s (linears, fp16 weights resident)")


if __name__ == "__main__":
    main()
