"""``CollapseDataModule``: the data of a run, held in memory as tensors, served in batches ``(x, y, index)``.

Loading applies, in order: open-set split (known classes only, labels remapped; docs/methods.md §11), long-tail
subsampling (ρ), a held-out validation split, an AdaFocal held-out split, a seeded training subset. Batches
come from :class:`neuralcollapse.data.samplers.TensorBatchLoader` (or the class-balanced batch sampler of
docs/methods.md §4.3), sharded by rank under DDP and reshuffled per (seed, epoch) — so a resumed epoch sees the
same batches. ``index`` is the position in the (processed) training split: the key of per-sample state such
as the instance soft anti-class targets.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from .config import TrainConfig
from .network import DataInfo

__all__ = ["CollapseDataModule", "DataUnavailableError", "load_data", "train_batches_per_epoch"]

#: Fixed seed of the evaluation loaders' order (shuffled so that no batch holds a single class).
EVAL_ORDER_SEED = 1234
#: ``data_on_device="auto"`` keeps the data on a CUDA device when all splits together are at most this size
#: (CIFAR-100 as uint8: 0.18 GB; TinyImageNet: 1.35 GB).
DATA_ON_DEVICE_MAX_BYTES = 4 * 1024**3


class DataUnavailableError(FileNotFoundError):
    """The data a run needs is not on disk; the message says which files, where, and how to get them."""


def load_data(config: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """Load and transform the run's data; returns ``(DatasetSplits, extras)`` where extras holds
    ``known_classes`` (open set) and ``holdout`` ((x, y) for AdaFocal) when applicable.

    Raises:
        DataUnavailableError: missing files, with the download hint (``--data-dir``, ``--download``).
    """
    from .. import data as ncdata
    from ..data.base import DatasetNotFoundError
    from ..data.splits import open_set_split, stratified_split

    options = {}
    if config.official_normalization:
        # The official OCCE code normalises CIFAR-100 with CIFAR-10's constants (docs/methods.md §2.7, defect 2).
        if ncdata.DATASETS.resolve(config.dataset) not in ("cifar10", "cifar100"):
            raise ValueError(f"`official_normalization` applies to CIFAR-10/100 only; got dataset {config.dataset!r}")
        options["official_normalization"] = True
    try:
        splits = ncdata.create(config.dataset, root=config.data_dir, download=config.download,
                               verify=config.verify_data, **options)
    except DatasetNotFoundError as err:
        where = f" (looked in --data-dir {config.data_dir})" if config.data_dir else ""
        raise DataUnavailableError(
            f"data set {config.dataset!r} is not available{where}: {err}\nGet it with `--download` on a machine "
            f"with internet (files are checksummed), or copy the files and pass `--data-dir DIR`"
            + (f" (recipe {config.recipe!r})" if config.recipe else "")
        ) from None
    extras: dict[str, Any] = {"known_classes": [], "holdout": None}
    if config.osr_known is not None:
        if config.osr_known >= splits.num_classes:
            raise ValueError(
                f"`osr_known` must be < the number of classes ({splits.num_classes}) of {config.dataset!r}; "
                f"got {config.osr_known}"
            )
        seed = config.seed if config.osr_split_seed is None else config.osr_split_seed
        osr = open_set_split(splits, num_known=config.osr_known, seed=seed)
        splits = osr.closed
        extras["known_classes"] = list(osr.known_classes)
    if config.long_tail_ratio is not None:
        splits = splits.long_tail(config.long_tail_ratio, seed=config.seed)
    if config.val_fraction > 0 and splits.val_x is None:
        splits = splits.validation_split(config.val_fraction, seed=config.seed)
    if "adafocal" in config.loss:
        if splits.val_x is not None:
            extras["holdout"] = (splits.val_x, splits.val_y)
        else:
            keep, held = stratified_split(splits.train_y, config.adafocal_holdout, seed=config.seed)
            extras["holdout"] = (splits.train_x[held], splits.train_y[held])
            splits = splits.subset_train(keep)
    if config.train_subset is not None and config.train_subset < len(splits.train_y):
        from ..data.splits import stratified_subset

        # class-stratified (largest-remainder quotas) and seeded: a small subset keeps every class's share
        splits = splits.subset_train(stratified_subset(splits.train_y, config.train_subset, seed=config.seed))
    return splits, extras


def _drops_last_batch(per_rank: int, batch_size: int) -> bool:
    # A final batch of one sample would break batch normalisation; drop it only then.
    return per_rank % batch_size == 1


def train_batches_per_epoch(train_size: int, batch_size: int, world_size: int = 1) -> int:
    """Optimizer steps per epoch of the (not class-balanced) training loader on each of ``world_size`` ranks.

    Example:
        >>> train_batches_per_epoch(1347, 64), train_batches_per_epoch(129, 64)
        (22, 2)
    """
    per_rank = -(-train_size // world_size)
    if _drops_last_batch(per_rank, batch_size):
        return max(per_rank // batch_size, 1)
    return max(-(-per_rank // batch_size), 1)


def data_info(splits: Any, extras: dict[str, Any]) -> DataInfo:
    return DataInfo(
        dataset=splits.name,
        num_classes=int(splits.num_classes),
        in_channels=int(splits.in_channels),
        image_size=[int(s) for s in splits.image_size],
        mean=[float(m) for m in splits.mean],
        std=[float(s) for s in splits.std],
        train_size=len(splits.train_y),
        class_names=list(splits.class_names),
        known_classes=list(extras.get("known_classes") or []),
    )


class _EvalShard:
    """Evaluation batches of one DDP rank without padding: a fixed shuffled order (so that no batch holds a
    single class), every ``world``-th index from ``rank``. Each sample is evaluated exactly once over the ranks,
    so sample-weighted sums and NC statistics reduced over the ranks equal the single-process values (the
    ``DistributedSampler``-style padding would count a few samples twice); ranks may differ by one sample."""

    def __init__(self, n: int, batch_size: int, rank: int, world: int, seed: int) -> None:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        self.indices = order[rank::world]
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self) -> Any:
        for start in range(0, len(self.indices), self.batch_size):
            yield self.indices[start : start + self.batch_size]


class CollapseDataModule(L.LightningDataModule):
    """In-memory data of a run (see the module docstring).

    Example:
        >>> dm = CollapseDataModule(TrainConfig(dataset="digits"))
        >>> info = dm.load()
        >>> info.num_classes, info.in_channels
        (10, 1)
    """

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.config = config
        self.splits: Any = None
        self.extras: dict[str, Any] = {}
        self.info: DataInfo | None = None
        self._train_loader: Any = None
        self._epoch = 0
        self._on_device: dict[int, Tensor] = {}

    def load(self) -> DataInfo:
        """Load the data (once) and return its :class:`DataInfo`."""
        if self.splits is None:
            self.splits, self.extras = load_data(self.config)
            self.info = data_info(self.splits, self.extras)
        assert self.info is not None
        return self.info

    def setup(self, stage: str | None = None) -> None:
        self.load()

    # ----------------------------------------------------------------------------------- loaders
    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _device(self) -> torch.device | None:
        """The accelerator to keep the data on, or None (CPU data, batches copied by Lightning)."""
        trainer = self.trainer
        choice = self.config.data_on_device
        if trainer is None or choice is False:
            return None
        device = trainer.strategy.root_device
        if device.type != "cuda":
            return None
        if choice == "auto":
            splits = [t for t in (self.splits.train_x, self.splits.test_x, self.splits.val_x) if t is not None]
            if sum(t.element_size() * t.numel() for t in splits) > DATA_ON_DEVICE_MAX_BYTES:
                return None
        return device

    def _place(self, t: Tensor) -> Tensor:
        """``t`` on the data device (moved once and cached), else unchanged."""
        device = self._device()
        if device is None:
            return t
        key = id(t)
        if key not in self._on_device:
            self._on_device[key] = t.to(device)
        return self._on_device[key]

    def _loader(self, x: Tensor, y: Tensor, *, batch_size: int, shuffle: bool, drop_last: bool, seed: int) -> Any:
        from ..data.samplers import TensorBatchLoader

        rank, world = self._world()
        return TensorBatchLoader(self._place(x), self._place(y), batch_size=batch_size, shuffle=shuffle,
                                 drop_last=drop_last, seed=seed, rank=rank, world_size=world)

    def train_dataloader(self) -> Any:
        self.load()
        cfg = self.config
        x, y = self.splits.train_x, self.splits.train_y
        if cfg.class_balanced:
            loader = self._balanced_loader(x, y)
        else:
            _, world = self._world()
            drop_last = _drops_last_batch(-(-len(y) // world), cfg.batch_size)
            loader = self._loader(x, y, batch_size=cfg.batch_size, shuffle=True, drop_last=drop_last, seed=cfg.seed)
        loader.set_epoch(self._epoch)
        self._train_loader = loader
        return loader

    def _balanced_shape(self) -> tuple[int, int]:
        """(classes per batch C, samples per class m) of the class-balanced sampler (C·m ≈ ``batch_size``)."""
        cfg = self.config
        k = self.load().num_classes
        per_batch = cfg.classes_per_batch or min(k, cfg.batch_size)
        return per_batch, cfg.samples_per_class or max(1, cfg.batch_size // per_batch)

    @property
    def batch_size_per_rank(self) -> int:
        """Samples per training batch on each rank (C·m with the class-balanced sampler)."""
        if self.config.class_balanced:
            c, m = self._balanced_shape()
            return c * m
        return self.config.batch_size

    def _balanced_loader(self, x: Tensor, y: Tensor) -> Any:
        from ..data.samplers import ClassBalancedBatchSampler, TensorBatchLoader

        cfg = self.config
        per_batch, per_class = self._balanced_shape()
        rank, world = self._world()
        sampler = ClassBalancedBatchSampler(y, per_batch, per_class, world_size=world, rank=rank, seed=cfg.seed)
        return TensorBatchLoader(self._place(x), self._place(y), batch_sampler=sampler)

    def _eval_loader(self, x: Tensor, y: Tensor, *, pad: bool = False) -> Any:
        """Evaluation batches; under DDP sharded without padding duplicates (:class:`_EvalShard`) unless ``pad``
        (every rank the same number of samples, for all-gathers) or the split has fewer samples than ranks."""
        rank, world = self._world()
        if world > 1 and not pad and len(y) >= world:
            from ..data.samplers import TensorBatchLoader

            shard = _EvalShard(len(y), self.config.eval_batch_size, rank, world, EVAL_ORDER_SEED)
            return TensorBatchLoader(self._place(x), self._place(y), batch_sampler=shard)
        return self._loader(x, y, batch_size=self.config.eval_batch_size, shuffle=True, drop_last=False,
                            seed=EVAL_ORDER_SEED)

    @property
    def eval_stages(self) -> list[str]:
        """Names of the validation loaders, in order: ``val`` (when a validation split exists), ``test``."""
        self.load()
        return (["val"] if self.splits.val_x is not None else []) + ["test"]

    def val_dataloader(self) -> list[Any]:
        self.load()
        loaders = []
        if self.splits.val_x is not None:
            loaders.append(self._eval_loader(self.splits.val_x, self.splits.val_y))
        loaders.append(self._eval_loader(self.splits.test_x, self.splits.test_y))
        return loaders

    def test_dataloader(self) -> Any:
        self.load()
        return self._eval_loader(self.splits.test_x, self.splits.test_y)

    def train_eval_dataloader(self) -> Any:
        """The training split without augmentation, for the eval-mode NC pass."""
        self.load()
        return self._eval_loader(self.splits.train_x, self.splits.train_y)

    def holdout_dataloader(self) -> Any | None:
        """The AdaFocal held-out split (None when the loss has no AdaFocal term)."""
        self.load()
        held = self.extras.get("holdout")
        # padded under DDP: AdaFocal all-gathers the predictions, which needs equal sizes on every rank
        return None if held is None else self._eval_loader(*held, pad=True)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle the training batches for ``epoch`` (deterministic per (seed, epoch))."""
        self._epoch = int(epoch)
        if self._train_loader is not None and hasattr(self._train_loader, "set_epoch"):
            self._train_loader.set_epoch(self._epoch)
