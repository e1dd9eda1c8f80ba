#!/usr/bin/env python3
"""PyTorch reference timings for the CUDA benchmarks (run by .gpu/run.sh on the GPU machine).

For f32 and bf16 at N elements (default 64M and 256M): F.leaky_relu forward, its backward
(torch.ops.aten.leaky_relu_backward, the fused gradient), and a device-to-device copy of the same
bytes, timed with CUDA events (median of --iters after --warmup). Prints one JSON object per line
and writes them to --out (JSON lines).
"""
import argparse
import json

import torch
import torch.nn.functional as F


def time_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default=str(64 << 20) + "," + str(256 << 20))
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    dev = torch.device("cuda")
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(n, device=dev, dtype=dtype)
            dy = torch.randn(n, device=dev, dtype=dtype)
            out = torch.empty_like(x)
            es = x.element_size()
            cases = {
                # bytes moved: read x (+ dy), write the result
                "copy": (lambda: out.copy_(x), 2 * n * es),
                "forward": (lambda: F.leaky_relu(x, a.alpha), 2 * n * es),
                "backward": (lambda: torch.ops.aten.leaky_relu_backward(dy, x, a.alpha, False), 3 * n * es),
                "copy3": (lambda: torch.add(x, dy, out=out), 3 * n * es),
            }
            for name, (fn, nbytes) in cases.items():
                ms = time_ms(fn, a.warmup, a.iters)
                row = {
                    "impl": "torch", "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                    "op": name, "dtype": str(dtype).replace("torch.", ""), "n": n,
                    "ms": round(ms, 4), "gb_per_s": round(nbytes / ms / 1e6, 1),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
            del x, dy, out
            torch.cuda.empty_cache()
    if a.out:
        with open(a.out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
