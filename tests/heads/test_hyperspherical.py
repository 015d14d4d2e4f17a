"""Hyperspherical prototype head (DL2PA, CVPR 2024; docs/methods.md §7.2–7.3): forward, momentum representatives,
re-assignment, resume."""

import pytest
import torch

from neuralcollapse.heads import (
    HypersphericalPrototypeHead,
    optimize_prototypes,
    update_class_representatives,
)


def _head(**kw):
    return HypersphericalPrototypeHead(3, 3, prototypes=torch.eye(3), **kw)


def test_default_prototypes_come_from_optimize_prototypes():
    head = HypersphericalPrototypeHead(5, 8, dim=3, seed=2, steps=50)
    torch.testing.assert_close(head.prototype_bank, optimize_prototypes(8, 3, 50, seed=2), rtol=0, atol=0)
    assert head.assignment.tolist() == list(range(8))
    assert torch.equal(head.representatives, head.prototype_bank)
    assert head.projection is not None and head.projection.out_features == 3
    assert HypersphericalPrototypeHead(4, 3).projection is None
    assert HypersphericalPrototypeHead(4, 3, projection=True).projection is not None


def test_forward_uses_assigned_prototypes_in_class_order():
    bank = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    head = HypersphericalPrototypeHead(2, 3, prototypes=bank, scale=4.0).double()
    torch.testing.assert_close(head.prototype_bank, torch.nn.functional.normalize(bank.double(), dim=1),
                               rtol=0, atol=1e-7)  # normalised in float64, stored in the default dtype
    unit_bank = head.prototype_bank
    head.assignment.copy_(torch.tensor([2, 0, 1]))
    h = torch.tensor([[3.0, 4.0], [-1.0, 0.5]], dtype=torch.float64)
    out = head(h)
    u = h / h.norm(dim=1, keepdim=True)
    expected = torch.stack([u @ unit_bank[p] for p in (2, 0, 1)], dim=1)  # column c uses prototype pi(c)
    torch.testing.assert_close(out.cosines, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.logits, 4.0 * expected)
    torch.testing.assert_close(out.prototypes, unit_bank[[2, 0, 1]])
    torch.testing.assert_close(head.weight, unit_bank[[2, 0, 1]])
    torch.testing.assert_close(out.features, u)


def test_update_representatives_matches_functional_rule_both_modes():
    feats = torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 0.0]])
    target = torch.tensor([0, 0, 2])
    for compat in (False, True):
        head = _head(reference_compat=compat, momentum=0.8)
        expected = update_class_representatives(torch.eye(3), feats, target, momentum=0.8,
                                                reference_compat=compat)
        head.update_representatives(feats, target)
        torch.testing.assert_close(head.representatives, expected, rtol=0, atol=0)
    assert head.assignment.tolist() == [0, 1, 2]  # representatives move; the assignment waits for reassign


def test_reassign_on_constructed_case():
    head = _head(momentum=0.0)
    assert head.reassign() == 0  # q = P initially: nothing changes
    # class 0 features point at prototype 1, class 1 at prototype 2, class 2 at prototype 0
    feats = torch.tensor([[0.1, 1.0, 0.0], [0.0, 0.2, 1.0], [1.0, 0.0, 0.3]])
    head.update_representatives(feats, torch.tensor([0, 1, 2]))
    assert head.reassign() == 3
    assert head.assignment.tolist() == [1, 2, 0]
    assert head(feats).logits.argmax(dim=1).tolist() == [0, 1, 2]
    assert head.reassign() == 0
    # swap classes 0 and 2 only
    head.update_representatives(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 2]))
    assert head.reassign() == 2
    assert head.assignment.tolist() == [0, 2, 1]


def test_state_dict_resume_is_exact():
    head = HypersphericalPrototypeHead(4, 5, dim=3, steps=30, seed=0)
    feats = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    head.update_representatives(feats, torch.arange(10) % 5)
    head.assignment.copy_(torch.tensor([4, 3, 2, 1, 0]))
    state = head.state_dict()
    assert {"prototype_bank", "assignment", "representatives"} <= set(state)
    resumed = HypersphericalPrototypeHead(4, 5, dim=3, steps=30, seed=9)
    resumed.load_state_dict(state)
    for name in ("prototype_bank", "assignment", "representatives"):
        assert torch.equal(getattr(resumed, name), getattr(head, name))
    h = torch.randn(6, 4)
    torch.testing.assert_close(resumed(h).logits, head(h).logits, rtol=0, atol=0)
    assert resumed.reassign() == head.reassign()


def test_batch_norm_variant_and_hpn_prototypes():
    head = HypersphericalPrototypeHead(6, 4, dim=2, batch_norm=True, method="hpn", steps=20)
    out = head(torch.randn(8, 6))
    torch.testing.assert_close(out.features.norm(dim=1), torch.ones(8))
    assert head.bn is not None and head.bias is None


def test_dim_inferred_from_given_prototypes():
    head = HypersphericalPrototypeHead(6, 4, prototypes=torch.eye(4)[:, :3] + 0.1)
    assert head.dim == 3 and head.projection is not None and head(torch.randn(2, 6)).features.shape == (2, 3)


def test_given_prototypes_are_not_modified():
    bank = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    before = bank.clone()
    head = HypersphericalPrototypeHead(2, 2, prototypes=bank)
    head.update_representatives(torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    assert torch.equal(bank, before)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prototypes": torch.eye(4)[:3]}, r"`prototypes` must have 4 rows"),
        ({"prototypes": torch.ones(4, 2), "dim": 3}, r"`prototypes` must have 3 columns"),
        ({"prototypes": torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])}, r"zero rows"),
        ({"prototypes": torch.full((4, 3), float("nan"))}, r"`prototypes` contains 12 NaN"),
        ({"scale": 0.0}, r"`scale` must be > 0"),
        ({"momentum": -0.1}, r"`momentum` must be in \[0, 1\]"),
        ({"dim": 2, "projection": False}, r"`projection` must be True \(or None\)"),
        ({"prototypes": torch.eye(4)[:, :3], "method": "dl2pa_v2"}, r"`method` must be one of"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HypersphericalPrototypeHead(3, 4, **kwargs)


def test_update_representatives_bad_input():
    head = _head()
    with pytest.raises(ValueError, match=r"`features` must have 3 columns"):
        head.update_representatives(torch.ones(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"`target` must hold class indices in \[0, 3\)"):
        head.update_representatives(torch.ones(2, 3), torch.tensor([0, 5]))
