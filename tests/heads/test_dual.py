"""Dual head (OCCE paper §3.3; docs/methods.md §2.5): the three read-outs against hand computations."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralcollapse.heads import DualHead, dual_head_probabilities, dual_head_scores


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def _reference(z, zbar):
    """Per-sample NumPy float64 loop written from the paper's definitions."""
    out = {"ce": [], "occe": [], "combined": []}
    for zi, zbi in zip(np.asarray(z, dtype=np.float64), np.asarray(zbar, dtype=np.float64)):
        p = _softmax(zi)
        q = _softmax(zbi)
        class_probs = _softmax(-zbi)
        comb = p - q / q.max()
        # argmax softmax(z) = argmax z exactly; taken on the logits so saturated probabilities cannot tie
        out["ce"].append((int(np.argmax(zi)), float(p.max()), p))
        out["occe"].append((int(np.argmin(zbi)), float(class_probs.max()), class_probs))
        out["combined"].append((int(np.argmax(comb)), float(comb.max()), comb))
    return out


def test_hand_computed_case_where_all_three_predictions_differ():
    # p = (0.5, 0.1, 0.4) and q / max q = (1, 0.01, 0.05): CE says 0, OCCE says 1, combined says 2.
    z = torch.log(torch.tensor([[0.5, 0.1, 0.4]], dtype=torch.float64))
    zbar = torch.log(torch.tensor([[1.0, 0.01, 0.05]], dtype=torch.float64))
    probs = dual_head_probabilities(z, zbar)
    torch.testing.assert_close(probs["combined"], torch.tensor([[-0.5, 0.09, 0.35]], dtype=torch.float64))
    torch.testing.assert_close(probs["ce_probs"], torch.tensor([[0.5, 0.1, 0.4]], dtype=torch.float64))
    occe = torch.tensor([[1.0, 100.0, 20.0]], dtype=torch.float64) / 121.0  # softmax(-zbar) = (1/r) / Σ(1/r)
    torch.testing.assert_close(probs["occe_probs"], occe)
    assert [dual_head_scores(z, zbar, k)[0].item() for k in ("ce", "occe", "combined")] == [0, 1, 2]
    assert dual_head_scores(z, zbar, "ce")[1].item() == pytest.approx(0.5)
    assert dual_head_scores(z, zbar, "occe")[1].item() == pytest.approx(100 / 121)
    assert dual_head_scores(z, zbar, "combined")[1].item() == pytest.approx(0.35)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 5),
    k=st.integers(2, 7),
    magnitude=st.sampled_from([1e-3, 1.0, 30.0, 1e4]),
)
def test_scores_match_numpy_reference_and_combined_range(seed, n, k, magnitude):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * magnitude
    zbar = rng.normal(size=(n, k)) * magnitude
    ref = _reference(z, zbar)
    zt, zbt = torch.tensor(z), torch.tensor(zbar)
    probs = dual_head_probabilities(zt, zbt)
    assert np.array_equal(zt.numpy(), z) and np.array_equal(zbt.numpy(), zbar)  # inputs unchanged
    for kind, key in (("ce", "ce_probs"), ("occe", "occe_probs"), ("combined", "combined")):
        pred, score = dual_head_scores(zt, zbt, kind)
        np.testing.assert_array_equal(pred.numpy(), [r[0] for r in ref[kind]])
        np.testing.assert_allclose(score.numpy(), [r[1] for r in ref[kind]], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(probs[key].numpy(), np.stack([r[2] for r in ref[kind]]), rtol=1e-12,
                                   atol=1e-12)
    combined = probs["combined"]
    assert torch.isfinite(combined).all()
    assert bool((combined >= -1).all())
    # < 1 in exact arithmetic; at logit gaps > ~37 softmax saturates to 1 and q/max q underflows to 0 in float64
    assert bool((combined.amax(dim=1) < 1).all()) if magnitude <= 1 else bool((combined <= 1).all())


def test_head_output_keeps_ce_logits_for_every_predict_kind():
    h = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    outputs = {}
    for kind in ("ce", "occe", "combined"):
        torch.manual_seed(0)
        head = DualHead(5, 3, predict=kind)
        out = head(h)
        torch.testing.assert_close(out.logits, h @ head.weight.T + head.bias, rtol=0, atol=1e-6)
        torch.testing.assert_close(out.anti_logits, h @ head.anti_weight.T + head.anti_bias, rtol=0, atol=1e-6)
        expected_pred, expected_score = dual_head_scores(out.logits, out.anti_logits, kind)
        pred, score = head.scores(out)
        assert torch.equal(pred, expected_pred) and torch.equal(score, expected_score)
        assert torch.equal(head.predict(h), expected_pred)
        outputs[kind] = out.logits
    # same initialisation seed -> identical logits whatever the read-out
    assert torch.equal(outputs["ce"], outputs["occe"]) and torch.equal(outputs["ce"], outputs["combined"])


def test_extras_are_detached_read_outs():
    head = DualHead(4, 3)
    out = head(torch.randn(2, 4))
    assert sorted(out.extras) == ["ce_probs", "combined", "occe_probs"]
    assert all(not v.requires_grad for v in out.extras.values())
    torch.testing.assert_close(out.extras["ce_probs"].sum(1), torch.ones(2))
    torch.testing.assert_close(out.extras["occe_probs"], torch.softmax(-out.anti_logits.detach(), 1))
    assert out.anti_logits.requires_grad


def test_half_precision_upcast_and_no_bias():
    z = torch.tensor([[60000.0, -60000.0]], dtype=torch.float16)
    probs = dual_head_probabilities(z, -z)
    assert probs["combined"].dtype == torch.float32
    assert torch.isfinite(probs["combined"]).all()
    head = DualHead(3, 2, bias=False)
    assert head.bias is None and head.anti_bias is None
    assert math.isclose(float(probs["combined"][0, 0]), 1.0 - math.exp(-120000.0))


def test_dual_errors():
    with pytest.raises(ValueError, match=r"`predict` must be one of 'ce', 'occe', 'combined'; got 'msp'"):
        DualHead(3, 2, predict="msp")
    with pytest.raises(ValueError, match=r"`kind` must be one of"):
        dual_head_scores(torch.zeros(1, 3), torch.zeros(1, 3), "max")
    with pytest.raises(ValueError, match=r"`anti_logits` must have the shape of `logits`"):
        dual_head_probabilities(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"`logits` must have at least 2 classes"):
        dual_head_probabilities(torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"`anti_logits` contains 1 NaN"):
        dual_head_probabilities(torch.zeros(1, 2), torch.tensor([[0.0, float("nan")]]))
    head = DualHead(3, 2)
    out = head(torch.randn(2, 3))
    out.anti_logits = None
    with pytest.raises(ValueError, match=r"`output` must carry `anti_logits`"):
        head.scores(out)
