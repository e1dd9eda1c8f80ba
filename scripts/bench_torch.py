#!/usr/bin/env python3
"""PyTorch reference timings, printed as JSON lines (and written to --out).

--device cuda (default; run by .gpu/run.sh on the GPU machine): for f32 and bf16 at N elements
(default 64M and 256M): F.leaky_relu forward, its backward (torch.ops.aten.leaky_relu_backward,
the fused gradient), in place (F.leaky_relu_), and a device-to-device copy of the same bytes;
the same three on views narrowed by one element (`*_narrow`, a misaligned start), and forward
and backward on the transpose of an [N / 4096, 4096] tensor into a contiguous output
(`*_transposed`, the aten `.out` / `.grad_input` overloads: the work benches/cuda.rs measures).
Timed with CUDA events (median of --iters after --warmup).

--device cuda also times PReLU (cuda_prelu_rows): F.prelu with 64 channels over
[N / 65536, 64, 1024] and its fused backward (torch.ops.aten._prelu_kernel_backward: dx and the
per-element weight gradient, which PyTorch then sums), NCHW and channel-last: the cases of
benches/cuda.rs's prelu_rows.

--device cpu: the groups of benches/leaky_relu.rs (f32 4K/256K/4M/64M, f16/bf16/f64 4M) with
the same baselines: `tensor_copy` (x.clone(): allocation + copy), `memcpy_prealloc`
(out.copy_(x) into an existing tensor), `leaky_relu`, `backward`, `inplace` (slope -1, as in
the Rust bench), timed with torch.utils.benchmark (median, and the fastest block as min_ms), on
torch's default thread count
or --threads; --groups picks groups by name (comma-separated, e.g. f32_4M,f16_4M).
--device cpu also times PReLU in the group prelu_f32_4M of benches/prelu.rs: f32 16x64x64x64
NCHW with 64 slopes, `forward` (F.prelu), `backward` (torch.ops.aten._prelu_kernel_backward,
then the per-element weight gradient summed to 64 channels: dx and dweight, what the crate's
backward returns), both also on the same values stored NHWC and permuted to NCHW
(`*_channel_last`), `leaky_relu_forward` / `leaky_relu_backward` on the same tensor,
`tensor_copy`, and `channel_last_contiguous` (the channel-last view copied to contiguous
storage: a transpose); and in the group prelu_rows_f32_4M the same elements as a (65536, 64) matrix.
"""
import argparse
import json

import torch
import torch.nn.functional as F
import torch.utils.benchmark as tb


def time_ms_cuda(fn, warmup, iters):
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


def time_ms_cpu(fn, min_run_time):
    """The median and the minimum of the per-call times of torch.utils.benchmark's blocks, in ms."""
    m = tb.Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time)
    return m.median * 1e3, min(m.times) * 1e3


def cuda_rows(a):
    dev = torch.device("cuda")
    sizes = a.sizes or f"{64 << 20},{256 << 20}"
    for n in (int(s) for s in sizes.split(",")):
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
                "inplace": (lambda: F.leaky_relu_(x, a.alpha), 2 * n * es),
                "forward_narrow": (lambda: F.leaky_relu(x[1:], a.alpha), 2 * n * es),
                "backward_narrow": (
                    lambda: torch.ops.aten.leaky_relu_backward(dy[1:], x[1:], a.alpha, False), 3 * n * es),
                "inplace_narrow": (lambda: F.leaky_relu_(x[1:], a.alpha), 2 * n * es),
            }
            xt = dyt = out2 = None
            if n % 4096 == 0:
                xt, dyt = x.view(n // 4096, 4096).t(), dy.view(n // 4096, 4096).t()
                out2 = out.view(4096, n // 4096)
                cases["forward_transposed"] = (
                    lambda: torch.ops.aten.leaky_relu.out(xt, a.alpha, out=out2), 2 * n * es)
                cases["backward_transposed"] = (
                    lambda: torch.ops.aten.leaky_relu_backward.grad_input(
                        dyt, xt, a.alpha, False, grad_input=out2), 3 * n * es)
            for name, (fn, nbytes) in cases.items():
                ms = time_ms_cuda(fn, a.warmup, a.iters)
                yield {
                    "impl": "torch", "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                    "op": name, "dtype": str(dtype).replace("torch.", ""), "n": n,
                    "ms": round(ms, 4), "gb_per_s": round(nbytes / ms / 1e6, 1),
                }
            del x, dy, out, cases, xt, dyt, out2
            torch.cuda.empty_cache()


def cuda_prelu_rows(a):
    dev = torch.device("cuda")
    sizes = a.sizes or f"{64 << 20},{256 << 20}"
    for n in (int(s) for s in sizes.split(",")):
        if n % 65536:
            continue
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(n // 65536, 64, 1024, device=dev, dtype=dtype)
            dy = torch.randn_like(x)
            w = torch.randn(64, device=dev, dtype=dtype)
            xl = x.reshape(n // 65536, 1024, 64).permute(0, 2, 1)
            dyl = dy.reshape(n // 65536, 1024, 64).permute(0, 2, 1)
            es = x.element_size()

            def backward(x, dy):
                dx, dw = torch.ops.aten._prelu_kernel_backward(dy, x, w.reshape(1, 64, 1))
                return dx, dw.sum(dim=(0, 2))

            cases = {
                "prelu_forward": (lambda: F.prelu(x, w), 2 * n * es),
                "prelu_backward": (lambda: backward(x, dy), 3 * n * es),
                "prelu_backward_channel_last": (lambda: backward(xl, dyl), 3 * n * es),
            }
            for name, (fn, nbytes) in cases.items():
                ms = time_ms_cuda(fn, a.warmup, a.iters)
                yield {
                    "impl": "torch", "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                    "op": name, "dtype": str(dtype).replace("torch.", ""), "n": n,
                    "ms": round(ms, 4), "gb_per_s": round(nbytes / ms / 1e6, 1),
                }
            del x, dy, w, xl, dyl, cases
            torch.cuda.empty_cache()


CPU_GROUPS = [
    ("f32_4K", 1 << 12, torch.float32), ("f32_256K", 1 << 18, torch.float32),
    ("f32_4M", 1 << 22, torch.float32), ("f16_4M", 1 << 22, torch.float16),
    ("bf16_4M", 1 << 22, torch.bfloat16), ("f64_4M", 1 << 22, torch.float64),
    ("f32_64M", 1 << 26, torch.float32),
]


def cpu_rows(a):
    torch.manual_seed(0)
    if a.threads:
        torch.set_num_threads(a.threads)
    wanted = set(a.groups.split(",")) if a.groups else None
    for group, n, dtype in CPU_GROUPS:
        if wanted is not None and group not in wanted:
            continue
        x = torch.randn(n, dtype=dtype)
        dy = torch.randn(n, dtype=dtype)
        out = torch.empty_like(x)
        y = x.clone()
        cases = {
            "leaky_relu": lambda: F.leaky_relu(x, a.alpha),
            "tensor_copy": lambda: x.clone(),
            "memcpy_prealloc": lambda: out.copy_(x),
            "backward": lambda: torch.ops.aten.leaky_relu_backward(dy, x, a.alpha, False),
            "inplace": lambda: F.leaky_relu_(y, -1.0),
        }
        for name, fn in cases.items():
            ms, min_ms = time_ms_cpu(fn, a.min_run_time)
            yield {
                "impl": "torch", "device": "cpu", "threads": torch.get_num_threads(),
                "torch": torch.__version__, "group": group, "function": name, "n": n,
                "ms": round(ms, 6), "min_ms": round(min_ms, 6),
            }


def cpu_prelu_rows(a):
    torch.manual_seed(0)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.groups and "prelu_f32_4M" not in a.groups.split(","):
        return
    x = torch.randn(16, 64, 64, 64)
    dy = torch.randn_like(x)
    w = torch.randn(64) * 0.05 + 0.2
    xl = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    dyl = dy.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    wb = w.reshape(1, 64, 1, 1)

    def backward(x, dy):
        dx, dw = torch.ops.aten._prelu_kernel_backward(dy, x, wb)
        return dx, dw.sum(dim=(0, 2, 3))

    cases = {
        "forward": lambda: F.prelu(x, w),
        "forward_channel_last": lambda: F.prelu(xl, w),
        "leaky_relu_forward": lambda: F.leaky_relu(x, 0.2),
        "backward": lambda: backward(x, dy),
        "backward_channel_last": lambda: backward(xl, dyl),
        "leaky_relu_backward": lambda: torch.ops.aten.leaky_relu_backward(dy, x, 0.2, False),
        "tensor_copy": lambda: x.clone(),
        "channel_last_contiguous": lambda: xl.contiguous(),
    }
    xr, dyr = x.reshape(-1, 64), dy.reshape(-1, 64)
    rows = {
        "forward": lambda: F.prelu(xr, w),
        "backward": lambda: rows_backward(xr, dyr),
    }

    def rows_backward(x, dy):
        dx, dw = torch.ops.aten._prelu_kernel_backward(dy, x, w.reshape(1, 64))
        return dx, dw.sum(dim=0)

    for group, table in (("prelu_f32_4M", cases), ("prelu_rows_f32_4M", rows)):
        for name, fn in table.items():
            ms, min_ms = time_ms_cpu(fn, a.min_run_time)
            yield {
                "impl": "torch", "device": "cpu", "threads": torch.get_num_threads(),
                "torch": torch.__version__, "group": group, "function": name,
                "n": x.numel(), "ms": round(ms, 6), "min_ms": round(min_ms, 6),
            }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--sizes", default=None, help="cuda: comma-separated element counts")
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--min-run-time", type=float, default=2.0, help="cpu: seconds per case")
    p.add_argument("--threads", type=int, default=None, help="cpu: torch.set_num_threads")
    p.add_argument("--groups", default=None, help="cpu: comma-separated group names")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    rows = []
    groups = [cuda_rows, cuda_prelu_rows] if a.device == "cuda" else [cpu_rows, cpu_prelu_rows]
    for row in (row for g in groups for row in g(a)):
        print(json.dumps(row), flush=True)
        rows.append(row)
    if a.out:
        with open(a.out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
