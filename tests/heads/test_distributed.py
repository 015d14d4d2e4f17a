"""DDP code paths of the heads on a one-process gloo group (sums reduce to themselves; broadcast is identity)."""

import pytest
import torch
import torch.distributed as dist

from neuralcollapse.heads import ClassMeanPrototypes, HypersphericalPrototypeHead, update_class_representatives

pytestmark = pytest.mark.ddp


@pytest.fixture
def process_group(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed unavailable")
    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_all_reduce_paths_single_rank(process_group):
    q = torch.nn.functional.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    feats = torch.randn(9, 3, generator=torch.Generator().manual_seed(1))
    target = torch.arange(9) % 3
    torch.testing.assert_close(
        update_class_representatives(q, feats, target, all_reduce=True),
        update_class_representatives(q, feats, target),
    )
    head = HypersphericalPrototypeHead(3, 4, prototypes=q, momentum=0.0)
    head.update_representatives(feats, target, all_reduce=True)
    changed = head.reassign()  # broadcast path is skipped for world size 1; result as without a group
    assert 0 <= changed <= 4 and sorted(head.assignment.tolist()) == [0, 1, 2, 3]

    model = ClassMeanPrototypes(3, 3).partial_fit(feats, target)
    sums = model.class_sums.clone()
    model.all_reduce()
    torch.testing.assert_close(model.class_sums, sums)


def _two_rank_worker(rank: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        gen = torch.Generator().manual_seed(0)
        bank = torch.nn.functional.normalize(torch.randn(4, 3, generator=gen), dim=1)
        feats = torch.randn(12, 3, generator=gen)
        target = torch.tensor([1, 2, 3, 0, 1, 2, 0, 3, 3, 1, 2, 0])
        shard = slice(0, 5) if rank == 0 else slice(5, 12)  # unequal shards: sums, not means, are reduced
        head = HypersphericalPrototypeHead(3, 4, prototypes=bank, momentum=0.5)
        head.update_representatives(feats[shard], target[shard], all_reduce=True)
        changed = head.reassign()
        model = ClassMeanPrototypes(3, 4).partial_fit(feats[shard], target[shard]).all_reduce()
        torch.save({"q": head.representatives, "pi": head.assignment, "changed": changed, "mu": model.weight},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_agree_with_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_two_rank_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    gen = torch.Generator().manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(4, 3, generator=gen), dim=1)
    feats = torch.randn(12, 3, generator=gen)
    target = torch.tensor([1, 2, 3, 0, 1, 2, 0, 3, 3, 1, 2, 0])
    single = HypersphericalPrototypeHead(3, 4, prototypes=bank, momentum=0.5)
    single.update_representatives(feats, target)
    single_changed = single.reassign()
    for r in (r0, r1):
        torch.testing.assert_close(r["q"], single.representatives)
        assert torch.equal(r["pi"], single.assignment) and r["changed"] == single_changed
        torch.testing.assert_close(r["mu"], ClassMeanPrototypes(3, 4).fit(feats, target).weight)
