"""NormFace, NTCE, NONL: loop references, closed forms, floors, gradients, numerics, errors, terms, DDP gather."""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

import neuralcollapse as nc
from neuralcollapse.losses import (
    NONLLoss,
    NormFaceLoss,
    NTCELoss,
    create_term,
    nonl,
    normface,
    ntce,
)
from neuralcollapse.output import HeadOutput

ANCHORS = ("prototype", "instance", "both")


# --------------------------------------------------------------------------------------------------------
# Straightforward per-sample reference (NumPy float64), written from docs/methods.md §4.1
# --------------------------------------------------------------------------------------------------------


def reference(features, target, prototypes, tau, kind, anchor="prototype"):
    """Per-sample losses; None for prototype anchors with no negative."""
    u = np.asarray(features, dtype=np.float64)
    w = np.asarray(prototypes, dtype=np.float64)
    y = np.asarray(target)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    m, k = len(y), len(w)
    out = []
    for i in range(m):
        pos = u[i] @ w[y[i]] / tau
        if kind == "normface":
            neg = [u[i] @ w[c] / tau for c in range(k)]
        elif kind == "ntce":
            neg = [w[y[i]] @ u[j] / tau for j in range(m)]
        else:
            neg = []
            if anchor in ("instance", "both"):
                neg += [u[i] @ w[c] / tau for c in range(k) if c != y[i]]
            if anchor in ("prototype", "both"):
                neg += [w[y[i]] @ u[b] / tau for b in range(m) if y[b] != y[i]]
        out.append(None if not neg else -pos + logsumexp(neg))
    return out


def random_problem(seed, m, k, d, dtype=torch.float64):
    """Seeded features (m, d), labels (m,) and prototypes (k, d), drawn features → prototypes → labels."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(m, d, generator=g, dtype=dtype)
    prototypes = torch.randn(k, d, generator=g, dtype=dtype)
    target = torch.randint(0, k, (m,), generator=g)
    return features, target, prototypes


def batch(seed, m=9, k=4, d=5, dtype=torch.float64):
    features, target, prototypes = random_problem(seed, m, k, d, dtype)
    target[:2] = torch.tensor([0, 1])  # at least two classes
    return features, target, prototypes


def simplex(k, dtype=torch.float64):
    """K unit vectors in R^K with pairwise cosine −1/(K−1)."""
    e = torch.eye(k, dtype=dtype) - 1.0 / k
    return e / e.norm(dim=1, keepdim=True)


def call(kind, features, target, prototypes, tau, anchor="prototype", **kw):
    if kind == "normface":
        return normface(features, target, prototypes, tau, **kw)
    if kind == "ntce":
        return ntce(features, target, prototypes, tau, **kw)
    return nonl(features, target, prototypes, tau, anchor, **kw)


CASES = [("normface", None), ("ntce", None)] + [("nonl", a) for a in ANCHORS]


# --------------------------------------------------------------------------------------------------------
# Agreement with the loop reference
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "anchor"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("tau", [0.05, 0.2, 1.0])
def test_matches_loop_reference(kind, anchor, seed, tau):
    f, t, p = batch(seed)
    ref = np.array(reference(f.numpy(), t.numpy(), p.numpy(), tau, kind, anchor or "prototype"))
    per_sample = call(kind, f, t, p, tau, anchor or "prototype", reduction="none")
    np.testing.assert_allclose(per_sample.numpy(), ref, rtol=1e-12, atol=1e-12)
    mean = call(kind, f, t, p, tau, anchor or "prototype")
    total = call(kind, f, t, p, tau, anchor or "prototype", reduction="sum")
    assert mean.item() == pytest.approx(ref.mean(), rel=1e-12)
    assert total.item() == pytest.approx(ref.sum(), rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(2, 12),
    k=st.integers(2, 5),
    d=st.integers(1, 6),
    tau=st.floats(0.05, 2.0),
    seed=st.integers(0, 10_000),
    case=st.sampled_from(CASES),
)
def test_matches_loop_reference_property(m, k, d, tau, seed, case):
    kind, anchor = case
    f, t, p = random_problem(seed, m, k, d)
    ref = reference(f.numpy(), t.numpy(), p.numpy(), tau, kind, anchor or "prototype")
    if any(r is None for r in ref):  # single-class batch, prototype anchor: covered by its own tests
        t[0] = (t[1] + 1) % k
        ref = reference(f.numpy(), t.numpy(), p.numpy(), tau, kind, anchor or "prototype")
    got = call(kind, f, t, p, tau, anchor or "prototype", reduction="none")
    np.testing.assert_allclose(got.numpy(), np.array(ref), rtol=1e-10, atol=1e-10)


def test_modules_equal_functions():
    f, t, p = batch(3)
    assert torch.equal(NormFaceLoss(0.3)(f, t, p), normface(f, t, p, 0.3))
    assert torch.equal(NTCELoss(0.3)(f, t, p), ntce(f, t, p, 0.3))
    for anchor in ANCHORS:
        assert torch.equal(NONLLoss(0.3, anchor)(f, t, p), nonl(f, t, p, 0.3, anchor))
    assert "anchor='both'" in repr(NONLLoss(anchor="both"))


def test_normalisation_is_idempotent_and_scale_free():
    f, t, p = batch(4)
    for kind, anchor in CASES:
        a = call(kind, f, t, p, 0.2, anchor or "prototype")
        b = call(kind, 7.0 * f, t, 0.01 * p, 0.2, anchor or "prototype")
        c = call(kind, f / f.norm(dim=1, keepdim=True), t, p / p.norm(dim=1, keepdim=True), 0.2, anchor or "prototype")
        assert a.item() == pytest.approx(b.item(), rel=1e-12)
        assert a.item() == pytest.approx(c.item(), rel=1e-12)


# --------------------------------------------------------------------------------------------------------
# Closed forms, floors, signs
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("tau", [0.1, 0.2, 1.0])
def test_normface_minimum_at_simplex(k, tau):
    w = simplex(k)
    target = torch.arange(k).repeat(2)
    loss = normface(w[target], target, w, tau)
    expected = math.log(1 + (k - 1) * math.exp(-k / ((k - 1) * tau)))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # Any other unit configuration lies above the minimum.
    g = torch.Generator().manual_seed(k)
    for _ in range(5):
        f = torch.randn(2 * k, k, generator=g, dtype=torch.float64)
        assert normface(f, target, w, tau).item() > expected


def test_normface_positive():
    f, t, p = batch(5)
    assert (normface(f, t, p, 0.05, reduction="none") > 0).all()


def ntce_floor(target):
    counts = torch.bincount(target).double()
    counts = counts[counts > 0]
    return float((counts * counts.log()).sum() / target.numel())


def test_ntce_floor_attained():
    # Features on their (orthonormal) prototypes: same-class rows share the log-partition and the other
    # classes contribute e^{−1/τ}: the loss equals (1/M)Σ n_c log n_c to double precision.
    k = 4
    w = torch.eye(k, dtype=torch.float64)
    target = torch.tensor([0, 0, 0, 1, 1, 2, 3])
    loss = ntce(w[target], target, w, temperature=0.01)
    assert loss.item() == pytest.approx(ntce_floor(target), abs=1e-14)
    # Zero only when every class occurs once.
    once = torch.arange(k)
    assert ntce(w, once, w, temperature=0.01).item() == pytest.approx(0.0, abs=1e-14)
    # The gap shrinks with τ (approach from above).
    gaps = [ntce(w[target], target, w, tau).item() - ntce_floor(target) for tau in (1.0, 0.3, 0.1)]
    assert gaps[0] > gaps[1] > gaps[2] > 0


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(1, 16),
    k=st.integers(2, 5),
    d=st.integers(1, 6),
    tau=st.floats(0.02, 5.0),
    seed=st.integers(0, 10_000),
)
def test_ntce_never_below_floor(m, k, d, tau, seed):
    f, t, p = random_problem(seed, m, k, d)
    assert ntce(f, t, p, tau).item() >= ntce_floor(t) - 1e-12


def test_ntce_single_class_batch_is_finite():
    f, _, p = batch(6)
    t = torch.zeros(f.shape[0], dtype=torch.long)
    loss = ntce(f, t, p)
    assert torch.isfinite(loss)
    ref = reference(f.numpy(), t.numpy(), p.numpy(), 0.2, "ntce")
    assert loss.item() == pytest.approx(np.mean(ref), rel=1e-12)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_nonl_prototype_decomposition(tau):
    f, t, p = batch(7, m=12, k=3)
    u = f / f.norm(dim=1, keepdim=True)
    w = p / p.norm(dim=1, keepdim=True)
    m = len(t)
    alignment = -(u * w[t]).sum() / (m * tau)
    uniformity = 0.0
    for c in range(w.shape[0]):
        n_c = int((t == c).sum())
        if n_c:
            uniformity += n_c * torch.logsumexp(u[t != c] @ w[c] / tau, dim=0)
    uniformity = uniformity / m
    assert nonl(f, t, p, tau).item() == pytest.approx((alignment + uniformity).item(), rel=1e-12)


def test_nonl_can_be_negative_and_is_not_clamped():
    k, tau = 3, 0.1
    w = simplex(k)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    # Features on their prototypes: ℓ = −1/τ + (−1/((K−1)τ)) + log(#negatives) for every anchor.
    for anchor, n_neg in (("prototype", 4), ("instance", 2), ("both", 6)):
        loss = nonl(w[target], target, w, tau, anchor)
        expected = -1 / tau - 1 / ((k - 1) * tau) + math.log(n_neg)
        assert loss.item() == pytest.approx(expected, rel=1e-12)
        assert loss.item() < 0


@settings(max_examples=20, deadline=None)
@given(m=st.integers(2, 12), k=st.integers(2, 4), tau=st.floats(0.05, 2.0), seed=st.integers(0, 10_000))
def test_nonl_crude_lower_bounds(m, k, tau, seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(m, 3, generator=g, dtype=torch.float64)
    p = torch.randn(k, 3, generator=g, dtype=torch.float64)
    t = torch.randint(0, k, (m,), generator=g)
    t[0], t[1] = 0, 1
    n_neg = torch.tensor([float((t != t[i]).sum()) for i in range(m)], dtype=torch.float64)
    assert nonl(f, t, p, tau, "prototype").item() >= -2 / tau + n_neg.log().mean().item() - 1e-12
    assert nonl(f, t, p, tau, "instance").item() >= -2 / tau + math.log(k - 1) - 1e-12


# --------------------------------------------------------------------------------------------------------
# Single-class batches
# --------------------------------------------------------------------------------------------------------


def test_nonl_single_class_batch_raises_with_fix():
    f, _, p = batch(8)
    t = torch.full((f.shape[0],), 2)
    with pytest.raises(ValueError, match=r"`target`.*single class.*class-balanced"):
        nonl(f, t, p)
    with pytest.raises(ValueError, match="class-balanced"):
        NONLLoss()(f, t, p)


def test_nonl_single_class_skip_gives_connected_zero():
    f, _, p = batch(8)
    f.requires_grad_(True)
    p.requires_grad_(True)
    t = torch.full((f.shape[0],), 2)
    loss = nonl(f, t, p, on_empty="skip")
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(f.grad, torch.zeros_like(f)) and torch.equal(p.grad, torch.zeros_like(p))
    none = nonl(f, t, p, on_empty="skip", reduction="none")
    assert torch.equal(none, torch.zeros_like(none))


def test_nonl_skip_is_noop_on_multi_class_batch():
    f, t, p = batch(9)
    assert torch.equal(nonl(f, t, p, on_empty="skip"), nonl(f, t, p, on_empty="raise"))


@pytest.mark.parametrize("anchor", ["instance", "both"])
def test_nonl_single_class_defined_for_instance_anchors(anchor):
    f, _, p = batch(10)
    t = torch.zeros(f.shape[0], dtype=torch.long)
    loss = nonl(f, t, p, anchor=anchor)
    ref = reference(f.numpy(), t.numpy(), p.numpy(), 0.2, "nonl", anchor)
    assert loss.item() == pytest.approx(np.mean(ref), rel=1e-12)


def test_nonl_single_class_without_validation_gives_empty_lse():
    f, _, p = batch(10)
    t = torch.zeros(f.shape[0], dtype=torch.long)
    with nc.validation(False):
        loss = nonl(f, t, p)
    assert loss.item() == -math.inf  # −s/τ + LSE(∅); the reference also gives −∞


# --------------------------------------------------------------------------------------------------------
# Gradients and numerics
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "anchor"), CASES)
def test_gradcheck(kind, anchor):
    f, t, p = batch(11, m=6, k=3, d=4)
    f.requires_grad_(True)
    p.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: call(kind, a, t, b, 0.3, anchor or "prototype"), (f, p))


@pytest.mark.parametrize(("kind", "anchor"), CASES)
def test_bf16_autocast_and_large_inputs_finite(kind, anchor):
    f, t, p = batch(12, m=16, k=4, d=8, dtype=torch.float32)
    tau = 0.05  # the reference's direct exp overflows fp16 here
    ref = call(kind, f, t, p, tau, anchor or "prototype")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fb, pb = f.bfloat16().requires_grad_(True), p.bfloat16()
        loss = call(kind, fb, t, pb, tau, anchor or "prototype")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(fb.grad.float()).all()
    # bf16 inputs carry ~3 significant digits; the reduction itself runs in float32.
    assert loss.item() == pytest.approx(ref.item(), rel=0.05, abs=0.1)
    big = call(kind, 1e4 * f, t, 1e4 * p, tau, anchor or "prototype")
    assert torch.isfinite(big) and big.item() == pytest.approx(ref.item(), rel=1e-5)
    half = call(kind, (1e4 * f).half(), t, p.half(), tau, anchor or "prototype")
    assert half.dtype == torch.float32 and torch.isfinite(half)


def test_inputs_unchanged():
    f, t, p = batch(13)
    f.requires_grad_(True)
    copies = (f.detach().clone(), t.clone(), p.clone())
    for kind, anchor in CASES:
        call(kind, f, t, p, 0.2, anchor or "prototype").backward()
    assert torch.equal(f.detach(), copies[0]) and torch.equal(t, copies[1]) and torch.equal(p, copies[2])


# --------------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["normface", "ntce", "nonl"])
def test_bad_inputs(kind):
    f, t, p = batch(14, m=6, k=3, d=4)
    with pytest.raises(ValueError, match=r"`features` must be 2-D"):
        call(kind, f[0], t, p, 0.2)
    with pytest.raises(ValueError, match=r"`target` must have length 6"):
        call(kind, f, t[:5], p, 0.2)
    with pytest.raises(ValueError, match=r"`target` must be 1-D"):
        call(kind, f, t[:, None], p, 0.2)
    with pytest.raises(TypeError, match=r"`target` must be an integer tensor"):
        call(kind, f, t.double(), p, 0.2)
    with pytest.raises(ValueError, match=r"`prototypes` must have shape \(K, 4\)"):
        call(kind, f, t, p[:, :3], 0.2)
    with pytest.raises(ValueError, match=r"`prototypes` must have at least 2 rows"):
        call(kind, f, torch.zeros_like(t), p[:1], 0.2)
    with pytest.raises(ValueError, match=r"`target` must hold class indices in \[0, 3\)"):
        call(kind, f, torch.tensor([0, 1, 2, 3, 0, 1]), p, 0.2)
    with pytest.raises(ValueError, match=r"`target` must hold class indices"):
        call(kind, f, torch.tensor([0, 1, -1, 2, 0, 1]), p, 0.2)
    for tau in (0.0, -0.1, math.nan):
        with pytest.raises(ValueError, match=r"`temperature`"):
            call(kind, f, t, p, tau)
    with pytest.raises(ValueError, match=r"`features` is empty"):
        call(kind, f[:0], t[:0], p, 0.2)
    bad = f.clone()
    bad[1, 2] = math.nan
    with pytest.raises(ValueError, match=r"`features` contains 1 NaN"):
        call(kind, bad, t, p, 0.2)
    badp = p.clone()
    badp[0, 0] = math.inf
    with pytest.raises(ValueError, match=r"`prototypes` contains 1 NaN or Inf"):
        call(kind, f, t, badp, 0.2)
    with pytest.raises(ValueError, match=r"`reduction` must be one of"):
        call(kind, f, t, p, 0.2, reduction="avg")
    with pytest.raises(TypeError, match=r"`features` must be a torch.Tensor"):
        call(kind, f.numpy(), t, p, 0.2)


def test_bad_nonl_options():
    f, t, p = batch(15)
    with pytest.raises(ValueError, match=r"`anchor` must be one of 'prototype', 'instance', 'both'"):
        nonl(f, t, p, anchor="proto")
    with pytest.raises(ValueError, match=r"`on_empty` must be one of"):
        nonl(f, t, p, on_empty="ignore")
    with pytest.raises(ValueError, match=r"`temperature`"):
        NONLLoss(temperature=0)
    with pytest.raises(ValueError, match=r"`anchor`"):
        NONLLoss(anchor="x")


# --------------------------------------------------------------------------------------------------------
# Objective terms
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["normface", "ntce", "nonl"])
def test_terms_read_features_and_prototypes(name):
    f, t, p = batch(16)
    cos = torch.zeros(len(t), p.shape[0])
    out = HeadOutput(logits=torch.zeros(len(t), p.shape[0]), features=f, prototypes=p, cosines=cos)
    term = create_term(name, temperature=0.1)
    assert term.needs == ("features", "prototypes", "cosines")
    assert torch.equal(term(out, t), call(name, f, t, p, 0.1))
    with pytest.raises(ValueError, match="prototypes"):
        term(HeadOutput(logits=out.logits, features=f), t)


def test_nonl_term_options():
    f, t, p = batch(17)
    out = HeadOutput(logits=torch.zeros(len(t), p.shape[0]), features=f, prototypes=p,
                     cosines=torch.zeros(len(t), p.shape[0]))
    term = create_term("nonl", anchor="both")
    assert torch.equal(term(out, t), nonl(f, t, p, anchor="both"))


# --------------------------------------------------------------------------------------------------------
# gather=True
# --------------------------------------------------------------------------------------------------------


def test_gather_without_process_group_is_local():
    f, t, p = batch(18)
    assert torch.equal(ntce(f, t, p, gather=True), ntce(f, t, p))
    for anchor in ANCHORS:
        assert torch.equal(nonl(f, t, p, anchor=anchor, gather=True), nonl(f, t, p, anchor=anchor))


def _gather_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        f, t, p = batch(19, m=8, k=3, d=4)
        shard = slice(rank * 4, rank * 4 + 4)
        results = {}
        for name, fn in (
            ("ntce", lambda a, b: ntce(a, t[shard], b, 0.3, gather=True)),
            ("nonl", lambda a, b: nonl(a, t[shard], b, 0.3, "both", gather=True)),
        ):
            a = f[shard].clone().requires_grad_(True)
            loss = fn(a, p)
            loss.backward()
            results[name] = (loss.detach(), a.grad)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_gather_over_two_ranks_equals_full_batch():
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        # fork: the workers need no re-import of the package (spawn costs seconds per process).
        mp.start_processes(
            _gather_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True, start_method="fork"
        )
        ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(2)]
    f, t, p = batch(19, m=8, k=3, d=4)
    for name, fn in (
        ("ntce", lambda a: ntce(a, t, p, 0.3)),
        ("nonl", lambda a: nonl(a, t, p, 0.3, "both")),
    ):
        a = f.clone().requires_grad_(True)
        full = fn(a)
        full.backward()
        # Equal shards: the mean of the rank losses is the full-batch loss, and DDP's gradient average
        # (sum over ranks of the gradients reaching each shard, ÷ world size) is the full-batch gradient.
        mean_loss = (ranks[0][name][0] + ranks[1][name][0]) / 2
        assert mean_loss.item() == pytest.approx(full.item(), rel=1e-12)
        grad = torch.cat([ranks[0][name][1], ranks[1][name][1]]) / 2
        torch.testing.assert_close(grad, a.grad, rtol=1e-10, atol=1e-12)
