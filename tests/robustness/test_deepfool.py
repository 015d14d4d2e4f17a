"""DeepFool (Moosavi-Dezfooli et al. 2016; docs/methods.md §6.5): closed form on affine classifiers, a small MLP,
agreement of the batched and per-sample runs, and the model left exactly as found."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuralcollapse import HeadOutput
from neuralcollapse.robustness import (
    DEEPFOOL_STEP_EPS,
    DeepFoolResult,
    deepfool,
    deepfool_summary,
    margin_gradient_norm,
)


def _linear(d: int, k: int, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d, k, dtype=torch.float64)


def _closed_form(lin: nn.Linear, x: torch.Tensor, candidates: int) -> torch.Tensor:
    """min over the candidate classes of the distance |f_k|/‖w_k‖ to the boundary z_k = z_ŷ."""
    with torch.no_grad():
        z = lin(x)
    top = z.topk(candidates, dim=1).indices
    out = []
    for i in range(len(x)):
        yhat = top[i, 0]
        dists = [(z[i, k] - z[i, yhat]).abs() / (lin.weight[k] - lin.weight[yhat]).norm() for k in top[i, 1:].tolist()]
        out.append(min(dists))
    return torch.stack(out)


def test_binary_affine_classifier_one_step_closed_form():
    lin = _linear(5, 2)
    x = torch.randn(16, 5, dtype=torch.float64)
    res = deepfool(lin, x, return_perturbed=True)
    expected = (1.02 * (_closed_form(lin, x, 2) + DEEPFOOL_STEP_EPS)).detach()
    torch.testing.assert_close(res.perturbation_norm, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(res.ratio, expected / x.norm(dim=1), rtol=1e-12, atol=0)
    assert res.flipped.all() and (res.iterations == 1).all()
    assert (res.adv_pred != res.clean_pred).all()
    with torch.no_grad():
        assert torch.equal(lin(res.perturbed).argmax(dim=1), res.adv_pred)
    # the step is along the boundary normal: x' − x is parallel to w_other − w_label
    w = (lin.weight[1] - lin.weight[0]).detach()
    delta = res.perturbed - x
    cos = (delta @ w).abs() / (delta.norm(dim=1) * w.norm())
    torch.testing.assert_close(cos, torch.ones(16, dtype=torch.float64))


@pytest.mark.parametrize("candidates", [2, 4, 6])
def test_multiclass_affine_classifier_reaches_nearest_candidate_boundary(candidates):
    lin = _linear(8, 6, seed=1)
    x = torch.randn(20, 8, dtype=torch.float64)
    res = deepfool(lin, x, num_candidates=candidates, batch_size=7)
    expected = 1.02 * (_closed_form(lin, x, candidates) + DEEPFOOL_STEP_EPS)
    torch.testing.assert_close(res.perturbation_norm, expected.detach(), rtol=1e-12, atol=0)
    assert res.flipped.all() and (res.iterations == 1).all()


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.SiLU(), nn.Dropout(0.3), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 5)
    )


def test_mlp_flips_with_positive_ratio_and_batching_does_not_matter():
    model = _mlp()
    model.eval()
    with torch.no_grad():  # give BN non-trivial running statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(24, 6)
    full = deepfool(model, x, batch_size=64, return_perturbed=True)
    single = deepfool(model, x, batch_size=1, return_perturbed=True)
    assert full.flipped.all() and (full.ratio > 0).all() and (full.iterations >= 1).all()
    torch.testing.assert_close(full.perturbation_norm, single.perturbation_norm, rtol=1e-5, atol=1e-7)
    assert torch.equal(full.iterations, single.iterations)
    with torch.no_grad():
        assert torch.equal(model(full.perturbed).argmax(dim=1), full.adv_pred)
        assert torch.equal(model(x).argmax(dim=1), full.clean_pred)
    torch.testing.assert_close((full.perturbed - x).norm(dim=1), full.perturbation_norm)


def test_iteration_cap_counts_non_flipped():
    model = nn.Sequential(nn.Linear(2, 8, dtype=torch.float64), nn.Tanh(), nn.Linear(8, 3, dtype=torch.float64))
    torch.manual_seed(3)
    x = torch.randn(30, 2, dtype=torch.float64) * 3
    capped = deepfool(model, x, max_iter=1, overshoot=0.0)
    assert (capped.iterations <= 1).all()
    free = deepfool(model, x, max_iter=50)
    assert int(free.flipped.sum()) >= int(capped.flipped.sum())
    summary = deepfool_summary(capped)
    assert summary["num_not_flipped"] == int((~capped.flipped).sum())


def test_model_state_restored():
    model = _mlp(seed=2)
    model.train()
    model[3].eval()  # a submodule in its own mode must keep it
    model[4].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    x = torch.randn(10, 6)
    x0 = x.clone()
    deepfool(model, x)
    margin_gradient_norm(model, x)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN running stats too
    assert torch.equal(x, x0)


def test_model_state_restored_when_the_model_raises():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("boom")
            return self.lin(x)

    model = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        deepfool(model, torch.randn(2, 3))
    assert model.training and model.lin.weight.requires_grad


def test_head_output_models_and_zero_gradient_samples():
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3, dtype=torch.float64)

        def forward(self, x):
            return HeadOutput(logits=self.lin(x), features=x)

    res = deepfool(Head(), torch.randn(5, 4, dtype=torch.float64))
    assert res.flipped.all()
    constant = nn.Linear(4, 3, dtype=torch.float64)
    with torch.no_grad():
        constant.weight.zero_()
        constant.bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    stuck = deepfool(constant, torch.randn(3, 4, dtype=torch.float64))
    assert not stuck.flipped.any() and (stuck.iterations == 0).all() and (stuck.ratio == 0).all()


def test_summary_means():
    res = DeepFoolResult(
        ratio=torch.tensor([0.1, 0.2, 0.6, 0.3]),
        perturbation_norm=torch.ones(4),
        flipped=torch.tensor([True, True, True, False]),
        iterations=torch.tensor([1, 2, 3, 50]),
        clean_pred=torch.tensor([0, 1, 2, 1]),
        adv_pred=torch.tensor([1, 2, 0, 1]),
    )
    s = deepfool_summary(res, labels=torch.tensor([0, 1, 0, 0]))
    assert s["mean_ratio"] == pytest.approx(0.3)
    assert s["mean_ratio_flipped"] == pytest.approx(0.3)
    assert s["mean_ratio_correct"] == pytest.approx(0.15)
    assert s["num_not_flipped"] == 1 and s["num_samples"] == 4 and s["num_correct"] == 2
    with pytest.raises(ValueError, match="`labels` must have length 4"):
        deepfool_summary(res, labels=torch.tensor([0]))


def test_margin_gradient_norm_affine_closed_form():
    lin = _linear(5, 4, seed=4)
    x = torch.randn(12, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (12,))
    with torch.no_grad():
        z = lin(x)
    runner_up = z.scatter(1, y[:, None], -torch.inf).argmax(dim=1)
    expected = (lin.weight[y] - lin.weight[runner_up]).norm(dim=1).detach()
    res = margin_gradient_norm(lin, x, y, batch_size=5)
    torch.testing.assert_close(res["norms"], expected)
    assert res["max"] == pytest.approx(float(expected.max())) and res["mean"] == pytest.approx(float(expected.mean()))


def test_bad_input():
    lin = _linear(3, 4)
    x = torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="`num_candidates` must be >= 2"):
        deepfool(lin, x, num_candidates=1)
    with pytest.raises(ValueError, match="`max_iter` must be >= 1"):
        deepfool(lin, x, max_iter=0)
    with pytest.raises(ValueError, match="`batch_size` must be >= 1"):
        deepfool(lin, x, batch_size=0)
    with pytest.raises(ValueError, match="`overshoot` must be >= 0"):
        deepfool(lin, x, overshoot=-0.1)
    nan = x.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="`inputs` contains 1 NaN"):
        deepfool(lin, nan)
    with pytest.raises(TypeError, match="`inputs` must be a floating-point tensor"):
        deepfool(lin, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 classes"):
        deepfool(_linear(3, 1), x)
    with pytest.raises(ValueError, match=r"\(B, K\) logits"):
        deepfool(lambda t: t[:, :, None], x)
    with pytest.raises(TypeError, match="must be a logits tensor"):
        deepfool(lambda t: (t,), x)
    with pytest.raises(ValueError, match=r"`labels` must hold class indices in \[0, 4\)"):
        margin_gradient_norm(lin, x, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="`labels` must have length 2"):
        margin_gradient_norm(lin, x, torch.tensor([0]))
