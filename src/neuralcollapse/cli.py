"""The ``neuralcollapse`` command: ``train``, ``evaluate``, ``recipes``, ``compare``, ``report``, ``bench``.

Subcommands are registered by the packages that own them (``training.commands``, ``experiments.commands``);
those modules import no training framework at import time, so ``neuralcollapse --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["ShortErrorParser", "add_gpu_arguments", "build_parser", "main"]

_COMMAND_MODULES = ("neuralcollapse.training.commands", "neuralcollapse.experiments.commands")
#: The names of ``neuralcollapse.bench.GROUPS``, spelled out so that building the parser imports no torch
#: (a test keeps the two equal).
BENCH_GROUPS = ("losses", "metrics", "ood", "train", "gpu")
#: Groups run only when named (``neuralcollapse.bench.EXPLICIT_GROUPS``): the GPU check spawns processes and tests.
BENCH_EXPLICIT = ("gpu",)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run benchmarks (ratios against a baseline measured in the same run)",
        description="Run benchmark groups and print one table of ratios. Groups: " + ", ".join(BENCH_GROUPS),
    )
    default = [g for g in BENCH_GROUPS if g not in BENCH_EXPLICIT]
    p.add_argument("groups", nargs="*", metavar="GROUP",
                   help=f"groups to run (default: all of {', '.join(default)}; `gpu` runs alone, when named)")
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, not the targets)")
    p.add_argument("--out", default=None, help="folder for bench.json and bench.md (gpu: gpu-check.{json,md,log})")
    add_gpu_arguments(p.add_argument_group("gpu group (`neuralcollapse bench gpu`, docs/benchmarks.md \"GPU check\")"))
    p.set_defaults(func=_run_bench)


def add_gpu_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The flags of the GPU check (``neuralcollapse bench gpu``, ``python -m neuralcollapse.bench.gpu``);
    defined here so that building the parser imports no torch. Defaults: ``neuralcollapse.bench.gpu``."""
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (the CI check of the script)")
    parser.add_argument("--budget-s", type=float, default=None, help="overall time budget in seconds (default 450)")
    parser.add_argument("--data", default=None,
                        help="Fashion-MNIST: folder of the IDX files or an .npz (default: synthetic data, the digits)")
    parser.add_argument("--images", type=int, default=None, help="images of the throughput epoch (default 50000)")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="run the torch.compile throughput step (default auto = on)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of the official-style pipeline (default min(8, CPUs))")
    parser.add_argument("--steps", default=None,
                        help="comma-separated steps (default all: env,tests,crosscheck,throughput,compile,smoke,suite)")
    parser.add_argument("--families", default=None,
                        help="smoke families, comma-separated (default all: ce+occe,nonl,lpc,dl2pa,etf)")
    parser.add_argument("--timeout", action="append", default=[], metavar="STEP=SECONDS",
                        help="override one step's timeout (repeatable)")
    parser.add_argument("--tests-dir", default=None, help="the test suite folder (default: the checkout's tests/)")


def _gpu_flags_given(args: argparse.Namespace) -> bool:
    return bool(args.dry_run or args.budget_s is not None or args.data or args.images is not None or args.steps
                or args.families or args.timeout or args.workers is not None or args.tests_dir
                or args.compile != "auto")


def _run_bench(args: argparse.Namespace) -> int:
    from .bench import GROUPS, format_table, run_groups, write_results

    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        raise SystemExit(f"neuralcollapse bench: unknown group(s) {unknown}; valid: {', '.join(GROUPS)}")
    if "gpu" in args.groups:
        if len(args.groups) > 1:
            raise SystemExit("neuralcollapse bench: the gpu group runs alone (`neuralcollapse bench gpu ...`)")
        from .bench.gpu import main_from_args

        return main_from_args(args, list(sys.argv))
    if _gpu_flags_given(args):
        raise SystemExit("neuralcollapse bench: --dry-run, --budget-s, --data … apply to the gpu group only")
    rows = run_groups(args.groups, quick=args.quick)
    print(format_table(rows))
    if args.out:
        folder = write_results(rows, args.out)
        print(f"\nwrote {folder / 'bench.json'} and {folder / 'bench.md'}")
    failed = [r for r in rows if r.passed is False]
    return 1 if failed else 0


class ShortErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are two lines (a short usage and the message), not the full
    usage of a command with forty flags; ``--help`` still prints everything."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"usage: {self.prog} [options]  (`{self.prog} --help` lists them)\n"
                     f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = ShortErrorParser(
        prog="neuralcollapse",
        description="Train classifiers with neural collapse by design, and measure their geometry.",
    )
    parser.add_argument("--version", action="version", version=f"neuralcollapse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # pragma: no cover - partial installs
            continue
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
