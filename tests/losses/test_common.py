import pytest
import torch
import torch.nn.functional as F
from hypothesis import given

from neuralcollapse.losses._common import prepare_logits_target, reduce_loss

from ._reference import CE_PROBLEM, ce_problem


def _nll(logits, target, **kw):
    z, t, valid, shape = prepare_logits_target(
        logits, target, weight=kw.get("weight"), ignore_index=kw.get("ignore_index", -100),
        reduction=kw.get("reduction", "mean"),
    )
    per = -torch.log_softmax(z, dim=1).gather(1, t[:, None]).squeeze(1)
    return reduce_loss(per, kw.get("reduction", "mean"), target=t, valid=valid, weight=kw.get("weight"),
                       batch_shape=shape)


@given(**CE_PROBLEM)
def test_reduction_matches_cross_entropy(n, k, spatial, reduction, use_weight, ignore, seed):
    logits, target, weight = ce_problem(n, k, spatial, use_weight, seed)
    if ignore:
        target.view(-1)[0] = -100
    ours = _nll(logits, target, weight=weight, reduction=reduction)
    if ignore and reduction == "mean" and bool((target == -100).all()):
        assert float(ours) == 0.0  # documented: no NaN when everything is ignored
        return
    ref = F.cross_entropy(logits, target, weight=weight, reduction=reduction)
    torch.testing.assert_close(ours, ref)


def test_all_ignored_mean_is_graph_connected_zero():
    logits = torch.randn(3, 4, requires_grad=True)
    target = torch.full((3,), -100)
    loss = _nll(logits, target)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_half_precision_upcast_and_bad_reduction():
    z, _, _, _ = prepare_logits_target(torch.zeros(2, 3, dtype=torch.bfloat16), torch.zeros(2, dtype=torch.long))
    assert z.dtype == torch.float32
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        prepare_logits_target(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), reduction="avg")
    with pytest.raises(ValueError, match="`weight` must have one entry per class"):
        prepare_logits_target(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), weight=torch.ones(2))
