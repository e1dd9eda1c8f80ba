#!/usr/bin/env python3
"""Prints criterion medians of `cargo bench --bench leaky_relu` as markdown tables.

One run:   bench-table.py [CRITERION_DIR]   (default target/criterion)
  every group/function with same-run ratios (÷ the group's tensor_copy, fresh_copy,
  memcpy_prealloc and leaky_relu medians).

Several runs side by side:   bench-table.py LABEL=DIR [LABEL=DIR ...] [LABEL=TORCH.jsonl ...]
  DIR is a criterion directory (CARGO_TARGET_DIR/criterion of that run); a .jsonl file holds
  the rows `scripts/bench_torch.py --device cpu --out FILE` wrote (its functions use the same
  names: leaky_relu, backward, inplace, tensor_copy, memcpy_prealloc). One row per
  group/function: each label's median, that run's ratio to its own copy baseline (fresh_copy,
  else tensor_copy: PyTorch's clone()), and every label's median divided by the first label's.
  --only REGEX keeps the matching group/function names. LABEL=A+B+C merges repeated runs of one
  configuration: the median of their medians, or with --min the fastest of them.

--min: the fastest sample instead of the median (criterion: the least time per iteration over
its samples; PyTorch: min_ms, the fastest block).
"""
import json
import pathlib
import re
import sys


STAT = "median"


def criterion(root):
    """group -> function -> ns: criterion's median, or with --min the fastest sample's time per
    iteration (on a shared machine: the sample least disturbed by other work)."""
    groups = {}
    root = pathlib.Path(root)
    for est in sorted(root.glob("*/*/new/estimates.json")) + sorted(root.glob("*/*/*/new/estimates.json")):
        rel = est.relative_to(root).parts[:-2]
        group, func = rel[0], "/".join(rel[1:])
        if STAT == "min":
            s = json.loads((est.parent / "sample.json").read_text())
            ns = min(t / i for t, i in zip(s["times"], s["iters"]))
        else:
            ns = json.loads(est.read_text())["median"]["point_estimate"]
        groups.setdefault(group, {})[func] = ns
    return groups


def torch_rows(path):
    groups = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            ms = r["min_ms"] if STAT == "min" else r["ms"]
            groups.setdefault(r["group"], {})[r["function"]] = ms * 1e6
    return groups


def fmt(ns):
    return f"{ns / 1e6:.3f} ms" if ns >= 1e5 else f"{ns / 1e3:.2f} µs"


def single(root):
    groups = criterion(root)
    bases = ["tensor_copy", "fresh_copy", "memcpy_prealloc", "leaky_relu"]
    print("| group | function | median | " + " | ".join(f"÷ {b}" for b in bases) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in bases) + " |")
    for group, funcs in groups.items():
        for func, ns in funcs.items():
            if "/" in func:  # parameterised (threshold group): compare with the same size's copy
                name, size = func.split("/")
                base = {b: funcs.get(f"{b}/{size}") for b in bases}
            else:
                base = {b: funcs.get(b) for b in bases}
            r = [f"{ns / base[b]:.2f}×" if base[b] else "" for b in bases]
            print(f"| {group} | {func} | {fmt(ns)} | " + " | ".join(r) + " |")


def side_by_side(specs, only):
    runs = []
    for spec in specs:
        label, paths = spec.split("=", 1)
        merged = {}
        for path in paths.split("+"):
            for g, funcs in (torch_rows(path) if path.endswith(".jsonl") else criterion(path)).items():
                for f, ns in funcs.items():
                    merged.setdefault(g, {}).setdefault(f, []).append(ns)
        pick = min if STAT == "min" else (lambda v: sorted(v)[len(v) // 2])
        runs.append((label, {g: {f: pick(v) for f, v in fs.items()} for g, fs in merged.items()}))
    first = runs[0][0]
    head = ["group", "function"]
    for label, _ in runs:
        head += [label, f"{label} ÷ its copy"]
    head += [f"{label} ÷ {first}" for label, _ in runs[1:]]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    keys = []
    for _, groups in runs:
        for g, funcs in groups.items():
            for f in funcs:
                if (g, f) not in keys and (only is None or re.search(only, f"{g}/{f}")):
                    keys.append((g, f))
    for g, f in keys:
        row = [g, f]
        vals = []
        for _, groups in runs:
            funcs = groups.get(g, {})
            ns = funcs.get(f)
            copy = funcs.get("fresh_copy") or funcs.get("tensor_copy")
            vals.append(ns)
            row += [fmt(ns) if ns else "", f"{ns / copy:.2f}×" if ns and copy else ""]
        row += [f"{v / vals[0]:.2f}×" if v and vals[0] else "" for v in vals[1:]]
        print("| " + " | ".join(row) + " |")


def main():
    global STAT
    args = sys.argv[1:]
    if "--min" in args:
        args.remove("--min")
        STAT = "min"
    only = None
    if "--only" in args:
        i = args.index("--only")
        only = args[i + 1]
        del args[i : i + 2]
    if len(args) <= 1 and not any("=" in a for a in args):
        single(args[0] if args else "target/criterion")
    else:
        side_by_side(args, only)


if __name__ == "__main__":
    main()
