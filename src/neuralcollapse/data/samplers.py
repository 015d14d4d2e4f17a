"""Batch samplers and an in-memory batch loader.

* :class:`ClassBalancedBatchSampler` — the class-balanced sampler of the NTCE/NONL paper's reference code
  (pakoromilas/nc_by_design ``main_ce.py``; docs/methods.md §4.3), re-derived so that its promises hold exactly.
* :class:`TensorBatchLoader` — batches ``(x[idx], y[idx], idx)`` gathered from in-memory tensors with one
  indexing operation per batch (no per-item ``__getitem__``), DDP-sharded like ``DistributedSampler``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validation import as_tensor, check_int, check_tensor

__all__ = ["ClassBalancedBatchSampler", "TensorBatchLoader"]



def _check_rank(rank: Any, world_size: Any) -> tuple[int, int]:
    world_size = check_int(world_size, "world_size", minimum=1)
    rank = check_int(rank, "rank", minimum=0)
    if rank >= world_size:
        raise ValueError(f"`rank` must be in [0, world_size={world_size}); got {rank}")
    return rank, world_size


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """One generator per (seed, epoch); SeedSequence keeps the pairs apart (seed + epoch would not)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF]))


class ClassBalancedBatchSampler:
    """Class-balanced batches of ``classes_per_batch`` (C) distinct classes × ``samples_per_class`` (m)
    samples per rank, built world-wide (docs/methods.md §4.3).

    Per epoch (deterministic in ``(seed, epoch)``; every rank computes the same plan and takes its share):

    1. Each class's indices are shuffled and cut into q_c = ⌈n_c/m⌉ chunks of m; the last chunk is padded by
       resampling other samples of the class.
    2. A global step has S = C·world_size class slots (one chunk each). The number of steps T is the smallest
       with T ≥ ⌈q_c/world_size⌉ for every class and T·S ≥ Σ_c max(q_c, T) (when S ≥ K) or ≥ Σ_c q_c (S < K).
       Class c gets a_c ≥ q_c slots — a_c ≥ T when S ≥ K, so **every global batch holds every class** — and
       the T·S − Σ(base) extra slots go one by one to the class with the fewest expected uses per sample
       a_c·m/n_c (the least-used classes, i.e. minorities are oversampled), ties broken at random.
    3. Class blocks (in random class order) are laid out round-robin over the steps, so a class occupies each
       step ⌊a_c/T⌋ or ⌈a_c/T⌉ times (≤ world_size) and its copies in one step go to different ranks: every
       per-rank batch has C **distinct** classes. Steps are shuffled.
    4. Each class's first q_c slots (in step order) receive its epoch chunks, further slots fresh chunks of
       re-shuffled indices: **every sample is used at least once per epoch**; within one epoch the first-pass
       chunks of different ranks are disjoint.

    The reference sampler fixes T = ⌈N/(S·m)⌉ and draws extra classes at random, which neither guarantees the
    coverage nor distinct classes per rank batch. Scale the learning rate by the effective total batch S·m.

    Args:
        labels: (N,) integer labels (a tensor, array or list).
        classes_per_batch: C, distinct classes per rank batch (≤ number of classes present).
        samples_per_class: m.
        world_size: number of ranks (DDP world size).
        rank: this rank.
        seed: base seed; call :meth:`set_epoch` every epoch.

    Raises:
        ValueError: bad labels, C or m < 1, C larger than the number of classes, rank outside [0, world_size).

    Example:
        >>> y = torch.arange(4).repeat_interleave(6)
        >>> sampler = ClassBalancedBatchSampler(y, classes_per_batch=4, samples_per_class=2)
        >>> [sorted(set(y[b].tolist())) for b in sampler][0]
        [0, 1, 2, 3]
    """

    def __init__(
        self,
        labels: Any,
        classes_per_batch: int,
        samples_per_class: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        y = as_tensor(labels, "labels")
        check_tensor(y, "labels", ndim=1, integer=True)
        y_np = y.detach().cpu().numpy().astype(np.int64)
        self.classes_per_batch = check_int(classes_per_batch, "classes_per_batch", minimum=1)
        self.samples_per_class = check_int(samples_per_class, "samples_per_class", minimum=1)
        self.rank, self.world_size = _check_rank(rank, world_size)
        self.seed = int(seed)
        self.epoch = 0
        self.classes = np.unique(y_np)
        self.class_indices = [np.flatnonzero(y_np == c) for c in self.classes]
        self.num_samples = len(y_np)
        k = len(self.classes)
        if self.classes_per_batch > k:
            raise ValueError(
                f"`classes_per_batch` must be <= the number of classes present ({k}) so that a batch "
                f"can hold "
                f"{self.classes_per_batch} distinct classes; got {self.classes_per_batch}"
            )
        self._counts = np.array([len(i) for i in self.class_indices], dtype=np.int64)
        self._chunks = -(-self._counts // self.samples_per_class)  # q_c
        self.num_steps = self._num_steps()

    @property
    def batch_size(self) -> int:
        """Per-rank batch size C·m."""
        return self.classes_per_batch * self.samples_per_class

    @property
    def global_batch_size(self) -> int:
        """World batch size C·m·world_size (scale the learning rate with this)."""
        return self.batch_size * self.world_size

    def _num_steps(self) -> int:
        q = self._chunks
        slots = self.classes_per_batch * self.world_size
        t = max(int(-(-q.max() // self.world_size)), int(-(-q.sum() // slots)), 1)
        if slots >= len(q):
            while t * slots < int(np.maximum(q, t).sum()):
                t += 1
        return t

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose plan :meth:`__iter__` yields (DDP: same value on every rank)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_steps

    def _slots(self, rng: np.random.Generator) -> np.ndarray:
        """a_c: slots per class this epoch."""
        t = self.num_steps
        s = self.classes_per_batch * self.world_size
        q = self._chunks
        a = np.maximum(q, t) if s >= len(q) else q.copy()
        cap = t * self.world_size
        tiebreak = rng.random(len(q))
        heap = [
            (a[c] * self.samples_per_class / self._counts[c], tiebreak[c], c)
            for c in range(len(q))
            if a[c] < cap
        ]
        heapq.heapify(heap)
        for _ in range(t * s - int(a.sum())):
            _, tb, c = heapq.heappop(heap)
            a[c] += 1
            if a[c] < cap:
                heapq.heappush(heap, (a[c] * self.samples_per_class / self._counts[c], tb, c))
        return a

    def plan(self, epoch: int | None = None) -> np.ndarray:
        """The whole epoch: an int64 array (steps, world_size, C·m) of dataset indices; ``[t, r]`` is rank r's
        batch at step t. Deterministic in ``(seed, epoch)`` (default: the current epoch)."""
        rng = _epoch_rng(self.seed, self.epoch if epoch is None else epoch)
        t, w, cpb, m = self.num_steps, self.world_size, self.classes_per_batch, self.samples_per_class
        s = cpb * w
        a = self._slots(rng)
        order = rng.permutation(len(a))
        pos = np.arange(t * s)
        step = pos % t
        slot = pos // t  # slot within its step; copies of a class are consecutive → distinct ranks
        out_step = rng.permutation(t)[step]
        rank_of, slot_in_rank = slot % w, slot // w
        out = np.empty((t, w, cpb, m), dtype=np.int64)
        # Class blocks in `order`, laid out over world-slot positions 0 … T·S−1 (position p → step p mod T).
        starts = np.concatenate([[0], np.cumsum(a[order])])
        for block, c in enumerate(order):
            lo, hi = starts[block], starts[block + 1]
            occ = np.arange(lo, hi)
            occ = occ[np.lexsort((slot[occ], out_step[occ]))]
            chunks = self._class_chunks(c, int(a[c]), rng)
            out[out_step[occ], rank_of[occ], slot_in_rank[occ]] = chunks
        return out.reshape(t, w, cpb * m)

    def _class_chunks(self, c: int, num_slots: int, rng: np.random.Generator) -> np.ndarray:
        idx = self.class_indices[c]
        n, m, q = len(idx), self.samples_per_class, int(self._chunks[c])
        perm = rng.permutation(idx)
        pad = q * m - n
        if pad:
            pool = perm[: (q - 1) * m]  # samples outside the (partial) last chunk
            extra = (
                rng.choice(pool, pad, replace=False)
                if len(pool) >= pad
                else rng.choice(idx, pad, replace=True)
            )
            perm = np.concatenate([perm, extra])
        need = (num_slots - q) * m
        if need > 0:
            fresh = np.concatenate([rng.permutation(idx) for _ in range(math.ceil(need / n))])[:need]
            perm = np.concatenate([perm, fresh])
        return perm.reshape(num_slots, m)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.plan()[:, self.rank]:
            yield batch.tolist()


class TensorBatchLoader:
    """Mini-batches ``(x[idx], y[idx], idx)`` from in-memory tensors, one gather per batch.

    Index order per epoch: ``arange(N)`` or, with ``shuffle``, a permutation seeded by ``(seed, epoch)``;
    under DDP each rank takes every ``world_size``-th index from ``rank`` after padding the order (by wrapping
    around, as ``torch.utils.data.DistributedSampler``) to a multiple of ``world_size`` — or truncating it
    with ``drop_last``; ``drop_last`` also drops the final partial batch. With ``batch_sampler`` (e.g. a
    :class:`ClassBalancedBatchSampler`) the batches are the sampler's, and ``shuffle``/``drop_last``/``rank``/
    ``world_size`` are not used.

    Args:
        x: (N, ...) inputs (any device; uint8 images stay uint8 — augment on the device afterwards).
        y: (N,) labels.
        batch_size: samples per batch.
        shuffle: reshuffle every epoch (call :meth:`set_epoch`).
        drop_last: drop incomplete batches (and the DDP remainder).
        seed: base seed.
        rank, world_size: DDP shard.
        indices: also yield the dataset indices (on ``x``'s device) — per-sample state such as soft targets.
        batch_sampler: optional sampler yielding index lists.

    Raises:
        ValueError: length mismatch, ``batch_size`` < 1, ``rank`` outside [0, world_size).

    Example:
        >>> loader = TensorBatchLoader(torch.arange(10.0)[:, None], torch.arange(10), batch_size=4)
        >>> [idx.tolist() for _, _, idx in loader]
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int = 128,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        indices: bool = True,
        *,
        batch_sampler: Any = None,
    ) -> None:
        check_tensor(x, "x", min_ndim=1, nonempty=False)
        check_tensor(y, "y", ndim=1, nonempty=False)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"`x` and `y` must have the same length; got {x.shape[0]} and {y.shape[0]}")
        self.x, self.y = x, y
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.rank, self.world_size = _check_rank(rank, world_size)
        self.indices = bool(indices)
        if batch_sampler is not None and not hasattr(batch_sampler, "__iter__"):
            raise TypeError(f"`batch_sampler` must be iterable; got {type(batch_sampler).__name__}")
        self.batch_sampler = batch_sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (shuffling seed; forwarded to ``batch_sampler``)."""
        self.epoch = int(epoch)
        if self.batch_sampler is not None and hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch)

    def _num_rank_samples(self) -> int:
        n = self.x.shape[0]
        if self.world_size == 1:
            return n
        return n // self.world_size if self.drop_last else math.ceil(n / self.world_size)

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        n = self._num_rank_samples()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def rank_indices(self) -> Tensor:
        """This rank's index order for the current epoch (CPU int64)."""
        n = self.x.shape[0]
        if self.shuffle:
            g = torch.Generator().manual_seed(int(_epoch_rng(self.seed, self.epoch).integers(2**62)))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            per_rank = self._num_rank_samples()
            total = per_rank * self.world_size
            if total > n:  # wrap around to pad, as DistributedSampler
                order = torch.cat([order, order.repeat(math.ceil(total / max(n, 1)))[: total - n]])
            order = order[:total][self.rank :: self.world_size]
        return order

    def _batches(self) -> Iterator[Tensor]:
        if self.batch_sampler is not None:
            for b in self.batch_sampler:
                yield torch.as_tensor(b, dtype=torch.int64)
            return
        order = self.rank_indices()
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        device = self.x.device
        for idx in self._batches():
            xb = _gather_rows(self.x, idx)
            yb = _gather_rows(self.y, idx)
            yield (xb, yb, idx.to(device)) if self.indices else (xb, yb)


def _gather_rows(t: Tensor, idx: Tensor) -> Tensor:
    """``t[idx]`` along dim 0. On the CPU NumPy's ``take`` is used: several times faster than torch's
    advanced indexing for small batches of large rows (uint8 images)."""
    if t.device.type == "cpu" and not t.requires_grad:
        try:
            arr = t.numpy()
        except (TypeError, RuntimeError):  # dtypes NumPy lacks (bfloat16, …)
            return t.index_select(0, idx)
        return torch.from_numpy(np.take(arr, idx.numpy(), axis=0))
    return t.index_select(0, idx.to(t.device))
