"""NeuralCollapse (torchmetrics): equals the functional form over uneven batches, shift against cancellation,
state merging, DDP (2 gloo processes), memory independent of N, API behaviour and bad input."""

from __future__ import annotations

import math
import socket

import pytest
import torch

from neuralcollapse.metrics import NeuralCollapse, neural_collapse
from neuralcollapse.metrics.neural_collapse import _nc_compute, _nc_update, _NCStats

from . import _ddp_worker
from .test_neural_collapse import assert_close_dict, random_problem, simplex_etf_means

UNEVEN = (1, 17, 64, 3, 100, 29, 250)


def batches(n: int, sizes=UNEVEN):
    start, i = 0, 0
    while start < n:
        stop = min(n, start + sizes[i % len(sizes)])
        yield slice(start, stop)
        start, i = stop, i + 1


def without_ncc(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "ncc_mismatch"}


def stream(metric: NeuralCollapse, features, labels, logits=None, sizes=UNEVEN) -> NeuralCollapse:
    for part in batches(features.shape[0], sizes):
        metric.update(features[part], labels[part], None if logits is None else logits[part])
    return metric


# --------------------------------------------------------------------------- streaming == functional
@pytest.mark.parametrize("global_mean", ["weighted", "unweighted"])
def test_streaming_equals_functional_over_uneven_batches(global_mean):
    features, labels, weight, bias, logits = random_problem(n=700, d=9, k=6, seed=11)
    expected = neural_collapse(features, labels, weight, bias, logits=logits, global_mean=global_mean)
    first = stream(NeuralCollapse(6, 9, global_mean=global_mean), features, labels)
    # the NCC needs the means in advance: a second pass with the first pass's means
    second = NeuralCollapse(6, 9, global_mean=global_mean, class_means=first.means())
    out = stream(second, features, labels, logits, sizes=(5, 300, 41)).compute(weight=weight, bias=bias)
    assert_close_dict(out, expected, rtol=1e-10, atol=1e-14)
    no_ncc = first.compute(weight, bias)
    expected.pop("ncc_mismatch")
    assert_close_dict(no_ncc, expected, rtol=1e-10, atol=1e-14)


def test_ncc_from_constructor_weight_without_logits():
    features, labels, weight, bias, _ = random_problem(n=300, d=5, k=4, seed=12)
    expected = neural_collapse(features, labels, weight, bias)
    means = stream(NeuralCollapse(4, 5), features, labels).means()
    metric = stream(NeuralCollapse(4, 5, class_means=means, weight=weight, bias=bias), features, labels)
    assert_close_dict(metric.compute(), expected, rtol=1e-10, atol=1e-14)


def test_ncc_absent_unless_every_sample_was_counted():
    features, labels, weight, _, logits = random_problem(n=200, d=5, k=4, seed=13)
    means = stream(NeuralCollapse(4, 5), features, labels).means()
    metric = NeuralCollapse(4, 5, class_means=means)
    metric.update(features[:100], labels[:100], logits[:100])
    metric.update(features[100:], labels[100:])  # no logits, no weight: this batch is not counted
    assert "ncc_mismatch" not in metric.compute(weight=weight)
    assert "ncc_mismatch" not in stream(NeuralCollapse(4, 5), features, labels, logits).compute()


def test_float32_features_stream_like_functional():
    features, labels, weight, _, _ = random_problem(n=400, d=6, k=3, seed=14)
    f32 = features.float()
    expected = without_ncc(neural_collapse(f32, labels, weight.float()))
    out = stream(NeuralCollapse(3, 6), f32, labels).compute(weight=weight.float())
    assert_close_dict(out, expected, rtol=1e-10, atol=1e-14)


def test_perfect_collapse_streams_to_zero():
    means = simplex_etf_means(5, 7, scale=2.0)
    labels = torch.arange(5).repeat(40)
    metric = stream(NeuralCollapse(5, 7, class_means=means, weight=means), means[labels] + 50.0, labels)
    out = metric.compute(weight=means, bias=-(means @ torch.full((7,), 50.0, dtype=torch.float64)))
    for key, value in out.items():
        assert value == pytest.approx(0.0, abs=1e-9), key


# --------------------------------------------------------------------------- cancellation
def test_shift_keeps_accuracy_with_huge_common_offset():
    # spread 1e-3 on top of a common offset of 1e6: without a shift, Q ≈ N·1e12 and Σ_W (≈1e-6) is lost
    features, labels, weight, _, _ = random_problem(n=600, d=6, k=4, seed=15)
    small = 1e-3 * features
    expected = neural_collapse(small, labels, weight)  # translation-invariant keys
    out = stream(NeuralCollapse(4, 6), small + 1e6, labels).compute(weight=weight)
    for key in ("nc1", "nc2_means", "nc3", "equinorm_means", "equiangularity_means", "self_duality"):
        assert out[key] == pytest.approx(expected[key], rel=1e-6), key
    # the same statistics accumulated around c = 0 (no shift) are ruined: the test can fail
    naive = _NCStats.zeros(4, 6, shift=torch.zeros(6, dtype=torch.float64))
    for part in batches(600):
        naive = _nc_update(naive, small[part] + 1e6, labels[part])
    assert abs(_nc_compute(naive)["nc1"] - expected["nc1"]) > 0.01 * expected["nc1"]


# --------------------------------------------------------------------------- merging and DDP
def test_merge_state_of_metrics_with_different_shifts():
    features, labels, weight, bias, _ = random_problem(n=500, d=5, k=3, seed=16, offset=1e3)
    expected = without_ncc(neural_collapse(features, labels, weight, bias))
    a = stream(NeuralCollapse(3, 5), features[:180], labels[:180])
    b = stream(NeuralCollapse(3, 5), features[180:] + 0.0, labels[180:])
    assert not torch.equal(a.shift, b.shift)
    a.merge_state(b)
    assert_close_dict(a.compute(weight, bias), expected, rtol=1e-10, atol=1e-14)
    fresh = NeuralCollapse(3, 5)
    fresh.merge_state(a)  # adopts a's shift
    assert torch.equal(fresh.shift, a.shift)
    assert_close_dict(fresh.compute(weight, bias), expected, rtol=1e-10, atol=1e-14)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
def test_ddp_two_processes_equal_one(tmp_path):
    import torch.multiprocessing as mp

    features, labels, weight, bias, logits = random_problem(n=400, d=6, k=4, seed=17, offset=1e4)
    means = stream(NeuralCollapse(4, 6), features, labels).means()
    single = stream(NeuralCollapse(4, 6, class_means=means, weight=weight), features, labels, logits)
    data = {
        "features": features,
        "labels": labels,
        "logits": logits,
        "weight": weight,
        "bias": bias,
        "class_means": means,
        "num_classes": 4,
    }
    mp.spawn(_ddp_worker.run, args=(2, _free_port(), data, str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    expected = single.compute()
    expected_bias = single.compute(weight=weight, bias=bias)
    # each rank saw only its shard, yet compute() is the same everywhere and equals one process
    assert results[0]["local_count"] + results[1]["local_count"] == 400
    assert 0 < results[1]["local_count"] < 400
    torch.testing.assert_close(results[0]["shift"], results[1]["shift"], rtol=0, atol=0)
    for res in results:
        assert_close_dict(res["out"], expected, rtol=1e-6, atol=1e-12)
        assert_close_dict(res["out_bias"], expected_bias, rtol=1e-6, atol=1e-12)
        torch.testing.assert_close(res["means"], single.means(), rtol=1e-10, atol=1e-8)
    assert results[0]["out"] == results[1]["out"]


# --------------------------------------------------------------------------- API behaviour
def test_memory_is_independent_of_n():
    k, d = 4, 6
    sizes = []
    for n in (50, 1000):
        features, labels, *_ = random_problem(n=n, d=d, k=k, seed=18)
        metric = stream(NeuralCollapse(k, d), features, labels)
        sizes.append(sum(t.numel() * t.element_size() for t in metric.metric_state.values()))
    assert sizes[0] == sizes[1] == 8 * (k + k * d + d * d + 2 + d)


def test_forward_accumulates_and_returns_none_reset_clears():
    features, labels, weight, _, _ = random_problem(n=300, d=5, k=3, seed=19, offset=10.0)
    metric = NeuralCollapse(3, 5)
    for part in batches(300):
        assert metric(features[part], labels[part]) is None
    expected = without_ncc(neural_collapse(features, labels, weight))
    assert_close_dict(metric.compute(weight), expected, rtol=1e-10, atol=1e-14)
    metric.reset()
    assert int(metric.counts.sum()) == 0 and not metric._shift_ready
    metric.update(features[:50] - 10.0, labels[:50])
    torch.testing.assert_close(metric.shift, (features[:50] - 10.0).mean(0))


def test_compute_is_not_cached_across_arguments():
    features, labels, weight, bias, _ = random_problem(n=200, d=5, k=3, seed=20)
    metric = stream(NeuralCollapse(3, 5), features, labels)
    with_bias = metric.compute(weight, bias)
    without_bias = metric.compute(weight)
    assert with_bias["nc4"] != without_bias["nc4"]
    assert "nc2" not in metric.compute()
    assert metric.compute(weight, bias) == with_bias


def test_constructor_classifier_is_a_snapshot_and_compute_overrides_it():
    features, labels, weight, bias, _ = random_problem(n=200, d=5, k=3, seed=21)
    live = weight.clone()
    metric = stream(NeuralCollapse(3, 5, weight=live, bias=bias), features, labels)
    live.mul_(3.0)
    expected = without_ncc(neural_collapse(features, labels, weight, bias))
    assert_close_dict(metric.compute(), expected, rtol=1e-10, atol=1e-14)
    expected_live = without_ncc(neural_collapse(features, labels, live))
    assert_close_dict(metric.compute(weight=live), expected_live, rtol=1e-10, atol=1e-14)


def test_inference_mode_and_inputs_unchanged():
    features, labels, weight, bias, logits = random_problem(n=200, d=5, k=3, seed=24)
    copies = [t.clone() for t in (features, labels, weight, bias, logits)]
    metric = NeuralCollapse(3, 5, class_means=features[:3].clone(), weight=weight, bias=bias)
    with torch.inference_mode():
        stream(metric, features, labels, logits)
        inside = metric.compute()
        metric.reset()  # states re-created as inference tensors
        metric.update(features[:50], labels[:50], logits[:50])
    stream(metric, features[50:], labels[50:], logits[50:])  # updating them outside must still work
    assert int(metric.counts.sum()) == 200 and math.isfinite(inside["nc1"])
    for before, after in zip(copies, (features, labels, weight, bias, logits)):
        assert torch.equal(before, after)


def test_states_stay_float64_when_module_is_cast():
    metric = NeuralCollapse(3, 4)
    metric.to(torch.float32)
    metric.set_dtype(torch.float16)
    assert metric.sums.dtype == metric.scatter.dtype == metric.shift.dtype == torch.float64
    assert metric.counts.dtype == torch.int64


def test_empty_batch_is_a_no_op_and_missing_class_in_means_is_nan():
    features, labels, *_ = random_problem(n=100, d=4, k=3, seed=22)
    metric = NeuralCollapse(4, 4, allow_missing_classes=True)
    metric.update(features[:0], labels[:0])
    assert not metric._shift_ready
    stream(metric, features, labels)
    means = metric.means()
    assert torch.isnan(means[3]).all() and torch.isfinite(means[:3]).all()
    # a NaN row marks a class the NCC never picks
    logits = torch.zeros(100, 4, dtype=torch.float64)
    logits[torch.arange(100), labels] = 1.0
    ncc = stream(NeuralCollapse(4, 4, class_means=means, allow_missing_classes=True), features, labels, logits)
    expected = neural_collapse(features, labels, logits=logits, num_classes=4, allow_missing_classes=True)
    assert ncc.compute()["ncc_mismatch"] == pytest.approx(expected["ncc_mismatch"])
    assert math.isfinite(expected["nc1"])


# --------------------------------------------------------------------------- bad input
def test_bad_input_raises_naming_the_argument():
    features, labels, weight, bias, logits = random_problem(n=40, d=4, k=3, seed=23)
    with pytest.raises(ValueError, match="`num_classes` must be >= 2; got 1"):
        NeuralCollapse(1, 4)
    with pytest.raises(ValueError, match="`dim` must be >= 1; got 0"):
        NeuralCollapse(3, 0)
    with pytest.raises(TypeError, match="`num_classes` must be an int"):
        NeuralCollapse(3.0, 4)
    with pytest.raises(ValueError, match="`global_mean` must be one of"):
        NeuralCollapse(3, 4, global_mean="median")
    with pytest.raises(ValueError, match=r"`weight` must have shape \(K, d\) = \(3, 4\)"):
        NeuralCollapse(3, 4, weight=weight.T)
    with pytest.raises(ValueError, match="`bias` needs `weight`"):
        NeuralCollapse(3, 4, bias=bias)
    with pytest.raises(ValueError, match=r"`class_means` must have shape \(K, d\)"):
        NeuralCollapse(3, 4, class_means=torch.zeros(3, 5))
    half_nan = torch.zeros(3, 4)
    half_nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="`class_means` rows must be finite, or all NaN"):
        NeuralCollapse(3, 4, class_means=half_nan)
    with pytest.raises(ValueError, match="Unexpected keyword arguments: `dims`"):
        NeuralCollapse(3, 4, dims=4)
    metric = NeuralCollapse(3, 4)
    with pytest.raises(ValueError, match="`features` must have d=4 columns"):
        metric.update(features[:, :3], labels)
    with pytest.raises(ValueError, match="`labels` must have length 40"):
        metric.update(features, labels[:-1])
    with pytest.raises(ValueError, match=r"`labels` must hold class indices in \[0, 3\)"):
        metric.update(features, labels + 1)
    bad = features.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="`features` contains 1 NaN or Inf"):
        metric.update(bad, labels)
    with pytest.raises(ValueError, match="`logits` must have 3 columns"):
        metric.update(features, labels, logits[:, :2])
    with pytest.raises(TypeError, match="`labels` must be an integer tensor"):
        metric.update(features, labels.float())
    assert int(metric.counts.sum()) == 0  # rejected batches leave no trace
    with pytest.raises(ValueError, match="`labels` must contain every class"):
        metric.compute()
    stream(metric, features, labels)
    with pytest.raises(ValueError, match="`bias` needs `weight`"):
        metric.compute(bias=bias)
    with pytest.raises(ValueError, match=r"`weight` must have shape \(K, d\)"):
        metric.compute(weight=weight[:2])
    with pytest.raises(ValueError, match=r"`incoming_state` must have \(K, d\) = \(3, 4\)"):
        metric.merge_state(NeuralCollapse(3, 5))
    with pytest.raises(TypeError, match="`incoming_state` must be a NeuralCollapse"):
        metric.merge_state([1])
    with pytest.raises(ValueError, match="`incoming_state` lacks the state"):
        metric.merge_state({"counts": metric.counts})


# --------------------------------------------------------------------------- integrity (issue 12)
def _rel_close(actual: dict, expected: dict, rel: float = 1e-12) -> None:
    assert set(actual) == set(expected)
    for key in expected:
        assert abs(actual[key] - expected[key]) <= rel * max(abs(expected[key]), 1e-300), key


@pytest.mark.parametrize("bare_fresh", [False, True])
def test_persistent_state_dict_resume_equals_uninterrupted_stream(bare_fresh):
    # a common offset makes the shift matter: a resumed stream that re-fixes it is off by ~1e-2 in nc1
    features, labels, weight, bias, logits = random_problem(n=600, d=6, k=4, seed=31, offset=1e3)
    means = stream(NeuralCollapse(4, 6), features, labels).means()

    def make():
        return NeuralCollapse(4, 6, class_means=means, weight=weight, bias=bias)

    whole = stream(make(), features, labels, logits)
    first = stream(make(), features[:250], labels[:250], logits[:250])
    first.persistent(True)
    saved = first.state_dict()
    # the bare metric gets the reference tensors from the checkpoint (they are saved with persistent(True))
    resumed = NeuralCollapse(4, 6) if bare_fresh else make()
    resumed.load_state_dict(saved)
    assert resumed._shift_ready
    stream(resumed, features[250:], labels[250:], logits[250:], sizes=(7, 90, 33))
    expected = whole.compute()
    assert "ncc_mismatch" in expected
    _rel_close(resumed.compute(), expected)
    _rel_close(resumed.compute(weight=weight), whole.compute(weight=weight))
    torch.testing.assert_close(resumed.means(), whole.means(), rtol=1e-12, atol=0)


def test_reference_tensors_are_not_in_state_dict_by_default_strict_parent_load():
    features, labels, weight, bias, _ = random_problem(n=100, d=4, k=3, seed=32)
    means = stream(NeuralCollapse(3, 4), features, labels).means()
    parent = torch.nn.Module()
    parent.nc = NeuralCollapse(3, 4, class_means=means, weight=weight, bias=bias)
    stream(parent.nc, features, labels)
    saved = parent.state_dict()
    assert not any(key.startswith("nc.") for key in saved)
    fresh = torch.nn.Module()
    fresh.nc = NeuralCollapse(3, 4)
    fresh.load_state_dict(saved, strict=True)
    # the other way round: a bare parent's checkpoint into a parent whose metric holds references
    bare = torch.nn.Module()
    bare.nc = NeuralCollapse(3, 4)
    holder = torch.nn.Module()
    holder.nc = NeuralCollapse(3, 4, class_means=means, weight=weight, bias=bias)
    holder.load_state_dict(bare.state_dict(), strict=True)
    torch.testing.assert_close(holder.nc.weight, weight, rtol=0, atol=0)
    # persistent(True): states, flag and references travel through a parent's strict load
    parent.nc.persistent(True)
    saved = parent.state_dict()
    assert {"nc.shift", "nc.shift_ready", "nc.update_count", "nc.weight", "nc.bias", "nc.class_means"} <= set(saved)
    fresh.load_state_dict(saved, strict=True)
    assert fresh.nc._shift_ready and fresh.nc.class_means.dtype == torch.float64
    assert fresh.nc.compute() == parent.nc.compute()
    saved["nc.weight"] = weight[:2]
    with pytest.raises(ValueError, match=r"`weight` must have shape \(K, d\) = \(3, 4\)"):
        NeuralCollapse(3, 4).load_state_dict({k[3:]: v for k, v in saved.items()})


def _snapshot(metric: NeuralCollapse) -> dict:
    names = ["counts", "sums", "scatter", "ncc_mismatches", "ncc_samples", "shift", "weight", "bias", "class_means"]
    return {name: getattr(metric, name).clone() for name in names}


@pytest.mark.parametrize(
    "cast",
    [
        lambda m, p: m.to(torch.float16),
        lambda m, p: m.to(torch.bfloat16),
        lambda m, p: m.to("cpu", torch.float16),
        lambda m, p: m.set_dtype(torch.half),
        lambda m, p: m.set_dtype(torch.bfloat16),
        lambda m, p: m.set_dtype(torch.float32),
        lambda m, p: p.half(),
        lambda m, p: p.bfloat16(),
        lambda m, p: p.float(),
        lambda m, p: p.to(torch.float16),
        lambda m, p: p.type(torch.float16),
    ],
    ids=[
        "to-f16",
        "to-bf16",
        "to-device-f16",
        "set_dtype-half",
        "set_dtype-bf16",
        "set_dtype-f32",
        "parent-half",
        "parent-bf16",
        "parent-float",
        "parent-to-f16",
        "parent-type-f16",
    ],
)
def test_dtype_casts_never_round_accumulators_or_references(cast):
    # 2501 samples: a count that float16 cannot hold (2501 -> 2500); values with a 1e3 offset lose digits in half
    features, labels, weight, bias, logits = random_problem(n=2501, d=5, k=1 + 2, seed=33, offset=1e3)
    labels[3:] = 0
    means = stream(NeuralCollapse(3, 5), features, labels).means() + 1e-4
    parent = torch.nn.Module()
    parent.nc = NeuralCollapse(3, 5, class_means=means, weight=weight / 3.0, bias=bias / 3.0)
    metric = stream(parent.nc, features, labels, logits)
    before = _snapshot(metric)
    expected = metric.compute()
    cast(metric, parent)
    after = _snapshot(metric)
    for name, value in before.items():
        assert after[name].dtype == value.dtype, name
        assert torch.equal(after[name], value), name
    assert all(default.dtype in (torch.float64, torch.int64) for default in metric._defaults.values())
    assert metric.compute() == expected
    # accumulating on after the cast still equals the uninterrupted stream
    metric.update(features[:10], labels[:10], logits[:10])
    reference = stream(
        NeuralCollapse(3, 5, class_means=means, weight=weight / 3.0, bias=bias / 3.0), features, labels, logits
    )
    reference.update(features[:10], labels[:10], logits[:10])
    _rel_close(metric.compute(), reference.compute())


def test_compute_with_cache_is_keyed_on_the_arguments():
    features, labels, weight, bias, _ = random_problem(n=200, d=5, k=3, seed=34)
    metric = stream(NeuralCollapse(3, 5, compute_with_cache=True), features, labels)
    plain = stream(NeuralCollapse(3, 5), features, labels)
    with_bias = metric.compute(weight, bias)
    assert metric.compute(weight) == plain.compute(weight) != with_bias
    assert metric.compute(weight=weight, bias=bias) == with_bias
    other = weight.flip(0)
    assert metric.compute(other) == plain.compute(other)
    assert "nc2" not in metric.compute()
    live = weight.clone()
    first = metric.compute(live)
    live.mul_(2.0)  # in-place change of the same tensor: the cached value is stale
    assert metric.compute(live) == plain.compute(live) != first
    metric.update(features[:20], labels[:20])
    plain.update(features[:20], labels[:20])
    assert metric.compute(weight, bias) == plain.compute(weight, bias)
