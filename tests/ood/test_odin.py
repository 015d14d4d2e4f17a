"""ODIN on a tiny linear model against a hand computation of the gradient sign step."""

import numpy as np
import pytest
import torch
from scipy.special import softmax

from neuralcollapse import ood


def hand_odin(w, b, x, t, eps, std):
    """x̃ = x − ε·sign(∇ₓCE(z/T, ŷ))/σ with ∇ₓ = Wᵀ(softmax(z/T) − e_ŷ)/T, 0 → +1; max softmax(z(x̃)/T)."""
    z = x @ w.T + b
    y = z.argmax(1)
    p = softmax(z / t, axis=1)
    p[np.arange(len(x)), y] -= 1.0
    grad = p @ w / t
    step = np.where(grad >= 0, 1.0, -1.0) / std
    x_tilde = x - eps * step
    return softmax((x_tilde @ w.T + b) / t, axis=1).max(1), x_tilde


class Recorder(torch.nn.Module):
    """A linear model that keeps what it was called with (to check the perturbed inputs)."""

    def __init__(self, w, b):
        super().__init__()
        self.linear = torch.nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor(w))
            self.linear.bias.copy_(torch.tensor(b))
        self.calls = []

    def forward(self, x):
        self.calls.append(x.detach().clone())
        return self.linear(x)


@pytest.fixture
def setup():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 4))
    w[:, 3] = 0.0  # the last input does not reach the logits: its gradient is exactly 0 -> sign +1
    b = rng.normal(size=3)
    x = rng.normal(size=(7, 4))
    return w, b, x


@pytest.mark.parametrize(("t", "eps"), [(1000.0, 0.0014), (1.0, 0.05), (10.0, 0.0)])
def test_matches_hand_computation(setup, t, eps):
    w, b, x = setup
    expected, x_tilde = hand_odin(w, b, x, t, eps, std=1.0)
    model = Recorder(w, b)
    det = ood.create("odin", temperature=t, noise=eps, batch_size=3).fit(model=model)
    s = det.score(inputs=torch.tensor(x))
    np.testing.assert_allclose(s.numpy(), expected, rtol=1e-6)
    # batched: 3 + 3 + 1 inputs, two forward passes each; the second sees x̃
    perturbed = torch.cat([c for i, c in enumerate(model.calls) if i % 2 == 1])
    np.testing.assert_allclose(perturbed.numpy(), x_tilde, rtol=1e-12)
    np.testing.assert_allclose(perturbed[:, 3].numpy(), x[:, 3] - eps, rtol=1e-12)  # zero gradient -> +1


def test_per_channel_std_any_channel_count():
    # inputs (N, C=5, 2): the model flattens; the step of channel c is divided by std[c]
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(3, 10)), rng.normal(size=3)
    x = rng.normal(size=(4, 5, 2))
    std = (0.5, 1.0, 2.0, 4.0, 0.25)
    flat = Recorder(w, b)
    model = torch.nn.Sequential(torch.nn.Flatten(), flat)
    det = ood.create("odin", temperature=1.0, noise=0.01, std=std).fit(model=model)
    s = det.score(inputs=torch.tensor(x))
    per_feature_std = np.repeat(np.array(std), 2)  # flattened (C, 2) layout
    expected, x_tilde = hand_odin(w, b, x.reshape(4, 10), 1.0, 0.01, per_feature_std)
    np.testing.assert_allclose(s.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(flat.calls[1].numpy(), x_tilde, rtol=1e-12)
    with pytest.raises(ValueError, match="`std` has 5 entries but `inputs` has 3 channels"):
        det.score(inputs=torch.tensor(x[:, :3]))


def test_model_state_restored(setup):
    w, b, x = setup
    model = torch.nn.Sequential(Recorder(w, b), torch.nn.Dropout(0.5))
    model.train()
    model[0].eval()  # a mixed state must come back as it was
    for p in model.parameters():
        p.requires_grad_(True)
    before = [p.detach().clone() for p in model.parameters()]
    xt = torch.tensor(x)
    det = ood.create("odin").fit(model=model)
    s1, s2 = det.score(inputs=xt), det.score(inputs=xt)
    torch.testing.assert_close(s1, s2)  # eval mode inside: dropout off, deterministic
    assert model.training and not model[0].training and model[1].training
    for p, q in zip(model.parameters(), before):
        assert p.grad is None and torch.equal(p.detach(), q) and p.requires_grad
    torch.testing.assert_close(xt, torch.tensor(x))
    assert not xt.requires_grad


def test_validation():
    with pytest.raises(ValueError, match="`temperature` must be > 0"):
        ood.create("odin", temperature=0)
    with pytest.raises(ValueError, match="`noise` must be >= 0"):
        ood.create("odin", noise=-1e-3)
    with pytest.raises(ValueError, match="`std` must be > 0"):
        ood.create("odin", std=(0.2, 0.0))
    with pytest.raises(TypeError, match="`std` must be None, a positive number or a sequence"):
        ood.create("odin", std="cifar")
    with pytest.raises(ValueError, match="`batch_size` must be >= 1"):
        ood.create("odin", batch_size=0)
    det = ood.create("odin").fit(model=torch.nn.Linear(4, 1))
    with pytest.raises(ValueError, match=r"`model` must return \(batch, K >= 2\) logits"):
        det.score(inputs=torch.ones(2, 4))
    with pytest.raises(ValueError, match="`inputs` must have at least 2 dimensions"):
        det.score(inputs=torch.ones(4))
