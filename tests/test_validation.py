import math

import numpy as np
import pytest
import torch

import neuralcollapse as nc
from neuralcollapse._validation import (
    as_tensor,
    check_choice,
    check_labels,
    check_logits_target,
    check_matrix,
    check_positive,
    check_probability,
    check_same_length,
    check_tensor,
    data_checks_enabled,
    warn_percentile_fraction,
)


def test_check_tensor_type_rank_dtype_empty():
    with pytest.raises(TypeError, match="`x` must be a torch.Tensor; got list"):
        check_tensor([1.0], "x")
    with pytest.raises(ValueError, match=r"`x` must be 2-D; got shape \(3,\)"):
        check_tensor(torch.zeros(3), "x", ndim=2)
    with pytest.raises(ValueError, match="`x` must be 2-D or 3-D"):
        check_tensor(torch.zeros(3), "x", ndim=(2, 3))
    with pytest.raises(TypeError, match="floating-point"):
        check_tensor(torch.zeros(3, dtype=torch.long), "x", floating=True)
    with pytest.raises(TypeError, match="integer tensor"):
        check_tensor(torch.zeros(3), "x", integer=True)
    with pytest.raises(TypeError, match="integer tensor"):
        check_tensor(torch.zeros(3, dtype=torch.bool), "x", integer=True)
    with pytest.raises(ValueError, match="`x` is empty"):
        check_tensor(torch.zeros(0, 4), "x")


def test_check_tensor_finite_and_switch():
    bad = torch.tensor([1.0, float("nan"), float("inf")])
    with pytest.raises(ValueError, match=r"`x` contains 2 NaN or Inf"):
        check_tensor(bad, "x", finite=True)
    assert data_checks_enabled()
    with nc.validation(False):
        assert not data_checks_enabled()
        check_tensor(bad, "x", finite=True)  # skipped
    assert data_checks_enabled()


def test_check_matrix_rows_cols():
    x = torch.zeros(2, 3)
    assert check_matrix(x, "w", rows=2, cols=3) is x
    with pytest.raises(ValueError, match="`w` must have 4 rows"):
        check_matrix(x, "w", rows=4)
    with pytest.raises(ValueError, match="`w` must have 5 columns"):
        check_matrix(x, "w", cols=5)


def test_check_labels_range_and_ignore_index():
    y = torch.tensor([0, 2, -100])
    check_labels(y, "y", num_classes=3, ignore_index=-100)
    with pytest.raises(ValueError, match=r"`y` must hold class indices in \[0, 3\); got values in \[-100, 2\]"):
        check_labels(y, "y", num_classes=3)
    with pytest.raises(ValueError, match="`y` must have length 2"):
        check_labels(y, "y", length=2)


def test_check_logits_target_shapes():
    assert check_logits_target(torch.zeros(4, 5), torch.zeros(4, dtype=torch.long)) == 5
    assert check_logits_target(torch.zeros(2, 5, 3, 3), torch.zeros(2, 3, 3, dtype=torch.long)) == 5
    with pytest.raises(ValueError, match=r"`target` must have shape \(4,\)"):
        check_logits_target(torch.zeros(4, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 classes"):
        check_logits_target(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="`target` must be an integer tensor"):
        check_logits_target(torch.zeros(4, 5), torch.zeros(4))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        check_logits_target(torch.zeros(4), torch.zeros(4, dtype=torch.long))


def test_scalars():
    assert check_positive(2, "t") == 2.0
    with pytest.raises(ValueError, match="`t` must be > 0; got 0"):
        check_positive(0, "t")
    assert check_positive(0, "t", strict=False) == 0.0
    with pytest.raises(ValueError, match="finite"):
        check_positive(math.nan, "t")
    with pytest.raises(TypeError, match="real number"):
        check_positive(True, "t")
    assert check_probability(0.5, "p") == 0.5
    with pytest.raises(ValueError, match=r"`p` must be in \(0, 1\]"):
        check_probability(0.0, "p", low_open=True)
    with pytest.raises(ValueError, match="`mode` must be one of 'a', 'b'; got 'c'"):
        check_choice("c", "mode", ("a", "b"))


def test_same_length_and_as_tensor():
    assert check_same_length(("a", torch.zeros(3)), ("b", torch.zeros(3, 2)), ("c", None)) == 3
    with pytest.raises(ValueError, match="`a` has 3, `b` has 2"):
        check_same_length(("a", torch.zeros(3)), ("b", torch.zeros(2)))
    t = as_tensor(np.arange(3), "x")
    assert t.tolist() == [0, 1, 2]
    with pytest.raises(TypeError, match="`x` must be a torch.Tensor or numpy array"):
        as_tensor("abc", "x")


def test_percentile_fraction_warns():
    with pytest.warns(UserWarning, match="looks like a fraction"):
        warn_percentile_fraction(0.9, "percentile")


# --------------------------------------------------------------------------- meta tensors (issue 12)
def _meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, dtype=dtype, device="meta")


def test_meta_tensors_raise_a_clear_error_before_item():
    from neuralcollapse import losses, metrics, ood, openset

    labels = _meta(4, dtype=torch.int64)
    cases = [
        ("logits", lambda: losses.occe(_meta(4, 3), labels)),
        ("features", lambda: losses.arcface(_meta(4, 5), labels, _meta(3, 5))),
        ("features", lambda: metrics.neural_collapse(_meta(4, 5), labels)),
        ("features", lambda: ood.KNN(k=1).fit(features=_meta(4, 5))),
        ("id_scores", lambda: ood.evaluate(_meta(4), torch.rand(4))),
        ("ood_scores", lambda: ood.evaluate(torch.rand(4), _meta(4))),
        ("known_scores", lambda: openset.oscr(_meta(4), torch.ones(4, dtype=torch.bool), torch.rand(3))),
        ("known_correct", lambda: openset.oscr(torch.rand(4), _meta(4, dtype=torch.bool), torch.rand(3))),
        ("target", lambda: losses.occe(torch.randn(4, 3), labels)),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=f"`{name}` is a meta tensor"):
            call()
    with pytest.raises(ValueError, match="`x` is a meta tensor"):
        check_tensor(_meta(2, 2), "x", finite=True)
    with pytest.raises(ValueError, match="`y` is a meta tensor"):
        check_labels(_meta(2, dtype=torch.int64), "y", num_classes=3)
    # shape-only checks still accept meta tensors (e.g. a model traced on the meta device)
    assert check_matrix(_meta(2, 3), "x", finite=False).shape == (2, 3)
    assert check_tensor(_meta(2, 3), "x", ndim=2, floating=True).is_meta
