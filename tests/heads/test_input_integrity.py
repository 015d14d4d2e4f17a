"""Issue 12, heads: floating dtypes required, impossible prototype sets refused, dtype mismatches named."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuralcollapse import heads
from neuralcollapse.heads import prototypes as prototypes_module


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_simplex_etf_and_optimize_prototypes_need_a_floating_dtype(dtype):
    # today simplex_etf(4, 3, dtype=int64) returns an all-zero integer matrix
    with pytest.raises(TypeError, match=rf"`dtype` must be a floating-point dtype \(e.g. torch.float32\); got {dtype}"):
        heads.simplex_etf(4, 3, dtype=dtype)
    with pytest.raises(TypeError, match="`dtype` must be a floating-point dtype"):
        heads.optimize_prototypes(6, 2, steps=2, dtype=dtype)
    with pytest.raises(TypeError, match="`dtype` must be a torch.dtype; got str"):
        heads.simplex_etf(4, 3, dtype="float32")
    etf = heads.simplex_etf(4, 3, dtype=torch.float16)
    assert etf.dtype == torch.float16 and float((etf.float() @ etf.float().T)[0, 1]) == pytest.approx(-1 / 3, abs=1e-3)


@pytest.mark.parametrize("method", ["auto", "two_stage", "dl2pa", "hpn"])
def test_more_than_two_prototypes_on_a_line_are_refused(method):
    # on the 0-sphere (d = 1) only ±1 exist: optimize_prototypes(3, 1) returned [1, -1, -1] silently
    with pytest.raises(ValueError, match=r"`dim`=1 holds only 2 distinct unit vectors \(±1\); got num_classes=3"):
        heads.optimize_prototypes(3, 1, steps=5, method=method)
    two = heads.optimize_prototypes(2, 1)
    assert sorted(two.flatten().tolist()) == [-1.0, 1.0]


def test_duplicate_prototypes_warn(monkeypatch):
    # any method whose result holds coinciding prototypes warns, naming the pair
    def collapsed(k, d, steps, lr, generator):
        out = torch.eye(k, d, dtype=torch.float64)
        out[2] = out[0]
        return out

    monkeypatch.setattr(prototypes_module, "_two_stage", collapsed)
    with pytest.warns(UserWarning, match=r"prototypes 0 and 2 coincide \(cosine 1"):
        heads.optimize_prototypes(4, 2, steps=1, method="two_stage")


def test_linear_head_names_a_dtype_mismatch_and_follows_a_cast_head():
    head = heads.LinearHead(5, 3)
    h64 = torch.randn(4, 5, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"`h` has dtype torch.float64 but the head's weight is torch.float32"):
        head(h64)
    dual = heads.create("dual", in_features=5, num_classes=3)
    with pytest.raises(TypeError, match=r"`h` has dtype torch.float64 but the head's weight is torch.float32"):
        dual(h64)
    head.double()
    out = head(h64)
    torch.testing.assert_close(out.logits, F.linear(h64, head.weight, head.bias), rtol=0, atol=0)
    assert out.logits.dtype == torch.float64
    # under autocast mixed dtypes are the autocast's business, as for nn.Linear
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert heads.LinearHead(5, 3)(torch.randn(4, 5)).logits.dtype == torch.bfloat16
        assert heads.LinearHead(5, 3)(torch.randn(4, 5, dtype=torch.bfloat16)).logits.dtype == torch.bfloat16
