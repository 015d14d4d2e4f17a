"""Hyperspherical prototype head (DL2PA, CVPR 2024; docs/methods.md §7.2–7.3): forward, momentum representatives,
first assignment (identity / random / given / class means after a warm-up), re-assignment, resume."""

import itertools
import math

import pytest
import torch

from neuralcollapse.heads import (
    HypersphericalPrototypeHead,
    optimize_prototypes,
    update_class_representatives,
)


def _head(**kw):
    kw = {"projection": False, "initial_assignment": "identity", **kw}
    return HypersphericalPrototypeHead(3, 3, prototypes=torch.eye(3), **kw)


def test_default_prototypes_come_from_optimize_prototypes():
    head = HypersphericalPrototypeHead(5, 8, dim=3, seed=2, steps=50)
    torch.testing.assert_close(head.prototype_bank, optimize_prototypes(8, 3, 50, seed=2), rtol=0, atol=0)
    assert head.assignment.tolist() == list(range(8))
    assert torch.equal(head.representatives, head.prototype_bank)
    assert head.projection is not None and head.projection.out_features == 3
    # the balanced variant always has DL2PA's final linear layer: post-ReLU backbone features are non-negative
    assert HypersphericalPrototypeHead(4, 3).projection is not None
    assert HypersphericalPrototypeHead(4, 3, projection=False).projection is None
    # the long-tail variant normalises BN1d of the backbone output itself
    assert HypersphericalPrototypeHead(4, 3, batch_norm=True).projection is None
    assert HypersphericalPrototypeHead(4, 3, batch_norm=True, projection=True).projection is not None


def test_without_projection_relu_features_stay_in_one_orthant():
    """Why the projection is on by default: normalised non-negative features have pairwise cosines >= 0 and
    cannot reach a prototype with negative entries (the cause of the inverted `relation` AUROC, issue 10)."""
    bank = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    relu = torch.relu(torch.randn(64, 2, generator=torch.Generator().manual_seed(0))) + 1e-3
    flat = HypersphericalPrototypeHead(2, 2, prototypes=bank, projection=False)(relu)
    assert float((flat.features @ flat.features.T).min()) >= 0 and float(flat.cosines[:, 1].max()) <= 0
    signed = HypersphericalPrototypeHead(2, 2, prototypes=bank)
    with torch.no_grad():
        signed.projection.weight.copy_(-torch.eye(2))
        signed.projection.bias.zero_()
    assert float(signed(relu).cosines.detach()[:, 1].max()) > 0.9  # the linear layer can turn features to either side


def test_forward_uses_assigned_prototypes_in_class_order():
    bank = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    head = HypersphericalPrototypeHead(2, 3, prototypes=bank, scale=4.0, projection=False).double()
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
    second = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    for compat in (False, True):
        head = _head(reference_compat=compat, momentum=0.8)
        assert head.observed.tolist() == [False] * 3
        fresh = update_class_representatives(torch.eye(3), feats, target, momentum=0.8, reference_compat=compat,
                                             observed=torch.zeros(3, dtype=torch.bool))
        head.update_representatives(feats, target)
        torch.testing.assert_close(head.representatives, fresh, rtol=0, atol=0)
        assert head.observed.tolist() == [True, False, True] and int(head.num_updates) == 1
        # first observation taken as is: the batch mean (compat: the last sample of the class), normalised
        mean0 = torch.nn.functional.normalize(feats[:2], dim=1).mean(0)
        first0 = feats[1] / feats[1].norm() if compat else mean0 / mean0.norm()
        torch.testing.assert_close(head.representatives[0], first0)
        torch.testing.assert_close(head.representatives[1], torch.eye(3)[1])  # unobserved: the placeholder
        mixed = update_class_representatives(head.representatives, second, torch.tensor([0, 1]), momentum=0.8,
                                             reference_compat=compat, observed=head.observed.clone())
        head.update_representatives(second, torch.tensor([0, 1]))
        torch.testing.assert_close(head.representatives, mixed, rtol=0, atol=0)
        m0 = (1.8 if compat else 0.8) * first0 + 0.2 * second[0] / second[0].norm()
        torch.testing.assert_close(head.representatives[0], m0 / m0.norm())  # class 0 now mixes by momentum
        torch.testing.assert_close(head.representatives[1], torch.eye(3)[2])  # class 1 first seen: as is
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


BUFFERS = ("prototype_bank", "assignment", "representatives", "observed", "num_updates", "assignment_pending")


def _rotated_means_features(bank, shift, n_per_class=4, noise=0.05, seed=0):
    """Features whose class c sits near prototype (c + shift) mod K (so the right assignment is a rotation)."""
    k = bank.shape[0]
    gen = torch.Generator().manual_seed(seed)
    target = torch.arange(k).repeat(n_per_class)
    feats = bank[(target + shift) % k] + noise * torch.randn(len(target), bank.shape[1], generator=gen)
    return feats, target


def test_state_dict_resume_keeps_a_changed_assignment_and_the_representatives():
    head = HypersphericalPrototypeHead(4, 5, dim=3, steps=30, seed=0, warmup_iterations=2)
    feats, target = _rotated_means_features(head.prototype_bank, shift=2)
    head.update_representatives(feats, target)
    assert bool(head.assignment_pending) and head.assignment.tolist() == [0, 1, 2, 3, 4]
    head.update_representatives(feats, target)  # the warm-up's second update solves the first assignment
    assert not bool(head.assignment_pending) and head.assignment.tolist() == [2, 3, 4, 0, 1]
    assert head.pop_solves() == [("initial", 5)]
    more, more_target = _rotated_means_features(head.prototype_bank, shift=2, seed=1)
    head.update_representatives(more, more_target)  # representatives move on after the solve
    state = head.state_dict()
    assert set(BUFFERS) <= set(state)
    resumed = HypersphericalPrototypeHead(4, 5, dim=3, steps=30, seed=9, warmup_iterations=2)
    assert bool(resumed.assignment_pending) and not torch.equal(resumed.prototype_bank, head.prototype_bank)
    resumed.load_state_dict(state)
    for name in BUFFERS:
        assert torch.equal(getattr(resumed, name), getattr(head, name)), name
    assert resumed.assignment.tolist() == [2, 3, 4, 0, 1] and int(resumed.num_updates) == 3
    h = torch.randn(6, 4)
    torch.testing.assert_close(resumed(h).logits, head(h).logits, rtol=0, atol=0)
    # continuing both: identical representatives and re-assignments, no second "initial" solve after the resume
    swap, swap_target = _rotated_means_features(head.prototype_bank, shift=3, n_per_class=40, seed=2)
    for model in (head, resumed):
        for _ in range(30):
            model.update_representatives(swap, swap_target)
    assert resumed.pop_solves() == []
    torch.testing.assert_close(resumed.representatives, head.representatives, rtol=0, atol=0)
    changed = head.reassign()
    assert resumed.reassign() == changed > 0 and torch.equal(resumed.assignment, head.assignment)
    assert resumed.assignment.tolist() != [2, 3, 4, 0, 1]


def test_state_dict_from_before_the_warm_up_buffers_loads():
    head = HypersphericalPrototypeHead(4, 5, dim=3, steps=30, seed=0)
    old = {k: v for k, v in head.state_dict().items() if k not in ("observed", "num_updates", "assignment_pending")}
    old["assignment"] = torch.tensor([4, 3, 2, 1, 0])
    fresh = HypersphericalPrototypeHead(4, 5, dim=3, steps=30, seed=0)
    fresh.load_state_dict(old)  # strict: the missing buffers get the values an old checkpoint implies
    assert fresh.assignment.tolist() == [4, 3, 2, 1, 0] and not bool(fresh.assignment_pending)
    assert fresh.observed.all() and int(fresh.num_updates) == 0


def test_checkpoint_without_projection_loads_as_trained():
    """A head saved when `projection` defaulted to off at dim == in_features is rebuilt without one."""
    old = HypersphericalPrototypeHead(4, 3, steps=20, projection=False)
    state = {k: v for k, v in old.state_dict().items() if k not in ("observed", "num_updates", "assignment_pending")}
    new = HypersphericalPrototypeHead(4, 3, steps=20)
    assert new.projection is not None
    with pytest.warns(UserWarning, match=r"no projection layer .* loaded without one, as it was trained"):
        new.load_state_dict(state)
    assert new.projection is None
    h = torch.randn(5, 4)
    torch.testing.assert_close(new(h).logits, old(h).logits, rtol=0, atol=0)
    wrapped = torch.nn.Sequential(HypersphericalPrototypeHead(4, 3, steps=20))  # under a prefix, as in a model
    with pytest.warns(UserWarning, match=r"no projection layer"):
        wrapped.load_state_dict({f"0.{k}": v for k, v in state.items()})
    assert wrapped[0].projection is None


def test_class_means_assignment_moves_to_the_right_prototypes_and_equals_brute_force():
    """Features whose class means sit nearest to other prototypes than the initial (identity) ones: the first
    solve must move them, and to the best of all K! assignments."""
    for k, d, seed in ((4, 3, 0), (5, 3, 1), (6, 4, 2)):
        head = HypersphericalPrototypeHead(d, k, dim=d, steps=50, seed=seed, projection=False)
        bank = head.prototype_bank.double()
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(k, generator=gen)
        while bool((perm == torch.arange(k)).any()):  # every class starts on a wrong prototype
            perm = torch.randperm(k, generator=gen)
        target = torch.arange(k).repeat(3)
        feats = bank[perm[target]] + 0.3 * torch.randn(len(target), d, generator=gen, dtype=torch.float64)
        head.update_representatives(feats.float(), target)
        q = torch.nn.functional.normalize(head.representatives.double(), dim=1)
        score = q @ bank.T
        best = max(itertools.permutations(range(k)), key=lambda p: float(sum(score[c, p[c]] for c in range(k))))
        assert head.assignment.tolist() == list(best) == perm.tolist()
        assert head.last_changes == k
        total = float(sum(score[c, best[c]] for c in range(k)))
        assert head.matching_cosine() == pytest.approx(total, abs=1e-6)
        assert head(feats.float()).logits.argmax(1).tolist() == target.tolist()


def test_random_and_given_initial_assignments():
    head = HypersphericalPrototypeHead(4, 6, dim=3, steps=20, seed=3, initial_assignment="random")
    expected = torch.randperm(6, generator=torch.Generator().manual_seed(3))
    assert head.assignment.tolist() == expected.tolist() and not bool(head.assignment_pending)
    torch.testing.assert_close(head.representatives, head.prototype_bank[expected], rtol=0, atol=0)
    assert head.reassign() == 0  # q = P[π] before any update
    given = HypersphericalPrototypeHead(4, 3, dim=2, steps=20, initial_assignment=[2, 0, 1])
    assert given.assignment.tolist() == [2, 0, 1] and given.initial_assignment == [2, 0, 1]
    given.update_representatives(torch.randn(6, 2), torch.arange(6) % 3)
    assert given.assignment.tolist() == [2, 0, 1] and given.pop_solves() == []  # only reassign() moves it
    as_tensor = HypersphericalPrototypeHead(4, 3, dim=2, steps=20, initial_assignment=torch.tensor([1, 2, 0]))
    assert as_tensor.assignment.tolist() == [1, 2, 0]
    assert "initial_assignment=given" in repr(as_tensor)


def test_warm_up_zero_solves_at_the_first_update():
    head = HypersphericalPrototypeHead(3, 3, prototypes=torch.eye(3), projection=False, warmup_iterations=0)
    head.update_representatives(torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
                                torch.tensor([0, 1, 2]))
    assert head.assignment.tolist() == [2, 0, 1] and head.pop_solves() == [("initial", 3)]
    pending = HypersphericalPrototypeHead(3, 3, prototypes=torch.eye(3), warmup_iterations=5)
    assert pending.reassign() == 0 and not bool(pending.assignment_pending)  # an explicit reassign ends warm-up


@pytest.mark.parametrize("value", [0.1, 0.2, 0.5, 1, 2, 10])
def test_assignments_per_epoch_accepts_the_ablation_values(value):
    head = HypersphericalPrototypeHead(3, 3, prototypes=torch.eye(3), assignments_per_epoch=value)
    assert head.assignments_per_epoch == float(value)


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
        ({"initial_assignment": "means"}, r"`initial_assignment` must be one of"),
        ({"initial_assignment": [0, 1, 2]}, r"`initial_assignment` must be one of .* a permutation of 0\.\.3"),
        ({"initial_assignment": [0, 1, 1, 2]}, r"a permutation of 0\.\.3 \(4 distinct ints"),
        ({"initial_assignment": [0, 1, 2, 4]}, r"a permutation of 0\.\.3"),
        ({"initial_assignment": [0.0, 1, 2, 3]}, r"a permutation of 0\.\.3"),
        ({"initial_assignment": "random", "warmup_iterations": 3}, r"`warmup_iterations` is only used with"),
        ({"warmup_iterations": -1}, r"`warmup_iterations` must be"),
        ({"assignments_per_epoch": 0}, r"`assignments_per_epoch` must be a number > 0"),
        ({"assignments_per_epoch": math.nan}, r"`assignments_per_epoch` must be a number > 0"),
        ({"assignments_per_epoch": True}, r"`assignments_per_epoch` must be a number > 0"),
        ({"assignments_per_epoch": 1.5}, r"`assignments_per_epoch` must be a whole number .* or 1/n"),
        ({"assignments_per_epoch": 0.3}, r"`assignments_per_epoch` must be a whole number .* or 1/n"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HypersphericalPrototypeHead(3, 4, **kwargs)


def test_warmup_iterations_must_be_an_integer():
    with pytest.raises(TypeError, match=r"`warmup_iterations` must be an integer; got float"):
        HypersphericalPrototypeHead(3, 4, warmup_iterations=1.5)


def test_update_representatives_bad_input():
    head = _head()
    with pytest.raises(ValueError, match=r"`features` must have 3 columns"):
        head.update_representatives(torch.ones(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"`target` must hold class indices in \[0, 3\)"):
        head.update_representatives(torch.ones(2, 3), torch.tensor([0, 5]))
