#!/usr/bin/env python3
"""PyTorch reference bits for PReLU: writes tests/golden/prelu/<dtype>_<case>.txt.

Run anywhere PyTorch (CPU is enough) is installed, from the repository root:

    python3 -m pip install torch numpy
    python3 scripts/golden_prelu.py            # or: --out DIR

The inputs are fixed by a seeded generator (the same bits on every machine); the outputs are
what this machine's PyTorch computes, on one thread. The format is described in
tests/golden/README.md (section "PReLU"); tests/prelu_reference.rs reads the files.

For each dtype (float16, bfloat16, float32, float64) and case (shape, weight shape, view), the
script builds x, dy and the weight w from bit patterns (specials, subnormals, ties, random
values), then records per element: y = F.prelu(x, w), dx and dweight from autograd of F.prelu
(for a weight of x's own shape, which F.prelu refuses: torch.ops.aten._prelu_kernel and
_prelu_kernel_backward), and gw, the element's own weight-gradient term before PyTorch sums it
(the second output of torch.ops.aten._prelu_kernel_backward).
"""
import argparse
import json
import os
import platform
import random

import torch
import torch.nn.functional as F

DTYPES = {
    # name: (torch dtype, bits, same-width integer dtype)
    "float16": (torch.float16, 16, torch.int16),
    "bfloat16": (torch.bfloat16, 16, torch.int16),
    "float32": (torch.float32, 32, torch.int32),
    "float64": (torch.float64, 64, torch.int64),
}

# (exponent bits, mantissa bits) of each format.
FORMAT = {"float16": (5, 10), "bfloat16": (8, 7), "float32": (8, 23), "float64": (11, 52)}


def specials(name):
    """Named special bit patterns of a format, both signs."""
    e, m = FORMAT[name]
    bits = 1 + e + m
    sign = 1 << (bits - 1)
    exp_all = ((1 << e) - 1) << m
    one = ((1 << (e - 1)) - 1) << m
    pos = [
        0,  # +0
        exp_all,  # +inf
        exp_all | (1 << (m - 1)),  # canonical quiet NaN
        exp_all | (1 << (m - 1)) | 5,  # quiet NaN with a payload
        exp_all | 1,  # signalling NaN
        1,  # min subnormal
        2,
        3,
        (1 << m) >> 1,  # mid subnormal
        (1 << m) - 1,  # max subnormal
        1 << m,  # min normal
        (1 << m) + 1,
        exp_all - 1,  # max finite
        exp_all - 2,
        one,  # 1.0
        one + 1,
        one - 1,
        one | (1 << (m - 1)),  # 1.5
        one + (1 << m),  # 2.0
    ]
    return pos + [p | sign for p in pos]


def random_finite(name, rng, lo_exp=-20, hi_exp=20):
    """A random finite value of the format: random sign and mantissa, exponent in [lo, hi]."""
    e, m = FORMAT[name]
    bias = (1 << (e - 1)) - 1
    lo = max(1, bias + lo_exp)
    hi = min((1 << e) - 2, bias + hi_exp)
    bits = (rng.getrandbits(1) << (e + m)) | (rng.randint(lo, hi) << m) | rng.getrandbits(m)
    return bits


def subnormal(name, rng):
    e, m = FORMAT[name]
    return (rng.getrandbits(1) << (e + m)) | rng.randint(1, (1 << m) - 1)


def values(name, n, profile, rng):
    """n bit patterns. Profiles: 'finite' (random, zeros of both signs, subnormals, about half
    negative); 'specials' (the special list first, then 'finite'); 'wide' (finite values over a
    wide exponent range, for cancellation and huge/tiny mixes in one sum)."""
    e, m = FORMAT[name]
    sign = 1 << (e + m)
    out = []
    if profile == "specials":
        out = specials(name)[:n]
    while len(out) < n:
        r = rng.random()
        if r < 0.04:
            out.append(rng.choice([0, sign]))
        elif r < 0.10:
            out.append(subnormal(name, rng))
        elif profile == "wide":
            # float16 reaches only 2^15: products and sums of its channels stay below that.
            lo, hi = (-13, 3) if e == 5 else (-60, 30)
            out.append(random_finite(name, rng, lo, hi))
        else:
            lo, hi = (-8, 3) if e == 5 else (-12, 12)
            out.append(random_finite(name, rng, lo, hi))
    return out


def tensor_from_bits(name, bits, shape):
    dt, width, it = DTYPES[name]
    signed = [b - (1 << width) if b >= 1 << (width - 1) else b for b in bits]
    return torch.tensor(signed, dtype=it).view(dt).reshape(shape)


def bits_of(t):
    """Logical row-major bit patterns of a tensor (any strides)."""
    _, width, it = DTYPES[dtype_name(t.dtype)]
    flat = t.contiguous().reshape(-1).view(it).tolist()
    return [b & ((1 << width) - 1) for b in flat]


def dtype_name(dt):
    return next(k for k, v in DTYPES.items() if v[0] == dt)


def hexw(b, width):
    return format(b, "0%dx" % (width // 4))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Cases: name -> dict(dims (logical x), weight kind, weight values (as Python floats or special
# names), view, channel profiles, dy profile). Views:
#   contiguous: x and dy built in their logical shape.
#   channel_last: built as (N, H, W, C) contiguous, then permute(0, 3, 1, 2).
#   step2: built with the last dim doubled, then [..., ::2].
#   transposed: built as the reversed shape, then .t() (rank 2).
INF, NAN = float("inf"), float("nan")
CASES = {
    "nchw_channel": dict(
        dims=[2, 3, 4, 5], w=[0.25, 0.1, -1.5], view="contiguous",
        x=["finite", "finite", "finite"], dy=["finite", "finite", "finite"]),
    "nchw_scalar": dict(
        dims=[2, 3, 4, 5], w=[0.2], view="contiguous", x=["specials"], dy=["finite"]),
    "nchw_channel_last": dict(
        dims=[2, 3, 4, 5], w=["min_subnormal", -0.0, 3.0], view="channel_last",
        x=["finite", "specials", "wide"], dy=["wide", "finite", "finite"]),
    "ncl_step2": dict(
        dims=[2, 4, 33], w=[INF, NAN, -INF, 0.01], view="step2",
        x=["specials", "finite", "finite", "wide"], dy=["finite", "specials", "finite", "wide"]),
    "nc_wide": dict(
        dims=[520, 2], w=[0.3, -0.7], view="contiguous",
        x=["wide", "finite"], dy=["wide", "finite"]),
    "nc_transposed": dict(
        dims=[4, 3], w=[0.0, 1e-3, "max_finite"], view="transposed",
        x=["specials", "finite", "finite"], dy=["finite", "finite", "specials"]),
    "l_scalar": dict(
        dims=[37], w=[-0.5], view="contiguous", x=["specials"], dy=["finite"]),
    "nc_elementwise": dict(
        dims=[3, 4], w="elementwise", view="contiguous", x=["specials"], dy=["finite"]),
}


def weight_bits(name, spec, rng, n_elems):
    e, m = FORMAT[name]
    if spec == "elementwise":
        sp = specials(name)
        return [sp[i] if i < 8 else random_finite(name, rng, -4, 4) for i in range(n_elems)]
    out = []
    for v in spec:
        if v == "min_subnormal":
            out.append(1)
        elif v == "max_finite":
            out.append((((1 << e) - 1) << m) - 1)
        else:
            # Python float -> the dtype with PyTorch's round-to-nearest-even conversion.
            out.append(bits_of(torch.tensor([v], dtype=torch.float64).to(DTYPES[name][0]))[0])
    return out


def channel_of(dims, w_kind, idx):
    """The contract's channel of the element with flat row-major index idx."""
    if w_kind == "scalar":
        return 0
    if w_kind == "elementwise":
        return idx
    inner = 1
    for d in dims[2:]:
        inner *= d
    return (idx // inner) % dims[1]


def build(name, dims, view, per_channel_bits):
    """A tensor of logical shape dims whose element at logical index i has per_channel_bits[i],
    laid out as `view` says."""
    base = tensor_from_bits(name, per_channel_bits, dims)
    if view == "contiguous":
        return base
    if view == "channel_last":
        return base.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    if view == "step2":
        wide = torch.zeros(dims[:-1] + [2 * dims[-1]], dtype=base.dtype)
        wide[..., ::2] = base
        return wide[..., ::2]
    if view == "transposed":
        return base.t().contiguous().t()
    raise ValueError(view)


def make_case(name, case_name, case, seed):
    rng = random.Random("%s/%s/%d" % (name, case_name, seed))
    dims = case["dims"]
    n = 1
    for d in dims:
        n *= d
    if case["w"] == "elementwise":
        w_kind, w_dims = "elementwise", list(dims)
    elif len(case["w"]) == 1:
        w_kind, w_dims = "scalar", [1]
    else:
        w_kind, w_dims = "channel", [len(case["w"])]
    n_w = n if w_kind == "elementwise" else len(case["w"])
    w_bits = weight_bits(name, case["w"], rng, n_w)
    chans = [channel_of(dims, w_kind, i) for i in range(n)]
    # x and dy: each channel (dim 1, or all of x for a scalar weight) drawn from its profile.
    groups = {}
    for i in range(n):
        groups.setdefault(channel_of(dims, "channel" if len(dims) >= 2 else "scalar", i), []).append(i)
    xb, db = [0] * n, [0] * n
    for g, idxs in sorted(groups.items()):
        px = case["x"][g % len(case["x"])]
        pd = case["dy"][g % len(case["dy"])]
        vx = values(name, len(idxs), px, rng)
        vd = values(name, len(idxs), pd, rng)
        # Shuffle the specials through the channel, the same way for every run.
        order = list(range(len(idxs)))
        rng.shuffle(order)
        for k, i in enumerate(idxs):
            xb[i] = vx[order[k]]
            db[i] = vd[k]
    x = build(name, dims, case["view"], xb)
    dy = build(name, dims, case["view"], db)
    w = tensor_from_bits(name, w_bits, w_dims)

    wg = w.clone().requires_grad_(True)
    xg = x.detach().requires_grad_(True)  # the same view: strides kept
    if w_kind == "elementwise":
        y = torch.ops.aten._prelu_kernel(xg, wg)
        dx, dw = torch.ops.aten._prelu_kernel_backward(dy, x, w)
        op_fwd = "torch.ops.aten._prelu_kernel(x, w)"
        op_bwd = "torch.ops.aten._prelu_kernel_backward(dy, x, w) (the weight's own shape: no sum)"
    else:
        y = F.prelu(xg, wg)
        y.backward(dy)
        dx, dw = xg.grad, wg.grad
        op_fwd = "torch.nn.functional.prelu(x, w)"
        op_bwd = "autograd of F.prelu: x.grad, w.grad (w.grad sums the elementwise terms in T)"
    # The elementwise terms before the sum: the weight broadcast as F.prelu broadcasts it.
    if w_kind == "channel":
        wb = w.reshape([1, dims[1]] + [1] * (len(dims) - 2))
    elif w_kind == "scalar":
        wb = w.reshape([1] * len(dims))
    else:
        wb = w
    _, gw = torch.ops.aten._prelu_kernel_backward(dy, x, wb)
    gw = gw.expand(dims)

    cols = [bits_of(x), chans, bits_of(y.detach()), bits_of(dy), bits_of(dx), bits_of(gw)]
    assert cols[0] == xb and cols[3] == db, "views must hold the generated bits"
    return dict(dims=dims, w_dims=w_dims, w_kind=w_kind, w_bits=w_bits, n=n, cols=cols,
                dweight=bits_of(dw), channels=n_w, op_fwd=op_fwd, op_bwd=op_bwd,
                profiles=dict(x=case["x"], dy=case["dy"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "tests", "golden", "prelu")))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for name, (dt, width, _) in DTYPES.items():
        for case_name, case in CASES.items():
            c = make_case(name, case_name, case, args.seed)
            meta = {
                "format": "prelu golden v1: line 1 = this JSON; then one row per element of x in "
                          "logical row-major order: x c y dy dx gw (c decimal, the others "
                          "lowercase hex bit patterns zero-padded to bits/4 digits)",
                "columns": ["x", "c", "y", "dy", "dx", "gw"],
                "dtype": name, "bits": width, "n": c["n"],
                "x_dims": c["dims"], "w_dims": c["w_dims"], "weight": c["w_kind"],
                "w_bits": [hexw(b, width) for b in c["w_bits"]],
                "channels": c["channels"],
                "dweight_bits": [hexw(b, width) for b in c["dweight"]],
                "view": case["view"], "profiles": c["profiles"],
                "op_forward": c["op_fwd"], "op_backward": c["op_bwd"],
                "gw": "second output of torch.ops.aten._prelu_kernel_backward(dy, x, w "
                      "broadcast): x > 0 ? 0 : x * dy, per element, in T",
                "torch": torch.__version__,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "cpu": cpu_model(), "threads": torch.get_num_threads(),
                "seed": args.seed,
            }
            path = os.path.join(args.out, "%s_%s.txt" % (name, case_name))
            with open(path, "w") as f:
                f.write(json.dumps(meta) + "\n")
                for row in zip(*c["cols"]):
                    words = [hexw(v, width) if k != 1 else str(v) for k, v in enumerate(row)]
                    f.write(" ".join(words) + "\n")
            total += os.path.getsize(path)
            print("%s: %d rows, %d bytes" % (path, c["n"], os.path.getsize(path)))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
