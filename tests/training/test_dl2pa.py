"""DL2PA in the training loop: the re-assignment cadence ν, what is logged per epoch, the CLI head options and a
resume that keeps a changed assignment and the representatives (docs/methods.md §7.2; issue 10)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from neuralcollapse.heads import HypersphericalPrototypeHead

pytest.importorskip("lightning")

from neuralcollapse.training.callbacks import PrototypeReassignment


class _Module(SimpleNamespace):
    """The parts of a LightningModule the callback touches: ``net.head``, ``log`` and ``add_to_record``."""

    def __init__(self, head):
        super().__init__(net=SimpleNamespace(head=head), record={}, logged={})

    def log(self, key, value, **_):
        self.logged[key] = value

    def add_to_record(self, values):
        self.record.update(values)


def _counting_head(**kw):
    head = HypersphericalPrototypeHead(3, 3, prototypes=torch.eye(3), projection=False, **kw)
    head.calls = []
    solve = head.reassign

    def reassign():
        head.calls.append(len(head.calls))
        return solve()

    head.reassign = reassign
    return head


def _epochs(callback, head, epochs, batches=10):
    """Drive the callback's hooks like Lightning over ``epochs`` epochs; returns reassign calls per epoch."""
    module = _Module(head)
    per_epoch, records = [], []
    for epoch in range(epochs):
        trainer = SimpleNamespace(sanity_checking=False, current_epoch=epoch, num_training_batches=batches)
        before = len(head.calls)
        module.record = {}
        callback.on_train_epoch_start(trainer, module)
        for b in range(batches):
            callback.on_train_batch_end(trainer, module, None, None, b)
        callback.on_train_epoch_end(trainer, module)
        per_epoch.append(len(head.calls) - before)
        records.append(dict(module.record))
    return per_epoch, records


@pytest.mark.parametrize(
    ("head_kw", "callback_kw", "expected"),
    [
        ({}, {}, [1, 1, 1, 1]),
        ({"assignments_per_epoch": 4}, {}, [4, 4, 4, 4]),
        ({"assignments_per_epoch": 0.5}, {}, [0, 1, 0, 1]),
        ({}, {"every": 2}, [0, 1, 0, 1]),
        ({"assignments_per_epoch": 10}, {"per_epoch": 0.25}, [0, 0, 0, 1]),  # the callback's ν wins
        ({"assignments_per_epoch": 20}, {}, [10, 10, 10, 10]),  # at most one per batch
    ],
)
def test_cadence(head_kw, callback_kw, expected):
    head = _counting_head(initial_assignment="identity", **head_kw)
    assert _epochs(PrototypeReassignment(**callback_kw), head, 4)[0] == expected


def test_intra_epoch_updates_follow_the_batch_schedule():
    head = _counting_head(initial_assignment="identity", assignments_per_epoch=4)
    seen = []
    module = _Module(head)
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=0, num_training_batches=10)
    cb = PrototypeReassignment()
    cb.on_train_epoch_start(trainer, module)
    for b in range(10):
        before = len(head.calls)
        cb.on_train_batch_end(trainer, module, None, None, b)
        if len(head.calls) > before:
            seen.append(b)
    assert seen == [2, 4, 7]  # 4 evenly spaced updates; the 4th (batch 9) runs after validation
    cb.on_train_epoch_end(trainer, module)
    assert len(head.calls) == 4


def test_warm_up_defers_reassignment_and_logs_the_first_solve():
    head = _counting_head(warmup_iterations=25)  # class_means, solved by the head itself after 25 updates
    cb, module = PrototypeReassignment(), _Module(head)
    feats, target = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 1, 2])
    for epoch in range(3):
        trainer = SimpleNamespace(sanity_checking=False, current_epoch=epoch, num_training_batches=10)
        module.record = {}
        cb.on_train_epoch_start(trainer, module)
        for b in range(10):
            head.update_representatives(feats, target)
            cb.on_train_batch_end(trainer, module, None, None, b)
        cb.on_train_epoch_end(trainer, module)
        if epoch < 2:
            assert head.calls == [] and "dl2pa/reassigned" not in module.record
            assert module.record["dl2pa/assignment"] == [0, 1, 2]
        else:  # update 25 (epoch 3) solved the first assignment, then the epoch-end re-assignment ran
            assert head.calls == [0]
            assert module.record["dl2pa/reassigned"] == 3.0  # 3 classes moved at the first solve, 0 after
            assert module.record["dl2pa/assignment"] == [2, 0, 1]
            assert module.record["dl2pa/matching_cosine"] == pytest.approx(3.0)
            assert module.logged["dl2pa/reassigned"] == 3.0 and "dl2pa/assignment" not in module.logged


def test_callback_arguments_are_validated():
    with pytest.raises(ValueError, match=r"`every` must be an int >= 1"):
        PrototypeReassignment(0)
    with pytest.raises(ValueError, match=r"`per_epoch` must be a whole number .* or 1/n"):
        PrototypeReassignment(per_epoch=2.5)
    with pytest.raises(ValueError, match=r"`per_epoch` must be a number > 0"):
        PrototypeReassignment(per_epoch=0)


def test_cli_head_kwargs_reach_the_head():
    from neuralcollapse.cli import build_parser
    from neuralcollapse.training.commands import build_train_config

    argv = ["train", "--objective", "dl2pa", "--set",
            "head_kwargs={dim: 3, initial_assignment: random, assignments_per_epoch: 0.5}"]
    cfg = build_train_config(build_parser().parse_args(argv))[0]
    assert cfg.head_kwargs == {"dim": 3, "initial_assignment": "random", "assignments_per_epoch": 0.5}
    head = HypersphericalPrototypeHead(8, 10, steps=20, **cfg.head_kwargs)
    assert head.assignments_per_epoch == 0.5 and head.initial_assignment == "random"
    bad = ["train", "--objective", "dl2pa", "--set", "head_kwargs={warmup_iterations: 5, initial_assignment: identity}"]
    kwargs = build_train_config(build_parser().parse_args(bad))[0].head_kwargs
    with pytest.raises(ValueError, match=r"`warmup_iterations` is only used with initial_assignment='class_means'"):
        HypersphericalPrototypeHead(8, 10, steps=20, **kwargs)


def test_presets_start_dl2pa_from_class_means_and_hpn_from_a_fixed_assignment():
    from neuralcollapse.training.presets import expand_objective

    assert expand_objective("dl2pa")["head_kwargs"] == {}  # the head's defaults: class_means, W = 1, ν = 1
    assert expand_objective("hpn")["head_kwargs"] == {"method": "hpn", "initial_assignment": "identity"}
    assert expand_objective("hpn")["reassign_every"] == 0


SETTINGS = dict(epochs=3, batch_size=64, lr=0.05, schedule="constant", model_kwargs={"hidden": [32]},
                head_kwargs={"dim": 3}, deterministic=True, progress=False, plots=False, tensorboard=False,
                nc_every=0, train_subset=384)


@pytest.mark.slow
def test_metrics_log_and_resume_keep_the_changed_assignment(tmp_path):
    from neuralcollapse.cli import main
    from neuralcollapse.training import TrainConfig, fit
    from neuralcollapse.training.config import merge_settings
    from neuralcollapse.training.presets import expand_objective

    def config(epochs, out):
        cfg = merge_settings(TrainConfig(**SETTINGS), expand_objective("dl2pa"))
        return cfg.replace(epochs=epochs, out=str(out), head_kwargs={"dim": 3})

    full = fit(config(3, tmp_path / "full"))
    rows = json.loads((full.run_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    first = rows[0]
    assert first["dl2pa/reassigned"] >= 1  # the class-means solve after the first batch moved classes
    assert sorted(first["dl2pa/assignment"]) == list(range(10)) and first["dl2pa/assignment"] != list(range(10))
    assert 0 < first["dl2pa/matching_cosine"] <= 10
    assert all("dl2pa/reassigned" in r and "dl2pa/assignment" in r for r in rows)

    part = fit(config(2, tmp_path / "part"))
    assert part.history[1]["dl2pa/assignment"] == rows[1]["dl2pa/assignment"]
    assert main(["train", "--resume", str(tmp_path / "part"), "--epochs", "3", "--no-progress"]) == 0
    resumed_rows = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert resumed_rows == rows  # every logged value, the assignment and matching cosine included
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    keys = [k for k in a if k.split(".")[-1] in ("assignment", "representatives", "observed", "num_updates",
                                                  "assignment_pending")]
    assert len(keys) == 5
    for key in keys:
        assert torch.equal(a[key], b[key]), key
    assignment = next(v for k, v in a.items() if k.endswith(".assignment"))
    assert assignment.tolist() == rows[-1]["dl2pa/assignment"] != list(range(10))
