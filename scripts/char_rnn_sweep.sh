#!/usr/bin/env bash
# "Which slope?" (examples/char_rnn/README.md): the char_rnn lab over three seeds for eight fixed
# slopes and two learned ones (a PReLU layer: one slope per hidden unit, one for the layer),
# each with a knockout run and a baseline run, on
#   bundled  the bundled Tiny Shakespeare (--hidden 128, 300 steps),
#   small    a small text: $SMALL_TEXT, by default the GNU GPL v3 as Debian ships it
#            (/usr/share/common-licenses/GPL-3; 100 steps, as it overfits soon after),
#   high-lr  the bundled text at a too-high learning rate (lab --preset high-lr: --lr 0.1
#            --irnn-scale 0.5, no knockout).
# Prints each part's per-seed `sweep:` lines and its table (Markdown), and writes sweep.csv,
# sweep.svg and each seed's lab files under $OUT/<part> (default OUT=runs/sweep).
#
# Usage: scripts/char_rnn_sweep.sh [all|bundled|small|high-lr] [learned]
#   `learned` runs only the two learned-slope rows (e.g. after changing the PReLU layer), into
#   $OUT/<part>-learned; their table rows replace the learned rows of the full run's table.
#   `char_rnn table FILE...` prints the table of any sweep.csv files again.
# Extra flags for every lab go in $SWEEP_FLAGS (e.g. SWEEP_FLAGS="--seeds 1").
# Cost on a 2-core x86_64 VM: see the README (about 16 CPU-minutes for `all`).
set -euo pipefail
cd "$(dirname "$0")/.."
part="${1:-all}"
alphas="0,0.01,0.05,0.1,0.2,0.3,0.5,0.9,learn,learn-shared"
suffix=""
if [ "${2:-}" = learned ]; then
    alphas="learn,learn-shared"
    suffix="-learned"
fi
out="${OUT:-runs/sweep}"
small="${SMALL_TEXT:-/usr/share/common-licenses/GPL-3}"
cargo build --quiet --release --example char_rnn
bin="${CARGO_TARGET_DIR:-target}/release/examples/char_rnn"
# shellcheck disable=SC2086 # SWEEP_FLAGS is a list of flags
sweep() {
    local name="$1"
    shift
    echo "=== $name$suffix: char_rnn sweep --alphas $alphas $* ${SWEEP_FLAGS:-}"
    "$bin" sweep --alphas "$alphas" --seeds 1,2,3 --hidden 128 --out "$out/$name$suffix" "$@" ${SWEEP_FLAGS:-} |
        grep -v '^alpha ' # the per-evaluation lines (kept in each seed's lab.csv)
}
case "$part" in
all | bundled) sweep bundled --steps 300 ;;&
all | small)
    [ -r "$small" ] || { echo "no small text at $small: set SMALL_TEXT" >&2; exit 1; }
    sweep small --data "$small" --steps 100 --eval-every 25
    ;;&
all | high-lr) sweep high-lr --steps 300 --preset high-lr ;;
all | bundled | small) ;;
*) echo "usage: $0 [all|bundled|small|high-lr] [learned]" >&2; exit 2 ;;
esac
