"""End-to-end training on the embedded digits: every head family learns and the run folder is complete."""

from __future__ import annotations

import json
import math

import pytest
import torch

from neuralcollapse.training import TrainConfig, fit
from neuralcollapse.training.config import merge_settings
from neuralcollapse.training.presets import expand_objective

#: Tiny, fast runs: one hidden layer of 64, 2 epochs (2 cores shared with the rest of the suite).
FAST = dict(epochs=2, batch_size=64, lr=0.1, progress=False, plots=False, model_kwargs={"hidden": [64]})


def _run(tmp_path, objective: str, **changes):
    cfg = merge_settings(TrainConfig(**FAST), expand_objective(objective))
    cfg = cfg.replace(out=str(tmp_path / objective.replace("+", "_")), **changes)
    return fit(cfg)


@pytest.mark.parametrize(
    ("objective", "changes"),
    [
        ("dual", {}),
        ("ntce", {}),
        ("etf", {}),
        ("dl2pa", {}),
        ("lpc", {"lr": 0.01, "head_kwargs": {"latent_dim": 16}}),
    ],
)
def test_head_family_learns(tmp_path, objective, changes):
    result = _run(tmp_path, objective, **changes)
    m = result.metrics
    assert m["epoch"] == 2
    assert m["test/acc"] > 0.5 and m["train/acc"] > 0.5  # chance is 0.1
    assert math.isfinite(m["train/loss"]) and math.isfinite(m["test/loss"])
    assert 0 <= m["test_nc/nc1"] < 5 and "train_nc/nc1" in m
    if objective == "lpc":
        # lpc-paper paced automatically in optimizer steps: γ of the last step under the period it chose
        from neuralcollapse.schedules import GammaSchedule, auto_period

        period = auto_period(GammaSchedule.from_preset("lpc-paper"), int(m["step"]))
        assert m["gamma/period_steps"] == period
        assert m["gamma/lpc"] == pytest.approx(GammaSchedule.from_preset("lpc-paper").with_period(period).at_step(
            int(m["step"]) - 1))
    if objective == "dl2pa":
        assert 0 <= m["dl2pa/reassigned"] <= 10


def test_linear_run_folder_and_official_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = _run(tmp_path, "ce+occe", plots=True)
    folder = result.run_dir
    rows = json.loads((folder / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    assert result.metrics["test/acc"] > 0.5
    header = (folder / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "train/acc", "test/acc", "train/ce", "train/occe", "test_nc/nc1", "lr"} <= set(header)
    assert (folder / "config.yaml").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
    assert (folder / "plots" / "accuracy.png").stat().st_size > 0
    assert (folder / "plots" / "neural_collapse.png").stat().st_size > 0
    # The nine official OCCE TensorBoard tags, step = 0-indexed epoch, values = the epoch metrics.
    version = next((folder / "tensorboard").rglob("events.out.tfevents.*")).parent
    acc = EventAccumulator(str(version))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    official = {"Train/Classifier_LR", "Train/Accuracy", "Train/CE Loss", "Train/OCCE Loss", "Train/Total Loss",
                "Val/Accuracy", "Val/CE Loss", "Val/OCCE Loss", "Val/Total Loss"}
    assert official <= tags
    events = acc.Scalars("Val/Accuracy")
    assert [e.step for e in events] == [0, 1]
    assert events[-1].value == pytest.approx(rows[-1]["test/acc"], rel=1e-6)
    assert acc.Scalars("Train/OCCE Loss")[-1].value == pytest.approx(rows[-1]["train/occe"], rel=1e-6)
    assert "digits/mlp/mlp_ce=1_occe=1_e=2_s=0" in str(version)


def test_ce_run_still_logs_occe_and_seed_reproducibility(tmp_path):
    a = _run(tmp_path / "a", "ce", epochs=1)
    b = _run(tmp_path / "b", "ce", epochs=1)
    assert "train/occe" in a.metrics and "test/occe" in a.metrics  # monitored, not trained
    assert a.metrics == b.metrics


def test_instance_soft_targets_and_cot_two_updates(tmp_path):
    soft = _run(tmp_path, "occe-instance", epochs=2)
    assert soft.metrics["test/acc"] > 0.5
    cot = _run(tmp_path, "ce+cot", epochs=1)
    assert "train/cot" in cot.metrics and cot.metrics["train/cot"] < 0  # −(1/K)·C ≤ 0
    assert cot.metrics["step"] == 2 * math.ceil(1347 / 64)  # two optimiser steps per batch


def test_mixup_and_long_tail_and_osr(tmp_path):
    result = _run(tmp_path, "etf", epochs=1, mixup_alpha=1.0, long_tail_ratio=0.1, osr_known=6)
    assert result.metrics["test/acc"] > 0.3  # 6 known classes, long-tailed, one epoch with mixup
    import yaml

    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["osr_known"] == 6 and saved["long_tail_ratio"] == 0.1
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    info = ckpt["hyper_parameters"]["data_info"]
    assert info["num_classes"] == 6 and len(info["known_classes"]) == 6


def test_margin_ramp_adafocal_and_class_balanced_batches(tmp_path):
    from neuralcollapse.schedules import MarginSchedule

    arc = _run(tmp_path, "arcface", margin_schedule="lpc-arcface")
    expected = MarginSchedule.from_preset("lpc-arcface")(2)
    assert arc.metrics["margin/arcface/scale"] == pytest.approx(expected.scale)
    assert arc.metrics["margin/arcface/margin"] == pytest.approx(expected.margin)

    ada = _run(tmp_path, "adafocal", epochs=2)
    assert "adafocal/gamma_mean" in ada.metrics and ada.metrics["adafocal/gamma_mean"] != 1.0  # γ_init = 1
    ckpt = torch.load(ada.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    gammas = next(v for k, v in ckpt["state_dict"].items() if k.endswith("adafocal.state.gammas"))
    assert float(gammas.mean()) == pytest.approx(ada.metrics["adafocal/gamma_mean"])
    assert ckpt["hyper_parameters"]["data_info"]["train_size"] < 1347  # 10 % held out for the γ updates

    bal = _run(tmp_path, "ntce", epochs=1, class_balanced=True, batch_size=60, warmup_epochs=0.5,
               warmup_start_lr=0.01)
    assert bal.metrics["test/acc"] > 0.3


def test_run_folder_collisions(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from neuralcollapse.cli import main
    from neuralcollapse.training.runner import RUN_DIR_ENV

    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(epochs=1, progress=False, plots=False, tensorboard=False, nc_every=0,
                      model_kwargs={"hidden": [16]})
    first, second = fit(cfg), fit(cfg)
    assert first.run_dir == Path("runs/digits-mlp-ce+occe-s0")
    assert second.run_dir == Path("runs/digits-mlp-ce+occe-s0-2")
    assert RUN_DIR_ENV not in __import__("os").environ
    assert main(["train", "--out", str(first.run_dir), "--epochs", "1", "--no-progress"]) == 2
    assert "already holds a checkpoint; pass --resume" in capsys.readouterr().err


def test_plots_handle_zero_metrics(tmp_path):
    import warnings

    from neuralcollapse.training.recording import plot_metrics

    rows = [{"epoch": 1, "train/acc": 0.5, "test_nc/nc1": 0.0}, {"epoch": 2, "train/acc": 0.9, "test_nc/nc1": 0.0}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = plot_metrics(rows, tmp_path)
    assert [p.name for p in paths] == ["accuracy.png", "neural_collapse.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert plot_metrics([], tmp_path / "none") == []
