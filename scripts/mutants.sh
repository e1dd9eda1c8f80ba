#!/usr/bin/env bash
# Mutation testing of the CPU build with cargo-mutants (https://mutants.rs): each mutant is a
# small change to the source (a return value replaced, an operator flipped); a mutant that the
# tests still pass on is "missed" and marks behaviour no test pins down.
#
# Usage (from anywhere, on any machine with Rust and `cargo install cargo-mutants`, version 27):
#   scripts/mutants.sh                     # the ground floor and the ops (the default set)
#   scripts/mutants.sh cpu                 # the CPU backend, src/cpu/ and src/cpu/simd/ (about 730)
#   scripts/mutants.sh src/prelu.rs ...    # the files given
#   scripts/mutants.sh src/base.rs -- --re 'check_layout'   # extra cargo-mutants options
#
# Default set: src/base.rs, src/leaky_relu.rs, src/ext.rs, src/prelu.rs. Only the fast test
# targets run (the contract rows, layouts, autograd, PReLU, second order and the unit tests):
# the host kernel harnesses (cuda_host, metal_host) and the golden files take minutes and test
# the GPU kernels, not these files. The build is the CPU one (no features): items behind
# `cfg(feature = "cuda")` / `cfg(feature = "metal")` (the ops' cuda_fwd / metal_fwd entry
# points) are not compiled, so their mutants are reported "unviable", not missed.
# Results go to target/mutants.out/ (outcomes.json, caught.txt, missed.txt, unviable.txt,
# timeout.txt), or to $MUTANTS_OUT/mutants.out when set. Triaged survivors are listed in
# scripts/mutants-survivors.md.
#
# Time: each mutant rebuilds the crate and the test targets, then runs them. The builds leave out
# debug info (CARGO_PROFILE_*_DEBUG=0 below), which makes them several times faster; on the
# 2-core x86_64 VM a mutant then takes about 3 s with the lib and PReLU targets and about 7 s
# with all of them (plus a few minutes for the unmutated baseline, which builds the dependencies
# in a fresh copy of the tree). Set CARGO_MUTANTS_JOBS to build mutants in parallel on a larger
# machine (each job takes its own copy of the tree and its own build directory).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

files=()
cpu=0
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case "$1" in
        cpu)
            files+=("src/cpu/*.rs" "src/cpu/simd/*.rs")
            cpu=1
            ;;
        *) files+=("$1") ;;
    esac
    shift
done
[ $# -gt 0 ] && shift # the "--"
if [ ${#files[@]} -eq 0 ]; then
    files=(src/base.rs src/leaky_relu.rs src/ext.rs src/prelu.rs)
fi

args=()
for f in "${files[@]}"; do
    args+=(--file "$f")
done

# -C passes its argument to every cargo call (the build and the test run), so only the fast
# targets are built as well as run.
targets=(--lib --test contract --test layouts --test autograd --test prelu --test second_order)
# The CPU set also runs the tier tests (which tier each process runs, and each tier's bits).
if [ "$cpu" = 1 ]; then
    targets+=(--test tiers)
fi
for t in "${targets[@]}"; do
    args+=(-C "$t")
done

export CARGO_PROFILE_TEST_DEBUG=0 CARGO_PROFILE_DEV_DEBUG=0
exec cargo mutants \
    --no-shuffle \
    --output "${MUTANTS_OUT:-$root/target}" \
    "${args[@]}" \
    "$@"
