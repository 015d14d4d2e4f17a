"""Worker for the 2-process gloo test of ``NeuralCollapse`` (spawned by tests/metrics/test_streaming.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from neuralcollapse.metrics.streaming import NeuralCollapse

# rank r reads rows [START[r], START[r+1]) in batches of BATCH[r] rows: uneven shards and batch sizes
SHARD_FRACTION = 0.6
BATCH = (37, 53)


def shard_batches(n: int, rank: int) -> list[slice]:
    cut = int(SHARD_FRACTION * n)
    start, stop = (0, cut) if rank == 0 else (cut, n)
    return [slice(i, min(i + BATCH[rank], stop)) for i in range(start, stop, BATCH[rank])]


def run(rank: int, world_size: int, port: int, data: dict, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=60),
    )
    try:
        features, labels, logits = data["features"], data["labels"], data["logits"]
        metric = NeuralCollapse(
            data["num_classes"], features.shape[1], class_means=data["class_means"], weight=data["weight"]
        )
        for part in shard_batches(features.shape[0], rank):
            metric.update(features[part], labels[part], logits=logits[part])
        result = {
            "out": metric.compute(),
            "out_bias": metric.compute(weight=data["weight"], bias=data["bias"]),
            "means": metric.means(),
            "shift": metric.shift.clone(),
            "local_count": int(metric.counts.sum()),
        }
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
