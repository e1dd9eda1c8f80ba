#!/usr/bin/env bash
# Smoke run of the char_rnn example: a short train on the bundled corpus, then sample from the
# checkpoint. Checks the machine-readable last line. Takes well under a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${CARGO_TARGET_DIR:-target}/char_rnn_smoke"
log=$(cargo run --release --example char_rnn -- train --steps 30 --eval-every 15 --out "$out" --sample-len 40)
echo "$log"
echo "$log" | tail -n 1 | grep -Eq '^final: steps=30 train_loss=[0-9.]+ val_loss=[0-9.]+ dead_units=[0-9.]+%$'
cargo run --release --example char_rnn -- sample --checkpoint "$out" --prime "ROMEO:" --len 40 --top-k 5
