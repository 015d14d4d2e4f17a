"""Device-generic tests: results on the ``device`` fixture's device (``NEURALCOLLAPSE_TEST_DEVICE``, default CPU)
against references computed independently on the CPU in float64 (NumPy / brute force), including inputs split
across devices (state on the device, classifier or prototypes on the CPU). On a GPU:
``NEURALCOLLAPSE_TEST_DEVICE=cuda pytest -m device_generic`` (``neuralcollapse bench gpu`` runs it)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from neuralcollapse import heads, ood
from neuralcollapse.metrics import NeuralCollapse, neural_collapse

K, D, N = 4, 6, 120


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(K, D, generator=g)
    y = torch.arange(N) % K
    h = centres[y] + torch.randn(N, D, generator=g)
    return h, y, 0.5 * torch.randn(K, D, generator=g), 0.1 * torch.randn(K, generator=g)


def _nc1_reference(h: np.ndarray, y: np.ndarray) -> float:
    """tr(Σ_W Σ_B⁺)/K by the textbook two-pass formulas (docs/methods.md §9), float64."""
    mu_g = h.mean(0)
    means = np.stack([h[y == k].mean(0) for k in range(K)])
    centred = h - means[y]
    sigma_w = centred.T @ centred / len(h)
    sigma_b = (means - mu_g).T @ (means - mu_g) / K
    return float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True)) / K)


def test_msp_and_energy_on_device_match_closed_forms(device):
    h, _, w, b = _data()
    logits = (h @ w.T + b).to(device)
    z = logits.cpu().double().numpy()
    soft = np.exp(z - z.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    lse = z.max(1) + np.log(np.exp(z - z.max(1, keepdims=True)).sum(1))
    msp = ood.create("msp").score(logits=logits)
    energy = ood.create("energy").score(logits=logits)
    assert msp.device.type == energy.device.type == device.type
    np.testing.assert_allclose(msp.cpu().double().numpy(), soft.max(1), rtol=1e-5)
    np.testing.assert_allclose(energy.cpu().double().numpy(), lse, rtol=1e-5)


@pytest.mark.parametrize("fit_on_device", [True, False])
def test_mahalanobis_fitted_on_either_device_scores_on_device(device, fit_on_device):
    h, y, _, _ = _data()
    fit_h, fit_y = (h.to(device), y.to(device)) if fit_on_device else (h, y)
    det = ood.create("mahalanobis").fit(features=fit_h, labels=fit_y)
    queries = _data(seed=1)[0]
    scores = det.score(features=queries.to(device))
    assert scores.device.type == device.type
    x, lab, q = h.double().numpy(), y.numpy(), queries.double().numpy()
    means = np.stack([x[lab == k].mean(0) for k in range(K)])
    centred = x - means[lab]
    precision = np.linalg.pinv(centred.T @ centred / len(x), hermitian=True)
    dist = np.stack([np.einsum("nd,de,ne->n", q - m, precision, q - m) for m in means], 1)
    np.testing.assert_allclose(scores.cpu().double().numpy(), -dist.min(1), rtol=1e-5)


def test_neural_collapse_on_device_with_weight_on_cpu(device):
    h, y, w, b = _data()
    out = neural_collapse(h.to(device), y.to(device), weight=w, bias=b)  # classifier left on the CPU
    ref = neural_collapse(h, y, weight=w, bias=b)
    assert out["nc1"] == pytest.approx(_nc1_reference(h.double().numpy(), y.numpy()), rel=1e-6)
    assert out.keys() == ref.keys()
    for key, value in ref.items():
        assert out[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_streaming_metric_with_device_state(device):
    h, y, w, b = _data()
    metric = NeuralCollapse(num_classes=K, dim=D).to(device)
    for start in range(0, N, 32):
        metric.update(h[start : start + 32].to(device), y[start : start + 32].to(device))
    assert metric.sums.device.type == device.type
    out = metric.compute(weight=w, bias=b)  # CPU classifier, device state
    assert out["nc1"] == pytest.approx(_nc1_reference(h.double().numpy(), y.numpy()), rel=1e-6)
    ref = neural_collapse(h, y, weight=w, bias=b)
    for key in ("nc2", "nc3", "nc4", "self_duality"):
        assert out[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-9), key


def test_assignment_of_device_means_to_cpu_prototypes_is_the_brute_force_optimum(device):
    g = torch.Generator().manual_seed(3)
    prototypes = heads.optimize_prototypes(K, 3, steps=200, seed=0)  # solved on the CPU
    means = torch.randn(K, 3, generator=g)
    perm = heads.assign_prototypes(means.to(device), prototypes)
    assert perm.device.type == device.type
    q = means.double() / means.double().norm(dim=1, keepdim=True)
    cos = (q @ prototypes.double().T).numpy()
    best = max(itertools.permutations(range(K)), key=lambda p: sum(cos[c, p[c]] for c in range(K)))
    assert perm.cpu().tolist() == list(best)


def test_prototype_head_with_cpu_prototypes_runs_on_device(device):
    prototypes = heads.optimize_prototypes(K, D, steps=100, seed=0)
    head = heads.HypersphericalPrototypeHead(D, K, prototypes=prototypes, projection=False).to(device).eval()
    h, y, _, _ = _data()
    out = head(h.to(device))
    assert out.logits.device.type == device.type
    u = h.double() / h.double().norm(dim=1, keepdim=True)
    expected = u @ (prototypes.double() / prototypes.double().norm(dim=1, keepdim=True)).T
    np.testing.assert_allclose(out.logits.cpu().double().numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    # representatives follow class k towards prototype σ(k): the re-assignment recovers σ on the device
    sigma = torch.tensor([2, 0, 3, 1])
    for _ in range(30):
        head.update_representatives(prototypes[sigma[y]].to(device), y.to(device))
    head.reassign()
    assert head.assignment.device.type == device.type and head.assignment.cpu().tolist() == sigma.tolist()
