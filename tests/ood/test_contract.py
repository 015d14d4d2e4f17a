"""One check suite run over every registered detector (``ood.names()``)."""

import inspect
import warnings

import pytest
import torch

from neuralcollapse import ood
from neuralcollapse.ood import NotFittedError

from .conftest import fit_kwargs, make_cache, score_kwargs

NAMES = ood.names()
# small hyperparameters so that the 12-D, 120-sample cache is valid for every detector
SMALL = {"vim": {"dim": 4}, "knn": {"k": 3}}


def build(name, **extra):
    return ood.create(name, **{**SMALL.get(name, {}), **extra})


def test_all_detectors_registered():
    expected = {"msp", "odin", "rmds", "mahalanobis", "energy", "maxlogit", "vim", "knn", "dice", "she",
                "relation", "scale", "react", "ash"}
    assert set(NAMES) == expected


@pytest.mark.parametrize(("alias", "cls"), [("ebo", ood.Energy), ("EBO", ood.Energy), ("mds", ood.Mahalanobis)])
def test_aliases(alias, cls):
    assert type(ood.create(alias)) is cls
    assert ood.get(alias) is cls


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"unknown OOD detector 'knnn'.*did you mean 'knn'"):
        ood.create("knnn")


def test_unknown_hyperparameter():
    with pytest.raises(TypeError, match="unexpected keyword"):
        ood.create("knn", kk=3)


@pytest.mark.parametrize("name", NAMES)
def test_class_metadata(name):
    cls = ood.get(name)
    assert cls.name == name
    assert set(cls.requires.fit) <= set(ood.base.FIT_INPUTS)
    assert set(cls.requires.score) <= set(ood.base.SCORE_INPUTS)
    assert cls.requires.score, "every detector scores something"
    params = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self"}
    assert params == dict(cls.defaults), "defaults must be the constructor's defaults"
    assert set(cls.sweep) <= set(cls.defaults)
    for values in cls.sweep.values():
        assert len(values) >= 2
    assert cls.__doc__ and "Example" in cls.__doc__


@pytest.mark.parametrize("name", NAMES)
def test_fit_score_shape_and_inputs_unchanged(name):
    c = make_cache()
    fit_in, score_in = fit_kwargs(c), score_kwargs(c)
    snapshot = {(stage, k): v.clone() for stage, given in (("fit", fit_in), ("score", score_in))
                for k, v in given.items() if isinstance(v, torch.Tensor)}
    params = [p.detach().clone() for p in c["model"].parameters()]
    det = build(name)
    assert det.fit(**fit_in) is det
    scores = det.score(**score_in)
    assert scores.ndim == 1 and scores.shape[0] == c["test"].shape[0]
    assert scores.is_floating_point() and bool(torch.isfinite(scores).all())
    for (stage, key), before in snapshot.items():
        after = (fit_in if stage == "fit" else score_in)[key]
        assert torch.equal(after, before), f"{name} modified `{key}` given to {stage}"
    for p, before in zip(c["model"].parameters(), params):
        assert torch.equal(p, before) and p.grad is None
    # scoring twice gives the same result (no hidden state changes)
    assert torch.allclose(det.score(**score_in), scores)
    # __call__ is score
    assert torch.allclose(det(**score_in), scores)


@pytest.mark.parametrize("name", NAMES)
def test_score_before_fit(name):
    c = make_cache()
    det = build(name)
    if det.requires.fit:
        with pytest.raises(NotFittedError, match=f"'{name}' is not fitted"):
            det.score(**score_kwargs(c))
    else:  # stateless scores need no fit
        assert det.score(**score_kwargs(c)).shape == (c["test"].shape[0],)


@pytest.mark.parametrize("name", NAMES)
def test_missing_input_named(name):
    c = make_cache()
    det = build(name)
    for key in det.requires.fit:
        kwargs = fit_kwargs(c)
        kwargs.pop(key)
        with pytest.raises(ValueError, match=f"`{key}` is required by detector '{name}' in fit"):
            det.fit(**kwargs)
    det.fit(**fit_kwargs(c))
    for key in det.requires.score:
        kwargs = score_kwargs(c)
        kwargs.pop(key)
        with pytest.raises(ValueError, match=f"`{key}` is required by detector '{name}' in score"):
            det.score(**kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_unexpected_input_named(name):
    det = build(name)
    with pytest.raises(TypeError, match="unexpected input `feature`.*did you mean `features`"):
        det.fit(feature=torch.ones(3, 3))
    with pytest.raises(TypeError, match="unexpected input `logit`"):
        det.score(logit=torch.ones(3, 3))


@pytest.mark.parametrize("name", [n for n in NAMES if "features" in ood.get(n).requires.score])
def test_feature_count_checked_at_score(name):
    c = make_cache()
    det = build(name).fit(**fit_kwargs(c))
    kwargs = score_kwargs(c)
    kwargs["features"] = torch.cat([c["test"], c["test"][:, :1]], dim=1)
    with pytest.raises(ValueError, match="`features` must have 12 columns \\(the feature count seen in fit\\)"):
        det.score(**kwargs)


@pytest.mark.parametrize("name", [n for n in NAMES if "logits" in ood.get(n).requires.score])
def test_class_count_and_length_checked_at_score(name):
    c = make_cache()
    det = build(name).fit(**fit_kwargs(c))
    kwargs = score_kwargs(c)
    if det.n_classes_ is not None:
        kwargs["logits"] = c["test_logits"][:, :3]
        with pytest.raises(ValueError, match="`logits` must have 4 columns"):
            det.score(**kwargs)
    if "features" in det.requires.score:
        kwargs = score_kwargs(c)
        kwargs["logits"] = c["test_logits"][:-1]
        with pytest.raises(ValueError, match="same number of samples"):
            det.score(**kwargs)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "odin"])
def test_bad_inputs_named(name):
    c = make_cache()
    det = build(name)
    read = det.requires.fit or det.requires.score
    key = next(k for k in ("features", "logits", "weight") if k in read)
    stage = det.fit if key in det.requires.fit else det.score
    base = fit_kwargs(c) if stage == det.fit else score_kwargs(c)
    nan = base[key].clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match=f"`{key}` contains 1 NaN"):
        stage(**{**base, key: nan})
    with pytest.raises(ValueError, match=f"`{key}` must be 2-D"):
        stage(**{**base, key: base[key][0]})
    with pytest.raises(ValueError, match=f"`{key}` is empty"):
        stage(**{**base, key: base[key][:0]})
    with pytest.raises(TypeError, match=f"`{key}` must be a floating-point tensor"):
        stage(**{**base, key: base[key].long()})


def test_fewer_than_two_classes():
    c = make_cache()
    with pytest.raises(ValueError, match="`logits` must have at least 2 columns"):
        ood.msp_score(c["test_logits"][:, :1])
    with pytest.raises(ValueError, match="`logits` must have at least 2 columns"):
        ood.create("energy").score(logits=c["test_logits"][:, :1])
    with pytest.raises(ValueError, match="`weight` must have at least 2 rows"):
        ood.create("scale").fit(weight=c["weight"][:1])
    for name in ("mahalanobis", "rmds"):
        with pytest.raises(ValueError, match="`labels` must contain at least two classes; got 1"):
            ood.create(name).fit(features=c["features"], labels=torch.full_like(c["labels"], 2))


def test_fit_input_consistency():
    c = make_cache()
    with pytest.raises(ValueError, match="`weight` must have one column per feature"):
        ood.create("dice").fit(features=c["features"], weight=c["weight"][:, :5])
    with pytest.raises(ValueError, match="`bias` must have one entry per row of `weight`"):
        ood.create("scale").fit(weight=c["weight"], bias=c["bias"][:2])
    with pytest.raises(ValueError, match="fit inputs must have the same number of samples"):
        ood.create("mahalanobis").fit(features=c["features"], labels=c["labels"][:-1])
    with pytest.raises(ValueError, match=r"`labels` must hold class indices in \[0, 4\)"):
        ood.create("she").fit(features=c["features"], labels=c["labels"] + 1, logits=c["logits"])
    with pytest.raises(TypeError, match="`labels` must be an integer tensor"):
        ood.create("mahalanobis").fit(features=c["features"], labels=c["labels"].float())
    with pytest.raises(TypeError, match="`model` must be a torch.nn.Module"):
        ood.create("odin").fit(model=lambda x: x)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "odin"])
def test_half_precision_inputs(name):
    c = make_cache()
    fit_in = fit_kwargs(c)
    det = build(name).fit(**{k: v.bfloat16() if k in ("features", "logits") else v for k, v in fit_in.items()})
    s = det.score(features=c["test"].bfloat16(), logits=c["test_logits"].bfloat16())
    assert s.dtype == torch.float32 and bool(torch.isfinite(s).all())


@pytest.mark.parametrize("name", NAMES)
def test_numpy_inputs_accepted(name):
    c = make_cache()
    fit_in = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in fit_kwargs(c).items()}
    score_in = {k: v.numpy() for k, v in score_kwargs(c).items()}
    ref = build(name).fit(**fit_kwargs(c)).score(**score_kwargs(c))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = build(name).fit(**fit_in).score(**score_in)
    torch.testing.assert_close(got, ref)
