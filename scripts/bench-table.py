#!/usr/bin/env python3
"""Prints the criterion medians of `cargo bench --bench leaky_relu` as a markdown table with
same-run ratios (each row divided by the group's `tensor_copy` and `memcpy_prealloc` medians)."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
groups = {}
for est in sorted(root.glob("*/*/new/estimates.json")) + sorted(root.glob("*/*/*/new/estimates.json")):
    rel = est.relative_to(root).parts[:-2]
    group, func = rel[0], "/".join(rel[1:])
    groups.setdefault(group, {})[func] = json.loads(est.read_text())["median"]["point_estimate"]


def fmt(ns):
    return f"{ns / 1e6:.3f} ms" if ns >= 1e5 else f"{ns / 1e3:.2f} µs"


print("| group | function | median | ÷ tensor_copy | ÷ memcpy_prealloc | ÷ leaky_relu |")
print("| --- | --- | --- | --- | --- | --- |")
for group, funcs in groups.items():
    for func, ns in funcs.items():
        if "/" in func:  # parameterised (threshold group): compare with the same size's copy
            name, size = func.split("/")
            copy = funcs.get(f"tensor_copy/{size}")
            ours = funcs.get(f"leaky_relu/{size}")
        else:
            copy, ours = funcs.get("tensor_copy"), funcs.get("leaky_relu")
        mem = funcs.get("memcpy_prealloc")
        r = lambda base: f"{ns / base:.2f}×" if base else ""
        print(f"| {group} | {func} | {fmt(ns)} | {r(copy)} | {r(mem)} | {r(ours)} |")
