#!/usr/bin/env bash
# CI for the CUDA path on a machine without a GPU (called by .ci/run):
#   1. installs the pinned CUDA 13.0 toolchain from PyPI and link-only stubs (scripts/cuda-toolchain.sh);
#   2. builds every target with --features cuda and links the test binaries, linted by clippy
#      with -D warnings in the same pass;
#   3. assembles our PTX (leaky_relu.ptx, prelu.ptx) with ptxas for sm_80 and sm_90 (the driver's
#      PTX -> SASS step) and checks that every entry point exists for every dtype and index width,
#      with no local memory (no stack frame, no spills: the misaligned-load picks and PReLU's
#      trees must stay in registers), no flush-to-zero, and no fused multiply-add in PReLU's;
#   4. runs the lib's unit tests that need no GPU (index-width choice) against the link stubs.
# The kernel logic itself is checked on the host by `cargo test` (tests/cuda_host.rs,
# tests/prelu_host.rs).
# CARGO_TARGET_DIR is honoured (default: target/).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
step() { echo "== ci-cuda [$((SECONDS - t0))s] $*" >&2; }

step "toolchain"
eval "$(scripts/cuda-toolchain.sh)"
nvcc --version | tail -n 2 >&2

# Build, link and lint in one pass: `cargo clippy` is a check build with its own build-script
# runs, so candle-kernels' nvcc (about 5 minutes here) would run a second time. Instead the test
# build itself runs this crate's targets through clippy-driver, the way `cargo clippy` does
# (RUSTC_WORKSPACE_WRAPPER, CLIPPY_ARGS = the arguments after `--`); dependencies are untouched.
step "cargo test --features cuda --all-targets --no-run, linted as by cargo clippy -- -D warnings"
RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver" \
    CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__" \
    cargo test --features cuda --all-targets --no-run

step "ptxas + entry points"
target="${CARGO_TARGET_DIR:-target}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The PTX of `kernels/$1.cu` in the newest build of this crate (one per build-script hash; clean
# ones are rewritten), checked: it targets sm_80, ptxas assembles it for sm_80 and sm_90 with no
# local memory (no stack frame, no spills), and it has no flush-to-zero (`.ftz`) instruction,
# which would flush f32 subnormal inputs and results in arithmetic and comparisons, as Apple GPUs
# do, and break the contract's subnormal rows. Prints the PTX's path.
check_ptx() {
    local ptx
    ptx=$(ls -t "$target"/debug/build/candle-leaky-relu-*/out/"$1".ptx 2>/dev/null | head -n 1 || true)
    [[ -n "$ptx" ]] || { echo "ci-cuda: no $1.ptx under $target/debug/build" >&2; return 1; }
    grep -q '^\.target sm_80' "$ptx" || { echo "ci-cuda: $ptx does not target sm_80" >&2; return 1; }
    for arch in sm_80 sm_90; do
        ptxas -arch="$arch" -v "$ptx" -o "$tmp/$1.$arch.cubin" 2>"$tmp/$1.$arch.log" || { cat "$tmp/$1.$arch.log" >&2; return 1; }
        if grep -E 'stack frame' "$tmp/$1.$arch.log" | grep -vq '^ *0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads'; then
            echo "ci-cuda: local memory (stack frame or spills) in $1 for $arch:" >&2; grep -B2 'stack frame' "$tmp/$1.$arch.log" >&2; return 1
        fi
    done
    if grep -Eq '\.ftz' "$ptx"; then
        echo "ci-cuda: flush-to-zero (.ftz) instructions in $ptx:" >&2; grep -En '\.ftz' "$ptx" | head >&2; return 1
    fi
    # Registers per entry point and the PTX size, to compare kernel changes by (local memory is
    # refused above).
    for arch in sm_80 sm_90; do
        echo "ci-cuda: $1 $arch registers:" $(sed -nE "s/.*Compiling entry function '$1_([a-z0-9_]+)'.*/\1/p; s/.*Used ([0-9]+) registers.*/\1/p" "$tmp/$1.$arch.log" | paste -sd' ' | sed -E 's/([a-z0-9_]+) ([0-9]+)/\1=\2/g') >&2
    done
    echo "ci-cuda: $1 PTX $(wc -c <"$ptx") bytes" >&2
    echo "$ptx"
}
# Whether entry point $2 is in PTX $1 and ptxas compiled it for sm_90 (log of kernel $3).
missing=0
entry() {
    grep -q "^\.visible \.entry $2(" "$1" || { echo "ci-cuda: missing entry point $2" >&2; missing=1; }
    grep -q "Compiling entry function '$2' for 'sm_90'" "$tmp/$3.sm_90.log" || { echo "ci-cuda: ptxas did not compile $2" >&2; missing=1; }
}
ptx=$(check_ptx leaky_relu)
prelu_ptx=$(check_ptx prelu)
for dt in f16 bf16 f32 f64; do
    for width in u32 u64; do
        for op in fwd bwd inplace; do
            entry "$ptx" "leaky_relu_${op}_${dt}_${width}" leaky_relu
        done
        for op in fwd bwd; do
            entry "$prelu_ptx" "prelu_${op}_${dt}_${width}" prelu
        done
    done
    entry "$prelu_ptx" "prelu_bwd_tree_${dt}" prelu
done
[[ $missing == 0 ]]
# 16-byte vector accesses on LeakyReLU's contiguous path.
grep -Eq 'ld\.global\.v4\.(f32|u32)|ld\.global\.v2\.f64' "$ptx" || { echo "ci-cuda: no 16-byte vector loads in the PTX" >&2; exit 1; }
# PReLU's weight-gradient terms are rounded products, never fused into the sums (-fmad=false);
# the lane trees are warp shuffles.
if grep -Eq '\bfma\.' "$prelu_ptx"; then
    echo "ci-cuda: fused multiply-adds in $prelu_ptx:" >&2; grep -En '\bfma\.' "$prelu_ptx" | head >&2; exit 1
fi
grep -q 'shfl\.sync\.bfly' "$prelu_ptx" || { echo "ci-cuda: no xor shuffles in $prelu_ptx" >&2; exit 1; }

step "lib unit tests (no GPU needed), against the link stubs"
# (the same wrapper as the build above, so that nothing is rebuilt)
LD_LIBRARY_PATH="$CUDA_STUBS" RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver" \
    CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__" cargo test --features cuda --lib
step "ok: 44 entry points (24 LeakyReLU, 20 PReLU), ptxas sm_80 + sm_90, no local memory ($ptx, $prelu_ptx)"
