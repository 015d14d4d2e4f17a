"""The ``train``/``recipes``/``evaluate`` commands: official OCCE flag aliases, precedence, error messages."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from neuralcollapse.cli import build_parser, main
from neuralcollapse.training.commands import build_train_config


def parse(*argv: str):
    return build_train_config(build_parser().parse_args(["train", *argv]))[0]


def test_official_occe_flags_are_aliases():
    cfg = parse("--dataset", "cifar100", "--model", "preactresnet18", "--w_ce", "1.0", "--w_occe", "0.5",
                "--lr", "0.1", "--momentum", "0.9", "--weight-decay", "1e-4", "--milestones", "50", "100",
                "--n_epochs", "150", "--train_bs", "128", "--test_bs", "256", "--seed", "2", "--val-interval", "2",
                "--schedule", "multistep")
    assert (cfg.dataset, cfg.model, cfg.loss) == ("cifar100", "preactresnet18", "ce+0.5*occe")
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.milestones) == (0.1, 0.9, 1e-4, [50, 100])
    assert (cfg.epochs, cfg.batch_size, cfg.eval_batch_size, cfg.seed, cfg.val_every) == (150, 128, 256, 2, 2)
    # The README's spelling (rejected by the official argparse) resolves to the same backbone.
    assert parse("--model", "preactivationresnet18").model == "preactivationresnet18"
    from neuralcollapse import models

    assert models.MODELS.resolve("preactivationresnet18") == models.MODELS.resolve("preactresnet18")


def test_gamma_is_the_occe_weight_and_lr_decay_is_separate():
    cfg = parse("--gamma", "0.1", "--lr-decay", "0.2", "--schedule", "multistep", "--milestones", "5")
    assert (cfg.loss, cfg.lr_decay) == ("ce+0.1*occe", 0.2)
    assert parse("--loss", "focal", "--w_occe", "1").loss == "focal+occe"
    assert parse("--w_occe", "0").loss == "ce+0*occe"  # OCCE logged, not trained (official CE runs)
    lpc = parse("--objective", "lpc", "--gamma-schedule", "none", "--gamma", "3")
    assert (lpc.loss, lpc.gamma_schedule) == ("ce+3*lpc", None)
    with pytest.raises(ValueError, match=r"--gamma-schedule none"):
        parse("--objective", "lpc", "--gamma", "3")
    with pytest.raises(ValueError, match=r"--gamma sets the weight of the OCCE term.*--lr-decay"):
        parse("--loss", "ce", "--gamma", "0.1")
    assert "LR decay" in build_parser()._subparsers._group_actions[0].choices["train"].format_help()


def test_precedence_recipe_objective_flags_set():
    cfg = parse("--recipe", "occe-cifar100-resnet18:ce", "--objective", "dual", "--epochs", "3",
                "--set", "head_kwargs={predict: occe}", "--set", "nc_every=2")
    assert (cfg.dataset, cfg.head, cfg.loss, cfg.epochs, cfg.nc_every) == ("cifar100", "dual", "ce+occe", 3, 2)
    assert cfg.head_kwargs == {"predict": "occe"} and cfg.recipe == "occe-cifar100-resnet18:ce"
    # a recipe's term kwargs are dropped when a flag removes that term
    cfg = parse("--recipe", "occe-cifar100-resnet18:official", "--loss", "ce")
    assert cfg.loss_kwargs == {} and cfg.objective is None


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--model", "resnet1000"], r"unknown model 'resnet1000'; valid models: .*resnet18"),
        (["--dataset", "imagenet22k"], r"unknown dataset 'imagenet22k'; valid datasets: .*cifar10"),
        (["--loss", "ce+ocee"], r"unknown loss term 'ocee'.*did you mean 'occe'"),
        (["--objective", "lpcc"], r"unknown objective 'lpcc'.*lpc"),
        (["--recipe", "occe-cifar1000-resnet18"], r"unknown recipe.*did you mean"),
        (["--set", "epochz=3"], r"unknown setting 'epochz'.*did you mean 'epochs'"),
        (["--resume"], r"--resume needs the run folder"),
    ],
)
def test_bad_input_prints_valid_choices(argv, match, capsys):
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neuralcollapse train: error:")
    import re

    assert re.search(match, err), err


def test_argparse_choices_are_listed(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--optimizer", "adam"])
    assert info.value.code == 2
    assert "invalid choice: 'adam' (choose from" in capsys.readouterr().err


def test_print_config_and_recipes_listing(capsys):
    assert main(["train", "--print-config", "--epochs", "4"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 4" in out and "loss: ce+occe" in out
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "occe-cifar100-resnet18" in listing and "lpc-cifar100-resnet50" in listing
    assert main(["recipes", "occe-ood-cifar100-resnet18"]) == 0
    assert "nesterov: true" in capsys.readouterr().out
    assert main(["recipes", "nope"]) == 2


def test_missing_data_fails_fast_with_download_hint(tmp_path, capsys):
    start = time.perf_counter()
    code = main(["train", "--recipe", "occe-cifar100-resnet18", "--data-dir", str(tmp_path), "--out",
                 str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and time.perf_counter() - start < 30
    assert "cifar100" in err and "--download" in err and "--data-dir" in err and str(tmp_path) in err


def test_help_does_not_import_lightning():
    code = "import sys; from neuralcollapse.cli import build_parser; build_parser(); print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
