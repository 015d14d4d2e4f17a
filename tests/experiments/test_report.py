import json
import re

import numpy as np
import pytest

from neuralcollapse.experiments.compare import CompareSettings, compare_command, seeds_text
from neuralcollapse.experiments.report import (
    aggregate,
    column_decimals,
    format_mean_std,
    format_number,
    inline_html,
    load_runs,
    markdown_table,
    value_axis,
    write_report,
)


def _fake_run(folder, objective, seed, acc, nc1, ood, *, loss=None, inapplicable=None, reassigned=None,
              osr_units="fraction"):
    folder.mkdir(parents=True)
    analysis = {
        "objective": objective,
        "seed": seed,
        "ood_set": "digits-ood",
        "summary": {"test_accuracy": acc, "nc1": nc1, "nc2": None, "complementary_logit_std": 2.0 + seed,
                    "relative_logit_spread": 0.3},
        "latent": {"separation_ratio": 2.0 + seed, "deepfool_ratio": 0.2, "deepfool_boundary_ratio": 0.1},
        "independence": {"k80": 3, "k90": 5},
        # the stored mean averages every detector; the report recomputes it without the flagged ones
        "ood": {"msp": ood, "knn": ood + 0.01, "mean": ood + 0.005},
        "osr": {"error": 0.1, "oscr": 0.70 + seed / 100, "auroc": 0.80},
        "osr_units": osr_units,
    }
    if osr_units != "fraction":
        del analysis["osr_units"]
        analysis["osr"] = {k: 100 * v for k, v in analysis["osr"].items()}
    if inapplicable:
        analysis["ood_inapplicable"] = inapplicable
    (folder / "analysis.json").write_text(json.dumps(analysis))
    loss = loss or [1 / e for e in (1, 2, 3)]
    extra = "" if reassigned is None else ",dl2pa/reassigned"
    rows = ["epoch,train/loss,test/acc,train_nc/nc1" + extra]
    rows += [f"{e},{loss[e - 1]},{acc * e / 3},{nc1 * (4 - e)}" + (f",{reassigned[e - 1]}" if extra else "")
             for e in (1, 2, 3)]
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


NONL_WHY = ("knn assumes features whose magnitude varies (not normalised); every feature vector has norm 1 "
            "(normalised features)")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """CE (2 seeds), NONL with a negative loss and a flagged detector (1 seed), DL2PA logging re-assignments."""
    root = tmp_path_factory.mktemp("mixed")
    _fake_run(root / "ce" / "seed0", "ce", 0, 0.90, 0.5, 0.80)
    _fake_run(root / "ce" / "seed1", "ce", 1, 0.94, 0.3, 0.84)
    _fake_run(root / "nonl" / "seed0", "nonl", 0, 0.97, 0.01, 0.60, loss=[-0.5, -0.9, -0.95],
              inapplicable={"knn": NONL_WHY})
    _fake_run(root / "dl2pa" / "seed0", "dl2pa", 0, 0.96, 0.02, 0.70, reassigned=[4, 1, 0])
    return root


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


def test_write_report_tables_and_html(runs, tmp_path):
    md = write_report([runs], tmp_path / "out", order=["ce", "ce+occe"], notes=["Command: `x --out y`"],
                      plots=False)
    text = md.read_text()
    # std of (0.90, 0.94) = 0.02828; 3 significant digits of the column's largest mean → 3 decimals
    assert "| ce | 2 | 0.920 ± 0.028 |" in text
    assert "| ce+occe | 1 | 0.950 |" in text
    assert "## Accuracy\n" in text and "## Neural collapse (training features, eval mode)" in text
    assert "OOD detection AUROC, ID test vs digits-ood" in text
    assert "| ce | 0.830 ± 0.028 | 0.820 ± 0.028 | 0.825 ± 0.028 |" in text  # knn, msp, mean
    assert "none is flagged" in text
    # open-set rates are fractions, not percent
    assert "| ER ↓ | OSCR ↑ | AUROC ↑ |" in text
    assert "| ce | 2 | 0.100 ± 0.000 | 0.705 ± 0.007 | 0.800 ± 0.000 |" in text
    assert "%" not in text
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<table>" in html and "<code>x --out y</code>" in html and "`" not in html
    assert not list((tmp_path / "out").glob("*.png"))


def test_report_plots_written_and_inlined(mixed, mixed_report):
    pngs = {p.name for p in (mixed / "report").glob("*.png")}
    assert pngs == {"epochs_test_accuracy.png", "epochs_nc1.png", "epochs_training_loss.png", "epochs_reassigned.png",
                    "logit_histograms.png", "independence_deficit.png", "embeddings.png", "ood_auroc.png"}
    html = (mixed / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs) and "`" not in html


@pytest.fixture(scope="module")
def mixed_report(mixed):
    """The mixed runs' report, written once, with every saved figure recorded by file name."""
    from matplotlib.figure import Figure

    figures: dict = {}
    original = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        figures[str(fname).rsplit("/", 1)[-1]] = self
        return original(self, fname, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", savefig)
        md = write_report([mixed], mixed / "report", order=["ce", "nonl", "dl2pa"])
    return md.read_text(), figures


def test_ood_marks_and_mean_exclusion(mixed, mixed_report, tmp_path):
    text = mixed_report[0]
    # NONL's knn (0.61) is marked and left out: its mean is msp's 0.60 alone, not (0.60 + 0.61) / 2
    assert "| nonl | 0.610† | 0.600 | 0.600 |" in text
    assert "| ce | 0.830 ± 0.028 | 0.820 ± 0.028 | 0.825 ± 0.028 |" in text  # nothing flagged: both detectors
    assert "left out of the mean" in text
    assert ("† nonl: knn assumes features whose magnitude varies (not normalised); every feature vector has norm 1 "
            "(normalised features).") in text
    # on request, the flagged detector is averaged in (and the mark stays)
    text = write_report([mixed], tmp_path / "all", ood_mean_includes_inapplicable=True, plots=False).read_text()
    assert "| nonl | 0.610† | 0.600 | 0.605 |" in text and "still averaged into the mean" in text


def test_scale_notes_and_scale_free_columns(mixed_report):
    text = mixed_report[0]
    assert "| objective | seeds | spread | relative spread |" in text
    assert "scale-free, comparable across heads" in text
    assert "| objective | seeds | DeepFool ‖r‖/‖x‖ ↑ | line-searched ‖r‖/‖x‖ ↑ |" in text
    assert "not comparable across heads" in text


def test_plots_axes_legends_and_error_bars(mixed_report):
    from matplotlib.container import ErrorbarContainer

    figures = mixed_report[1]
    loss = figures["epochs_training_loss.png"].axes[0]
    assert loss.get_yscale() == "symlog"  # NONL's loss is negative: a log axis would drop it
    assert "symmetric log axis" in loss.get_title()
    assert [line.get_label() for line in loss.get_lines()] == ["ce", "nonl", "dl2pa"]
    ticks = figures["epochs_test_accuracy.png"].axes[0].get_xticks()
    assert np.allclose(ticks, np.round(ticks))  # integer epoch ticks
    assert figures["epochs_nc1.png"].axes[0].get_yscale() == "log"
    # coinciding lines stay distinguishable: distinct markers and line styles, earlier lines wider
    lines = figures["epochs_nc1.png"].axes[0].get_lines()
    assert len({ln.get_marker() for ln in lines}) == 3 and len({ln.get_linestyle() for ln in lines}) == 3
    assert lines[0].get_linewidth() > lines[1].get_linewidth() > lines[2].get_linewidth()
    # one std band: only CE has two seeds
    assert len(figures["epochs_nc1.png"].axes[0].collections) == 1

    reassigned = figures["epochs_reassigned.png"].axes[0]
    assert [line.get_label() for line in reassigned.get_lines()] == ["dl2pa"]
    assert list(reassigned.get_lines()[0].get_ydata()) == [4, 1, 0]
    assert reassigned.get_ylim() == (-0.5, 4.5)
    assert np.allclose(reassigned.get_yticks(), np.round(reassigned.get_yticks()))  # counts: integer ticks

    bars = figures["ood_auroc.png"].axes[0]
    assert sum(isinstance(c, ErrorbarContainer) for c in bars.containers) == 1  # CE only (2 seeds)
    assert any(list(ln.get_ydata()) == [0.5, 0.5] for ln in bars.get_lines())  # chance line
    assert bars.get_ylim()[0] <= 0.5
    legend = bars.get_legend()
    assert legend.get_bbox_to_anchor().transformed(bars.transAxes.inverted()).y1 < 0  # below the axes
    assert [t.get_text() for t in legend.get_texts()] == ["ce", "nonl", "dl2pa", "† assumptions violated"]
    assert [h.get_hatch() for h in legend.legend_handles] == [None, None, None, "///"]  # nonl's entry: plain
    assert sum(p.get_hatch() == "///" for p in bars.patches) == 1  # nonl's knn

    emb = figures["embeddings.png"]
    assert emb.legends and [t.get_text() for t in emb.legends[0].get_texts()][:2] == ["class 0", "class 1"]


def test_load_runs_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_runs([tmp_path / "missing"])
    with pytest.raises(FileNotFoundError, match=re.escape(f"`neuralcollapse report {tmp_path}` analyses")):
        load_runs([tmp_path])


def test_legacy_percent_open_set_rates_become_fractions(tmp_path):
    _fake_run(tmp_path / "old" / "seed0", "ce", 0, 0.9, 0.5, 0.8, osr_units="percent")
    run = load_runs([tmp_path])[0]
    assert run.evaluation["osr"] == pytest.approx({"error": 0.1, "oscr": 0.7, "auroc": 0.8})


def test_formatting():
    # 3 significant digits of the column's median |mean| (zeros ignored)
    assert column_decimals([0.9756, 1.0, 0.98]) == 3 and column_decimals([0.2328, 6.8e-9, 0.4]) == 3
    assert column_decimals([2.29, 13.51]) == 2 and column_decimals([0.0208, 0.0]) == 4
    assert column_decimals([13.51, 20.0, 2.29]) == 1
    assert column_decimals([0.0, 0.0]) == 2 and column_decimals([123456.0]) == 0
    # one column, one number of decimals: no bare "1", no 0.269 beside 0.2374
    d = column_decimals([0.269, 0.2374, 1.0])
    assert [format_number(x, d) for x in (0.269, 0.2374, 1.0)] == ["0.269", "0.237", "1.000"]
    assert format_number(6.8e-9, 3) == "6.80e-09" and format_number(0.0037, 3) == "3.70e-03"
    assert format_number(0.0208, 3) == "0.021" and format_number(12345678.0, 0) == "1.23e+07"
    assert format_mean_std(0.5, 0.1, 1) == "0.500"
    assert format_mean_std(0.5, 0.1, 3) == "0.500 ± 0.100"
    assert format_mean_std(0.9756, 0.005879, 3, decimals=3) == "0.976 ± 0.006"
    assert format_mean_std(1.0, 0.0, 3, decimals=3) == "1.000 ± 0.000"
    assert format_mean_std(0.9998, 4.29e-4, 3, decimals=2) == "1.00 ± 0.00"  # the column's resolution
    assert format_mean_std(5.56e-3, 1.2e-3, 2, decimals=1) == "5.56e-03 ± 1.2e-03"
    assert format_mean_std(6.8e-9, 0.0, 3, decimals=3) == "6.80e-09 ± 0"
    assert markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"


def test_html_cells_set_the_std_apart(mixed, mixed_report):
    html = (mixed / "report" / "report.html").read_text()
    assert "<td>0.610†</td>" in html  # nonl's knn, one seed
    assert "<td>0.830 <span class='sd'>± 0.028</span></td>" in html  # ce's knn, two seeds


def test_inline_html_renders_code():
    assert inline_html("Command: `a --b <c>`, see `d`") == "Command: <code>a --b &lt;c&gt;</code>, see <code>d</code>"


def test_value_axis():
    assert value_axis([2.3, 0.01, 1e-4]) == ("log", {})
    assert value_axis([2.3, -0.5, -0.95]) == ("symlog", {"linthresh": 0.1})
    assert value_axis([1.0, 0.0, 0.03]) == ("symlog", {"linthresh": 0.01})
    assert value_axis([0.0, 0.0]) == ("linear", {})
    assert value_axis([-1.0, 2.0], log=False) == ("linear", {})
    assert value_axis([1.0, -1e-12]) == ("symlog", {"linthresh": 1e-6})  # at least 1e-6 of the largest


def test_compare_notes_command_and_seeds():
    assert seeds_text(1) == "seed 0" and seeds_text(3) == "seeds 0–2"
    settings = CompareSettings(objectives=["ce", "nonl"], seeds=1, epochs=2, detectors=["msp", "knn"],
                               overrides={"batch_size": 64, "head_kwargs": {"dim": 3}}, out="/tmp/rep")
    assert compare_command(settings) == (
        "neuralcollapse compare --objectives ce,nonl --seeds 1 --epochs 2 --detectors msp,knn "
        "--set batch_size=64 --set 'head_kwargs={\"dim\": 3}' --out /tmp/rep"
    )
