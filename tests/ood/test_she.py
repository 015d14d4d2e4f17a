"""SHE: stored patterns from correctly classified training samples; missing classes."""

import pytest
import torch

from neuralcollapse import ood

F = torch.tensor([[1.0, 0.0], [3.0, 0.0], [9.0, 9.0], [0.0, 2.0], [0.0, 4.0]])
Y = torch.tensor([0, 0, 0, 1, 1])
# sample 2 is labelled 0 but predicted 1: it must not enter either pattern
Z = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 2.0]])


def test_patterns_and_inner_product():
    det = ood.create("she").fit(features=F, labels=Y, logits=Z)
    torch.testing.assert_close(det.patterns_, torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    test = torch.tensor([[1.0, 5.0], [1.0, 5.0]])
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # predicted 0, then 1
    torch.testing.assert_close(det.score(features=test, logits=logits), torch.tensor([2.0, 15.0]))


def test_other_metrics():
    test = torch.tensor([[2.0, 1.0]])
    logits = torch.tensor([[1.0, 0.0]])
    euclid = ood.create("she", metric="euclidean").fit(features=F, labels=Y, logits=Z)
    torch.testing.assert_close(euclid.score(features=test, logits=logits), torch.tensor([-1.0]))
    cosine = ood.create("she", metric="cosine").fit(features=F, labels=Y, logits=Z)
    torch.testing.assert_close(cosine.score(features=test, logits=logits), torch.tensor([2 / 5**0.5]))


def test_class_without_correct_prediction():
    z = Z.clone()
    z[3:] = torch.tensor([2.0, 0.0])  # class 1 never predicted correctly
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have no correctly predicted training sample"):
        ood.create("she").fit(features=F, labels=Y, logits=z)
    det = ood.create("she", fallback="label_mean").fit(features=F, labels=Y, logits=z)
    torch.testing.assert_close(det.patterns_, torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    assert det.fallback_classes_ == [1]


def test_class_without_any_sample():
    z3 = torch.cat([Z, torch.zeros(5, 1)], dim=1)  # K = 3, class 2 has no sample at all
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no training sample at all"):
        ood.create("she", fallback="label_mean").fit(features=F, labels=Y, logits=z3)


def test_options_validated():
    with pytest.raises(ValueError, match="`metric` must be one of 'inner_product', 'euclidean', 'cosine'"):
        ood.create("she", metric="dot")
    with pytest.raises(ValueError, match="`fallback` must be one of None, 'label_mean'"):
        ood.create("she", fallback="zeros")
