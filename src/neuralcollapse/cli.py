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

__all__ = ["ShortErrorParser", "build_parser", "main"]

_COMMAND_MODULES = ("neuralcollapse.training.commands", "neuralcollapse.experiments.commands")
#: The names of ``neuralcollapse.bench.GROUPS``, spelled out so that building the parser imports no torch
#: (a test keeps the two equal).
BENCH_GROUPS = ("losses", "metrics", "ood", "train")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run benchmarks (ratios against a baseline measured in the same run)",
        description="Run benchmark groups and print one table of ratios. Groups: " + ", ".join(BENCH_GROUPS),
    )
    p.add_argument("groups", nargs="*", metavar="GROUP",
                   help=f"groups to run (default: all of {', '.join(BENCH_GROUPS)})")
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, not the targets)")
    p.add_argument("--out", default=None, help="folder for bench.json and bench.md")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from .bench import GROUPS, format_table, run_groups, write_results

    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        raise SystemExit(f"neuralcollapse bench: unknown group(s) {unknown}; valid: {', '.join(GROUPS)}")
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
