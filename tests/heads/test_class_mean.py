"""Fixed class-mean prototypes (SCL phase 2; docs/methods.md §4.4)."""

import numpy as np
import pytest
import torch

from neuralcollapse.heads import ClassMeanPrototypes

Z = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, -2.0], [0.5, -0.5]], dtype=torch.float64)
Y = torch.tensor([0, 0, 1, 1])


def test_class_means_on_constructed_case():
    z_before, y_before = Z.clone(), Y.clone()
    model = ClassMeanPrototypes(2, 2).fit(Z, Y)
    # class 0: (0.6, 0.8) + (1, 0) = (1.6, 0.8); class 1: (0, -1) + (0.7071, -0.7071)
    c0 = np.array([1.6, 0.8])
    c1 = np.array([np.sqrt(0.5), -1 - np.sqrt(0.5)])
    expected = np.stack([c0 / np.linalg.norm(c0), c1 / np.linalg.norm(c1)])
    np.testing.assert_allclose(model.weight.double().numpy(), expected, rtol=0, atol=1e-7)
    assert model.weight.dtype == torch.float32 and model.bias is None
    assert torch.equal(Z, z_before) and torch.equal(Y, y_before)
    assert model.class_counts.tolist() == [2, 2]


def test_prediction_is_argmax_cosine():
    model = ClassMeanPrototypes(2, 2, scale=5.0).fit(Z, Y).double()
    x = torch.tensor([[0.2, 1.0], [1.0, -3.0], [-1.0, -0.1]], dtype=torch.float64)
    mu = model.weight.double().numpy()
    cos = np.array([[xi @ m / np.linalg.norm(xi) for m in mu] for xi in x.numpy()])
    out = model(x)
    np.testing.assert_allclose(out.cosines.numpy(), cos, rtol=0, atol=1e-7)
    np.testing.assert_allclose(out.logits.numpy(), 5.0 * cos, rtol=0, atol=1e-6)
    assert model.predict(x).tolist() == np.argmax(cos, axis=1).tolist()
    torch.testing.assert_close(out.features.norm(dim=1), torch.ones(3, dtype=torch.float64))


def test_unnormalised_sums_option():
    model = ClassMeanPrototypes(2, 2, normalize=False).fit(Z, Y)
    c0, c1 = np.array([4.0, 4.0]), np.array([0.5, -2.5])
    np.testing.assert_allclose(model.weight.numpy(), np.stack([c0 / np.linalg.norm(c0), c1 / np.linalg.norm(c1)]),
                               atol=1e-7)


def test_streaming_fit_equals_one_shot_and_fit_replaces():
    rng = np.random.default_rng(0)
    z = torch.tensor(rng.normal(size=(50, 4)))
    y = torch.tensor(rng.integers(0, 3, size=50))
    one_shot = ClassMeanPrototypes(4, 3).fit(z, y)
    stream = ClassMeanPrototypes(4, 3)
    assert not stream.is_fitted
    for chunk in range(0, 50, 7):
        stream.partial_fit(z[chunk:chunk + 7], y[chunk:chunk + 7])
    assert stream.is_fitted
    torch.testing.assert_close(stream.class_sums, one_shot.class_sums, rtol=0, atol=1e-12)
    torch.testing.assert_close(stream.weight, one_shot.weight)
    stream.fit(z[:10], y[:10] * 0 + torch.tensor([0, 1, 2] * 3 + [0]))  # refit forgets the 50 samples
    assert int(stream.class_counts.sum()) == 10


def test_missing_class_and_unfitted_use_raise():
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no sample"):
        ClassMeanPrototypes(2, 3).fit(Z, Y)
    model = ClassMeanPrototypes(2, 2).partial_fit(Z[:2], Y[:2])
    with pytest.raises(ValueError, match=r"not fitted: class\(es\) \[1\] have no sample"):
        model(Z)
    with pytest.raises(ValueError, match=r"not fitted: class\(es\) \[0, 1\] have no sample"):
        ClassMeanPrototypes(2, 2).weight


def test_bad_fit_input():
    model = ClassMeanPrototypes(2, 2)
    with pytest.raises(ValueError, match=r"`features` must have 2 columns"):
        model.fit(torch.ones(4, 3), Y)
    with pytest.raises(ValueError, match=r"`labels` must hold class indices in \[0, 2\)"):
        model.fit(Z, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"`features` has 4, `labels` has 3"):
        model.fit(Z, Y[:3])
    with pytest.raises(TypeError, match=r"`labels` must be an integer tensor"):
        model.fit(Z, Y.double())
    with pytest.raises(ValueError, match=r"`scale` must be > 0"):
        ClassMeanPrototypes(2, 2, scale=0.0)
    with pytest.raises(ValueError, match=r"needs an initialised torch.distributed"):
        model.all_reduce()
