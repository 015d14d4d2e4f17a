"""Recipes: every shipped recipe and variant loads and validates; the paper settings are what the papers say."""

from __future__ import annotations

import pytest

from neuralcollapse.training.config import TrainConfig, merge_settings, validate_config
from neuralcollapse.training.recipes import get_recipe, list_recipes, recipe_config, recipe_names, recipe_settings


def _all_names() -> list[str]:
    names = []
    for recipe in list_recipes():
        names.append(recipe.name)
        names += [f"{recipe.name}:{v}" for v in recipe.variants]
    return names


def test_recipes_exist_with_descriptions():
    names = recipe_names()
    for expected in ("occe-cifar100-resnet18", "occe-cifar100-mobilenetv2", "occe-tinyimagenet-densenet121",
                     "occe-osr-cifar100", "occe-ood-cifar100-resnet18", "ntce-cifar100-resnet18",
                     "lpc-cifar10-resnet18", "lpc-cifar100-resnet50", "dl2pa-cifar100-resnet32",
                     "dl2pa-cifar100-lt", "etf-cifar100-lt", "quickstart"):
        assert expected in names
    assert all(r.description for r in list_recipes())


@pytest.mark.parametrize("name", _all_names())
def test_every_recipe_and_variant_validates(name):
    cfg = recipe_config(name)
    validate_config(cfg)
    assert cfg.recipe is not None


def test_occe_table1_protocol():
    cfg = recipe_config("occe-cifar100-resnet18")
    assert (cfg.dataset, cfg.model, cfg.head, cfg.loss) == ("cifar100", "preactresnet18", "linear", "ce+occe")
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay) == ("sgd", 0.1, 0.9, False, 1e-4)
    assert (cfg.epochs, cfg.milestones, cfg.lr_decay, cfg.batch_size) == (150, [50, 100], 0.1, 128)
    assert (cfg.augment, cfg.crop_padding, cfg.pad_mode, cfg.flip) == (True, 4, "reflect", True)
    tiny = recipe_config("occe-tinyimagenet-resnet18")
    assert (tiny.epochs, tiny.milestones) == (90, [30, 60, 80])
    assert recipe_config("occe-cifar100-resnet18:ce").loss == "ce"
    assert recipe_config("occe-cifar100-resnet18:focal+occe").loss == "focal+occe"
    assert recipe_config("occe-cifar100-resnet18:cot+occe").loss == "ce+occe+cot"
    assert recipe_config("occe-cifar100-resnet18:instance").soft_targets == "instance"
    variants = get_recipe("occe-cifar100-resnet18").variants
    for base in ("ce", "ls", "nl", "cot", "cce", "focal", "asl", "cfl", "adafocal"):
        assert base in variants and f"{base}+occe" in variants
    assert "rce" in variants and "rce+occe" not in variants


def test_ood_and_lpc_and_dl2pa_protocols():
    ood = recipe_config("occe-ood-cifar100-resnet18")
    assert (ood.loss, ood.nesterov, ood.weight_decay, ood.schedule, ood.schedule_interval, ood.epochs) == (
        "ce+0.1*occe", True, 5e-4, "cosine", "step", 100)
    lpc = recipe_config("lpc-cifar100-resnet50")
    assert (lpc.activation, lpc.optimizer, lpc.gamma_schedule, lpc.constant_lr_groups) == (
        "silu", "adamw", "lpc-paper", ["classifier"])
    assert lpc.head_kwargs == {"latent_dim": 128}
    assert recipe_config("lpc-cifar100-resnet50:narrow").head_kwargs == {"latent_dim": 32}
    assert recipe_config("lpc-cifar10-resnet18:linpen").loss == "ce"
    dl = recipe_config("dl2pa-cifar100-resnet32:d10")
    assert (dl.head, dl.loss, dl.reassign_every, dl.lr, dl.epochs) == ("prototypes", "proto_align", 1, 0.01, 250)
    assert recipe_config("dl2pa-cifar100-resnet32:hpn-d50").reassign_every == 0
    lt = recipe_config("dl2pa-cifar100-lt:rho0.005")
    assert (lt.long_tail_ratio, lt.mixup_alpha, lt.model_kwargs, lt.warmup_epochs) == (0.005, 1.0, {"width": 2}, 5)
    osr = recipe_config("occe-osr-cifar100:dual")
    assert (osr.osr_known, osr.head, osr.batch_size, osr.milestones) == (20, "dual", 64, [30, 60, 90])


def test_unknown_recipe_and_variant():
    with pytest.raises(ValueError, match=r"unknown recipe 'occe-cifar100-resnet81'.*did you mean 'occe-cifar100"):
        recipe_settings("occe-cifar100-resnet81")
    with pytest.raises(ValueError, match=r"has no variant 'xyz'; variants: ce, ce\+occe"):
        recipe_settings("occe-cifar100-resnet18:xyz")


def test_template_mechanics(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "description: family\n"
        "base: {epochs: 7, lr: 0.3}\n"
        "variants: {fast: {epochs: 2}}\n"
        "recipes:\n"
        "  r1: {settings: {model: convnet}}\n"
        "  r2: {extends: r1, settings: {lr: 0.5}}\n"
    )
    (tmp_path / "single.yaml").write_text("description: one\nsettings: {objective: dual, epochs: 3}\n")
    s1 = recipe_settings("r1", tmp_path)
    assert (s1["epochs"], s1["lr"], s1["model"], s1["recipe"]) == (7, 0.3, "convnet", "r1")
    s2 = recipe_settings("r2:fast", tmp_path)
    assert (s2["epochs"], s2["lr"], s2["model"], s2["recipe"]) == (2, 0.5, "convnet", "r2:fast")
    single = recipe_settings("single", tmp_path)
    assert (single["head"], single["loss"], single["epochs"], single["objective"]) == ("dual", "ce+occe", 3, "dual")
    cfg = merge_settings(TrainConfig(), single)
    validate_config(cfg)


def test_template_errors(tmp_path):
    (tmp_path / "loop.yaml").write_text("recipes:\n  x: {extends: y}\n  y: {extends: x}\n")
    with pytest.raises(ValueError, match="extends itself"):
        recipe_settings("x", tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "b.yaml").write_text("recipes:\n  z: {settings: {epoch: 3}}\n")
    with pytest.raises(ValueError, match=r"unknown setting 'epoch' in recipe 'z'.*did you mean 'epochs'"):
        list_recipes(bad)
    worse = tmp_path / "worse"
    worse.mkdir()
    (worse / "c.yaml").write_text("recipez: {}\n")
    with pytest.raises(ValueError, match=r"unknown key 'recipez'"):
        list_recipes(worse)
