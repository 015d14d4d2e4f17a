import json

import pytest

pytest.importorskip("lightning")

from neuralcollapse.cli import main
from neuralcollapse.experiments.compare import CompareSettings, run_compare


@pytest.mark.slow
def test_compare_end_to_end_then_resume_skips(tmp_path):
    out = tmp_path / "cmp"
    settings = CompareSettings(objectives=["ce", "ce+occe"], seeds=1, epochs=1, detectors=["msp", "knn"],
                               deepfool_samples=8, out=out)
    lines: list[str] = []
    md = run_compare(settings, log=lines.append)
    analysis = json.loads((out / "ce-plus-occe" / "seed0" / "analysis.json").read_text())
    assert analysis["objective"] == "ce+occe" and analysis["seed"] == 0
    assert 0.5 < analysis["summary"]["test_accuracy"] <= 1.0  # 10 classes: chance is 0.1
    assert set(analysis["ood"]) == {"msp", "knn", "mean"} and analysis["ood_set"] == "digits-ood"
    assert analysis["osr_units"] == "fraction" and 0 <= analysis["osr"]["error"] <= 1
    assert analysis["osr"]["oscr"] <= 1 - analysis["osr"]["error"] + 1e-9  # OSCR <= closed-set accuracy
    assert 0 < analysis["latent"]["deepfool_boundary_ratio"] <= analysis["latent"]["deepfool_ratio"] + 1e-9
    assert analysis["latent"]["deepfool_ratio"] > 0
    text = md.read_text()
    assert "| ce+occe | 1 |" in text and (out / "report" / "report.html").is_file()
    assert f"Command: `neuralcollapse compare --objectives ce,ce+occe --seeds 1 --epochs 1 --detectors msp,knn " \
           f"--deepfool-samples 8 --out {out}`" in text
    assert "seed 0." in text and "seeds 0–0" not in text
    # second call: every run is finished, nothing retrains
    lines.clear()
    run_compare(settings, log=lines.append)
    assert sum("done, skipped" in line for line in lines) == 2


def test_compare_and_report_cli_errors(tmp_path, capsys):
    assert main(["compare", "--objectives", "ce,nosuchloss", "--seeds", "1", "--out", str(tmp_path)]) == 2
    assert "unknown objective 'nosuchloss'" in capsys.readouterr().err
    assert main(["compare", "--objectives", "ce", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "`seeds` must be a positive int" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
