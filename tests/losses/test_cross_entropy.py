"""Cross-entropy, label smoothing, one-vs-rest BCE, and the exact log(1 − p) helpers."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given

from neuralcollapse.losses import (
    BCELoss,
    CrossEntropyLoss,
    LabelSmoothingCELoss,
    bce,
    create_term,
    cross_entropy,
    label_smoothing_ce,
    term_names,
)
from neuralcollapse.losses.cross_entropy import _log1m_softmax, _log1m_softmax_at
from neuralcollapse.output import HeadOutput

from ._reference import (
    CE_PROBLEM,
    assert_bf16_autocast_finite,
    ce_problem,
    log_softmax_np,
    logits_batch,
    logsumexp_np,
)

# ---------------------------------------------------------------------------------------------------------
# cross-entropy = F.cross_entropy
# ---------------------------------------------------------------------------------------------------------


@given(**CE_PROBLEM)
def test_ce_equals_torch(n, k, spatial, reduction, use_weight, ignore, seed):
    z, y, w = ce_problem(n, k, spatial, use_weight, seed)
    if ignore:
        y.view(-1)[-1] = 3
    kw = {"weight": w, "ignore_index": 3 if ignore else -100, "reduction": reduction}
    if ignore and reduction == "mean" and bool((y == 3).all()):
        assert cross_entropy(z, y, **kw).item() == 0.0
        return
    y_valid = y.clone()
    torch.testing.assert_close(cross_entropy(z, y, **kw), F.cross_entropy(z, y_valid, **kw))
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    cross_entropy(z1, y, **kw).sum().backward()
    F.cross_entropy(z2, y, **kw).sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad)


def test_ce_term_module_and_gradcheck():
    z, y = logits_batch()
    w = torch.tensor([1.0, 0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    out = HeadOutput(logits=z, features=z)
    assert create_term("ce", weight=w)(out, y).item() == pytest.approx(F.cross_entropy(z, y, weight=w).item())
    assert CrossEntropyLoss(weight=w, reduction="sum")(z, y).item() == pytest.approx(
        F.cross_entropy(z, y, weight=w, reduction="sum").item()
    )
    zz = z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: cross_entropy(x, y, weight=w), (zz,))


# ---------------------------------------------------------------------------------------------------------
# label smoothing
# ---------------------------------------------------------------------------------------------------------


def _ls_ref(z, y, eps):
    n, k = z.shape
    out = np.zeros(n)
    for i in range(n):
        lp = log_softmax_np(z[i])
        for j in range(k):
            t = (1 - eps) * (j == y[i]) + eps / k
            out[i] -= t * lp[j]
    return out


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 1.0])
def test_label_smoothing_reference_and_torch(eps):
    z, y = logits_batch()
    ref = _ls_ref(z.numpy(), y.numpy(), eps)
    np.testing.assert_allclose(label_smoothing_ce(z, y, eps=eps, reduction="none").numpy(), ref, rtol=1e-12)
    torch.testing.assert_close(label_smoothing_ce(z, y, eps=eps), F.cross_entropy(z, y, label_smoothing=eps))
    # class weight: w_{y_i} on the whole per-sample loss (the library's rule), mean divides by Σ w_{y_i}
    w = torch.tensor([1.0, 0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    wy = w[y].numpy()
    assert label_smoothing_ce(z, y, eps=eps, weight=w).item() == pytest.approx((wy * ref).sum() / wy.sum())


def test_label_smoothing_default_term_gradcheck():
    z, y = logits_batch()
    out = HeadOutput(logits=z, features=z)
    expected = F.cross_entropy(z, y, label_smoothing=0.1).item()
    assert create_term("ls")(out, y).item() == pytest.approx(expected)
    assert create_term("lsce", eps=0.2)(out, y).item() == pytest.approx(
        F.cross_entropy(z, y, label_smoothing=0.2).item()
    )
    assert LabelSmoothingCELoss()(z, y).item() == pytest.approx(expected)
    zz = z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: label_smoothing_ce(x, y), (zz,))
    with pytest.raises(ValueError, match="`eps` must be in \\[0, 1\\]"):
        label_smoothing_ce(z, y, eps=1.5)
    with pytest.raises(ValueError, match="`eps` must be in \\[0, 1\\]"):
        create_term("ls", eps=-0.1)


# ---------------------------------------------------------------------------------------------------------
# one-vs-rest BCE
# ---------------------------------------------------------------------------------------------------------


def _bce_ref(z, y):
    out = np.zeros(len(y))
    for i in range(len(y)):
        for k, v in enumerate(z[i]):
            s = 1 / (1 + math.exp(-v))
            out[i] -= math.log(s) if k == y[i] else math.log(1 - s)
    return out


def test_bce_reference_and_gradcheck():
    z, y = logits_batch()
    ref = _bce_ref(z.numpy(), y.numpy())
    np.testing.assert_allclose(bce(z, y, reduction="none").numpy(), ref, rtol=1e-10)
    assert bce(z, y).item() == pytest.approx(ref.mean())
    assert BCELoss(reduction="sum")(z, y).item() == pytest.approx(ref.sum())
    assert create_term("bce")(HeadOutput(logits=z, features=z), y).item() == pytest.approx(ref.mean())
    zz = z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: bce(x, y), (zz,))


# ---------------------------------------------------------------------------------------------------------
# exact log(1 − p)
# ---------------------------------------------------------------------------------------------------------


def _log1m_ref(z, k):
    others = np.delete(z, k)
    return logsumexp_np(others) - logsumexp_np(z)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_log1m_softmax_exact(scale):
    z, y = logits_batch(7, 5, scale=scale)
    ref = np.array([[_log1m_ref(row, k) for k in range(5)] for row in z.numpy()])
    np.testing.assert_allclose(_log1m_softmax(z).numpy(), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_log1m_softmax_at(z, y).numpy(), ref[np.arange(7), y.numpy()], rtol=1e-10)
    z32 = z.float().requires_grad_(True)
    _log1m_softmax(z32).sum().backward()
    assert torch.isfinite(_log1m_softmax(z.float())).all() and torch.isfinite(z32.grad).all()


def test_log1m_softmax_ties_and_gradcheck():
    z = torch.tensor([[3.0, 3.0, -1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(torch.exp(_log1m_softmax(z)), 1 - torch.softmax(z, 1))
    zz = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_log1m_softmax, (zz,))


# ---------------------------------------------------------------------------------------------------------
# numerics, bad input, registry
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [cross_entropy, label_smoothing_ce, bce])
def test_bf16_autocast_and_large_logits(fn):
    assert_bf16_autocast_finite(fn)
    z, y = logits_batch(6, 5, dtype=torch.float32, scale=1e4)
    zz = z.clone().requires_grad_(True)
    loss = fn(zz, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zz.grad).all()


@pytest.mark.parametrize("fn", [cross_entropy, label_smoothing_ce, bce])
def test_bad_input(fn):
    with pytest.raises(ValueError, match="`logits` must have at least 2 classes"):
        fn(torch.randn(3, 1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="`target` must hold class indices"):
        fn(torch.randn(3, 4), torch.tensor([0, 1, 9]))
    with pytest.raises(TypeError, match="`target` must be an integer tensor"):
        fn(torch.randn(3, 4), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="`logits` contains 1 NaN or Inf"):
        fn(torch.tensor([[0.0, float("nan")]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="`logits` is empty"):
        fn(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="`target` must have shape"):
        fn(torch.randn(3, 4), torch.tensor([0, 1]))


def test_inputs_not_modified_and_registry():
    z, y = logits_batch()
    zc, yc = z.clone(), y.clone()
    for fn in (cross_entropy, label_smoothing_ce, bce):
        fn(z, y)
    assert torch.equal(z, zc) and torch.equal(y, yc)
    names = set(term_names())
    assert {"ce", "ls", "bce", "occe", "rce", "nl", "cot", "cce", "focal", "asl", "cfl", "adafocal"} <= names
    with pytest.raises(TypeError, match="`weight` must be a floating-point"):
        CrossEntropyLoss(weight=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        BCELoss(reduction="batchmean")
