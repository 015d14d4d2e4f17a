"""Float64 helpers shared by the loss tests: seeded logit batches and per-row NumPy softmax / log-softmax /
log-sum-exp, written independently of the library (the references the losses are checked against)."""

import numpy as np
import torch
from hypothesis import strategies as st


def logits_batch(n=6, k=5, seed=0, dtype=torch.float64, scale=2.0):
    """Seeded ``(logits (n, k), target (n,))``: logits ``scale``·N(0, 1), labels uniform in [0, k)."""
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, k, generator=g, dtype=dtype), torch.randint(0, k, (n,), generator=g)


def feature_batch(seed, n, k=4, d=5, dtype=torch.float64):
    """Seeded ``(features (n, d), target (n,), class matrix (k, d))``, drawn in that order."""
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, d, generator=g, dtype=dtype),
        torch.randint(0, k, (n,), generator=g),
        torch.randn(k, d, generator=g, dtype=dtype),
    )


def softmax_np(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def logsumexp_np(v):
    m = v.max()
    return m + np.log(np.exp(v - m).sum())


def log_softmax_np(v):
    m = v.max()
    return v - m - np.log(np.exp(v - m).sum())


def assert_bf16_autocast_finite(fn, n=5, k=6):
    """``fn(logits, target)`` on the bf16 logits of a linear layer under CPU autocast gives a finite float32
    loss, and its gradient reaches the layer's weight finite."""
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(8, k)
    x = torch.randn(n, 8, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fn(lin(x), y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(lin.weight.grad).all()


#: Hypothesis strategies of a random ``F.cross_entropy`` problem: pass to ``@given(**CE_PROBLEM)`` and draw the
#: tensors with :func:`ce_problem` (``reduction`` and ``ignore`` are for the test to apply).
CE_PROBLEM = {
    "n": st.integers(1, 5),
    "k": st.integers(2, 5),
    "spatial": st.sampled_from([(), (3,), (2, 2)]),
    "reduction": st.sampled_from(["mean", "sum", "none"]),
    "use_weight": st.booleans(),
    "ignore": st.booleans(),
    "seed": st.integers(0, 1000),
}


def ce_problem(n, k, spatial, use_weight, seed):
    """Seeded float64 logits (n, k, *spatial), labels (n, *spatial) and class weights (k,) in [0.1, 1.1) or None."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, *spatial, generator=g, dtype=torch.float64)
    target = torch.randint(0, k, (n, *spatial), generator=g)
    weight = torch.rand(k, generator=g, dtype=torch.float64) + 0.1 if use_weight else None
    return logits, target, weight
