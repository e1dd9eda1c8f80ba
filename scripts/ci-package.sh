#!/usr/bin/env bash
# Packaging and MSRV (called by .ci/run), on a clean clone:
#   1. `cargo package --list`: the package holds the library, its kernels, build.rs, NUMERICS.md,
#      README.md and the licences, and none of tests/, data/, benches/, examples/, scripts/;
#      then `cargo package --no-verify` for the size of the .crate;
#   2. `cargo publish --dry-run` with the toolchain named by `rust-version` in Cargo.toml
#      (installed by rustup when missing): it packages the crate, builds it from the packaged
#      files alone, and so also proves the MSRV for what ships (the library).
# The MSRV is 1.94: candle-core 0.11.1 calls `__cpuid_count` outside `unsafe`, a safe function only
# since Rust 1.94 (older: error E0133). CARGO_TARGET_DIR is honoured (default: target/).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "== ci-package: $*" >&2; }

step "cargo package --list"
list=$(cargo package --list --locked)
bad=0
for f in Cargo.toml Cargo.lock build.rs src/lib.rs kernels/leaky_relu.cu kernels/leaky_relu.metal \
    NUMERICS.md README.md LICENSE-MIT LICENSE-APACHE; do
    grep -qx "$f" <<<"$list" || { echo "ci-package: $f is not in the package" >&2; bad=1; }
done
if grep -E '^(tests|data|benches|examples|scripts)/' <<<"$list" >&2; then
    echo "ci-package: the files above must not ship" >&2; bad=1
fi
[[ $bad == 0 ]]
read -r version msrv < <(cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys; p = json.load(sys.stdin)["packages"][0]; print(p["version"], p["rust_version"] or "")')
[[ -n "${msrv:-}" ]] || { echo "ci-package: no rust-version in Cargo.toml" >&2; exit 1; }
cargo package --no-verify --locked --quiet
crate="${CARGO_TARGET_DIR:-target}/package/candle-leaky-relu-$version.crate"
step "$(wc -l <<<"$list") files, $crate: $(stat -c %s "$crate") bytes"

rustup run "$msrv" rustc --version >/dev/null 2>&1 || rustup toolchain install "$msrv" --profile minimal
step "cargo +$msrv publish --dry-run (rust-version $msrv)"
cargo "+$msrv" publish --dry-run --locked
step "ok"
