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
