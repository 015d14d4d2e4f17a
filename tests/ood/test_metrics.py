"""ood.evaluate against scikit-learn (the reference OpenOOD and pytorch-ood call) and hand-computed curves."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from neuralcollapse import ood


def sklearn_reference(s_id, s_ood):
    """OpenOOD v1.5 ``auc_and_fpr_recall`` plus the ID-positive FPR@95, without drop_intermediate."""
    y_ood = np.r_[np.zeros(len(s_id)), np.ones(len(s_ood))]
    conf = np.r_[s_id, s_ood]
    fpr, tpr, _ = skm.roc_curve(y_ood, -conf, drop_intermediate=False)
    p_in, r_in, _ = skm.precision_recall_curve(1 - y_ood, conf)
    p_out, r_out, _ = skm.precision_recall_curve(y_ood, -conf)
    fpr_i, tpr_i, _ = skm.roc_curve(1 - y_ood, conf, drop_intermediate=False)
    return {
        "auroc": skm.auc(fpr, tpr),
        "aupr_in": skm.auc(r_in, p_in),
        "aupr_out": skm.auc(r_out, p_out),
        "fpr95": fpr[np.argmax(tpr >= 0.95)],
        "fpr95_id": fpr_i[np.argmax(tpr_i >= 0.95)],
    }


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_against_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    s_id = rng.normal(1.0, 1.0, size=rng.integers(5, 300))
    s_ood = rng.normal(0.0, 1.5, size=rng.integers(5, 300))
    if ties:
        s_id, s_ood = np.round(s_id, 0), np.round(s_ood, 0)
    got = ood.evaluate(torch.tensor(s_id), torch.tensor(s_ood))
    ref = sklearn_reference(s_id, s_ood)
    assert set(got) == {"auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_id"}
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(np.r_[np.ones(len(s_id)), np.zeros(len(s_ood))],
                                                           np.r_[s_id, s_ood]), abs=1e-12)


def test_openood_default_roc_without_ties():
    # OpenOOD reads FPR@95 off roc_curve(drop_intermediate=True); with distinct scores nothing differs
    rng = np.random.default_rng(5)
    s_id, s_ood = rng.normal(1, 1, 200), rng.normal(0, 1, 150)
    y_ood = np.r_[np.zeros(200), np.ones(150)]
    fpr, tpr, _ = skm.roc_curve(y_ood, -np.r_[s_id, s_ood])
    assert ood.evaluate(s_id, s_ood)["fpr95"] == fpr[np.argmax(tpr >= 0.95)]


def test_hand_curve_with_ties():
    # ID {1, 1, 0}, OOD {1, 0}: AUROC = (2 wins + ½·3 ties)/6
    m = ood.evaluate([1.0, 1.0, 0.0], [1.0, 0.0])
    assert m["auroc"] == pytest.approx(3.5 / 6)
    # ID positive: thresholds 1 -> (R 2/3, P 2/3), 0 -> (R 1, P 3/5); start (0, 1); trapezoids
    assert m["aupr_in"] == pytest.approx(2 / 3 * (1 + 2 / 3) / 2 + 1 / 3 * (2 / 3 + 3 / 5) / 2)
    # not average precision, Σ ΔR·P = 2/3·2/3 + 1/3·3/5
    assert m["aupr_in"] != pytest.approx(2 / 3 * 2 / 3 + 1 / 3 * 3 / 5)
    # OOD positive with −s: thresholds 0 (s = 0: OOD 1, ID 1) -> (R 1/2, P 1/2), −1 -> (R 1, P 2/5)
    assert m["aupr_out"] == pytest.approx(1 / 2 * (1 + 1 / 2) / 2 + 1 / 2 * (1 / 2 + 2 / 5) / 2)


def test_fpr95_both_conventions_hand_case():
    # 20 OOD: 19 low scores and one at 10; 20 ID at 1..20
    s_ood = np.r_[np.linspace(0.0, 0.18, 19), 10.0]
    s_id = np.arange(1.0, 21.0)
    m = ood.evaluate(s_id, s_ood)
    # OpenOOD: flagging 19/20 OOD (s <= 0.18) flags no ID sample
    assert m["fpr95"] == 0.0
    # classic: accepting 19/20 ID (s >= 2) accepts the OOD sample at 10
    assert m["fpr95_id"] == pytest.approx(1 / 20)


def test_perfect_and_reversed():
    m = ood.evaluate([3.0, 4.0], [1.0, 2.0])
    assert m == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0, "fpr95_id": 0.0}
    r = ood.evaluate([1.0, 2.0], [3.0, 4.0])
    assert r["auroc"] == 0.0 and r["fpr95"] == 1.0 and r["fpr95_id"] == 1.0


def test_constant_scores():
    m = ood.evaluate(np.zeros(3), np.zeros(5))
    assert m["auroc"] == 0.5
    assert m["aupr_in"] == pytest.approx((1 + 3 / 8) / 2)  # one point at recall 1, precision 3/8
    assert m["fpr95"] == 1.0 and m["fpr95_id"] == 1.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=25), st.lists(st.integers(-3, 3), min_size=1, max_size=25))
def test_properties(ids, oods):
    s_id, s_ood = np.array(ids, dtype=float), np.array(oods, dtype=float)
    m = ood.evaluate(s_id, s_ood)
    # AUROC = P(s_id > s_ood) + ½ P(tie)
    wins = (s_id[:, None] > s_ood[None, :]).mean() + 0.5 * (s_id[:, None] == s_ood[None, :]).mean()
    assert m["auroc"] == pytest.approx(wins, abs=1e-12)
    for v in m.values():
        assert 0.0 <= v <= 1.0
    # swapping roles mirrors AUROC and the AUPRs
    swapped = ood.evaluate(-s_ood, -s_id)
    assert swapped["auroc"] == pytest.approx(m["auroc"], abs=1e-12)
    assert swapped["aupr_in"] == pytest.approx(m["aupr_out"], abs=1e-12)
    assert swapped["fpr95"] == pytest.approx(m["fpr95_id"], abs=1e-12)
    # invariant under strictly increasing transforms
    shifted = ood.evaluate(np.exp(s_id), np.exp(s_ood))
    for key in m:
        assert shifted[key] == pytest.approx(m[key], abs=1e-12)


def test_inputs_accepted_and_unchanged():
    s_id = torch.tensor([0.3, 0.9], dtype=torch.bfloat16)
    s_ood = np.array([0.1, 0.5], dtype=np.float32)
    before = s_ood.copy()
    m = ood.evaluate(s_id, s_ood)
    assert m["auroc"] == 0.75
    np.testing.assert_array_equal(s_ood, before)
    assert ood.evaluate([1, 2], [0, 1])["auroc"] == ood.evaluate([1.0, 2.0], [0.0, 1.0])["auroc"]


def test_errors_named():
    with pytest.raises(ValueError, match="`id_scores` contains 1 NaN or Inf"):
        ood.evaluate([0.1, float("nan")], [0.2])
    with pytest.raises(ValueError, match="`ood_scores` contains 1 NaN or Inf"):
        ood.evaluate([0.1], torch.tensor([float("inf")]))
    with pytest.raises(ValueError, match="`ood_scores` is empty"):
        ood.evaluate([0.1], [])
    with pytest.raises(ValueError, match="`id_scores` must be 1-D"):
        ood.evaluate(np.zeros((2, 2)), [0.1])
    with pytest.raises(TypeError, match="`id_scores` must be numeric"):
        ood.evaluate(["a", "b"], [0.1])
    with pytest.raises(TypeError, match="`ood_scores` must be a torch.Tensor or numpy array"):
        ood.evaluate([0.1], 0.3)
