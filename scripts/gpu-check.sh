#!/usr/bin/env bash
# One-call GPU check of neuralcollapse (docs/benchmarks.md, "GPU check"): a thin wrapper around
# `python -m neuralcollapse.bench.gpu` (= `neuralcollapse bench gpu`) for a bare machine where the package is
# not installed (PyTorch, Lightning, timm, torchvision present; no network).
#
#   bash scripts/gpu-check.sh --prepare-carry          # here, before lending a GPU: build/gpu-carry/ (≈ 40 MB)
#   bash scripts/gpu-check.sh --out "$OUT"             # on the GPU machine (budget 450 s; see --help)
#   bash scripts/gpu-check.sh --dry-run --out /tmp/gc  # anywhere, on the CPU, tiny sizes
#
# --prepare-carry copies Fashion-MNIST (/usr/share/datasets/fashion-mnist, or $FASHION_MNIST_DIR) to
# build/gpu-carry/fashion-mnist and the pure-Python test tools of this virtualenv (pytest, pluggy, iniconfig,
# packaging, pygments, hypothesis, sortedcontainers, pytest-xdist, execnet; no __pycache__) to
# build/gpu-carry/site. On the GPU machine the wrapper passes --data build/gpu-carry/fashion-mnist when it is
# there and no --data is given, and puts build/gpu-carry/site on PYTHONPATH when pytest or hypothesis is missing.
#
# Every other argument goes to the check (`--help` lists them). The check enforces --budget-s itself (each step
# in its own process with its own timeout); this wrapper adds a hard stop at budget + 40 s. Exit status: the
# check's (0 = every selected step passed), or 2 when Python/torch cannot run at all (a JSON note is written).
set -u
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2
carry="build/gpu-carry"
PY=${PYTHON:-$(command -v python3 || command -v python)}

if [ "${1:-}" = "--prepare-carry" ]; then
    src_data=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
    venv_py=${PYTHON:-$root/.venv/bin/python}
    rm -rf "$carry" && mkdir -p "$carry/fashion-mnist" "$carry/site" || exit 2
    if ls "$src_data"/*-ubyte* >/dev/null 2>&1; then
        cp "$src_data"/*-ubyte* "$carry/fashion-mnist/"
    else
        echo "no Fashion-MNIST IDX files in $src_data: the check will use synthetic data" >&2
        rmdir "$carry/fashion-mnist"
    fi
    "$venv_py" - "$carry/site" <<'EOF' || exit 2
import importlib.metadata as md, importlib.util, pathlib, shutil, sys
dest = pathlib.Path(sys.argv[1])
for dist in ("pytest", "pluggy", "iniconfig", "packaging", "pygments", "hypothesis", "sortedcontainers",
             "pytest-xdist", "execnet"):
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        print(f"  {dist}: not installed, left out", file=sys.stderr)
        continue
    for f in d.files or ():
        if "__pycache__" in f.parts or f.suffix == ".pyc" or f.parts[0].startswith(".."):
            continue
        src = pathlib.Path(d.locate_file(f))
        if src.is_file():
            target = dest / f
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
EOF
    du -sh "$carry"/*; du -sh "$carry"
    echo "carry: [\"$carry\"]   (run tool: carry=[\"$carry\"])"
    exit 0
fi

budget=450
out=""
prev=""
has_data=0
for arg in "$@"; do
    case "$prev" in
        --budget-s) budget=$arg ;;
        --out) out=$arg ;;
    esac
    case "$arg" in
        --budget-s=*) budget=${arg#--budget-s=} ;;
        --out=*) out=${arg#--out=} ;;
        --data|--data=*) has_data=1 ;;
    esac
    prev=$arg
done
extra=()
if [ $has_data = 0 ] && [ -d "$carry/fashion-mnist" ]; then extra+=(--data "$carry/fashion-mnist"); fi
if [ -z "$out" ]; then out=${OUT:-gpu-check}; extra+=(--out "$out"); fi

export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
if [ -d "$carry/site" ] && ! "$PY" -c "import pytest, hypothesis" >/dev/null 2>&1; then
    export PYTHONPATH="$PYTHONPATH:$root/$carry/site"
fi
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    mkdir -p "$out"
    printf '{"error": "python %s cannot import torch", "python": "%s"}\n' "$PY" "$("$PY" -V 2>&1)" > "$out/gpu-check.json"
    echo "gpu-check: $PY cannot import torch" >&2
    exit 2
fi
hard=$(awk -v b="$budget" 'BEGIN { printf "%d", (b > 0 ? b : 450) + 40 }')
exec timeout --kill-after=10 "$hard" "$PY" -m neuralcollapse.bench.gpu ${extra[@]+"${extra[@]}"} "$@"
