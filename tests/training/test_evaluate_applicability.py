"""``evaluate`` flags the OOD detectors whose assumptions the model's features violate (and warns)."""

from __future__ import annotations

import json

import pytest

from neuralcollapse.cli import main
from neuralcollapse.training import TrainConfig, fit
from neuralcollapse.training.config import merge_settings
from neuralcollapse.training.presets import expand_objective


@pytest.fixture(scope="module")
def cosine_run(tmp_path_factory):
    # NTCE: a cosine head, so the extracted features are post-ReLU features normalised to unit norm
    out = tmp_path_factory.mktemp("eval-cos") / "run"
    cfg = merge_settings(TrainConfig(epochs=1, progress=False, plots=False, tensorboard=False, nc_every=0,
                                     model_kwargs={"hidden": [16]}, out=str(out)), expand_objective("ntce"))
    return fit(cfg)


def test_evaluate_warns_about_inapplicable_detectors(cosine_run, capsys, tmp_path):
    assert main(["evaluate", "--checkpoint", str(cosine_run.run_dir), "--ood", "uniform",
                 "--detectors", "msp", "dice", "scale", "--device", "cpu", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: {name} assumes features whose magnitude varies (not normalised); every feature vector has "
        "norm 1 (normalised features); its scores are not meaningful for this model (reports mark it † and leave "
        "it out of the mean)" for name in ("dice", "scale")
    ]
    assert "dice †" in out and "scale †" in out and "msp †" not in out
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert set(saved["ood"]) == {"msp", "dice", "scale"}  # still evaluated, only flagged
    assert set(saved["ood_inapplicable"]) == {"dice", "scale"}
    assert saved["ood_inapplicable"]["dice"].startswith("dice assumes features whose magnitude varies")
