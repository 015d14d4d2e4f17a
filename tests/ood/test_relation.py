"""Relation against the reference formula computed pair by pair in NumPy float64."""

import numpy as np
import pytest
import torch

from neuralcollapse import ood
from neuralcollapse.ood import relation


def reference(train, train_logits, test, test_logits, pow_=1, thr=0.03):
    def norm(x):
        return x / np.sqrt((x**2).sum(1, keepdims=True) + 1e-10)

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    a, pa, q, pq = norm(train), softmax(train_logits), norm(test), softmax(test_logits)
    out = np.zeros(len(q))
    for i in range(len(q)):
        for j in range(len(a)):
            r = max(q[i] @ a[j], 0.0) * (pq[i] @ pa[j])
            if abs(r) > thr:
                out[i] += np.sign(r) * abs(r) ** pow_
    return out


@pytest.fixture(params=[1.0, 8.0], ids=["soft", "peaked"])
def data(request):
    rng = np.random.default_rng(0)
    scale = request.param  # logit scale: peaked softmax lets most class blocks be skipped
    train = rng.normal(size=(60, 5))  # signed features: negative cosines must be dropped
    test = rng.normal(size=(17, 5))
    w = rng.normal(size=(4, 5))
    return train, scale * train @ w.T, test, scale * test @ w.T


@pytest.mark.parametrize("pow_", [1, 2, 0.5])
@pytest.mark.parametrize("chunk_elements", [1, 97, 2**24])
def test_against_reference(data, pow_, chunk_elements):
    train, zt, test, zq = data
    ref = reference(train, zt, test, zq, pow_)
    det = ood.create("relation", pow=pow_, chunk_elements=chunk_elements)
    det.fit(features=torch.tensor(train), logits=torch.tensor(zt))
    np.testing.assert_allclose(det.score(features=torch.tensor(test), logits=torch.tensor(zq)).numpy(), ref,
                               rtol=1e-10, atol=1e-12)
    det32 = ood.create("relation", pow=pow_, chunk_elements=chunk_elements)
    det32.fit(features=torch.tensor(train, dtype=torch.float32), logits=torch.tensor(zt, dtype=torch.float32))
    s32 = det32.score(features=torch.tensor(test, dtype=torch.float32), logits=torch.tensor(zq, dtype=torch.float32))
    np.testing.assert_allclose(s32.numpy(), ref, rtol=1e-4, atol=1e-4)


def test_threshold_hyperparameter(data):
    train, zt, test, zq = data
    det = ood.create("relation", threshold=0.0).fit(features=torch.tensor(train), logits=torch.tensor(zt))
    np.testing.assert_allclose(det.score(features=torch.tensor(test), logits=torch.tensor(zq)).numpy(),
                               reference(train, zt, test, zq, thr=0.0), rtol=1e-10)


def test_blocks_cover_sorted_bank():
    assert relation._column_blocks([3, 0, 5], 2) == [(0, 2), (2, 3), (3, 5), (5, 7), (7, 8)]
    assert relation._column_blocks([4], 10) == [(0, 4)]


def test_warns_when_large(monkeypatch, data):
    train, zt, test, zq = data
    monkeypatch.setattr(relation, "RELATION_WARN_PAIRS", 100)
    det = ood.create("relation").fit(features=torch.tensor(train), logits=torch.tensor(zt))
    with pytest.warns(UserWarning, match="17 x 60 = 1.02e\\+03 pairs"):
        det.score(features=torch.tensor(test), logits=torch.tensor(zq))


def test_hyperparameters_validated():
    with pytest.raises(ValueError, match="`pow` must be > 0"):
        ood.create("relation", pow=0)
    with pytest.raises(ValueError, match="`threshold` must be >= 0"):
        ood.create("relation", threshold=-0.1)
    with pytest.raises(ValueError, match="`chunk_elements` must be >= 1"):
        ood.create("relation", chunk_elements=0)


def _collapsed_clusters(k=10, d=12, n=20, seed=0):
    """ID: features collapsed onto k simplex-like directions; OOD: points between three of them."""
    gen = torch.Generator().manual_seed(seed)
    protos = torch.nn.functional.normalize(torch.randn(k, d, generator=gen), dim=1)
    protos = torch.linalg.qr(protos.T)[0].T[:k]  # orthonormal directions: cosine 0 between classes
    labels = torch.arange(k).repeat(n)
    train = torch.nn.functional.normalize(protos[labels] + 0.05 * torch.randn(len(labels), d, generator=gen), dim=1)
    test = torch.nn.functional.normalize(protos[labels[:k * 4]] + 0.05 * torch.randn(k * 4, d, generator=gen), dim=1)
    mix = torch.stack([protos[torch.randperm(k, generator=gen)[:3]].sum(0) for _ in range(k * 4)])
    ood_x = torch.nn.functional.normalize(mix + 0.05 * torch.randn(k * 4, d, generator=gen), dim=1)
    return protos, train, test, ood_x


def test_flat_softmax_of_cosine_logits_inverts_relation():
    """Why `relation` does not apply to the prototype head: with logits = raw cosines every p_iᵀp_j ≈ 1/K passes
    the threshold and the score is Σ_j max(cos_ij, 0)/K, higher between collapsed clusters (OOD) than on one."""
    protos, train, test, ood_x = _collapsed_clusters()
    for scale, inverted in ((1.0, True), (16.0, False)):
        det = ood.create("relation").fit(features=train, logits=scale * train @ protos.T)
        s_id = det.score(features=test, logits=scale * test @ protos.T)
        s_ood = det.score(features=ood_x, logits=scale * ood_x @ protos.T)
        auroc = ood.evaluate(s_id, s_ood)["auroc"]
        assert (auroc < 0.05) if inverted else (auroc > 0.95), (scale, auroc)
    # by hand at scale 1, K = 10 orthonormal prototypes: a feature on prototype 0 has logits e_0, softmax
    # (e, 1, …, 1)/(e + 9): max 0.232 and p·p = (e² + 9)/(e + 9)² = 0.119 > 0.03 even against a different class
    p = torch.softmax(protos[0] @ protos.T, 0)
    e = float(torch.e)
    assert float(p.max()) == pytest.approx(e / (e + 9), abs=1e-6)
    assert float(p @ p) == pytest.approx((e * e + 9) / (e + 9) ** 2, abs=1e-6)
    assert float(p @ torch.softmax(protos[1] @ protos.T, 0)) == pytest.approx((2 * e + 8) / (e + 9) ** 2, abs=1e-6)


def test_relation_is_not_applicable_to_the_prototype_head():
    for head in ("prototypes", "dl2pa", "Hyperspherical"):
        ok, why = ood.get("relation").applicable(head=head)
        assert not ok and why.startswith("relation assumes logits trained through a softmax (peaked softmax); the")
    for head in (None, "linear", "cosine", "etf", "lpc"):
        assert ood.get("relation").applicable(head=head) == (True, "")
    assert "relation" in {n for n in ood.names() if "peaked_softmax" in ood.get(n).assumptions}
