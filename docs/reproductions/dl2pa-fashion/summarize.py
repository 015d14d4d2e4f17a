"""Summarise the JSON lines written by ``dynamics.py`` into ``summary.json`` (small: no permutations per epoch, no
confusion matrices) and markdown tables printed to stdout.

Usage: ``python summarize.py OUT_DIR FILE.jsonl [FILE.jsonl ...]``.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

#: Fashion-MNIST groups of similar classes: tops (T-shirt, pullover, coat, shirt); shoes (sandal, sneaker, boot)
GROUPS = ([0, 2, 4, 6], [5, 7, 9])


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(pair, digits=4):
    m, s = pair
    return "–" if m is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def per_epoch_changes(run):
    """Classes moved per epoch (all solves of the epoch summed; the first, class-means solve counts in epoch 1)."""
    out = [0] * run["epochs"]
    for step, changed in zip(run["at_step"], run["changes"]):
        out[min((step - 1) // run["steps_per_epoch"], run["epochs"] - 1)] += changed
    return out


def main(out_dir, files):
    runs = [json.loads(line) for f in files for line in Path(f).read_text().splitlines() if line.strip()]
    groups = defaultdict(list)
    for r in runs:
        key = (r["dataset"], r["procedure"], r["dim"], r["nu"], r.get("warmup"))
        groups[key].append(r)
    summary = []
    for (dataset, proc, dim, nu, warmup), rs in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        epochs = [per_epoch_changes(r) for r in rs]
        row = {
            "dataset": dataset, "procedure": proc, "dim": dim, "nu": nu, "warmup": warmup,
            "seeds": sorted(r["seed"] for r in rs),
            "test_acc": mean_std([r["test_acc"] for r in rs]),
            "changes_per_epoch_each_seed": epochs,
            "changes_after_epoch_1_total": [sum(e[1:]) for e in epochs],
            "moved_from_initial": [r["moved_from_initial"] for r in rs],
            "within_group_proto_cos": mean_std([r["within_group_proto_cos"] for r in rs]),
            "within_group_confusions": mean_std([r["within_group_confusions"] for r in rs]),
            "max_proto_cos": mean_std([r["max_proto_cos"] for r in rs]),
            "probe_would_move": [r.get("probe") for r in rs] if any(r.get("probe") for r in rs) else None,
            "final_perm_each_seed": [r["final_perm"] for r in rs],
        }
        if dataset == "fashion":
            conf = [r["confusion"] for r in rs]
            within = [sum(c[i][j] for g in GROUPS for i in g for j in g if i != j) for c in conf]
            errors = [sum(c[i][j] for i in range(10) for j in range(10) if i != j) for c in conf]
            row["group_confusions"] = {
                "tops": mean_std([sum(c[i][j] for i in GROUPS[0] for j in GROUPS[0] if i != j) for c in conf]),
                "shoes": mean_std([sum(c[i][j] for i in GROUPS[1] for j in GROUPS[1] if i != j) for c in conf]),
                "other_errors": mean_std([e - w for e, w in zip(errors, within)]),
            }
        summary.append(row)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "summary.json").write_text(json.dumps(summary, indent=1))
    print("| data | procedure | d | ν | W | test acc | classes moved per epoch (epochs 1, 2, 3, rest; per seed) |")
    print("|---|---|---|---|---|---|---|")
    for row in summary:
        moved = "; ".join(f"{e[0]}, {e[1]}, {e[2]}, {sum(e[3:])}" for e in row["changes_per_epoch_each_seed"])
        print(f"| {row['dataset']} | {row['procedure']} | {row['dim']} | {row['nu']:g} | {row['warmup'] or '–'} | "
              f"{fmt(row['test_acc'])} | {moved if any(map(any, row['changes_per_epoch_each_seed'])) else 'all 0'} |")
    print()
    print("| procedure | d | test acc | tops confusions | shoes confusions | other errors | mean cos between "
          "prototypes of similar classes |")
    print("|---|---|---|---|---|---|---|")
    for row in summary:
        if row["dataset"] == "fashion" and row["nu"] == 1 and row["dim"] in (3, 5):
            gc = row["group_confusions"]
            print(f"| {row['procedure']}{'' if row['warmup'] in (None, 1) else ' W=' + str(row['warmup'])} | "
                  f"{row['dim']} | {fmt(row['test_acc'])} | {fmt(gc['tops'], 0)} | {fmt(gc['shoes'], 0)} | "
                  f"{fmt(gc['other_errors'], 0)} | {fmt(row['within_group_proto_cos'], 3)} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
