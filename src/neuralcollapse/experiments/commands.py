"""``neuralcollapse compare`` and ``neuralcollapse report`` (registered by :mod:`neuralcollapse.cli`).

No training framework is imported at module import; the commands import what they run.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


#: ``compare.DEFAULT_OBJECTIVES``, spelled out so that building the parser imports no torch (a test keeps
#: the two equal).
DEFAULT_OBJECTIVES = ("ce", "ce+occe", "nonl", "ntce", "lpc", "dl2pa")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="train several objectives with matched settings and seeds, then write a report",
        description="Train every objective with the same data, model, epochs and seeds; analyse each run "
        "(accuracy, neural collapse, latent geometry, independence deficit, OOD, open-set) and write "
        "report.md / report.html with tables and plots. Re-running continues: finished runs are skipped.",
    )
    p.add_argument("--objectives", nargs="+", default=[",".join(DEFAULT_OBJECTIVES)], metavar="OBJECTIVE",
                   help=f"presets or loss specs, space- or comma-separated (default: {','.join(DEFAULT_OBJECTIVES)})")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per objective (default: 3)")
    p.add_argument("--dataset", default=None, help="data set (default: digits, the embedded one)")
    p.add_argument("--model", default=None, help="backbone (default: the trainer's)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the trainer's)")
    p.add_argument("--recipe", default=None, help="recipe applied to every run before the objective")
    p.add_argument("--protocol", default=None, metavar="NAME",
                   help="evaluation protocol: its OOD sets and open-set split (default: the data set's, e.g. "
                        "fashionmnist: MNIST-5k + Gaussian/uniform noise, 6 known / 4 unknown classes; 'none')")
    p.add_argument("--ood-set", "--ood", dest="ood_set", default=None, metavar="DATASET",
                   help="one OOD test set replacing the protocol's ('' disables)")
    p.add_argument("--detectors", nargs="+", default=None, metavar="NAME",
                   help="OOD detectors, space- or comma-separated (default: the OCCE paper's ten)")
    p.add_argument("--osr-known", type=int, default=None, help="known classes of the open-set run (0 disables)")
    p.add_argument("--deepfool-samples", type=int, default=200, help="test images for DeepFool (0 disables)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                   help="any training setting for every run (repeatable), e.g. --set batch_size=64")
    p.add_argument("--out", default="runs/compare", help="comparison folder (default: %(default)s)")
    p.set_defaults(func=_run_compare)

    r = subparsers.add_parser("report", help="write a report of trained or compared runs",
                              description="Write report.md, PNG plots and a self-contained report.html from "
                              "run folders (searched recursively for analysis.json). A trained run without "
                              "analysis.json (a plain `neuralcollapse train` run) is analysed first, as "
                              "`compare` does: accuracy, neural collapse, latent geometry, DeepFool, "
                              "independence deficit and OOD detection against the data set's usual OOD set.")
    r.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders or folders containing them")
    r.add_argument("--out", default=None, help="output folder (default: <first RUN_DIR>/report)")
    r.add_argument("--title", default="neuralcollapse report", help="report heading (default: %(default)s)")
    r.add_argument("--no-analyze", dest="analyze", action="store_false",
                   help="do not analyse trained runs that have no analysis.json (fail instead)")
    r.set_defaults(func=_run_report)


def _run_compare(args: argparse.Namespace) -> int:
    from ..training.commands import parse_setting, split_list
    from .compare import CompareSettings, run_compare

    try:
        ood_sets = split_list(args.ood_set) if args.ood_set else None
        if ood_sets is not None and len(ood_sets) > 1:
            raise ValueError(f"compare evaluates one OOD set per comparison; got {', '.join(ood_sets)} (use "
                             "`neuralcollapse evaluate --ood A B` on a run for several)")
        settings = CompareSettings(
            objectives=split_list(args.objectives) or [],
            seeds=args.seeds,
            dataset=args.dataset,
            model=args.model,
            epochs=args.epochs,
            recipe=args.recipe,
            overrides=dict(parse_setting(s) for s in args.settings),
            protocol=args.protocol,
            ood_set=ood_sets[0] if ood_sets else args.ood_set,
            detectors=split_list(args.detectors),
            osr_known=args.osr_known,
            deepfool_samples=args.deepfool_samples,
            out=args.out,
        )
        run_compare(settings)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"neuralcollapse compare: error: {err}", file=sys.stderr)
        return 2
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .report import write_report

    out = args.out or str(Path(args.runs[0]) / "report")
    try:
        if args.analyze:
            from .analysis import analyze_missing

            analyze_missing(args.runs)
        path = write_report(args.runs, out, title=args.title)
    except (FileNotFoundError, ValueError) as err:
        print(f"neuralcollapse report: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0
