"""``neuralcollapse report RUN`` on a plain ``train`` run: analysed on demand, or told how."""

from __future__ import annotations

import functools
import json

import pytest

pytest.importorskip("lightning")

from neuralcollapse.cli import main
from neuralcollapse.experiments import analysis
from neuralcollapse.training import TrainConfig, fit


@pytest.fixture
def plain_run(tmp_path):
    return fit(TrainConfig(epochs=1, progress=False, plots=False, tensorboard=False, nc_every=0,
                           model_kwargs={"hidden": [16]}, out=str(tmp_path / "plain"))).run_dir


@pytest.mark.slow
def test_report_analyses_a_plain_train_run(plain_run, tmp_path, capsys, monkeypatch):
    # the CLI's analysis with fewer detectors and DeepFool samples, to stay fast
    monkeypatch.setattr(analysis, "analyze_missing", functools.partial(
        analysis.analyze_missing, detectors=["msp", "dice"], deepfool_samples=8))
    assert main(["report", str(plain_run), "--no-analyze"]) == 2
    err = capsys.readouterr().err
    assert f"`neuralcollapse report {plain_run}` analyses the trained runs there" in err

    assert main(["report", str(plain_run), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert f"analysing {plain_run} (no analysis.json yet)" in out
    assert "OOD detection against digits-ood" in out
    result = json.loads((plain_run / "analysis.json").read_text())
    assert result["objective"] == "ce+occe" and result["ood_set"] == "digits-ood"  # the trainer's default
    assert set(result["ood"]) == {"msp", "dice", "mean"} and result["ood_inapplicable"] == {}
    assert result["ood"]["mean"] == pytest.approx((result["ood"]["msp"] + result["ood"]["dice"]) / 2)
    assert 0 < result["latent"]["deepfool_boundary_ratio"] <= result["latent"]["deepfool_ratio"] + 1e-9
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| ce+occe | 1 |" in text and "OOD detection AUROC, ID test vs digits-ood" in text

    # a second report finds analysis.json and analyses nothing
    assert main(["report", str(plain_run), "--out", str(tmp_path / "rep2")]) == 0
    assert "analysing" not in capsys.readouterr().out


def test_report_on_a_folder_without_runs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no analysis.json (analysed runs) and no checkpoints/last.ckpt (trained runs)" in err
    assert "neuralcollapse train --out" in err


def test_analyze_missing_skips_open_set_runs_in_a_search(tmp_path):
    (tmp_path / "osr" / "checkpoints").mkdir(parents=True)
    (tmp_path / "osr" / "checkpoints" / "last.ckpt").write_bytes(b"")
    (tmp_path / "osr" / "config.yaml").write_text("osr_known: 6\n")
    with pytest.raises(FileNotFoundError, match="no runs under"):
        analysis.analyze_missing([tmp_path])
