"""Jacobian numerical rank (Feng et al. 2022; OCCE A.5; docs/methods.md §2.9) on maps of known rank and
against Jacobians computed directly with ``torch.autograd.functional.jacobian``."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuralcollapse import HeadOutput
from neuralcollapse.metrics import JACOBIAN_ABS_TOL, jacobian_rank, numerical_rank


def _with_singular_values(rows: int, cols: int, values: list[float], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=g, dtype=torch.float64))
    s = torch.zeros(rows, cols, dtype=torch.float64)
    s[range(len(values)), range(len(values))] = torch.tensor(values, dtype=torch.float64)
    return u @ s @ v.T


def test_numerical_rank_thresholds():
    m = _with_singular_values(6, 5, [3.0, 1.0, 1e-5, 1e-9])
    assert numerical_rank(m) == 3  # σ > 1.19e-7
    # relative: σ²/σ_max² = 1, 1/9, 1.1e-11, ... against 5·ε_float32 = 6.0e-7
    assert numerical_rank(m, tol_mode="relative") == 2
    assert numerical_rank(m, tol=1e-4) == 2
    assert numerical_rank(m, tol=1e-12, tol_mode="relative") == 3
    assert numerical_rank(torch.zeros(3, 3)) == 0
    assert numerical_rank(torch.zeros(3, 3), tol_mode="relative") == 0
    assert JACOBIAN_ABS_TOL == pytest.approx(torch.finfo(torch.float32).eps, rel=1e-2)


@pytest.mark.parametrize(
    ("rows", "cols"),
    [(6, 4), (3, 9)],  # forward mode (n < d_l) and reverse mode (n > d_l)
)
def test_linear_map_of_known_rank(rows, cols):
    lin = nn.Linear(cols, rows, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(_with_singular_values(rows, cols, [2.0, 0.5, 1e-5, 1e-9][: min(rows, cols)]))
    x = torch.randn(3, cols, dtype=torch.float64)
    absolute = jacobian_rank(lin, x, chunk_size=2)
    assert absolute.ranks["output"] == [3, 3, 3] and absolute.mean["output"] == 3.0
    assert absolute.shapes["output"] == (rows, cols)
    assert jacobian_rank(lin, x, tol_mode="relative").mean["output"] == 2.0


def _direct_ranks(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, list[int]]:
    """Per-sample Jacobians with autograd.functional.jacobian and hooks, float64 copy, eval mode."""
    import copy

    net = copy.deepcopy(model).double().eval()
    modules = dict(net.named_modules())
    out: dict[str, list[int]] = {n: [] for n in [*names, "output"]}
    for xi in x.double():
        store: dict[str, torch.Tensor] = {}
        hooks = [
            modules[n].register_forward_hook(lambda m, i, o, n=n, store=store: store.__setitem__(n, o)) for n in names
        ]

        def fn(z, store=store):
            res = net(z[None])
            return (*[store[n].reshape(-1) for n in names], res.reshape(-1))

        jacs = torch.autograd.functional.jacobian(fn, xi)
        for h in hooks:
            h.remove()
        for n, j in zip([*names, "output"], jacs):
            sv = torch.linalg.svdvals(j.reshape(j.shape[0], -1))
            out[n].append(int((sv > JACOBIAN_ABS_TOL).sum()))
    return out


def test_layers_by_hooks_match_direct_jacobians():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    x = torch.randn(4, 5)
    res = jacobian_rank(model, x, layers=["0", "1"])
    assert res.ranks == _direct_ranks(model, x, ["0", "1"])
    assert list(res.mean) == ["0", "1", "output"]
    assert res.shapes == {"0": (4, 5), "1": (4, 5), "output": (3, 5)}
    # the ReLU Jacobian is diag(active)·W0: its rank is the number of active units (W0 has full rank 4)
    with torch.no_grad():
        active = (model[0](x) > 0).sum(dim=1).tolist()
    assert res.ranks["1"] == active


def test_conv_net_with_input_patch():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.SiLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 10))
    x = torch.rand(2, 2, 6, 6)
    res = jacobian_rank(model, x, layers=["1"], input_patch=(2, 1, 3))
    assert res.shapes["1"] == (3 * 36, 2 * 4) and res.shapes["output"] == (10, 8)
    # direct: the patch is the only variable, everything else zero (Feng's zero padding)
    net = model.double().eval()
    for i in range(2):
        p = x[i : i + 1, :, 1:3, 3:5].double()
        jac = torch.autograd.functional.jacobian(lambda z: net(F.pad(z, (3, 1, 1, 3))).reshape(-1), p)
        assert res.ranks["output"][i] == numerical_rank(jac.reshape(10, -1))
    centred = jacobian_rank(model, x, input_patch=2)  # centred patch: rows/cols 2..3
    assert centred.shapes["output"] == (10, 8)


def test_model_state_is_untouched():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model.train()
    model[2].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    jacobian_rank(model, torch.randn(2, 3), layers=["1"])
    assert model.training and model[1].training
    assert model[0].weight.dtype == torch.float32
    assert model[0].weight.requires_grad and not model[2].weight.requires_grad
    assert all(not m._forward_hooks for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_head_output_and_plain_callables():
    w = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]], dtype=torch.float64)  # rank 1

    class Head(nn.Module):
        def forward(self, x):
            return HeadOutput(logits=x @ w.T, features=x)

    assert jacobian_rank(Head(), torch.randn(2, 3)).mean["output"] == 1.0
    assert jacobian_rank(lambda x: x @ w.T, torch.randn(2, 3)).mean["output"] == 1.0


def test_inputs_unchanged():
    x = torch.randn(2, 4)
    x0 = x.clone()
    jacobian_rank(nn.Linear(4, 2), x)
    assert torch.equal(x, x0)


def test_bad_input():
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 3)))
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match=r"`layers`: no submodule named 'fc'; did you mean 'fc1'"):
        jacobian_rank(model, x, layers=["fc"])
    with pytest.raises(TypeError, match="`layers` needs an nn.Module"):
        jacobian_rank(lambda t: t, x, layers=["fc1"])
    with pytest.raises(ValueError, match="nothing to report"):
        jacobian_rank(model, x, include_output=False)
    with pytest.raises(ValueError, match="`tol` must be >= 0"):
        jacobian_rank(model, x, tol=-1.0)
    with pytest.raises(ValueError, match="`tol_mode` must be one of"):
        jacobian_rank(model, x, tol_mode="rel")
    with pytest.raises(ValueError, match="`chunk_size`"):
        jacobian_rank(model, x, chunk_size=0)
    with pytest.raises(ValueError, match=r"`input_patch` needs \(B, C, H, W\) inputs"):
        jacobian_rank(model, x, input_patch=2)
    with pytest.raises(ValueError, match="does not fit"):
        jacobian_rank(nn.Flatten(), torch.rand(1, 1, 4, 4), input_patch=(3, 2, 0))
    with pytest.raises(ValueError, match="`input_patch` must be an int"):
        jacobian_rank(nn.Flatten(), torch.rand(1, 1, 4, 4), input_patch=(2, 1))
    nan = x.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="`inputs` contains 1 NaN"):
        jacobian_rank(model, nan)
    with pytest.raises(ValueError, match="`matrix` must be 2-D"):
        numerical_rank(torch.ones(3))
    with pytest.raises(TypeError, match="must be a logits tensor"):
        jacobian_rank(lambda t: [t], x)
