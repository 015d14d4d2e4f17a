"""GeometryMonitor on a plain LightningModule: the streamed NC metrics equal a one-shot computation."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from neuralcollapse.metrics import neural_collapse
from neuralcollapse.training.monitor import GeometryMonitor

K, D_IN, D = 4, 12, 6


def _data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    centers = torch.randn(K, D_IN, generator=g) * 2
    x = centers[y] + torch.randn(n, D_IN, generator=g)
    return TensorDataset(x, y)


class Plain(L.LightningModule):
    """A user's module: no neuralcollapse types anywhere."""

    def __init__(self, return_features: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(D_IN, D), nn.ReLU())
        self.fc = nn.Linear(D, K)
        self.return_features = return_features

    def forward(self, x):
        return self.fc(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        h = self.body(x)
        logits = self.fc(h)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        if self.return_features:
            return {"features": h, "logits": logits}
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(module: L.LightningModule, monitor: GeometryMonitor, epochs: int = 2) -> L.Trainer:
    torch.manual_seed(0)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor],
                        num_sanity_val_steps=2)
    trainer.fit(module, DataLoader(_data(96, 0), batch_size=16, shuffle=True),
                DataLoader(_data(64, 1), batch_size=10))
    return trainer


@torch.no_grad()
def _reference(module: Plain) -> dict[str, float]:
    x, y = _data(64, 1).tensors
    h = module.body(x)
    return neural_collapse(h, y, weight=module.fc.weight, bias=module.fc.bias)


@pytest.mark.parametrize("mode", ["classifier", "layer", "returned"])
def test_streamed_metrics_equal_one_shot(mode):
    module = Plain(return_features=mode == "returned")
    kwargs = {"classifier": "fc"} if mode == "classifier" else {"layer": "body"} if mode == "layer" else {}
    monitor = GeometryMonitor(K, every_n_epochs=2, **kwargs)
    trainer = _fit(module, monitor)
    ref = _reference(module)
    logged = {k.removeprefix("geometry/"): float(v) for k, v in trainer.callback_metrics.items()
              if k.startswith("geometry/")}
    assert logged == pytest.approx(monitor.last)
    assert logged["nc1"] == pytest.approx(ref["nc1"], rel=1e-6, abs=1e-10)
    assert logged["nc2_means"] == pytest.approx(ref["nc2_means"], rel=1e-6, abs=1e-10)
    if mode == "classifier":  # W and b come from the hooked layer
        for key in ("nc2", "nc3", "nc4", "self_duality"):
            assert logged[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-10)
    else:
        assert "nc2" not in logged
    # the hook is attached only during monitored validation epochs
    assert not module.fc._forward_hooks and not module.body._forward_hooks


def test_fixed_classifier_and_errors():
    module = Plain()
    w = torch.randn(K, D)
    monitor = GeometryMonitor(K, layer="body", weight=w)
    _fit(module, monitor, epochs=1)
    with torch.no_grad():
        ref = neural_collapse(module.body(_data(64, 1).tensors[0]), _data(64, 1).tensors[1], weight=w)
    assert monitor.last["nc3"] == pytest.approx(ref["nc3"], rel=1e-6)
    with pytest.raises(ValueError, match=r"has no layer 'head'; named layers: body"):
        _fit(Plain(), GeometryMonitor(K, classifier="head"), epochs=1)
    with pytest.raises(ValueError, match="found no features"):
        _fit(Plain(), GeometryMonitor(K), epochs=1)
    with pytest.raises(ValueError, match="at most one"):
        GeometryMonitor(K, classifier="fc", layer="body")
    with pytest.raises(ValueError, match="`num_classes` must be an int >= 2"):
        GeometryMonitor(1)
    with pytest.raises(ValueError, match="`every_n_epochs`"):
        GeometryMonitor(K, every_n_epochs=0)
    with pytest.raises(ValueError, match="`pool`"):
        GeometryMonitor(K, pool="max")
