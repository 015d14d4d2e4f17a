"""Soft anti-class targets (OCCE paper, Appendix A.1.1, Eqs. 9–10) and their state holders."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from neuralcollapse.losses import (
    AnticlassClassMatrix,
    AnticlassMemory,
    class_anticlass_target,
    instance_anticlass_target,
    occe,
)

from ._reference import softmax_np


def _instance_ref(prev, y, alpha):
    """Eq. 9 with the true-class entry of q̃ zeroed and renormalised, float64 loop."""
    n, k = prev.shape
    out = np.zeros((n, k))
    for i in range(n):
        qt = prev[i].astype(np.float64).copy()
        qt[y[i]] = 0.0
        qt = qt / qt.sum() if qt.sum() > 0 else np.where(np.arange(k) == y[i], 0.0, 1.0 / (k - 1))
        for j in range(k):
            ybar = 0.0 if j == y[i] else 1.0 / (k - 1)
            out[i, j] = (1 - alpha) * ybar + alpha * qt[j]
    return out


def _assert_one_cold(t, y):
    assert torch.allclose(t.sum(1), torch.ones(len(y), dtype=t.dtype), atol=1e-6)
    assert torch.equal(t[torch.arange(len(y)), y], torch.zeros(len(y), dtype=t.dtype))
    assert bool((t >= 0).all())


# ---------------------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------------------


@given(n=st.integers(1, 6), k=st.integers(2, 6), alpha=st.floats(0, 1), seed=st.integers(0, 10_000))
def test_instance_target_matches_reference_and_is_one_cold(n, k, alpha, seed):
    g = torch.Generator().manual_seed(seed)
    prev = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64), 1)
    y = torch.randint(0, k, (n,), generator=g)
    t = instance_anticlass_target(prev, y, alpha)
    np.testing.assert_allclose(t.numpy(), _instance_ref(prev.numpy(), y.numpy(), alpha), rtol=1e-12, atol=1e-15)
    _assert_one_cold(t, y)


def test_instance_target_edge_cases():
    y = torch.tensor([0, 1])
    prev = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]])  # row 0: all mass on the true class
    t = instance_anticlass_target(prev, y, alpha=1.0)
    torch.testing.assert_close(t, torch.tensor([[0.0, 0.5, 0.5], [0.4, 0.0, 0.6]]))
    uniform = instance_anticlass_target(prev, y, alpha=0.0)
    torch.testing.assert_close(uniform, torch.tensor([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5]]))
    default = instance_anticlass_target(prev, y)  # α = 0.1
    torch.testing.assert_close(default[1], 0.9 * uniform[1] + 0.1 * t[1])
    half = instance_anticlass_target(prev.half(), y)
    assert half.dtype == torch.float32
    assert torch.equal(prev, torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]]))  # input untouched


def test_class_target_matches_reference():
    c = torch.tensor([[0.0, 0.8, 0.2], [0.3, 0.0, 0.7], [0.5, 0.5, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1])
    t = class_anticlass_target(c, y)  # α = 0.5
    expected = np.array([[0, 0.65, 0.35], [0.4, 0, 0.6], [0.5, 0.5, 0], [0.4, 0, 0.6]])
    np.testing.assert_allclose(t.numpy(), expected, rtol=1e-12)
    _assert_one_cold(t, y)
    # any non-negative matrix is projected: diagonal mass removed, rows renormalised
    raw = torch.tensor([[5.0, 1.0, 3.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    t = class_anticlass_target(raw, torch.tensor([0, 1, 2]), alpha=1.0)
    torch.testing.assert_close(t, torch.tensor([[0.0, 0.25, 0.75], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]))


def test_targets_are_valid_occe_input():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    t = instance_anticlass_target(torch.softmax(-z, 1), y)
    assert torch.isfinite(occe(z, y, anticlass_target=t))
    t2 = class_anticlass_target(torch.rand(5, 5, generator=g), y)
    assert torch.isfinite(occe(z, y, anticlass_target=t2))


@pytest.mark.parametrize(
    ("fn", "args", "exc", "match"),
    [
        (instance_anticlass_target, (torch.rand(3, 4), torch.tensor([0, 1])), ValueError, "`target` must have length"),
        (instance_anticlass_target, (torch.rand(3, 4), torch.tensor([0, 1, 4])), ValueError, "class indices"),
        (instance_anticlass_target, (torch.rand(3, 4), torch.tensor([0.0, 1, 2])), TypeError, "must be an integer"),
        (instance_anticlass_target, (torch.rand(3, 1), torch.tensor([0, 0, 0])), ValueError, "at least 2 classes"),
        (instance_anticlass_target, (torch.rand(3), torch.tensor([0, 0, 0])), ValueError, "`previous_q` must be 2-D"),
        (instance_anticlass_target, (-torch.rand(2, 3), torch.tensor([0, 1])), ValueError, "`previous_q` must be >= 0"),
        (instance_anticlass_target, (torch.rand(2, 3), torch.tensor([0, 1]), 1.5), ValueError, "`alpha` must be in"),
        (
            instance_anticlass_target,
            (torch.tensor([[0.5, float("nan")]]), torch.tensor([0])),
            ValueError,
            "`previous_q` contains 1 NaN",
        ),
        (class_anticlass_target, (torch.rand(3, 4), torch.tensor([0])), ValueError, "`class_matrix` must be square"),
        (class_anticlass_target, (-torch.rand(3, 3), torch.tensor([0])), ValueError, "`class_matrix` must be >= 0"),
        (class_anticlass_target, (torch.rand(3, 3), torch.tensor([3])), ValueError, "class indices in \\[0, 3\\)"),
        (class_anticlass_target, (torch.rand(3, 3), torch.tensor([[0]])), ValueError, "`target` must be 1-D"),
        (class_anticlass_target, (torch.rand(3, 3), torch.tensor([0]), -0.1), ValueError, "`alpha` must be in"),
    ],
)
def test_builder_bad_input(fn, args, exc, match):
    with pytest.raises(exc, match=match):
        fn(*args)


# ---------------------------------------------------------------------------------------------------------
# AnticlassMemory (instance-based)
# ---------------------------------------------------------------------------------------------------------


def test_memory_epoch_zero_uniform_then_previous_epoch():
    mem = AnticlassMemory(num_samples=10, num_classes=4)
    idx = torch.tensor([3, 7, 1])
    y = torch.tensor([0, 2, 3])
    t0 = mem.targets(idx, y, alpha=0.3)
    torch.testing.assert_close(t0, (1 - torch.nn.functional.one_hot(y, 4).float()) / 3)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 4, generator=g, requires_grad=True)
    mem.update(idx, z)
    assert not mem.probs.requires_grad
    t1 = mem.targets(idx, y, alpha=0.3)
    prev = np.stack([softmax_np(-row) for row in z.detach().double().numpy()])
    np.testing.assert_allclose(t1.numpy(), _instance_ref(prev, y.numpy(), 0.3), rtol=1e-6, atol=1e-7)
    # untouched samples still uniform; state round-trips
    torch.testing.assert_close(mem.probs[0], torch.full((4,), 0.25))
    other = AnticlassMemory(10, 4)
    other.load_state_dict(mem.state_dict())
    torch.testing.assert_close(other.targets(idx, y, 0.3), t1)
    mem.reset()
    torch.testing.assert_close(mem.targets(idx, y, alpha=0.3), t0)


def test_memory_gather_hook_and_dtype():
    calls = []

    def gather(x):  # a fake second rank that saw the mirrored samples
        calls.append(x.shape)
        return torch.cat([x, x.flip(0) if x.ndim == 2 else 9 - x])

    mem = AnticlassMemory(10, 3, dtype=torch.float16, gather_fn=gather)
    z = torch.tensor([[0.0, 1.0, 2.0], [2.0, 0.0, 0.0]])
    mem.update(torch.tensor([0, 1]), z)
    assert len(calls) == 2 and mem.probs.dtype == torch.float16
    # gathered indices [0, 1, 9, 8] with predictions [q0, q1, q1, q0]
    torch.testing.assert_close(mem.probs[9].float(), torch.softmax(-z[1], 0), atol=1e-3, rtol=0)
    torch.testing.assert_close(mem.probs[8].float(), torch.softmax(-z[0], 0), atol=1e-3, rtol=0)
    assert mem.targets(torch.tensor([9]), torch.tensor([0])).dtype == torch.float32
    single = AnticlassMemory(4, 3, all_gather=True)  # no process group: identity
    single.update(torch.tensor([2]), z[:1])
    torch.testing.assert_close(single.probs[2], torch.softmax(-z[0], 0))


def test_memory_bad_input():
    mem = AnticlassMemory(5, 3)
    with pytest.raises(ValueError, match="`indices` must hold class indices in \\[0, 5\\)"):
        mem.update(torch.tensor([5]), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="`logits` must have 3 columns"):
        mem.update(torch.tensor([0]), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="`logits` must have 1 rows"):
        mem.update(torch.tensor([0]), torch.zeros(2, 3))
    with pytest.raises(TypeError, match="`indices` must be an integer tensor"):
        mem.targets(torch.tensor([0.0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="`logits` contains 1 NaN"):
        mem.update(torch.tensor([0]), torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="`num_classes` must be >= 2"):
        AnticlassMemory(5, 1)
    with pytest.raises(TypeError, match="`num_samples` must be an int"):
        AnticlassMemory(5.0, 3)
    with pytest.raises(TypeError, match="`dtype` must be a floating dtype"):
        AnticlassMemory(5, 3, dtype=torch.int64)


# ---------------------------------------------------------------------------------------------------------
# AnticlassClassMatrix (class-based)
# ---------------------------------------------------------------------------------------------------------


def _class_matrix_ref(z, y, k, previous):
    out = previous.copy()
    for c in range(k):
        rows = [softmax_np(-z[i]) for i in range(len(y)) if y[i] == c]
        if rows:
            m = np.mean(rows, axis=0)
            m[c] = 0.0
            out[c] = m / m.sum()
    return out


def test_class_matrix_epoch_statistics():
    k = 4
    cm = AnticlassClassMatrix(k)
    uniform = (1 - np.eye(k)) / (k - 1)
    np.testing.assert_allclose(cm.matrix.numpy(), uniform, rtol=1e-6)
    g = torch.Generator().manual_seed(2)
    z = torch.randn(9, k, generator=g)
    y = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 1])  # class 3 never seen
    cm.update(z[:5], y[:5])
    cm.update(z[5:], y[5:])
    c = cm.finalize_epoch()
    ref = _class_matrix_ref(z.double().numpy(), y.numpy(), k, uniform)
    np.testing.assert_allclose(c.numpy(), ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(c[3].numpy(), uniform[3], rtol=1e-6)  # unseen class keeps its row
    assert torch.equal(torch.diagonal(c), torch.zeros(k))
    assert float(cm.counts.sum()) == 0.0 and float(cm.sums.abs().sum()) == 0.0  # reset for the next epoch
    # next epoch: only class 3 seen → the other rows are kept
    cm.update(z[:2], torch.tensor([3, 3]))
    c2 = cm.finalize_epoch()
    np.testing.assert_allclose(c2[:3].numpy(), c[:3].numpy())
    np.testing.assert_allclose(c2[3].numpy(), _class_matrix_ref(z[:2].double().numpy(), [3, 3], k, ref)[3], rtol=1e-6)
    t = cm.targets(torch.tensor([0, 3]))
    torch.testing.assert_close(t, class_anticlass_target(c2, torch.tensor([0, 3]), 0.5))
    _assert_one_cold(t, torch.tensor([0, 3]))


def test_class_matrix_sync_equals_single_process():
    k = 3
    g = torch.Generator().manual_seed(5)
    z = torch.randn(8, k, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 0, 2, 1])
    full = AnticlassClassMatrix(k)
    full.update(z, y)
    expected = full.finalize_epoch()
    rank0, rank1 = AnticlassClassMatrix(k), AnticlassClassMatrix(k)
    rank1.update(z[4:], y[4:])
    stats1 = {2: rank1.sums.clone(), 1: rank1.counts.clone()}
    rank0.sync_fn = lambda x: x + stats1[x.ndim]  # all-reduce(sum) with the other rank
    rank0.update(z[:4], y[:4])
    torch.testing.assert_close(rank0.finalize_epoch(), expected)
    solo = AnticlassClassMatrix(k, all_reduce=True)  # no process group: identity
    solo.update(z, y)
    torch.testing.assert_close(solo.finalize_epoch(), expected)


def test_class_matrix_state_dict_and_bad_input():
    cm = AnticlassClassMatrix(3)
    cm.update(torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([1]))
    other = AnticlassClassMatrix(3)
    other.load_state_dict(cm.state_dict())
    torch.testing.assert_close(other.finalize_epoch(), cm.finalize_epoch())
    with pytest.raises(ValueError, match="`logits` must have 3 columns"):
        cm.update(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="`target` must have length 2"):
        cm.update(torch.zeros(2, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="`target` must hold class indices"):
        cm.update(torch.zeros(1, 3), torch.tensor([3]))
    with pytest.raises(TypeError, match="`target` must be an integer tensor"):
        cm.update(torch.zeros(1, 3), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="`num_classes` must be >= 2"):
        AnticlassClassMatrix(1)


# ---------------------------------------------------------------------------------------------------------
# DDP: two gloo processes
# ---------------------------------------------------------------------------------------------------------


def _ddp_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(11)
        z = torch.randn(8, 3, generator=g)
        y = torch.tensor([0, 1, 2, 0, 1, 0, 2, 1])
        idx = torch.arange(8)
        mine = slice(4 * rank, 4 * rank + 4)
        cm = AnticlassClassMatrix(3, all_reduce=True)
        cm.update(z[mine], y[mine])
        mem = AnticlassMemory(8, 3, all_gather=True)
        mem.update(idx[mine], z[mine])
        torch.save({"matrix": cm.finalize_epoch(), "memory": mem.probs.clone()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.slow
def test_two_process_all_reduce_and_all_gather(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    g = torch.Generator().manual_seed(11)
    z = torch.randn(8, 3, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 0, 2, 1])
    single = AnticlassClassMatrix(3)
    single.update(z, y)
    expected = single.finalize_epoch()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(got["matrix"], expected)
        torch.testing.assert_close(got["memory"], torch.softmax(-z, 1))  # every rank saw all 8 samples
