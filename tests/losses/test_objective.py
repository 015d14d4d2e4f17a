"""Objective: spec parsing, weighting, parts, set_weight, and the fused CE + OCCE fast path."""

import shutil

import pytest
import torch

import neuralcollapse.losses.objective as objective_module
from neuralcollapse.losses import (
    Objective,
    ObjectiveOutput,
    cross_entropy,
    focal,
    instance_anticlass_target,
    occe,
    parse_objective,
)
from neuralcollapse.output import HeadOutput


def _out(n=8, k=6, seed=0, dtype=torch.float64, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    z = (2 * torch.randn(n, k, generator=g, dtype=dtype)).requires_grad_(requires_grad)
    return HeadOutput(logits=z, features=z), torch.randint(0, k, (n,), generator=g)


# ---------------------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ce+occe", [("ce", 1.0), ("occe", 1.0)]),
        ("ce+0.1*occe", [("ce", 1.0), ("occe", 0.1)]),
        ("focal+occe", [("focal", 1.0), ("occe", 1.0)]),
        ("0.5*ce + 2*occe", [("ce", 0.5), ("occe", 2.0)]),
        ("1e-3*occe", [("occe", 1e-3)]),
        ("ce + 1e+2*occe", [("ce", 1.0), ("occe", 100.0)]),
        ("ce+occe*0.25", [("ce", 1.0), ("occe", 0.25)]),
        ("lsce + fl + .5*nl", [("ls", 1.0), ("focal", 1.0), ("nl", 0.5)]),
        ("CE+OCCE", [("ce", 1.0), ("occe", 1.0)]),
        ("adafl+0*occe", [("adafocal", 1.0), ("occe", 0.0)]),
    ],
)
def test_parse(spec, expected):
    assert parse_objective(spec) == expected
    assert list(Objective.parse(spec).weights.items()) == expected


@pytest.mark.parametrize(
    ("spec", "exc", "match"),
    [
        ("", ValueError, "objective spec is empty"),
        ("   ", ValueError, "objective spec is empty"),
        ("ce+", ValueError, "cannot parse objective term ''"),
        ("ce++occe", ValueError, "cannot parse objective term ''"),
        ("0.1**occe", ValueError, "cannot parse objective term"),
        ("0.1*occe*2", ValueError, "cannot parse objective term"),
        ("ce occe", ValueError, "cannot parse objective term"),
        ("ce+0.1occe", ValueError, "cannot parse objective term"),
        ("ce+xentropy", ValueError, "unknown loss term 'xentropy'; valid names: .*"),
        ("ce+occ", ValueError, "did you mean 'occe'"),
        ("ce+occe+ce", ValueError, "repeats term\\(s\\) ce"),
        ("ls+lsce", ValueError, "repeats term\\(s\\) ls"),
        ("ce+-0.1*occe", ValueError, "must be >= 0"),
        ("-1*ce", ValueError, "must be >= 0"),
        ("ce+occe*-2", ValueError, "must be >= 0"),
        ("1e400*occe", ValueError, "must be finite"),
    ],
)
def test_parse_errors(spec, exc, match):
    with pytest.raises(exc, match=match):
        parse_objective(spec)


def test_constructor_errors():
    with pytest.raises(TypeError, match="objective spec must be a str"):
        parse_objective(3)
    with pytest.raises(ValueError, match="weight of term 'occe' must be finite and >= 0"):
        Objective([("ce", 1.0), ("occe", -0.5)])
    with pytest.raises(ValueError, match="`terms` repeats a term"):
        Objective(["ce", ("ce", 2.0)])
    with pytest.raises(ValueError, match="`terms` is empty"):
        Objective([])
    with pytest.raises(ValueError, match="`term_kwargs` given for term\\(s\\) not in the objective: focal"):
        Objective.parse("ce+occe", focal={"gamma": 3.0})
    with pytest.raises(TypeError, match="`output` must be a HeadOutput"):
        Objective.parse("ce")(torch.zeros(2, 3), torch.tensor([0, 1]))


# ---------------------------------------------------------------------------------------------------------
# weighting, parts, set_weight
# ---------------------------------------------------------------------------------------------------------


def test_total_is_weighted_sum_and_parts_are_unweighted():
    out, y = _out()
    obj = Objective.parse("0.5*focal + 2*occe", focal={"gamma": 3.0})
    res = obj(out, y)
    assert isinstance(res, ObjectiveOutput)
    f, o = focal(out.logits, y, gamma=3.0), occe(out.logits, y)
    torch.testing.assert_close(res.parts["focal"], f.detach())
    torch.testing.assert_close(res.parts["occe"], o.detach())
    torch.testing.assert_close(res.total, 0.5 * f + 2 * o)
    assert not res.parts["focal"].requires_grad and res.total.requires_grad
    assert obj.spec == "0.5*focal+2*occe"


def test_set_weight_and_zero_weights():
    out, y = _out()
    obj = Objective.parse("ce+occe")
    obj.set_weight("occe", 0.1)
    assert obj.weights == {"ce": 1.0, "occe": 0.1} and obj.spec == "ce+0.1*occe"
    torch.testing.assert_close(obj(out, y).total, cross_entropy(out.logits, y) + 0.1 * occe(out.logits, y))
    obj.set_weight("ce", 0.0)
    obj.set_weight("occe", 0.0)
    res = obj(out, y)
    assert res.total.item() == 0.0 and res.total.requires_grad  # graph-connected zero
    assert res.parts["occe"].item() == pytest.approx(occe(out.logits, y).item())
    with pytest.raises(ValueError, match="term 'focal' is not in this objective"):
        obj.set_weight("focal", 1.0)
    with pytest.raises(ValueError, match="`weight` must be finite and >= 0"):
        obj.set_weight("ce", -1.0)
    with pytest.raises(ValueError, match="`weight` must be finite and >= 0"):
        obj.set_weight("ce", float("nan"))
    assert "occe" in obj and "focal" not in obj


def test_context_routing_and_soft_targets():
    out, y = _out()
    q = instance_anticlass_target(torch.softmax(-out.logits.detach(), 1), y)
    obj = Objective.parse("ce+0.5*occe")
    res = obj(out, y, anticlass_target=q, epoch=2)
    expected = cross_entropy(out.logits, y) + 0.5 * occe(out.logits, y, anticlass_target=q)
    torch.testing.assert_close(res.total, expected)


# ---------------------------------------------------------------------------------------------------------
# fused fast path
# ---------------------------------------------------------------------------------------------------------


def _grads(obj, out, y, **context):
    res = obj(out, y, **context)
    (g,) = torch.autograd.grad(res.total, out.logits)
    return res, g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("spec", "kwargs"),
    [
        ("ce+occe", {}),
        ("0.5*ce+2*occe", {}),
        ("ce+1e-3*occe+focal", {}),
        ("ce+0.1*occe", {"ce": {"ignore_index": 1}, "occe": {"ignore_index": 1}}),
        (
            "ce+occe",
            {"ce": {"weight": torch.linspace(0.5, 2, 6)}, "occe": {"weight": torch.linspace(0.5, 2, 6)}},
        ),
    ],
)
def test_fused_equals_unfused(spec, kwargs, dtype):
    out, y = _out(dtype=dtype)
    if dtype == torch.float64:
        kwargs = {k: {n: (v.double() if torch.is_tensor(v) else v) for n, v in kw.items()} for k, kw in kwargs.items()}
    fused, unfused = Objective.parse(spec, **kwargs), Objective.parse(spec, fuse=False, **kwargs)
    (rf, gf), (ru, gu) = _grads(fused, out, y), _grads(unfused, out, y)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(rf.total, ru.total, **tol)
    assert rf.parts.keys() == ru.parts.keys()
    for name in rf.parts:
        torch.testing.assert_close(rf.parts[name], ru.parts[name], **tol)
    torch.testing.assert_close(gf, gu, **tol)


def test_fused_path_is_taken_only_when_valid(monkeypatch):
    calls = []
    real = objective_module.weighted_ce_occe

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(objective_module, "weighted_ce_occe", spy)
    out, y = _out()
    q = instance_anticlass_target(torch.softmax(-out.logits.detach(), 1), y)
    dual = HeadOutput(logits=out.logits, features=out.features, anti_logits=-out.logits.flip(1))
    w6 = torch.ones(6, dtype=torch.float64)

    def used(obj, output=out, **context):
        calls.clear()
        obj(output, y, **context)
        return len(calls) == 1

    assert used(Objective.parse("ce+occe"))
    assert used(Objective.parse("ce+occe", ce={"weight": w6}, occe={"weight": w6.clone()}))
    assert not used(Objective.parse("ce+occe", fuse=False))
    assert not used(Objective.parse("ce+occe"), anticlass_target=q)
    assert not used(Objective.parse("ce+occe"), output=dual)
    assert not used(Objective.parse("ce+occe", occe={"eps": 1e-7}))
    assert not used(Objective.parse("ce+occe", ce={"ignore_index": 0}))
    assert not used(Objective.parse("ce+occe", ce={"weight": w6}))
    assert not used(Objective.parse("ce+occe", ce={"weight": w6}, occe={"weight": 2 * w6}))
    assert not used(Objective.parse("ls+occe"))
    # the fallbacks compute the plain composition
    res = Objective.parse("ce+occe")(dual, y)
    torch.testing.assert_close(res.total, cross_entropy(out.logits, y) + occe(-dual.anti_logits, y))


def test_fused_objective_errors_name_the_argument():
    out, y = _out()
    bad = HeadOutput(logits=out.logits.detach().clone(), features=out.features)
    bad.logits[0, 0] = float("nan")
    with pytest.raises(ValueError, match="`logits` contains NaN or Inf"):
        Objective.parse("ce+occe")(bad, y)
    with pytest.raises(ValueError, match="`target` must hold class indices"):
        Objective.parse("ce+occe")(out, y + 6)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="no C++ compiler")
def test_compiled_fused_equals_unfused():
    out, y = _out(n=16, k=7, dtype=torch.float32)
    (rc, gc), (ru, gu) = _grads(Objective.parse("ce+0.3*occe", compile=True), out, y), _grads(
        Objective.parse("ce+0.3*occe", fuse=False), out, y
    )
    torch.testing.assert_close(rc.total, ru.total)
    torch.testing.assert_close(gc, gu)
