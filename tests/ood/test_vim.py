"""ViM: origin, uncentred residual space, α and the score, written out by hand in NumPy float64."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from neuralcollapse import ood


def vim_reference(train, w, b, test, dim):
    o = -np.linalg.pinv(w) @ b
    c = (train - o).T @ (train - o) / len(train)  # not mean-centred
    vals, vecs = np.linalg.eigh(c)
    r = vecs[:, np.argsort(vals)[: train.shape[1] - dim]]  # the D − dim smallest
    alpha = (train @ w.T + b).max(1).mean() / np.linalg.norm((train - o) @ r, axis=1).mean()
    score = logsumexp(test @ w.T + b, axis=1) - alpha * np.linalg.norm((test - o) @ r, axis=1)
    return o, alpha, score


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    train = np.abs(rng.normal(size=(80, 6))) + rng.normal(size=6)
    w = rng.normal(size=(3, 6))
    b = rng.normal(size=3)
    test = np.abs(rng.normal(size=(10, 6)))
    return train, w, b, test


@pytest.mark.parametrize("dim", [1, 3, 5])
def test_against_reference(data, dim):
    train, w, b, test = data
    o, alpha, score = vim_reference(train, w, b, test, dim)
    det = ood.create("vim", dim=dim).fit(features=torch.tensor(train), weight=torch.tensor(w), bias=torch.tensor(b))
    np.testing.assert_allclose(det.origin_.numpy(), o, rtol=1e-10)
    assert det.alpha_ == pytest.approx(alpha, rel=1e-10)
    np.testing.assert_allclose(det.score(features=torch.tensor(test)).numpy(), score, rtol=1e-10)
    # float32 inputs: same numbers to float32 accuracy, float32 output
    det32 = ood.create("vim", dim=dim).fit(
        features=torch.tensor(train, dtype=torch.float32), weight=torch.tensor(w, dtype=torch.float32),
        bias=torch.tensor(b, dtype=torch.float32))
    s32 = det32.score(features=torch.tensor(test, dtype=torch.float32))
    assert s32.dtype == torch.float32
    np.testing.assert_allclose(s32.numpy(), score, rtol=1e-4, atol=1e-4)


def test_alpha_by_hand():
    # D = 2, W = I, b = (−1, −1): o = (1, 1); training features f − o = (±2, ±1) so C = diag(4, 1);
    # dim = 1 keeps e1, R = e2; residual norms |f2 − 1| = 1; logits f − 1 -> max = 2 (= 3 − 1) or ...
    f = torch.tensor([[3.0, 2.0], [-1.0, 0.0], [3.0, 0.0], [-1.0, 2.0]])
    w, b = torch.eye(2), torch.tensor([-1.0, -1.0])
    det = ood.create("vim", dim=1).fit(features=f, weight=w, bias=b)
    torch.testing.assert_close(det.origin_, torch.tensor([1.0, 1.0], dtype=torch.float64))
    # max logits: (2, 1) -> 2, (−2, −1) -> −1, (2, −1) -> 2, (−2, 1) -> 1; mean = 1; mean residual = 1
    assert det.alpha_ == pytest.approx(1.0)
    torch.testing.assert_close(det.basis_.abs(), torch.tensor([[0.0], [1.0]], dtype=torch.float64))
    # score of (1, 4): LSE(0, 3) − 1·|4 − 1|
    s = det.score(features=torch.tensor([[1.0, 4.0]]))
    torch.testing.assert_close(s, torch.tensor([float(np.log(1 + np.exp(3.0))) - 3.0]))


def test_dim_must_be_below_feature_dimension(data):
    train, w, _b, _ = data
    for dim in (6, 7):
        with pytest.raises(ValueError, match=f"`dim` must be smaller than the feature dimension D=6.*got dim={dim}"):
            ood.create("vim", dim=dim).fit(features=torch.tensor(train), weight=torch.tensor(w))
    with pytest.raises(ValueError, match="`dim` must be >= 1"):
        ood.create("vim", dim=0)
    with pytest.raises(TypeError, match="`dim` must be an int"):
        ood.create("vim", dim=2.5)


def test_zero_residual_raises():
    # features on a line through o: everything lies in the 1-D principal space
    f = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    with pytest.raises(ValueError, match="alpha is undefined"):
        ood.create("vim", dim=1).fit(features=f, weight=torch.eye(2), bias=torch.zeros(2))


def test_missing_bias_is_zero(data):
    train, w, _, test = data
    a = ood.create("vim", dim=2).fit(features=torch.tensor(train), weight=torch.tensor(w))
    b = ood.create("vim", dim=2).fit(features=torch.tensor(train), weight=torch.tensor(w), bias=torch.zeros(3))
    torch.testing.assert_close(a.score(features=torch.tensor(test)), b.score(features=torch.tensor(test)))
    torch.testing.assert_close(a.origin_, torch.zeros(6, dtype=torch.float64))
