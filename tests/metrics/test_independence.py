"""Independence deficit (Feng et al. 2022; docs/methods.md §2.9) against a direct loop written from Feng's
``feature_projection`` / ``run_cls_dim.py`` and on constructed low-rank cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralcollapse.metrics import IndependenceDeficit, independence_deficit


def _loop_reference(acts, labels, weight=None, bias=None, recenter=False):
    """Accuracy after projecting onto the top-k principal directions, one k at a time, one direction at a
    time (Feng's ``feature_projection``), in NumPy float64."""
    a = np.asarray(acts, dtype=np.float64)
    y = np.asarray(labels)
    mean = a.mean(axis=0)
    cov = (a - mean).T @ (a - mean) / len(a)
    _, evecs = np.linalg.eigh(cov)
    evecs = evecs[:, ::-1]

    def classify(z):
        out = z if weight is None else z @ np.asarray(weight, dtype=np.float64).T
        return out if bias is None else out + np.asarray(bias, dtype=np.float64)

    full = np.mean(classify(a).argmax(axis=1) == y)
    src = a - mean if recenter else a
    accs = []
    for k in range(1, a.shape[1] + 1):
        proj = np.zeros_like(a)
        for j in range(k):
            v = evecs[:, j : j + 1]
            proj += (src @ v) * v.T
        if recenter:
            proj = proj + mean
        accs.append(np.mean(classify(proj).argmax(axis=1) == y))
    return full, np.array(accs)


def _noisy_labels(logits, rng, flip=0.2):
    y = logits.argmax(dim=1).clone()
    flips = torch.from_numpy(rng.random(len(y)) < flip)
    y[flips] = torch.from_numpy(rng.integers(0, logits.shape[1], int(flips.sum())))
    return y


@pytest.mark.parametrize("recenter", [False, True])
def test_logit_layer_matches_loop(rng, recenter):
    logits = torch.from_numpy(rng.normal(size=(120, 7)) @ rng.normal(size=(7, 7)))
    y = _noisy_labels(logits, rng)
    res = independence_deficit(logits, y, recenter=recenter)
    full, accs = _loop_reference(logits.numpy(), y.numpy(), recenter=recenter)
    assert res.full_accuracy == pytest.approx(full)
    np.testing.assert_allclose(res.accuracy.numpy(), accs, atol=1e-12)
    np.testing.assert_allclose(res.ratio.numpy(), accs / full, atol=1e-12)
    for rho, k in res.dims.items():
        hits = np.nonzero(accs / full >= rho)[0]
        assert k == (int(hits[0]) + 1 if hits.size else None)


@pytest.mark.parametrize("recenter", [False, True])
def test_feature_layer_matches_loop(rng, recenter):
    feats = torch.from_numpy(rng.normal(size=(100, 9)) * np.linspace(3, 0.2, 9))
    w = torch.from_numpy(rng.normal(size=(5, 9)))
    b = torch.from_numpy(rng.normal(size=5))
    y = _noisy_labels(feats @ w.T + b, rng)
    res = independence_deficit(feats, y, layer="features", weight=w, bias=b, recenter=recenter)
    full, accs = _loop_reference(feats.numpy(), y.numpy(), w.numpy(), b.numpy(), recenter)
    assert res.full_accuracy == pytest.approx(full)
    np.testing.assert_allclose(res.accuracy.numpy(), accs, atol=1e-12)
    assert res.ratio.shape == (9,)


@pytest.mark.parametrize("rank", [1, 3, 5])
def test_rank_r_logits_reach_full_accuracy_at_k_equal_r(rng, rank):
    # logits in an r-dimensional subspace through the origin: the top-r principal directions span it, so
    # the uncentred projection reproduces the logits exactly from k = r on
    logits = torch.from_numpy(rng.normal(size=(200, rank)) @ rng.normal(size=(rank, 8)))
    y = logits.argmax(dim=1)
    res = independence_deficit(logits, y, ratios=(0.5, 1.0))
    assert res.full_accuracy == 1.0
    assert torch.all(res.ratio[rank - 1 :] == 1.0)
    assert res.dims[1.0] is not None and res.dims[1.0] <= rank
    assert res.dims[0.5] <= res.dims[1.0]
    assert torch.all(res.eigenvalues[rank:] < 1e-10 * res.eigenvalues[0])
    assert torch.all(res.eigenvalues[:-1] >= res.eigenvalues[1:])  # decreasing


def test_identity_classifier_equals_logit_layer(rng):
    logits = torch.from_numpy(rng.normal(size=(80, 5)))
    y = _noisy_labels(logits, rng)
    a = independence_deficit(logits, y)
    b = independence_deficit(logits, y, layer="features", weight=torch.eye(5, dtype=torch.float64))
    assert torch.equal(a.accuracy, b.accuracy) and a.dims == b.dims


def test_dim_for_and_result_type(rng):
    logits = torch.from_numpy(rng.normal(size=(60, 4)))
    res = independence_deficit(logits, logits.argmax(dim=1), ratios=(0.9,))
    assert isinstance(res, IndependenceDeficit)
    assert res.dim_for(0.9) == res.dims[0.9]
    k = res.dim_for(0.75)
    assert res.ratio[k - 1] >= 0.75 and (k == 1 or float(res.ratio[: k - 1].max()) < 0.75)
    assert res.dim_for(2.0) is None


def test_low_precision_and_large_logits_stay_finite(rng):
    logits = torch.from_numpy(rng.normal(size=(64, 6)) * 1e4)
    y = logits.argmax(dim=1)
    big = independence_deficit(logits, y)
    assert torch.isfinite(big.ratio).all() and big.ratio[-1] == 1.0
    low = independence_deficit(logits.bfloat16(), y)
    assert torch.isfinite(low.ratio).all()


def test_inputs_unchanged(rng):
    feats = torch.from_numpy(rng.normal(size=(30, 4)))
    w = torch.from_numpy(rng.normal(size=(3, 4)))
    y = (feats @ w.T).argmax(dim=1)
    copies = [t.clone() for t in (feats, w, y)]
    independence_deficit(feats, y, layer="features", weight=w, recenter=True)
    assert all(torch.equal(a, b) for a, b in zip((feats, w, y), copies))


def test_bad_input(rng):
    logits = torch.from_numpy(rng.normal(size=(20, 4)))
    y = logits.argmax(dim=1)
    with pytest.raises(ValueError, match="at least 2 classes"):
        independence_deficit(logits[:, :1], torch.zeros(20, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`labels` must hold class indices in \[0, 4\)"):
        independence_deficit(logits, y + 4)
    with pytest.raises(ValueError, match="`labels` must have length 20"):
        independence_deficit(logits, y[:5])
    with pytest.raises(ValueError, match=r"`ratios` must hold fractions in \(0, 1\]"):
        independence_deficit(logits, y, ratios=(0.5, 1.2))
    with pytest.raises(ValueError, match=r"`ratios`"):
        independence_deficit(logits, y, ratios=(0.0,))
    with pytest.raises(ValueError, match="`weight` .* is required"):
        independence_deficit(logits, y, layer="features")
    with pytest.raises(ValueError, match="only used with layer='features'"):
        independence_deficit(logits, y, weight=torch.eye(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="`weight` must have 4 columns"):
        independence_deficit(logits, y, layer="features", weight=torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="`bias` must have 4 entries"):
        independence_deficit(logits, y, layer="features", weight=torch.eye(4, dtype=torch.float64), bias=torch.zeros(3))
    with pytest.raises(ValueError, match="`layer` must be one of"):
        independence_deficit(logits, y, layer="penultimate")
    with pytest.raises(ValueError, match="classify no sample correctly"):
        independence_deficit(logits, (y + 1) % 4)
    nan = logits.clone()
    nan[1, 1] = float("nan")
    with pytest.raises(ValueError, match="`acts` contains 1 NaN"):
        independence_deficit(nan, y)
    with pytest.raises(TypeError, match="`labels` must be an integer tensor"):
        independence_deficit(logits, y.float())
