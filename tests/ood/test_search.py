"""grid_search: explicit grids, first best in grid order, full table, validation sets only."""

import pytest
import torch

from neuralcollapse import ood

from .conftest import make_cache


def test_table_and_first_maximum(monkeypatch):
    c = make_cache()
    ood_feats = torch.relu(torch.randn(30, 12, generator=torch.Generator().manual_seed(5)))
    res = ood.grid_search("knn", {"k": [1, 3, 5], "backend": ["torch"]}, {"features": c["features"]},
                          {"features": c["test"]}, {"features": ood_feats})
    assert [row["k"] for row in res.table] == [1, 3, 5]
    for row in res.table:  # every row is the evaluate() of that grid point
        det = ood.create("knn", k=row["k"], backend="torch").fit(features=c["features"])
        ref = ood.evaluate(det.score(features=c["test"]), det.score(features=ood_feats))
        assert row["auroc"] == pytest.approx(ref["auroc"]) and row["backend"] == "torch"
    best = max(res.table, key=lambda r: r["auroc"])
    assert res.best_value == best["auroc"] and res.best_params["k"] == best["k"]
    assert res.detector.k == res.best_params["k"] and res.detector.is_fitted_

    # ties: the first maximum wins (OpenOOD); force equal metrics
    monkeypatch.setattr(ood.search, "evaluate", lambda a, b: dict.fromkeys(
        ("auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_id"), 0.5))
    tied = ood.grid_search("knn", {"k": [5, 1, 3]}, {"features": c["features"]}, {"features": c["test"]},
                           {"features": ood_feats}, metric="fpr95")
    assert tied.best_params == {"k": 5}


def test_minimises_fpr_and_alias():
    c = make_cache()
    noise = torch.relu(3 * torch.randn(30, 12, generator=torch.Generator().manual_seed(6)))
    res = ood.grid_search("ebo", {"temperature": [1.0, 100.0]}, {}, {"logits": c["test_logits"]},
                          {"logits": noise @ c["weight"].t()}, metric="fpr95")
    assert res.best_value == min(row["fpr95"] for row in res.table)
    assert res.metric == "fpr95"


def test_empty_grid_uses_defaults():
    c = make_cache()
    res = ood.grid_search("msp", {}, {}, {"logits": c["test_logits"]}, {"logits": -c["test_logits"]})
    assert res.best_params == {} and len(res.table) == 1


def test_errors_named():
    c = make_cache()
    args = ({"features": c["features"]}, {"features": c["test"]}, {"features": c["test"]})
    with pytest.raises(ValueError, match="`grid` key 'kk' is not a hyperparameter of 'knn'"):
        ood.grid_search("knn", {"kk": [1]}, *args)
    with pytest.raises(ValueError, match=r"`grid\['k'\]` must be a non-empty sequence"):
        ood.grid_search("knn", {"k": []}, *args)
    with pytest.raises(ValueError, match="`metric` must be one of"):
        ood.grid_search("knn", {"k": [1]}, *args, metric="accuracy")
    with pytest.raises(ValueError, match="unknown OOD detector"):
        ood.grid_search("nope", {}, *args)
    with pytest.raises(TypeError, match="`grid` must be a mapping"):
        ood.grid_search("knn", [("k", [1])], *args)
