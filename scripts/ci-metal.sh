#!/usr/bin/env bash
# Type-checks the `metal` feature for Apple silicon (no Mac needed): cargo check and clippy with
# -D warnings for aarch64-apple-darwin, all targets. Adds the Rust target when it is missing.
# The Metal shader's logic is run on the host by `cargo test` (tests/metal_host.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-apple-darwin
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi
cargo check --features metal --all-targets --target "$target"
cargo clippy --features metal --all-targets --target "$target" -- -D warnings
