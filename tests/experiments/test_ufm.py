import math

import pytest

from neuralcollapse.experiments import UFMResult, iterations_to_reach, simulate_ufm


def test_ufm_records_on_schedule_and_learns():
    r = simulate_ufm("ce", num_classes=4, dim=8, samples_per_class=5, iterations=60, record_every=20, lr=0.1)
    assert r.iterations == [0, 20, 40, 60]
    assert set(r.history) >= {"loss", "accuracy", "nc1", "nc2", "nc3"}
    assert all(len(v) == 4 for v in r.history.values())
    assert r.history["loss"][-1] < r.history["loss"][0]
    assert r.final["accuracy"] == 1.0
    assert r.objective == "ce" and r.config["dim"] == 8


def test_ufm_occe_collapses_more_than_ce_at_equal_iterations():
    # OCCE paper's claim, in the unconstrained-feature model: CE + OCCE reaches lower NC1 than CE alone.
    kw = dict(num_classes=5, dim=10, samples_per_class=6, iterations=300, record_every=300, seed=1)
    ce = simulate_ufm("ce", **kw)
    occe = simulate_ufm("ce+occe", **kw)
    assert occe.final["nc1"] < 0.5 * ce.final["nc1"]


def test_ufm_is_deterministic_under_seed():
    a = simulate_ufm("ntce", head="cosine", num_classes=3, dim=4, samples_per_class=4, iterations=20, record_every=10)
    b = simulate_ufm("ntce", head="cosine", num_classes=3, dim=4, samples_per_class=4, iterations=20, record_every=10)
    assert a.history == b.history


def test_iterations_to_reach():
    r = UFMResult("ce", "linear", [0, 10, 20], {"nc1": [1.0, 0.2, 0.05]})
    assert iterations_to_reach(r, "nc1", 0.1) == 20
    assert iterations_to_reach(r, "nc1", 0.01) is None
    with pytest.raises(ValueError, match="`metric` must be one of"):
        iterations_to_reach(r, "nc9", 0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, "`num_classes` must be >= 2"),
        ({"dim": 0}, "`dim` must be a positive int"),
        ({"iterations": -1}, "`iterations` must be a non-negative int"),
        ({"lr": 0.0}, "`lr` must be > 0"),
        ({"weight_decay": -1.0}, "`weight_decay` must be >= 0"),
    ],
)
def test_ufm_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_ufm("ce", **kwargs)


def test_ufm_unknown_objective_lists_terms():
    with pytest.raises(ValueError, match="unknown loss term 'cee'"):
        simulate_ufm("cee", iterations=1)
    assert math.isfinite(simulate_ufm("ce", num_classes=2, dim=2, samples_per_class=2, iterations=0).final["nc1"])
