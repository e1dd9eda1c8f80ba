#!/usr/bin/env bash
# Smoke run of the char_rnn example: a short train on the bundled corpus, a sample from the
# checkpoint, and a tiny lab. Checks the machine-readable lines. About half a minute on 2 cores
# once built.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${CARGO_TARGET_DIR:-target}/char_rnn_smoke"
log=$(cargo run --release --example char_rnn -- train --steps 30 --eval-every 15 --out "$out" --sample-len 40)
echo "$log"
echo "$log" | tail -n 1 | grep -Eq '^final: steps=30 train_loss=[0-9.]+ val_loss=[0-9.]+ dead_units=[0-9.]+% best_step=(15|30)$'
cargo run --release --example char_rnn -- sample --checkpoint "$out" --prime "ROMEO:" --len 40 --top-k 5
log=$(cargo run --release --example char_rnn -- lab --steps 10 --eval-every 5 --hidden 64 --alphas 0,0.01 --out "$out/lab")
echo "$log"
n=$(echo "$log" | grep -Ec '^lab: alpha=[0-9.]+ knocked_out=16 alive_at_end=[0-9]+ val_loss=[0-9.]+ baseline_val_loss=[0-9.]+ inactive_end=[0-9.]+%$')
[ "$n" = 2 ] && [ -s "$out/lab/lab.csv" ] && [ -s "$out/lab/lab.svg" ]
