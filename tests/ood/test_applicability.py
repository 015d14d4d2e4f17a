"""Detector.assumptions / Detector.applicable: which detectors apply to which representations."""

import pytest
import torch

from neuralcollapse import ood
from neuralcollapse.ood.base import ASSUMPTIONS, Assumption, Detector, Requires

SHAPING = {"ash", "dice", "react", "scale"}


def test_activation_shaping_detectors_declare_nonnegative_features():
    for assumption in ("nonnegative_features", "unnormalised_features"):
        assert {n for n in ood.names() if assumption in ood.get(n).assumptions} == SHAPING
    assert all(name in ASSUMPTIONS for n in ood.names() for name in ood.get(n).assumptions)


def test_negative_features_make_shaping_detectors_inapplicable():
    f = torch.tensor([[0.5, -1.0], [2.0, 0.0], [1.0, 1.0], [3.0, 0.0]])  # 1 of 8 entries < 0
    for name in ood.names():
        ok, why = ood.get(name).applicable(features=f)
        if name in SHAPING:
            assert not ok
            assert why == (f"{name} assumes non-negative (post-ReLU) features; the features have negative "
                           "entries (a fraction 0.125 of them; min -1)")
        else:
            assert (ok, why) == (True, "")


def test_nonnegative_or_missing_features_are_applicable():
    relu = torch.relu(torch.randn(20, 4, generator=torch.Generator().manual_seed(0)))
    assert ood.get("dice").applicable(features=relu) == (True, "")
    assert ood.get("dice").applicable() == (True, "")  # nothing to judge from
    assert ood.create("scale").applicable(features=relu) == (True, "")  # works on an instance too


def test_normalised_features_assumption():
    class NeedsNorms(Detector):
        name = "needs-norms"
        requires = Requires(score=("features",))
        assumptions = ("unnormalised_features",)

        def _score(self, *, features):
            return features.norm(dim=1)

    unit = torch.nn.functional.normalize(torch.randn(10, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    ok, why = NeedsNorms.applicable(features=2 * unit)
    assert not ok and why == ("needs-norms assumes features whose magnitude varies (not normalised); every "
                              "feature vector has norm 2 (normalised features)")
    scaled = unit * torch.linspace(1, 2, 10)[:, None]
    assert NeedsNorms.applicable(features=scaled) == (True, "")


def test_shaping_detectors_do_not_apply_to_normalised_nonnegative_features():
    # a cosine / prototype head: post-ReLU features normalised to the unit sphere (NONL, NTCE, DL2PA, HPN)
    relu = torch.relu(torch.randn(30, 5, generator=torch.Generator().manual_seed(2))) + 0.01
    unit = torch.nn.functional.normalize(relu, dim=1)
    for name in SHAPING:
        ok, why = ood.get(name).applicable(features=unit, head="cosine")
        assert not ok and why.endswith("every feature vector has norm 1 (normalised features)")
    assert ood.get("knn").applicable(features=unit) == (True, "")


def test_custom_assumption_sees_the_head(monkeypatch):
    monkeypatch.setitem(ASSUMPTIONS, "linear_head", Assumption(
        "a linear head", lambda f, head: None if head in (None, "linear") else f"the head is '{head}'"))

    class HeadBound(Detector):
        name = "head-bound"
        assumptions = ("linear_head",)

    assert HeadBound.applicable(head="linear") == (True, "")
    assert HeadBound.applicable(head="cosine") == (False, "head-bound assumes a linear head; the head is 'cosine'")


def test_applicable_rejects_bad_inputs():
    with pytest.raises(TypeError, match="`head`"):
        ood.get("dice").applicable(head=3)
    with pytest.raises(ValueError, match="features"):
        ood.get("dice").applicable(features=torch.ones(3))
    with pytest.raises(ValueError, match="features"):
        ood.get("dice").applicable(features=torch.tensor([[float("nan"), 1.0]]))
