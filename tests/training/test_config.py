"""TrainConfig: construction, validation messages, YAML round trip, loss-weight editing, lr schedules."""

from __future__ import annotations

import math

import pytest
import torch

from neuralcollapse.training.config import (
    TrainConfig,
    load_config,
    merge_settings,
    save_config,
    set_term_weight,
    validate_config,
)
from neuralcollapse.training.optim import build_optimizer, classifier_parameters, lr_factor, set_learning_rates
from neuralcollapse.training.presets import OBJECTIVES, expand_objective


def test_defaults_validate_and_roundtrip(tmp_path):
    cfg = validate_config(TrainConfig())
    assert (cfg.dataset, cfg.model, cfg.loss) == ("digits", "mlp", "ce+occe")
    path = save_config(cfg.replace(milestones=[3, 5], schedule="multistep"), tmp_path / "c.yaml")
    back = load_config(path)
    assert back == cfg.replace(milestones=[3, 5], schedule="multistep")


def test_unknown_key_names_closest_field():
    with pytest.raises(ValueError, match="unknown setting 'epoch'.*did you mean 'epochs'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="'weight_decay'"):
        merge_settings(TrainConfig(), {"weight_decy": 1e-4})


def test_merge_does_not_modify_input():
    cfg = TrainConfig()
    kwargs = {"head_kwargs": {"a": 1}}
    new = merge_settings(cfg, kwargs)
    new.head_kwargs["a"] = 2
    assert kwargs == {"head_kwargs": {"a": 1}} and cfg.head_kwargs == {}


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"model": "resnet1000"}, r"unknown model 'resnet1000'; valid models: .*mlp.*resnet18"),
        ({"dataset": "cifar1000"}, r"unknown dataset 'cifar1000'; valid datasets: .*cifar100.*digits"),
        ({"head": "lineer"}, r"unknown head 'lineer'; valid heads: .*linear.*did you mean 'linear'"),
        ({"loss": "ce+occee"}, r"unknown loss term 'occee'.*occe"),
        ({"optimizer": "adam"}, r"`optimizer` must be one of 'sgd', 'adamw'; got 'adam'"),
        ({"schedule": "multistep", "milestones": []}, r"needs `milestones`"),
        ({"milestones": [50, 20], "schedule": "multistep"}, r"strictly increasing"),
        ({"lr": -1.0}, r"`lr` must be in \(0, inf\)"),
        ({"momentum": 1.0}, r"`momentum` must be in \[0, 1\)"),
        ({"epochs": 0}, r"`epochs` must be >= 1"),
        ({"epochs": 2.5}, r"`epochs` must be an integer"),
        ({"soft_targets": "instance", "loss": "ce"}, r"`soft_targets` 'instance' feeds the OCCE term.*no 'occe'"),
        ({"soft_targets": "sometimes"}, r"`soft_targets` must be one of 'none', 'instance', 'class'"),
        ({"soft_targets": "class", "mixup_alpha": 1.0}, r"cannot be combined"),
        ({"gamma_schedule": "lpc-paper", "loss": "ce"}, r"drives the weight of 'lpc', which is not in `loss`"),
        ({"gamma_schedule": "lpc-fast", "loss": "ce+lpc", "head": "lpc"}, r"`gamma_schedule` must be one of"),
        ({"loss_kwargs": {"focal": {"gamma": 3.0}}}, r"`loss_kwargs` names term\(s\) focal"),
        ({"random_resized_crop": [0.5, 0.2]}, r"scale range"),
        ({"warmup_epochs": 30.0, "epochs": 25}, r"`warmup_epochs` must be < `epochs`"),
        ({"constant_lr_groups": ["backbone"]}, r"`constant_lr_groups` must be one of 'classifier'"),
        ({"limit_train_batches": 1.5}, r"fraction in \(0, 1\]"),
        ({"loss": "ce+cot", "optimizer": "adamw"}, r"second SGD optimiser"),
        ({"head": "class_mean", "loss": "ce"}, r"head 'class_mean' cannot be trained by gradient descent"),
        ({"data_on_device": "maybe"}, r"`data_on_device` must be one of True, False, 'auto'"),
    ],
)
def test_invalid_settings_raise_with_choices(changes, match):
    with pytest.raises((ValueError, TypeError), match=match):
        validate_config(TrainConfig().replace(**changes))


def test_loss_needing_prototypes_names_the_heads_that_work():
    from neuralcollapse.training.config import all_head_fields

    fields = all_head_fields()
    working = sorted(h for h, f in fields.items() if {"features", "prototypes", "cosines"} <= f)
    assert {"cosine", "etf", "prototypes"} <= set(working) and "linear" not in working
    for loss in ("ntce", "nonl", "normface", "proto_align", "dot_regression", "arcface"):
        with pytest.raises(ValueError, match=rf"loss term '{loss}' needs cosine logits.*head 'linear'") as info:
            validate_config(TrainConfig(loss=loss, head="linear"))
        assert f"heads that work with '{loss}': {', '.join(working)}" in str(info.value)
    validate_config(TrainConfig(loss="ntce", head="cosine"))


def test_etf_with_narrow_features_suggests_prototypes():
    from neuralcollapse.training.network import DataInfo, build_network

    info = DataInfo("digits", 10, 1, [8, 8], [0.5], [0.5], 100)
    cfg = TrainConfig(head="etf", loss="dot_regression", model_kwargs={"hidden": [4]})
    with pytest.raises(ValueError, match=r"d >= K - 1 = 9.*d = 4.*--head prototypes"):
        build_network(cfg, info)


def test_set_term_weight():
    assert set_term_weight("ce+occe", "occe", 0.1) == "ce+0.1*occe"
    assert set_term_weight("ce", "occe", 0.5) == "ce+0.5*occe"
    assert set_term_weight("0.5*ce+occe", "ce", 1) == "ce+occe"
    assert set_term_weight("ce+occe", "occe", 0) == "ce+0*occe"
    with pytest.raises(ValueError, match="finite and >= 0"):
        set_term_weight("ce", "occe", -1)


def test_presets_validate_and_loss_spec_fallback():
    for name in OBJECTIVES:
        cfg = merge_settings(TrainConfig(), expand_objective(name))
        validate_config(cfg)
        assert cfg.objective == name
    assert expand_objective("focal+0.1*occe") == {
        "head": "linear", "head_kwargs": {}, "loss": "focal+0.1*occe", "loss_kwargs": {}, "objective": None,
    }
    with pytest.raises(ValueError, match=r"unknown objective 'nope'.*dual.*terms:"):
        expand_objective("nope")


def test_run_name_is_filesystem_safe():
    assert TrainConfig(loss="ce+0.1*occe").run_name() == "digits-mlp-ce+0.1xocce-s0"
    assert TrainConfig(recipe="occe-cifar100-resnet18:ce", objective="ce", seed=2).run_name() == (
        "occe-cifar100-resnet18-ce-s2"
    )


# ----------------------------------------------------------------------------------------- lr schedules
def _torch_schedule_lrs(make_scheduler, epochs: int, steps: int, per_step: bool) -> list[float]:
    """Learning rates of a torch scheduler at the start of every step (independent reference)."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(epochs):
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if per_step:
                sched.step()
        if not per_step:
            sched.step()
    return lrs


def _ours(cfg: TrainConfig, epochs: int, steps: int) -> list[float]:
    return [0.1 * lr_factor(cfg, e + b / steps) for e in range(epochs) for b in range(steps)]


def test_multistep_matches_torch_multisteplr():
    cfg = TrainConfig(schedule="multistep", milestones=[2, 4], lr_decay=0.1, epochs=6, lr=0.1)
    ref = _torch_schedule_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 4], 0.1), 6, 3, False)
    assert _ours(cfg, 6, 3) == pytest.approx(ref, rel=1e-12)


def test_cosine_per_epoch_matches_torch_cosineannealinglr():
    cfg = TrainConfig(schedule="cosine", epochs=7, min_lr_factor=0.01, lr=0.1)
    ref = _torch_schedule_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 7, eta_min=0.001), 7, 2, False)
    assert _ours(cfg, 7, 2) == pytest.approx(ref, rel=1e-9)


def test_cosine_per_step_is_openood_form():
    cfg = TrainConfig(schedule="cosine", schedule_interval="step", epochs=3, min_lr_factor=1e-5)
    total = 3 * 4
    expected = [1e-5 + (1 - 1e-5) * 0.5 * (1 + math.cos(math.pi * s / total)) for s in range(total)]
    assert [lr_factor(cfg, s / 4) for s in range(total)] == pytest.approx(expected, rel=1e-12)


def test_warmup_is_linear_to_the_schedule_value():
    # SupContrast: lr = from + p·(to − from), to = cosine value at the warm-up end.
    cfg = TrainConfig(schedule="cosine", schedule_interval="step", epochs=20, warmup_epochs=2, warmup_start_lr=0.01,
                      lr=0.4, min_lr_factor=0.0)
    to = 0.5 * (1 + math.cos(math.pi * 2 / 20))
    for p in (0.0, 0.5, 1.0, 1.999):
        expected = 0.01 / 0.4 + (to - 0.01 / 0.4) * p / 2
        assert lr_factor(cfg, p, base_lr=0.4) == pytest.approx(expected, rel=1e-12)
    assert lr_factor(cfg, 2.0) == pytest.approx(to, rel=1e-12)


def test_classifier_group_keeps_base_lr():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    head = torch.nn.Linear(3, 2)
    model = torch.nn.Sequential(net, head)
    cfg = TrainConfig(optimizer="adamw", lr=1e-3, schedule="multistep", milestones=[1], lr_decay=0.5,
                      constant_lr_groups=["classifier"], epochs=3)
    opt = build_optimizer(cfg, model, head=head)
    assert [g["name"] for g in opt.param_groups] == ["backbone", "classifier"]
    assert {id(p) for p in opt.param_groups[1]["params"]} == {id(head.weight), id(head.bias)}
    assert all(g["weight_decay"] == cfg.weight_decay for g in opt.param_groups)
    set_learning_rates([opt], cfg, 1.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4) and opt.param_groups[1]["lr"] == pytest.approx(1e-3)
    assert classifier_parameters(head) == [head.weight, head.bias]
