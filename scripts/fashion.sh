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
# Settings (CPU-sized, the same for every objective of a paper; docs/fashion-mnist.md has the measured report):
# the default ConvNet (32-64-128, ReLU), a class-stratified 10,000-image training subset (the full 10,000-image
# test set), batch 128, 4 epochs (316 optimizer steps), the trainer's SGD (lr 0.05, momentum 0.9, wd 5e-4,
# cosine). LPC needs ~15-20k optimizer steps for its penalty to reach the strong regime (docs/reproductions.md#lpc),
# which a CNN cannot give on 2 CPU cores: its comparison uses the `lpc-fashionmnist-mlp` recipe instead.
# Run the four side by side (e.g. `for p in occe ntce lpc dl2pa; do scripts/fashion.sh $p & done`): ~76 min.
# Override with extra flags, e.g.  scripts/fashion.sh occe --epochs 8 --set train_subset=20000
set -euo pipefail
cd "$(dirname "$0")/.."

NC=${NC:-neuralcollapse}
OUT=${OUT:-runs}
SEEDS=${SEEDS:-3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
COMMON=(--dataset fashionmnist --seeds "$SEEDS")
CNN=(--model convnet --epochs 4 --set train_subset=10000 --set batch_size=128)

run() {  # run <name> <objectives> [flags …]
    local name=$1 objectives=$2
    shift 2
    echo "== fashion-$name: $objectives"
    local start=$SECONDS
    "$NC" compare "${COMMON[@]}" --objectives "$objectives" --out "$OUT/fashion-$name" "$@" "${EXTRA[@]}"
    echo "== fashion-$name: $((SECONDS - start)) s wall"
}

# OCCE: CE vs CE + γ·OCCE (γ = 0.1, 1, 10); NC at the last epoch; OOD (MNIST-5k, noise) and the 6/4 open set.
occe()  { run occe "ce,ce+0.1*occe,ce+occe,ce+10*occe" "${CNN[@]}" --set nc_every=4 --deepfool-samples 0; }
# NTCE / NONL / NormFace, NC every epoch (CE's run is in fashion-occe: report both folders together).
ntce()  { run ntce "ntce,nonl,normface" "${CNN[@]}" --osr-known 0 --deepfool-samples 0; }
# LPC vs LinPen: the step budget LPC needs (recipe lpc-fashionmnist-mlp, γ to 1e5), DeepFool on 200 test images.
# The `lpc` preset resets the γ schedule, so it is set again; LinPen (no penalty) runs into its own folder.
lpc()   { run lpc lpc --recipe lpc-fashionmnist-mlp --osr-known 0 --set 'gamma_schedule={preset: lpc-paper, gamma_max: 100000.0}'
          run linpen linpen --recipe lpc-fashionmnist-mlp --osr-known 0; }
# Fixed prototypes at d >= K - 1: DL2PA, HPN, the fixed ETF (d < K: docs/reproductions/dl2pa-fashion).
dl2pa() { run dl2pa "dl2pa,hpn,etf" "${CNN[@]}" --osr-known 0 --deepfool-samples 0; }

paper=${1:-all}
shift || true
EXTRA=("$@")
case "$paper" in
    occe | ntce | lpc | dl2pa) "$paper" ;;
    all) occe; ntce; lpc; dl2pa ;;
    *) echo "usage: $0 occe|ntce|lpc|dl2pa|all [extra compare flags ...]" >&2; exit 2 ;;
esac
