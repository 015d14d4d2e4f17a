import json

import numpy as np
import pytest

from neuralcollapse.experiments.report import aggregate, format_mean_std, load_runs, markdown_table, write_report


def _fake_run(folder, objective, seed, acc, nc1, ood):
    folder.mkdir(parents=True)
    analysis = {
        "objective": objective,
        "seed": seed,
        "ood_set": "digits-ood",
        "summary": {"test_accuracy": acc, "nc1": nc1, "nc2": None},
        "latent": {"separation_ratio": 2.0 + seed},
        "independence": {"k80": 3, "k90": 5},
        "ood": {"msp": ood, "knn": ood + 0.01, "mean": ood + 0.005},
        "osr": {"error": 10.0, "oscr": 70.0 + seed, "auroc": 80.0},
    }
    (folder / "analysis.json").write_text(json.dumps(analysis))
    rows = ["epoch,train/loss,test/acc,train_nc/nc1"]
    rows += [f"{e},{1 / e},{acc * e / 3},{nc1 * (4 - e)}" for e in (1, 2, 3)]
    (folder / "metrics.csv").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(seed)
    np.savez(folder / "analysis_arrays.npz", target_logits=rng.normal(5, 1, 50),
             nontarget_logits=rng.normal(-1, 1, 450), independence_curve=np.linspace(0.3, 1.0, 10),
             embedding=rng.normal(size=(50, 2)), embedding_labels=rng.integers(0, 10, 50))


@pytest.fixture
def runs(tmp_path):
    _fake_run(tmp_path / "ce" / "seed0", "ce", 0, 0.90, 0.5, 0.80)
    _fake_run(tmp_path / "ce" / "seed1", "ce", 1, 0.94, 0.3, 0.84)
    _fake_run(tmp_path / "occe" / "seed0", "ce+occe", 0, 0.95, 0.1, 0.86)
    return tmp_path


def test_aggregate_mean_std(runs):
    loaded = load_runs([runs])
    assert len(loaded) == 3
    agg = aggregate(loaded, "summary")
    mean, std, n = agg["ce"]["test_accuracy"]
    assert n == 2 and mean == pytest.approx(0.92) and std == pytest.approx(np.std([0.90, 0.94], ddof=1))
    assert agg["ce+occe"]["nc1"] == (0.1, 0.0, 1)
    assert "nc2" not in agg["ce"]  # None values are left out, not NaN


def test_epoch_table_read(runs):
    run = next(r for r in load_runs([runs]) if r.objective == "ce+occe")
    assert [row["epoch"] for row in run.epochs] == [1.0, 2.0, 3.0]
    assert run.epochs[-1]["test/acc"] == pytest.approx(0.95)


def test_write_report_tables_plots_and_html(runs, tmp_path):
    md = write_report([runs], tmp_path / "out", order=["ce", "ce+occe"], notes=["Command: `x`"])
    text = md.read_text()
    assert "| ce | 2 | 0.92 ± 0.02828 |" in text
    assert "| ce+occe | 1 | 0.95 |" in text
    assert "OOD detection AUROC, ID test vs digits-ood" in text
    assert "| ce | 0.83 ± 0.02828 | 0.82 ± 0.02828 | 0.825 ± 0.02828 |" in text  # knn, msp, mean
    pngs = {p.name for p in (tmp_path / "out").glob("*.png")}
    assert {"epochs_test_accuracy.png", "epochs_nc1.png", "logit_histograms.png", "independence_deficit.png",
            "embeddings.png", "ood_auroc.png"} <= pngs
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs) and "<table>" in html


def test_load_runs_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_runs([tmp_path / "missing"])
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        load_runs([tmp_path])


def test_formatting():
    assert format_mean_std(0.5, 0.1, 1) == "0.5"
    assert format_mean_std(0.5, 0.1, 3) == "0.5 ± 0.1"
    assert format_mean_std(12345.0, 0.0, 2) == "1.23e+04 ± 0"
    assert markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
