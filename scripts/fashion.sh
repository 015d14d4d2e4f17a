#!/usr/bin/env bash
# The four papers' claims on Fashion-MNIST (issue 11): one resumable `neuralcollapse compare` per paper.
#
#   scripts/fashion.sh occe|ntce|lpc|dl2pa|all [extra compare flags …]     (or: make fashion PAPER=occe)
#
# Each subcommand writes runs/fashion-<paper>/ (runs, analysis.json, report/report.md); re-running it skips the
# finished runs and resumes an interrupted one. Data: Fashion-MNIST is found by itself (Debian's
# dataset-fashion-mnist, --data-dir, $NEURALCOLLAPSE_FASHIONMNIST_DIR or the user cache); the default evaluation
# protocol `fashionmnist` adds MNIST-5k (needs the extra real-data; skipped with a warning without it), Gaussian
# and uniform noise as far-OOD sets and a seeded 6-known / 4-unknown open set per seed. `make data` installs both.
#
# PLACEHOLDER SETTINGS: the epochs, training subset and batch size below are CPU-sized starting points, not
# the final per-paper settings (those are fixed with the measured report). Override with extra flags, e.g.
#   scripts/fashion.sh occe --epochs 8 --set train_subset=20000
set -euo pipefail
cd "$(dirname "$0")/.."

NC=${NC:-neuralcollapse}
OUT=${OUT:-runs}
SEEDS=${SEEDS:-3}
COMMON=(--dataset fashionmnist --model convnet --seeds "$SEEDS" --epochs 3
        --set train_subset=10000 --set batch_size=128)

run() {  # run <paper> <objectives> [flags …]
    local paper=$1 objectives=$2
    shift 2
    echo "== fashion-$paper: $objectives"
    local start=$SECONDS
    "$NC" compare "${COMMON[@]}" --objectives "$objectives" --out "$OUT/fashion-$paper" "$@" "${EXTRA[@]}"
    echo "== fashion-$paper: $((SECONDS - start)) s wall"
}

occe()  { run occe  "ce,ce+0.1*occe,ce+occe,ce+10*occe" "$@"; }            # OCCE: γ = 0.1, 1, 10
ntce()  { run ntce  "ce,ntce,nonl,normface" --deepfool-samples 0 "$@"; }    # NTCE / NONL / NormFace vs CE
lpc()   { run lpc   "ce,linpen,lpc" --osr-known 0 "$@"; }                   # LPC vs LinPen vs CE (+ DeepFool)
dl2pa() { run dl2pa "dl2pa,hpn,etf" --osr-known 0 --deepfool-samples 0 "$@"; }  # fixed prototypes, d >= K-1

paper=${1:-all}
shift || true
EXTRA=("$@")
case "$paper" in
    occe | ntce | lpc | dl2pa) "$paper" ;;
    all) occe; ntce; lpc; dl2pa ;;
    *) echo "usage: $0 occe|ntce|lpc|dl2pa|all [extra compare flags ...]" >&2; exit 2 ;;
esac
