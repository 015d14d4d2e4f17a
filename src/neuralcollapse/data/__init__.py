"""Data sets held in memory as tensors, their on-disk readers, downloads, splits, samplers and augmentation.

``create(name, *, root=None, download=False, **kw) -> DatasetSplits`` loads a registered data set
(``names()``); ``"digits"`` (scikit-learn's handwritten digits) is embedded and needs no files. Readers cover
the real formats (MNIST/FashionMNIST IDX, CIFAR python pickles, SVHN .mat, TinyImageNet and ImageFolder
trees); downloads are explicit, from the official URLs, with checksums. ``splits`` adds stratified validation,
long-tail, open-set and OOD pairs; ``samplers`` the class-balanced batch sampler and the in-memory loader;
``augment`` batched tensor augmentation on the device.
"""

from __future__ import annotations

from . import datasets  # noqa: F401 - registers the data sets
from .augment import BatchAugment, mixup, normalize, to_float
from .base import (
    DATA_DIR_ENV,
    DATASETS,
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetSplits,
    create,
    names,
    register_dataset,
    resolve_root,
)
from .datasets import NORMALIZATION, OFFICIAL_OCCE_NORMALIZATION, channel_stats
from .download import RESOURCES, Resource, download_url, extract_archive, md5sum
from .samplers import ClassBalancedBatchSampler, TensorBatchLoader
from .splits import (
    OODPair,
    OpenSetSplits,
    long_tail_counts,
    long_tail_indices,
    match_images,
    ood_pair,
    open_set_split,
    stratified_split,
)

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "NORMALIZATION",
    "OFFICIAL_OCCE_NORMALIZATION",
    "RESOURCES",
    "BatchAugment",
    "ClassBalancedBatchSampler",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DatasetSplits",
    "OODPair",
    "OpenSetSplits",
    "Resource",
    "TensorBatchLoader",
    "channel_stats",
    "create",
    "download_url",
    "extract_archive",
    "long_tail_counts",
    "long_tail_indices",
    "match_images",
    "md5sum",
    "mixup",
    "names",
    "normalize",
    "ood_pair",
    "open_set_split",
    "register_dataset",
    "resolve_root",
    "stratified_split",
    "to_float",
]
