"""CLI subcommands ``train``, ``evaluate`` and ``recipes`` (registered by ``neuralcollapse.cli``).

This module imports neither Lightning nor torch at import time, so ``neuralcollapse --help`` stays fast.

Flag conventions: our flags use dashes (``--batch-size``); the official OCCE repository's flags are accepted
as aliases (``--w_ce``, ``--w_occe``, ``--n_epochs``, ``--train_bs``, ``--test_bs``, ``--milestones``,
``--weight-decay``, ``--momentum``, ``--lr``, ``--seed``, ``--dataset``, ``--model preactresnet18`` /
``preactivationresnet18``, ``--val-interval``). **``--gamma`` differs**: in the official code it is the
learning-rate decay factor; here it is the OCCE (or LPC) weight γ — use ``--lr-decay`` for the decay.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_DETECTORS", "build_train_config", "parse_setting", "register", "split_list"]

#: ``evaluation.DEFAULT_DETECTORS`` (the OCCE paper's ten), spelled out so that building the parser imports no
#: torch (a test keeps the two equal).
DEFAULT_DETECTORS = ("msp", "odin", "rmds", "ebo", "vim", "knn", "dice", "she", "relation", "scale")

_TRAIN_DESCRIPTION = """\
Train a classifier and record its geometry. With no arguments: the embedded digits, an MLP, CE + OCCE,
25 epochs — about a minute on a laptop CPU. Settings resolve as: defaults < --recipe < --objective < flags <
--set. The run folder holds config.yaml, metrics.csv/metrics.json, tensorboard/, checkpoints/last.ckpt
(resume with --resume) and plots/. The defaults shown below are the quick-start run's; --recipe and
--objective change them. --objective P with a --loss of other terms is refused (the run would be recorded as
P); a loss spec without --objective means a linear head unless --head says otherwise.

Progress: on a terminal a rich bar (Epoch i/N, the whole-run ETA, the evaluation phase); when stdout is not a
terminal (a log file, nohup, SLURM) one line per epoch: loss, accuracies, NC1, elapsed, ETA.

Official OCCE flags are accepted as aliases: --w_ce, --w_occe, --n_epochs, --train_bs, --test_bs,
--milestones, --weight-decay, --momentum, --lr, --seed, --dataset cifar100, --model preactresnet18 (or
preactivationresnet18), --val-interval.

NOTE on --gamma: in the official OCCE code --gamma is the learning-rate decay factor (0.1). Here --gamma is the
weight γ of the OCCE term (or of the LPC penalty); the learning-rate decay is --lr-decay.
"""

_GAMMA_HELP = (
    "weight γ of the OCCE term (or of the LPC penalty when the loss has no OCCE). NOTE: the official OCCE code's "
    "--gamma is the LR decay factor; here use --lr-decay for that"
)

#: argparse dest → TrainConfig field, for flags that map one-to-one.
_FIELD_FLAGS: dict[str, str] = {
    "dataset": "dataset",
    "data_dir": "data_dir",
    "download": "download",
    "model": "model",
    "activation": "activation",
    "head": "head",
    "loss": "loss",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "eval_batch_size": "eval_batch_size",
    "optimizer": "optimizer",
    "lr": "lr",
    "momentum": "momentum",
    "nesterov": "nesterov",
    "weight_decay": "weight_decay",
    "schedule": "schedule",
    "milestones": "milestones",
    "lr_decay": "lr_decay",
    "warmup_epochs": "warmup_epochs",
    "seed": "seed",
    "deterministic": "deterministic",
    "out": "out",
    "name": "name",
    "devices": "devices",
    "num_nodes": "num_nodes",
    "accelerator": "accelerator",
    "strategy": "strategy",
    "precision": "precision",
    "nc_every": "nc_every",
    "soft_targets": "soft_targets",
    "soft_target_alpha": "soft_target_alpha",
    "osr_known": "osr_known",
    "osr_split_seed": "osr_split_seed",
    "long_tail_ratio": "long_tail_ratio",
    "class_balanced": "class_balanced",
    "mixup_alpha": "mixup_alpha",
    "augment": "augment",
    "val_every": "val_every",
    "val_fraction": "val_fraction",
    "progress": "progress",
    "plots": "plots",
    "tensorboard": "tensorboard",
    "train_subset": "train_subset",
    "verify_data": "verify_data",
}


def _devices(value: str) -> int | str:
    try:
        return int(value)
    except ValueError:
        return value


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS
    what = p.add_argument_group("what to train")
    what.add_argument("--recipe", default=S, metavar="NAME[:VARIANT]",
                      help="a paper setting (see `neuralcollapse recipes`); flags below override it")
    what.add_argument("--objective", default=S, metavar="PRESET",
                      help="objective preset (ce, ce+occe, dual, ntce, nonl, normface, lpc, dl2pa, hpn, etf, "
                           "supcon, arcface, cosface, rce, occe-instance, occe-class …) or a loss spec such as "
                           "'focal+0.1*occe' (linear head)")
    what.add_argument("--dataset", default=S, help="data set (digits, mnist, fashionmnist, cifar10, cifar100, svhn, "
                                                   "tinyimagenet, imagefolder …)")
    what.add_argument("--model", default=S, help="backbone (mlp, convnet, resnet18/34/50, resnet32, preactresnet18, "
                                                 "mobilenetv2, densenet121, wrn28_10 …)")
    what.add_argument("--head", default=S, help="classifier head (linear, dual, cosine, etf, prototypes, lpc …)")
    what.add_argument("--loss", default=S, metavar="SPEC", help="objective spec, e.g. 'ce+occe', 'ce+0.1*occe', 'ntce'")
    what.add_argument("--activation", default=S, choices=("relu", "silu"))
    what.add_argument("--gamma", type=float, default=S, help=_GAMMA_HELP)
    what.add_argument("--w_ce", "--w-ce", dest="w_ce", type=float, default=S,
                      help="weight of the CE term (official OCCE flag)")
    what.add_argument("--w_occe", "--w-occe", dest="w_occe", type=float, default=S,
                      help="weight γ of the OCCE term (official OCCE flag; 0 keeps OCCE logged but untrained)")
    what.add_argument("--gamma-schedule", dest="gamma_schedule", default=S, metavar="PRESET|none",
                      help="γ schedule of the LPC penalty (lpc-paper, lpc-2025 …) or 'none'")
    what.add_argument("--gamma-pace", dest="gamma_pace", default=S, metavar="epoch|auto|STEPS",
                      help="progress unit of the γ schedule: 'epoch' (the paper verbatim), STEPS optimizer steps per "
                           "schedule epoch (391 = the paper's CIFAR-10 epoch), or 'auto' (reach the final γ at 75%% "
                           "of the run, at most the paper's pace)")
    what.add_argument("--soft-targets", dest="soft_targets", default=S, choices=("none", "instance", "class"),
                      help="soft anti-class targets for OCCE (instance α 0.1 / class α 0.5)")
    what.add_argument("--soft-target-alpha", dest="soft_target_alpha", type=float, default=S)
    what.add_argument("--set", dest="settings", action="append", default=S, metavar="KEY=VALUE",
                      help="set any config field (YAML value; repeatable, applied in order), e.g. --set "
                           "head_kwargs='{latent_dim: 32}'. A mapping MERGES into the one the preset/recipe set "
                           "(head_kwargs, loss_kwargs per term, model_kwargs); KEY=null empties it first, so "
                           "--set head_kwargs=null --set head_kwargs='{dim: 3}' replaces it")

    data = p.add_argument_group("data")
    data.add_argument("--data-dir", "--data_dir", dest="data_dir", default=S, help="folder with the data files")
    data.add_argument("--download", action="store_true", default=S, help="download missing data (checksummed)")
    data.add_argument("--osr-known", dest="osr_known", type=int, default=S, help="open set: number of known classes")
    data.add_argument("--osr-split-seed", dest="osr_split_seed", type=int, default=S)
    data.add_argument("--long-tail-ratio", dest="long_tail_ratio", type=float, default=S, help="imbalance ratio ρ")
    data.add_argument("--class-balanced", dest="class_balanced", action="store_true", default=S)
    data.add_argument("--val-fraction", dest="val_fraction", type=float, default=S)
    data.add_argument("--train-subset", dest="train_subset", type=int, default=S,
                      help="train on a seeded class-stratified subset of n samples (smoke runs, CPU budgets)")
    data.add_argument("--no-verify", dest="verify_data", action="store_false", default=S,
                      help="do not check known data files against their published digests (deliberately edited "
                           "files)")
    data.add_argument("--augment", dest="augment", action=argparse.BooleanOptionalAction, default=S)
    data.add_argument("--mixup-alpha", dest="mixup_alpha", type=float, default=S)

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", "--n_epochs", "--n-epochs", dest="epochs", type=int, default=S)
    opt.add_argument("--batch-size", "--train_bs", "--train-bs", dest="batch_size", type=int, default=S)
    opt.add_argument("--eval-batch-size", "--test_bs", "--test-bs", dest="eval_batch_size", type=int, default=S)
    opt.add_argument("--optimizer", default=S, choices=("sgd", "adamw"))
    opt.add_argument("--lr", type=float, default=S)
    opt.add_argument("--momentum", type=float, default=S)
    opt.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=S)
    opt.add_argument("--weight-decay", "--weight_decay", "--wd", dest="weight_decay", type=float, default=S)
    opt.add_argument("--schedule", default=S, choices=("multistep", "cosine", "constant"))
    opt.add_argument("--milestones", type=int, nargs="+", default=S, help="epochs of the multistep decay")
    opt.add_argument("--lr-decay", "--lr_decay", dest="lr_decay", type=float, default=S,
                     help="multistep decay factor (the official OCCE code's --gamma)")
    opt.add_argument("--warmup-epochs", dest="warmup_epochs", type=float, default=S)

    run = p.add_argument_group("runtime")
    run.add_argument("--seed", type=int, default=S)
    run.add_argument("--deterministic", action="store_true", default=S)
    run.add_argument("--out", default=S, help="run folder (default runs/<name>)")
    run.add_argument("--name", default=S, help="run name (default from recipe/dataset, model, loss, seed)")
    run.add_argument("--resume", nargs="?", const=True, default=S, metavar="RUN_DIR|CKPT",
                     help="continue a run from its last checkpoint (the run folder of --out, or this path)")
    run.add_argument("--devices", type=_devices, default=S, help="devices per node (int or 'auto')")
    run.add_argument("--num-nodes", dest="num_nodes", type=int, default=S)
    run.add_argument("--accelerator", default=S, help="auto, cpu, gpu, ...")
    run.add_argument("--strategy", default=S, help="auto, ddp, ddp_spawn, ...")
    run.add_argument("--precision", default=S, help="auto, 32-true, bf16-mixed, 16-mixed")
    run.add_argument("--nc-every", dest="nc_every", type=int, default=S, help="NC metrics every k epochs (0 = off)")
    run.add_argument("--val-interval", "--val_interval", "--val-every", dest="val_every", type=int, default=S)
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=S)
    run.add_argument("--plots", action=argparse.BooleanOptionalAction, default=S)
    run.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=S)
    run.add_argument("--print-config", dest="print_config", action="store_true",
                     help="print the resolved config as YAML and exit")


#: Help of the train flags whose add_argument gives none (filled in by :func:`_finish_train_help`).
_HELP: dict[str, str] = {
    "activation": "backbone activation",
    "soft_target_alpha": "α of the soft anti-class targets (default: 0.1 instance, 0.5 class)",
    "osr_split_seed": "seed of the known/unknown class split (default: the run's --seed)",
    "class_balanced": "class-balanced batches (classes_per_batch × samples_per_class; NTCE/NONL)",
    "val_fraction": "fraction of the training split held out as a validation set (0 = none)",
    "augment": "random crop + flip on the device",
    "mixup_alpha": "mixup Beta(α, α) (0 = off)",
    "epochs": "training epochs",
    "batch_size": "training batch size (per device)",
    "eval_batch_size": "evaluation batch size",
    "optimizer": "optimizer",
    "lr": "base learning rate",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum (SGD)",
    "weight_decay": "weight decay (all parameters)",
    "schedule": "learning-rate schedule",
    "warmup_epochs": "linear learning-rate warm-up, in epochs (fractions allowed)",
    "seed": "random seed (data order, augmentation, initialisation)",
    "deterministic": "deterministic kernels (slower; bit-reproducible runs)",
    "num_nodes": "nodes of a multi-node run",
    "val_every": "evaluate (test accuracy, NC) every N epochs",
    "progress": "progress output: the rich bar on a terminal, one line per epoch otherwise",
    "plots": "write plots/ at the end of the run",
    "tensorboard": "write tensorboard/ logs",
}
#: Defaults of train flags that are not TrainConfig fields.
_OTHER_DEFAULTS = {"gamma": "the loss spec's weight, 1", "w_ce": "the loss spec's weight, 1",
                   "w_occe": "the loss spec's weight, 1", "resume": "off: a new run", "settings": "none",
                   "print_config": "off"}
#: Metavars of train flags whose dest would make a poor one.
_METAVARS = {"val_every": "N", "epochs": "N", "batch_size": "N", "eval_batch_size": "N", "nc_every": "K",
             "num_nodes": "N", "seed": "N", "osr_known": "K", "osr_split_seed": "N", "train_subset": "N",
             "devices": "N|auto", "soft_target_alpha": "ALPHA", "mixup_alpha": "ALPHA", "val_fraction": "FRACTION",
             "warmup_epochs": "EPOCHS", "lr_decay": "FACTOR", "long_tail_ratio": "RHO", "milestones": "EPOCH",
             "weight_decay": "WD", "momentum": "MOMENTUM", "lr": "LR", "data_dir": "DIR", "out": "RUN_DIR"}


def _default_text(value: Any, action: argparse.Action) -> str:
    if isinstance(action, argparse.BooleanOptionalAction) or isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == [] or value == {}:
        return "none"
    if isinstance(value, list | tuple):
        return " ".join(map(str, value))
    return str(value)


def _finish_train_help(p: argparse.ArgumentParser) -> None:
    """Every train flag gets a help line ending in its default (the quick-start run's, which --recipe and
    --objective change) and a readable metavar. The flags' own argparse defaults stay SUPPRESS, so that
    explicit flags can be told apart from defaults."""
    from .config import TrainConfig

    defaults = TrainConfig().to_dict()
    for action in p._actions:
        dest = action.dest
        if dest in ("help", argparse.SUPPRESS):
            continue
        if not action.help:
            action.help = _HELP.get(dest, dest.replace("_", " "))
        if action.metavar is None and dest in _METAVARS and action.nargs != 0:
            action.metavar = _METAVARS[dest]
        field_name = _FIELD_FLAGS.get(dest, dest)
        if "(default" in action.help:
            continue
        if field_name in defaults:
            text = _default_text(defaults[field_name], action)
        elif dest in _OTHER_DEFAULTS:
            text = _OTHER_DEFAULTS[dest]
        else:
            continue
        action.help += f" (default: {text.replace('%', '%%')})"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``, ``evaluate`` and ``recipes`` to the ``neuralcollapse`` parser."""
    train = subparsers.add_parser(
        "train",
        help="train a model (no arguments: digits, MLP, CE+OCCE, about a minute on a CPU)",
        description=_TRAIN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_train_arguments(train)
    _finish_train_help(train)
    train.set_defaults(func=_run_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="OOD detection and open-set metrics of a trained checkpoint",
        description="Evaluate a checkpoint of `neuralcollapse train`: closed-set accuracy, post-hoc OOD detection "
        "(detectors fitted on the training split's features, scored on the ID test split and each OOD set; AUROC "
        "and FPR95) and, for a run trained with --osr-known, open-set metrics (error, OSCR, AUROC). Writes "
        "evaluation.json into the run folder and prints the tables; each phase is reported as it starts. Lists "
        "(--ood, --detectors) take space- or comma-separated names.",
    )
    evaluate.add_argument("--checkpoint", required=True, metavar="RUN_DIR|CKPT",
                          help="a checkpoint (or run folder) of `neuralcollapse train`")
    evaluate.add_argument("--ood", nargs="+", default=[], metavar="DATASET",
                          help="OOD test sets: data-set names or 'gaussian'/'uniform' (synthetic) (default: none)")
    evaluate.add_argument("--osr", action="store_true", help="open-set metrics (run trained with --osr-known)")
    evaluate.add_argument("--detectors", nargs="+", default=None, metavar="NAME",
                          help="OOD detectors (default: the OCCE paper's ten: " + " ".join(DEFAULT_DETECTORS) + ")")
    evaluate.add_argument("--data-dir", "--data_dir", dest="data_dir", default=None, metavar="DIR",
                          help="folder with the data files (default: the run's)")
    evaluate.add_argument("--download", action="store_true", help="download missing data (checksummed)")
    evaluate.add_argument("--batch-size", dest="batch_size", type=int, default=512, metavar="N",
                          help="forward batch size (default: %(default)s)")
    evaluate.add_argument("--device", default=None, help="cpu, cuda … (default: cuda when available)")
    evaluate.add_argument("--out", default=None, metavar="DIR",
                          help="write evaluation.json here (default: the run folder)")
    evaluate.add_argument("--protocol", default=None, metavar="NAME",
                          help="a named OOD / open-set protocol: its OOD sets (added to --ood) and, for a run trained "
                               "with --osr-known, its open set; 'default' = the data set's (fashionmnist: MNIST-5k, "
                               "Gaussian and uniform noise, 6/4 classes), 'none'; see the guide, section 10.4")
    evaluate.add_argument("--verify", dest="verify", action=argparse.BooleanOptionalAction, default=None,
                          help="check known data files against their published digests (default: as the run was "
                               "trained; --no-verify for deliberately edited files)")
    evaluate.set_defaults(func=_run_evaluate)

    recipes = subparsers.add_parser("recipes", help="list the paper recipes")
    recipes.add_argument("name", nargs="?", default=None, help="show one recipe's resolved settings")
    recipes.set_defaults(func=_run_recipes)


# ---------------------------------------------------------------------------------------------- train
def parse_setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` (the value parsed as YAML) → ``(key, value)``; used by ``--set``."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects KEY=VALUE; got {text!r}")
    return key.strip(), yaml.safe_load(value)


def _apply_weights(config: Any, args: dict[str, Any]) -> Any:
    from ..losses import parse_objective
    from .config import set_term_weight

    loss = config.loss
    if "w_ce" in args:
        loss = set_term_weight(loss, "ce", args["w_ce"])
    if "w_occe" in args:
        loss = set_term_weight(loss, "occe", args["w_occe"])
    changes: dict[str, Any] = {}
    if "gamma" in args:
        terms = dict(parse_objective(loss))
        if "occe" in terms or "lpc" not in terms:
            if "occe" not in terms and "lpc" not in terms:
                raise ValueError(
                    f"--gamma sets the weight of the OCCE term (or the LPC penalty); loss {loss!r} has neither. "
                    "Add it with --loss ce+occe, or use --lr-decay for the learning-rate decay (the official "
                    "OCCE code's --gamma)"
                )
            loss = set_term_weight(loss, "occe", args["gamma"])
        else:
            if config.gamma_schedule is not None:
                raise ValueError(
                    f"--gamma would fix the LPC weight, but the γ schedule {config.gamma_schedule!r} sets it every "
                    "epoch; add --gamma-schedule none for a constant γ"
                )
            loss = set_term_weight(loss, "lpc", args["gamma"])
    if loss != config.loss:
        changes["loss"] = loss
    return config.replace(**changes) if changes else config


def build_train_config(argv_args: argparse.Namespace | dict[str, Any]) -> tuple[Any, bool | Path]:
    """Resolve the ``train`` flags into ``(TrainConfig, resume)``: defaults ← recipe ← objective preset ←
    flags ← ``--set``; with ``--resume`` the run's saved config ← the flags that may change on resume, and
    ``resume`` is True (continue ``last.ckpt``) or the checkpoint file given (e.g. ``prev.ckpt``)."""
    from .config import TrainConfig, apply_settings, merge_settings, validate_config
    from .presets import apply_objective
    from .recipes import recipe_settings

    args = dict(vars(argv_args) if isinstance(argv_args, argparse.Namespace) else argv_args)
    args.pop("func", None)
    args.pop("command", None)
    args.pop("print_config", None)
    flags = {field: args[dest] for dest, field in _FIELD_FLAGS.items() if dest in args}
    if "gamma_schedule" in args:
        flags["gamma_schedule"] = None if str(args["gamma_schedule"]).lower() == "none" else args["gamma_schedule"]
    if "gamma_pace" in args:
        pace = str(args["gamma_pace"]).strip()
        flags["gamma_pace"] = int(pace) if pace.isdigit() else pace
    settings = [parse_setting(s) for s in args.get("settings", [])]

    resume = args.get("resume")
    if resume:
        from .runner import resume_config

        run_dir = Path(flags.get("out") or "") if resume is True else Path(str(resume))
        if resume is True and "out" not in flags:
            raise ValueError("--resume needs the run folder: --resume RUN_DIR, or --out RUN_DIR --resume")
        checkpoint = None
        if not run_dir.exists() and run_dir.suffix == ".ckpt":  # RUN/prev.ckpt for RUN/checkpoints/prev.ckpt
            beside = run_dir.parent / "checkpoints" / run_dir.name
            run_dir = beside if beside.is_file() else run_dir
        if run_dir.is_file():  # a checkpoint path: <run>/checkpoints/last.ckpt, prev.ckpt …
            from .runner import checkpoint_run_dir

            checkpoint, run_dir = run_dir, checkpoint_run_dir(run_dir)
        for key in ("recipe", "objective", "gamma", "w_ce", "w_occe"):
            if key in args:
                raise ValueError(f"--{key} cannot be changed when resuming; start a new run with --out instead")
        flags.pop("out", None)
        config = resume_config(run_dir, {**flags, **dict(settings)}, checkpoint=checkpoint)
        return validate_config(config), checkpoint or True

    config = TrainConfig()
    if "recipe" in args:
        config = merge_settings(config, recipe_settings(args["recipe"]), source=f"recipe {args['recipe']!r}")
    if "objective" in args:
        config = apply_objective(config, args["objective"])
    if flags:
        config = merge_settings(config, flags, source="command-line flags")
        if "loss" in flags and "objective" not in args:
            config = config.replace(objective=None)
    config = _apply_weights(config, args)
    if settings:
        config = apply_settings(config, settings, source="--set")
    if "objective" in args:
        _check_objective_loss(args["objective"], config, flags.get("loss"), dict(settings).get("loss"))
    config = _drop_stale_kwargs(config)
    return validate_config(config), False


def _check_objective_loss(objective: str, config: Any, flag_loss: str | None, set_loss: str | None) -> None:
    """Refuse ``--objective P --loss L`` (or ``--set loss=L``) when L has other terms than the preset's loss:
    the run would train L while config.yaml and the run name say P. Changing a term's weight is allowed (as
    --gamma/--w_ce/--w_occe do)."""
    from ..losses import parse_objective
    from .presets import OBJECTIVES

    key = str(objective).strip().lower()
    given = set_loss if set_loss is not None else flag_loss
    if key not in OBJECTIVES or given is None:
        return
    preset = OBJECTIVES[key].settings
    if {n for n, _ in parse_objective(config.loss)} == {n for n, _ in parse_objective(preset["loss"])}:
        return
    where = "--set loss=" if set_loss is not None else "--loss "
    raise ValueError(
        f"--objective {key} sets the loss {preset['loss']!r} (head {preset['head']!r}); {where}{given!r} would "
        f"replace it while config.yaml and the run name still say {key}. Give one: --objective {key} alone, or "
        f"--loss {given} --head {preset['head']} without --objective (a loss spec combines terms, e.g. "
        f"'{preset['loss']}+0.5*ce'); a term's weight can change with --gamma/--w_ce/--w_occe"
    )


def _drop_stale_kwargs(config: Any) -> Any:
    """Term kwargs of a recipe whose term the flags removed from the loss are dropped (not an error)."""
    from ..losses import TERMS, parse_objective

    terms = {n for n, _ in parse_objective(config.loss)}
    kept = {k: v for k, v in config.loss_kwargs.items() if k in TERMS and TERMS.resolve(k) in terms}
    return config if kept == config.loss_kwargs else config.replace(loss_kwargs=kept)


def _error(command: str, err: BaseException) -> int:
    print(f"neuralcollapse {command}: error: {err}", file=sys.stderr)
    return 2


def _run_train(args: argparse.Namespace) -> int:
    # User errors (bad settings, missing data, corrupt checkpoints — CorruptCheckpointError is a ValueError,
    # DataUnavailableError a FileNotFoundError) print one clear line; anything else is a bug and keeps its traceback.
    try:
        config, resume = build_train_config(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        return _error("train", err)
    if getattr(args, "print_config", False):
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None), end="")
        if config.gamma_schedule is not None:
            from .config import describe_gamma_pacing

            try:
                print(f"# {describe_gamma_pacing(config)}")
            except (ValueError, FileNotFoundError) as err:  # the data are not at hand: say so, keep the config
                print(f"# γ pacing: not resolved ({err})")
        return 0
    from .runfolder import RunFolderError
    from .runner import fit

    # DownloadError (offline --download) is a DatasetNotFoundError, a FileNotFoundError: one line, exit code 2.
    try:
        with _one_line_warnings("train"):
            result = fit(config, resume=resume)
    except (ValueError, FileNotFoundError, FileExistsError, RunFolderError) as err:
        return _error("train", err)
    if _is_rank_zero():
        print_run_summary(result)
    return 0


@contextlib.contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """Print the run's own setting warnings (:class:`~.runner.RunSettingWarning`) as one line each."""
    import warnings

    from .runner import RunSettingWarning

    original = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if issubclass(category, RunSettingWarning):
            print(f"neuralcollapse {command}: warning: {message}", file=sys.stderr, flush=True)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def _is_rank_zero() -> bool:
    import os

    return all(int(os.environ.get(k, "0") or 0) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


_SUMMARY_ROWS = (
    ("accuracy", "acc"),
    ("loss", "loss"),
    ("CE", "ce"),
    ("OCCE (KL form)", "occe"),
    ("NC1 tr(Σ_W Σ_B†)/K", "nc1"),
    ("NC2 (classifier ETF)", "nc2"),
    ("NC2 (class means ETF)", "nc2_means"),
    ("NC3 self-duality (W vs M)", "nc3"),
    ("NC4 ‖b + Wμ_G‖²", "nc4"),
    ("NCC mismatch", "ncc_mismatch"),
)


def summary_rows(metrics: dict[str, float]) -> list[tuple[str, str, str]]:
    """(label, train value, test value) rows of the final metrics (formatted; '' when absent)."""

    def fmt(value: float | None) -> str:
        if value is None:
            return ""
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3e}"

    rows = []
    for label, key in _SUMMARY_ROWS:
        if key in ("acc", "loss", "ce", "occe"):
            train = metrics.get(f"train_clean/{key}", metrics.get(f"train/{key}"))
            test = metrics.get(f"test/{key}")
        else:
            train, test = metrics.get(f"train_nc/{key}"), metrics.get(f"test_nc/{key}")
        if train is not None or test is not None:
            rows.append((label, fmt(train), fmt(test)))
    return rows


def print_run_summary(result: Any) -> None:
    """A table of the final accuracy and NC metrics, and where the run folder is."""
    metrics = result.metrics
    title = f"{result.config.dataset} · {result.config.model} · {result.config.head} · {result.config.loss}"
    epoch = int(metrics.get("epoch", 0))
    rows = summary_rows(metrics)
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{title} — after epoch {epoch}")
        table.add_column("metric")
        table.add_column("train (eval mode)", justify="right")
        table.add_column("test", justify="right")
        for row in rows:
            table.add_row(*row)
        console = Console()
        console.print(table)
        console.print(f"run folder: [bold]{result.run_dir}[/bold] (config.yaml, metrics.csv, tensorboard/, "
                      "checkpoints/last.ckpt, plots/)")
    except ImportError:  # pragma: no cover
        print(f"{title} — after epoch {epoch}")
        for label, train, test in rows:
            print(f"  {label:28s} {train:>12s} {test:>12s}")
        print(f"run folder: {result.run_dir}")


# ---------------------------------------------------------------------------------------------- evaluate
def split_list(values: Sequence[str] | str | None) -> list[str] | None:
    """Names given space- and/or comma-separated (``a b``, ``a,b``, ``a, b``) → a flat list; None stays None.

    Example:
        >>> split_list(["msp,vim", "knn"])
        ['msp', 'vim', 'knn']
    """
    if values is None:
        return None
    items = [values] if isinstance(values, str) else list(values)
    return [name.strip() for item in items for name in str(item).split(",") if name.strip()]


def _check_device(device: str | None) -> None:
    if device is None or not str(device).lower().startswith(("cuda", "gpu")):
        return
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"--device {device} needs a CUDA GPU, and none is available here (torch "
                         f"{torch.__version__}); use --device cpu, or leave --device out")


def _run_evaluate(args: argparse.Namespace) -> int:
    try:
        from .evaluation import evaluate_checkpoint, print_evaluation
        from .progress import phase_reporter

        _check_device(args.device)
        with phase_reporter("evaluate") as log:
            report = evaluate_checkpoint(
                args.checkpoint, ood=split_list(args.ood), osr=args.osr, detectors=split_list(args.detectors),
                data_dir=args.data_dir, download=args.download, batch_size=args.batch_size, device=args.device,
                out=args.out, log=log, protocol=args.protocol, verify=args.verify,
            )
    except (ValueError, TypeError, FileNotFoundError) as err:
        return _error("evaluate", err)
    print_evaluation(report)
    return 0


# ---------------------------------------------------------------------------------------------- recipes
def _run_recipes(args: argparse.Namespace) -> int:
    from .recipes import get_recipe, list_recipes, recipe_settings

    try:
        if args.name:
            import yaml

            recipe = get_recipe(args.name)
            print(f"# {recipe.name}: {recipe.description}")
            if recipe.variants:
                print(f"# variants: {', '.join(recipe.variants)} (default: {recipe.default_variant})")
            print(yaml.safe_dump(recipe_settings(args.name), sort_keys=False, default_flow_style=None), end="")
            return 0
        recipes = list_recipes()
    except ValueError as err:
        return _error("recipes", err)
    _print_recipes(recipes)
    return 0


def _print_recipes(recipes: Sequence[Any]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="recipes (neuralcollapse train --recipe NAME[:VARIANT])", show_lines=False)
        table.add_column("name", no_wrap=True)
        table.add_column("description")
        table.add_column("variants")
        for r in recipes:
            variants = ", ".join(v + ("*" if v == r.default_variant else "") for v in r.variants)
            table.add_row(r.name, r.description, variants)
        Console().print(table)
    except ImportError:  # pragma: no cover
        for r in recipes:
            print(f"{r.name:32s} {r.description}")
            if r.variants:
                print(f"{'':32s} variants: {', '.join(r.variants)}")

