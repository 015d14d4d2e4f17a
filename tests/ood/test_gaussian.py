"""Mahalanobis (MDS) and RMDS against a direct per-class NumPy float64 loop."""

import numpy as np
import pytest
import torch

from neuralcollapse import ood
from neuralcollapse.ood._utils import SCATTER_CHUNK_ROWS, pinvh64


def reference(train, labels, test):
    """Direct formula: class means, pooled MLE covariance, np.linalg.pinv, one quadratic form per sample."""
    x, y, t = train.astype(np.float64), labels, test.astype(np.float64)
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(0) for c in classes])
    centred = x - means[np.searchsorted(classes, y)]
    precision = np.linalg.pinv(centred.T @ centred / len(x))
    mu0 = x.mean(0)
    precision0 = np.linalg.pinv((x - mu0).T @ (x - mu0) / len(x))
    mds, rmds = [], []
    for f in t:
        d = [(f - m) @ precision @ (f - m) for m in means]
        d0 = (f - mu0) @ precision0 @ (f - mu0)
        mds.append(-min(d))
        rmds.append(max(-dk + d0 for dk in d))
    return np.array(mds), np.array(rmds)


@pytest.mark.parametrize("rank_deficient", [False, True])
def test_against_direct_formula(rank_deficient):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(90, 6)) + np.repeat(rng.normal(scale=3, size=(3, 6)), 30, axis=0)
    labels = np.repeat([0, 2, 5], 30)  # class indices need not be contiguous
    if rank_deficient:  # a constant feature and a duplicated one: the covariance is singular
        train[:, 4] = 1.0
        train[:, 5] = train[:, 0]
    test = rng.normal(scale=2, size=(25, 6))
    test[:, 4] = 1.0 + (0.5 if rank_deficient else 0.0)
    if rank_deficient:
        test[:, 5] = test[:, 0]
    mds_ref, rmds_ref = reference(train, labels, test)
    for dtype in (torch.float64, torch.float32):
        f, t = torch.tensor(train, dtype=dtype), torch.tensor(test, dtype=dtype)
        y = torch.tensor(labels)
        mds = ood.create("mds").fit(features=f, labels=y).score(features=t)
        rmds = ood.create("rmds").fit(features=f, labels=y).score(features=t)
        assert mds.dtype == dtype
        tol = 1e-9 if dtype == torch.float64 else 1e-4
        np.testing.assert_allclose(mds.double().numpy(), mds_ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(rmds.double().numpy(), rmds_ref, rtol=tol, atol=tol)


def test_statistics_and_chunking(monkeypatch):
    # blocks of 7 rows give the same statistics as one block
    rng = np.random.default_rng(1)
    f = torch.tensor(rng.normal(size=(50, 4)))
    y = torch.tensor(rng.integers(0, 3, size=50))
    one = ood.create("rmds").fit(features=f, labels=y)
    monkeypatch.setattr("neuralcollapse.ood._utils.SCATTER_CHUNK_ROWS", 7)
    monkeypatch.setattr("neuralcollapse.ood.mahalanobis.SCATTER_CHUNK_ROWS", 7)
    monkeypatch.setattr("neuralcollapse.ood.rmds.SCATTER_CHUNK_ROWS", 7)
    many = ood.create("rmds").fit(features=f, labels=y)
    torch.testing.assert_close(many.means_, one.means_)
    torch.testing.assert_close(many.precision_, one.precision_)
    torch.testing.assert_close(many.score(features=f), one.score(features=f))
    assert SCATTER_CHUNK_ROWS == 8192
    assert many.means_.dtype == torch.float64 and many.precision_.dtype == torch.float64


def test_pinvh64_matches_numpy():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(6, 3))
    sym = a @ a.T  # rank 3
    np.testing.assert_allclose(pinvh64(torch.tensor(sym)).numpy(), np.linalg.pinv(sym), atol=1e-10)


def test_scale_invariant_ranking():
    # Mahalanobis distances are invariant to rescaling the features (the reason float64 pinv, not a ridge)
    rng = np.random.default_rng(3)
    f = torch.tensor(rng.normal(size=(60, 5)))
    y = torch.tensor(np.arange(60) % 3)
    t = torch.tensor(rng.normal(size=(10, 5)))
    a = ood.create("mahalanobis").fit(features=f, labels=y).score(features=t)
    b = ood.create("mahalanobis").fit(features=1e-3 * f, labels=y).score(features=1e-3 * t)
    torch.testing.assert_close(a, b)
