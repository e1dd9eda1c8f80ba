#!/usr/bin/env bash
# Smoke run of the char_rnn example: a short train on the bundled corpus (fixed slope, then
# learned per-unit slopes), a sample from each checkpoint, the first run again stopped after 20
# steps and resumed (it must end with the same final line and checkpoint bytes), and two tiny
# labs (fixed slopes, and a fixed and a learned one). Checks the machine-readable lines. About
# 30 s of CPU time once built (2-core x86_64 VM).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${CARGO_TARGET_DIR:-target}/char_rnn_smoke"
num='-?[0-9.]+(e-?[0-9]+)?'
slope="alpha_mean=$num alpha_min=$num alpha_max=$num"
rnn() { cargo run --quiet --release --example char_rnn -- "$@"; }
log=$(rnn train --steps 30 --eval-every 15 --out "$out" --sample-len 40)
echo "$log"
echo "$log" | tail -n 1 | grep -Eq "^final: steps=30 train_loss=[0-9.]+ val_loss=[0-9.]+ dead_units=[0-9.]+% best_step=(15|30) alpha_mean=0.01 alpha_min=0.01 alpha_max=0.01$"
final=$(echo "$log" | tail -n 1)
rnn sample --checkpoint "$out" --prime "ROMEO:" --len 40 --top-k 5
# The same run stopped after 20 steps (its resume state saved), then resumed to 30.
rm -rf "$out/resumed"
log=$(rnn train --steps 30 --eval-every 15 --out "$out/resumed" --sample-len 40 --stop-after 20)
echo "$log"
echo "$log" | tail -n 1 | grep -q "^stopped after step 20 of 30 "
[ -s "$out/resumed/resume.json" ] && [ ! -e "$out/resumed/model.safetensors" ]
log=$(rnn train --steps 30 --eval-every 15 --out "$out/resumed" --sample-len 40 --resume)
echo "$log"
[ "$(echo "$log" | tail -n 1)" = "$final" ]
cmp "$out/model.safetensors" "$out/resumed/model.safetensors"
log=$(rnn train --steps 30 --eval-every 15 --out "$out/resumed" --sample-len 40 --resume)
echo "$log" | grep -q "had already finished at step 30"
if rnn train --steps 40 --eval-every 15 --out "$out/resumed" --resume 2>"$out/resumed/err"; then
  echo "resuming with another --steps must fail"; exit 1
fi
grep -q -- "--steps 40 here, 30 in the saved run" "$out/resumed/err"
log=$(rnn train --prelu --steps 30 --eval-every 15 --out "$out/prelu" --sample-len 40)
echo "$log"
echo "$log" | tail -n 1 | grep -Eq "^final: steps=30 train_loss=[0-9.]+ val_loss=[0-9.]+ dead_units=[0-9.]+% best_step=(15|30) $slope$"
rnn sample --checkpoint "$out/prelu" --prime "ROMEO:" --len 40 --top-k 5
new="grad_norm_median=$num grad_norm_max=$num clip_rate=[0-9.]+ revive_half_step=([0-9]+|na) revive_90_step=([0-9]+|na)"
lab="knocked_out=16 alive_at_end=[0-9]+ val_loss=[0-9.]+ baseline_val_loss=[0-9.]+ inactive_end=[0-9.]+% $new"
log=$(rnn lab --steps 10 --eval-every 5 --hidden 64 --alphas 0,0.01 --out "$out/lab")
echo "$log"
n=$(echo "$log" | grep -Ec "^lab: alpha=[0-9.]+ $lab$")
[ "$n" = 2 ] && [ -s "$out/lab/lab.csv" ] && [ -s "$out/lab/lab_steps.csv" ] && [ -s "$out/lab/lab.svg" ]
log=$(rnn lab --steps 10 --eval-every 5 --hidden 64 --alphas 0.01,learn --out "$out/lab-learn")
echo "$log"
echo "$log" | grep -Eq "^lab: alpha=0.01 $lab$"
echo "$log" | grep -Eq "^lab: alpha=learn $lab learned_alpha_mean=$num learned_alpha_min=$num learned_alpha_max=$num$"
grep -q "learned slopes" "$out/lab-learn/lab.svg"
echo "char_rnn smoke: ok"
