"""LPC γ pacing in optimizer steps and the penalty-balance diagnostics (q, margins, the warning), end to end."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from neuralcollapse.schedules import GammaSchedule
from neuralcollapse.training import TrainConfig, fit
from neuralcollapse.training.callbacks import GammaScheduleCallback
from neuralcollapse.training.config import merge_settings, validate_config
from neuralcollapse.training.diagnostics import LPCDiagnostics, penalty_balance
from neuralcollapse.training.presets import expand_objective

#: 256 digits, batch 32: 8 optimizer steps per epoch.
TINY = dict(batch_size=32, lr=0.01, progress=False, plots=False, tensorboard=False, train_subset=256,
            model_kwargs={"hidden": [32]}, head_kwargs={"latent_dim": 8}, nc_every=0)
STEPS_PER_EPOCH = 8


def _config(tmp_path, name: str, **changes) -> TrainConfig:
    cfg = merge_settings(TrainConfig(**TINY), expand_objective("lpc"))
    return cfg.replace(out=str(tmp_path / name), **changes)


def _rows(folder) -> list[dict]:
    return json.loads((folder / "metrics.json").read_text())


def test_penalty_balance_closed_form():
    weight = torch.tensor([[3.0, 4.0], [0.0, 1.0]])  # row norms 5 and 1: mean 3, d = 2
    assert penalty_balance(weight, 2.0) == pytest.approx(3.0**2 * 2 / 2.0)
    assert penalty_balance(weight, 0.0) == math.inf
    with pytest.raises(ValueError, match=r"`weight` must be \(K, d\)"):
        penalty_balance(torch.ones(3), 1.0)
    with pytest.raises(ValueError, match=r"`gamma` must be finite and >= 0"):
        penalty_balance(weight, -1.0)


def test_callback_sets_gamma_from_the_global_step():
    schedule = GammaSchedule.from_preset("lpc-paper", unit="step", period=3)
    callback = GammaScheduleCallback(schedule)
    weights = {}
    module = SimpleNamespace(objective=SimpleNamespace(set_weight=lambda name, w: weights.__setitem__(name, w)))
    for step in (0, 2, 3, 17):
        trainer = SimpleNamespace(global_step=step, current_epoch=0)
        callback.on_train_batch_start(trainer, module, None, 0)
        assert weights["lpc"] == pytest.approx(schedule.at_step(step))
    with pytest.raises(ValueError, match=r"`auto_period` needs an epoch-unit GammaSchedule"):
        GammaScheduleCallback(schedule, auto_period=True)


def test_step_paced_run_logs_the_balance(tmp_path):
    cfg = _config(tmp_path, "paced", epochs=3, gamma_pace=2)
    result = fit(cfg)
    rows = _rows(result.run_dir)
    schedule = GammaSchedule.from_preset("lpc-paper", unit="step", period=2)
    for row in rows:
        # the γ of the epoch's last optimizer step (steps 0 … 8e − 1)
        assert row["gamma/lpc"] == pytest.approx(schedule.at_step(STEPS_PER_EPOCH * row["epoch"] - 1))
        assert row["gamma/period_steps"] == 2
        assert row["lpc/gamma"] == pytest.approx(row["gamma/lpc"])
        assert row["lpc/latent_norm"] > 0 and math.isfinite(row["lpc/margin_median"])
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    weight = next(v for k, v in ckpt["state_dict"].items() if k.endswith("head.weight"))
    last = rows[-1]
    assert last["lpc/w_row_norm"] == pytest.approx(float(weight.double().norm(dim=1).mean()), rel=1e-6)
    assert last["lpc/q"] == pytest.approx(penalty_balance(weight, last["gamma/lpc"]), rel=1e-6)
    # a forecast needs one epoch of growth and some run left: epochs 2 … E − 1
    assert [("lpc/q_forecast_min" in r) for r in rows] == [False, True, False]


def test_a_schedule_that_outruns_the_classifier_warns(tmp_path):
    fast = {"kind": "geometric", "gamma0": 1.0, "factor": 10.0, "gamma_max": 1e9}
    cfg = _config(tmp_path, "fast", epochs=3, gamma_schedule=fast, gamma_pace=1)
    with pytest.warns(UserWarning, match=r"LPC: q = ‖w_row‖²·d/γ falls below 1"):
        result = fit(cfg)
    assert result.history[1]["lpc/q_forecast_min"] < 1
    assert result.metrics["lpc/q"] < 1


def test_resume_keeps_the_step_paced_trajectory(tmp_path):
    full = fit(_config(tmp_path, "full", epochs=4, gamma_pace=3))
    first = _config(tmp_path, "split", epochs=2, gamma_pace=3)
    fit(first)
    resumed = fit(first.replace(epochs=4), resume=True)
    a, b = _rows(full.run_dir), _rows(resumed.run_dir)
    assert [r["epoch"] for r in b] == [1, 2, 3, 4]
    assert [r["gamma/lpc"] for r in a] == [r["gamma/lpc"] for r in b]


def test_auto_pace_is_resolved_once_and_kept_on_resume(tmp_path):
    cfg = _config(tmp_path, "auto", epochs=2, gamma_pace="auto")
    fit(cfg)
    # 16 steps, 378 increments of lpc-paper: ⌊0.75·16/378⌋ → the floor of 1 step per increment
    resumed = fit(cfg.replace(epochs=3), resume=True)
    assert {r["gamma/period_steps"] for r in _rows(resumed.run_dir)} == {1}
    cb = LPCDiagnostics(None)
    assert cb.state_dict() == {"warned": False, "margin_warned": False, "best_margin": -math.inf, "previous": None}


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"gamma_pace": 0}, r"`gamma_pace` must be 'epoch', 'auto' or a positive number"),
        ({"gamma_pace": "fast"}, r"`gamma_pace` must be 'epoch', 'auto'"),
        ({"gamma_pace": 5, "gamma_schedule": {"preset": "lpc-paper", "unit": "step", "period": 5}},
         r"sets its own unit/period"),
        ({"classifier_lr": -1.0}, r"classifier_lr"),
    ],
)
def test_pacing_settings_are_validated(tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        validate_config(_config(tmp_path, "bad", **changes))


def test_classifier_lr_gets_its_own_group(tmp_path):
    from neuralcollapse.training.datamodule import data_info, load_data
    from neuralcollapse.training.network import build_network
    from neuralcollapse.training.optim import build_optimizer

    cfg = _config(tmp_path, "opt", classifier_lr=0.5)
    splits, extras = load_data(cfg)
    net = build_network(cfg, data_info(splits, extras))
    opt = build_optimizer(cfg, net, head=net.head)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["classifier"]["lr"] == 0.5 and groups["backbone"]["lr"] == cfg.lr
    assert groups["classifier"]["scheduled"] is False  # the lpc preset holds the classifier's lr constant
    assert {id(p) for p in groups["classifier"]["params"]} == {id(net.head.weight)}


def test_recipe_head_kwargs_survive_an_objective_with_the_same_head():
    from neuralcollapse.training.presets import apply_objective
    from neuralcollapse.training.recipes import recipe_config

    recipe = recipe_config("lpc-digits-mlp")
    assert recipe.head_kwargs == {"latent_dim": 16}
    assert apply_objective(recipe, "lpc").head_kwargs == {"latent_dim": 16}
    assert apply_objective(recipe, "linpen").head_kwargs == {"latent_dim": 16}
    ce = apply_objective(recipe, "ce")  # another head: its options reset; no lpc term: no γ schedule
    assert (ce.head, ce.head_kwargs, ce.gamma_schedule) == ("linear", {}, None)
    validate_config(ce)


def test_cosine_from_a_start_epoch():
    from neuralcollapse.training.optim import lr_factor

    cfg = TrainConfig(schedule="cosine", cosine_start=600, epochs=900)
    assert lr_factor(cfg, 0) == lr_factor(cfg, 599) == lr_factor(cfg, 600) == 1.0
    assert lr_factor(cfg, 750) == pytest.approx(0.5)
    assert lr_factor(cfg, 900) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"`cosine_start` must be below `epochs`"):
        validate_config(TrainConfig(schedule="cosine", cosine_start=10, epochs=10))


def _epoch_end(cb, margin, step):
    import warnings as _warnings

    module = SimpleNamespace(head=SimpleNamespace(weight=torch.full((10, 4), 10.0)), log=lambda *a, **k: None,
                             add_to_record=lambda values: None)
    trainer = SimpleNamespace(global_step=step, estimated_stepping_batches=1000, max_epochs=10, is_global_zero=True)
    cb._margins = [torch.tensor([margin])]
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        cb.on_train_epoch_end(trainer, module)
    return [str(w.message) for w in caught if "median training logit margin" in str(w.message)]


def test_margin_warning_only_when_the_margin_fell():
    gamma = GammaScheduleCallback(GammaSchedule("constant", gamma0=1.0))
    gamma.value = 1.0  # q = 20²·4/1 = 1600: no q warning, only the margin decides
    early = LPCDiagnostics(gamma)
    assert _epoch_end(early, 0.3, 100) == [] and _epoch_end(early, 0.4, 200) == []  # small from the start
    fell = LPCDiagnostics(gamma)
    assert _epoch_end(fell, 3.0, 100) == []
    messages = _epoch_end(fell, 0.2, 200)
    assert len(messages) == 1 and "fell to 0.2 nats" in messages[0]
    assert _epoch_end(fell, 0.1, 300) == []  # once
