#!/usr/bin/env bash
# Docs with rustdoc warnings denied (called by .ci/run): the host docs with default features, then
# the docs docs.rs builds, as [package.metadata.docs.rs] in Cargo.toml says (default-target and
# features; today aarch64-apple-darwin with `metal`, which needs no Mac). Dependencies are only
# type-checked, so after the clippy steps this documents this crate alone.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings"
step() { echo "== ci-docs: $*" >&2; }

step "cargo doc --no-deps (host, default features)"
cargo doc --no-deps --locked

read -r target features < <(cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
d = json.load(sys.stdin)["packages"][0]["metadata"]["docs"]["rs"]
print(d["default-target"], ",".join(d.get("features", [])) or "-")')
[[ -n "${target:-}" ]] || { echo "ci-docs: no [package.metadata.docs.rs] default-target" >&2; exit 1; }
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
step "cargo doc --no-deps as docs.rs: --target $target --features $features"
[[ $features == - ]] && features=
cargo doc --no-deps --locked --target "$target" --features "$features"
