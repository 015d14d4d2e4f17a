"""Shared ID/OOD caches for the detector tests: small, post-ReLU, with a consistent linear head."""

import pytest
import torch

N_TRAIN, N_TEST, DIM, CLASSES = 120, 30, 12, 4


def make_cache(seed: int = 0, n_train: int = N_TRAIN, n_test: int = N_TEST, dim: int = DIM, classes: int = CLASSES):
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(classes, dim, generator=g)
    y = torch.arange(n_train) % classes
    train = torch.relu(centres[y] + torch.randn(n_train, dim, generator=g))
    test = torch.relu(centres[torch.arange(n_test) % classes] + torch.randn(n_test, dim, generator=g))
    weight = 0.3 * centres
    bias = 0.1 * torch.randn(classes, generator=g)
    model = torch.nn.Linear(dim, classes)
    with torch.no_grad():
        model.weight.copy_(weight)
        model.bias.copy_(bias)
    return {
        "features": train,
        "labels": y,
        "logits": train @ weight.t() + bias,
        "weight": weight,
        "bias": bias,
        "model": model,
        "test": test,
        "test_logits": test @ weight.t() + bias,
    }


@pytest.fixture
def cache():
    return make_cache()


def fit_kwargs(c):
    return {k: c[k] for k in ("features", "labels", "logits", "weight", "bias", "model")}


def score_kwargs(c):
    # ODIN's model is a linear layer on the features, so its ``inputs`` are the test features
    return {"features": c["test"], "logits": c["test_logits"], "inputs": c["test"]}
