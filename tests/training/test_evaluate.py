"""``neuralcollapse evaluate``: closed-set accuracy, OOD detection and open-set metrics of a checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from sklearn.metrics import roc_auc_score

from neuralcollapse.cli import main
from neuralcollapse.training import TrainConfig, fit
from neuralcollapse.training.config import merge_settings
from neuralcollapse.training.presets import expand_objective


@pytest.fixture(scope="module")
def osr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    cfg = merge_settings(TrainConfig(epochs=2, lr=0.1, progress=False, plots=False, tensorboard=False,
                                     model_kwargs={"hidden": [48]}, osr_known=6, out=str(out)),
                         expand_objective("dual"))
    return fit(cfg)


def _msp(module, x):
    with torch.no_grad():
        return module(x).logits.softmax(dim=1).amax(dim=1)


def test_evaluate_report_matches_independent_computation(osr_run):
    from neuralcollapse import data
    from neuralcollapse.data.splits import ood_pair, open_set_split
    from neuralcollapse.training.evaluation import evaluate_checkpoint, load_module

    report = evaluate_checkpoint(osr_run.run_dir, ood=["gaussian"], osr=True,
                                 detectors=["msp", "ebo", "knn", "vim", "odin"], device="cpu")
    assert report["epoch"] == 2
    assert report["closed_set"]["accuracy"] == pytest.approx(osr_run.metrics["test/acc"], abs=1e-9)
    assert set(report["ood"]) == {"msp", "ebo", "knn", "vim", "odin"}
    assert set(report["open_set"]) == {"known_classes", "known_names", "unknown_names", "msp", "occe_head", "combined"}
    assert report["open_set"]["known_names"] == [str(c) for c in report["open_set"]["known_classes"]]  # digits
    saved = json.loads((osr_run.run_dir / "evaluation.json").read_text())
    assert saved["open_set"] == report["open_set"]

    # Independent path: rebuild the split and the scores by hand, AUROC from scikit-learn.
    module, _, _ = load_module(osr_run.run_dir, "cpu")
    osr = open_set_split(data.create("digits"), num_known=6, seed=0)
    s_known, s_unknown = _msp(module, osr.closed.test_x), _msp(module, osr.unknown_x)
    labels = [1] * len(s_known) + [0] * len(s_unknown)
    expected = roc_auc_score(labels, torch.cat([s_known, s_unknown]).numpy())
    assert report["open_set"]["msp"]["auroc"] == pytest.approx(expected, abs=1e-9)
    assert report["open_set"]["known_classes"] == osr.known_classes
    for name in ("msp", "occe_head", "combined"):
        values = report["open_set"][name]
        assert 0 <= values["oscr"] <= 1 - values["error"] + 1e-12  # OSCR ≤ closed-set accuracy
    pair = ood_pair(osr.closed, "gaussian", seed=0)
    s_ood = _msp(module, pair.ood_x)
    expected = roc_auc_score([1] * len(s_known) + [0] * len(s_ood), torch.cat([s_known, s_ood]).numpy())
    assert report["ood"]["msp"]["gaussian"]["auroc"] == pytest.approx(expected, abs=1e-9)


def test_evaluate_cli_table_and_errors(osr_run, capsys, tmp_path):
    assert main(["evaluate", "--checkpoint", str(osr_run.run_dir), "--ood", "uniform", "--detectors", "msp",
                 "--device", "cpu", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "closed-set accuracy" in out and "msp" in out and (tmp_path / "evaluation.json").is_file()
    assert main(["evaluate", "--checkpoint", str(osr_run.run_dir), "--ood", "uniform", "--detectors", "mspp"]) == 2
    assert "unknown" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_osr_flag_needs_an_open_set_run(tmp_path):
    from neuralcollapse.training.evaluation import evaluate_checkpoint

    run = fit(TrainConfig(epochs=1, progress=False, plots=False, tensorboard=False, nc_every=0,
                          model_kwargs={"hidden": [16]}, out=str(tmp_path / "closed")))
    with pytest.raises(ValueError, match="--osr needs a run trained on known classes"):
        evaluate_checkpoint(run.run_dir, osr=True)


def test_a_detector_with_non_finite_scores_is_skipped_not_fatal(osr_run, monkeypatch):
    """One detector overflowing on one sample (seen with an LPC head on Fashion-MNIST) is listed under
    ``ood_skipped`` with the count; the other detectors are still evaluated."""
    from neuralcollapse import ood
    from neuralcollapse.ood.base import Detector, Requires
    from neuralcollapse.training.evaluation import evaluate_checkpoint

    class OneNaN(Detector):
        requires = Requires(fit=(), score=("logits",))

        def _score(self, *, logits):
            s = logits.amax(dim=1).clone()
            s[0] = float("nan")
            return s

    name = "test_one_nan"
    OneNaN.name = name
    # registered for this test only (the registry is process-wide)
    monkeypatch.setitem(ood.DETECTORS._entries, name, OneNaN)
    report = evaluate_checkpoint(osr_run.run_dir, ood=["gaussian"], detectors=["msp", name], device="cpu")
    assert set(report["ood"]) == {"msp"}
    assert "non-finite scores for 1 of" in report["ood_skipped"][name]
