"""KNN: torch backend == brute force (NumPy float64) == faiss, chunking, normalisation edge cases."""

import numpy as np
import pytest
import torch

from neuralcollapse import ood
from neuralcollapse.ood.knn import _faiss


def brute_force(train, test, k):
    def norm(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    a, q = norm(train.astype(np.float64)), norm(test.astype(np.float64))
    dist = np.sqrt(((q[:, None, :] - a[None, :, :]) ** 2).sum(-1))
    return -np.sort(dist, axis=1)[:, k - 1]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(200, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 5, 50, 200])
def test_torch_matches_brute_force(data, k):
    train, test = data
    ref = brute_force(train, test, k)
    det = ood.create("knn", k=k, backend="torch").fit(features=torch.from_numpy(train))
    np.testing.assert_allclose(det.score(features=torch.from_numpy(test)).numpy(), ref, atol=1e-5)
    det64 = ood.create("knn", k=k, backend="torch").fit(features=torch.from_numpy(train).double())
    np.testing.assert_allclose(det64.score(features=torch.from_numpy(test).double()).numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("chunk_elements", [1, 50, 700, 10_000])
def test_chunked_search_is_exact(data, chunk_elements):
    # tiny budgets split both the queries and the training bank (running top-k merge)
    train, test = (torch.from_numpy(x).double() for x in data)
    full = ood.create("knn", k=7, backend="torch").fit(features=train).score(features=test)
    part = ood.create("knn", k=7, backend="torch", chunk_elements=chunk_elements).fit(features=train)
    torch.testing.assert_close(part.score(features=test), full)


@pytest.mark.skipif(_faiss() is None, reason="faiss not installed")
@pytest.mark.parametrize("k", [1, 10])
def test_faiss_matches_torch(data, k):
    train, test = (torch.from_numpy(x) for x in data)
    t = ood.create("knn", k=k, backend="torch").fit(features=train).score(features=test)
    f_det = ood.create("knn", k=k, backend="faiss").fit(features=train)
    assert f_det.backend_ == "faiss"
    f = f_det.score(features=test)
    torch.testing.assert_close(f, t, atol=1e-5, rtol=0)
    auto = ood.create("knn", k=k).fit(features=train)
    assert auto.backend_ == "faiss"  # float32 CPU with faiss installed
    assert ood.create("knn", k=k).fit(features=train.double()).backend_ == "torch"
    np.testing.assert_allclose(f.numpy(), brute_force(data[0], data[1], k), atol=1e-5)


def test_zero_vector_and_duplicates():
    # a zero feature normalises to the zero vector (OpenOOD's x/‖x‖ + 1e−10 gives NaN); distance 1 to units
    train = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    det = ood.create("knn", k=2, backend="torch").fit(features=train)
    s = det.score(features=torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0]]))
    # (3, 0) -> (1, 0): neighbours at distance 0, 0 (duplicates count); (0, 1): 0 then √2
    torch.testing.assert_close(s, torch.tensor([-1.0, 0.0, -(2**0.5)]))
    zero_bank = ood.create("knn", k=1, backend="torch").fit(features=torch.zeros(2, 2))
    torch.testing.assert_close(zero_bank.score(features=torch.tensor([[0.0, 5.0]])), torch.tensor([-1.0]))


def test_scale_invariant():
    rng = np.random.default_rng(1)
    train, test = torch.tensor(rng.normal(size=(30, 4))), torch.tensor(rng.normal(size=(5, 4)))
    det = ood.create("knn", k=3, backend="torch").fit(features=train)
    torch.testing.assert_close(det.score(features=7.5 * test), det.score(features=test))


def test_errors_named():
    with pytest.raises(ValueError, match=r"`k` must be <= the number of training features \(3\); got k=4"):
        ood.create("knn", k=4).fit(features=torch.ones(3, 2))
    with pytest.raises(ValueError, match="`k` must be >= 1"):
        ood.create("knn", k=0)
    with pytest.raises(ValueError, match="`backend` must be one of 'auto', 'torch', 'faiss'"):
        ood.create("knn", backend="annoy")
    with pytest.raises(ValueError, match="`chunk_elements` must be >= 1"):
        ood.create("knn", chunk_elements=0)


def test_faiss_missing_raises(monkeypatch):
    monkeypatch.setattr("neuralcollapse.ood.knn._faiss", lambda: None)
    with pytest.raises(ValueError, match="`backend`='faiss' needs the faiss package"):
        ood.create("knn", backend="faiss")
    assert ood.create("knn", k=1).fit(features=torch.ones(2, 2)).backend_ == "torch"
