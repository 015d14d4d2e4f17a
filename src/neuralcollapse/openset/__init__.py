"""Open-set recognition: known/unknown class splits and metrics (OSCR, closed-set error, AUROC).

Scores follow the package convention, higher = more "known"::

    from neuralcollapse import openset

    split = openset.osr_split("cifar100", seed=0)              # 20 known / 80 unknown classes
    y_train = openset.remap_known_labels(y_train_all, split.known)   # knowns -> 0..19, others -> -1
    openset.oscr(msp_known, pred_known == y_known, msp_unknown)     # ties="grouped" (or "arpl")
    openset.closed_set_error(logits_known, y_known), openset.openset_auroc(msp_known, msp_unknown)
"""

from __future__ import annotations

from . import metrics, splits
from .metrics import OSCR_TIES, UNKNOWN_LABEL, closed_set_error, openset_auroc, oscr
from .splits import (
    OSR_PROTOCOLS,
    OSR_SEEDS,
    ClassSplit,
    OSRSplit,
    load_splits,
    osr_split,
    osr_splits,
    random_class_split,
    remap_known_labels,
    save_splits,
)

__all__ = [
    "OSCR_TIES",
    "OSR_PROTOCOLS",
    "OSR_SEEDS",
    "UNKNOWN_LABEL",
    "ClassSplit",
    "OSRSplit",
    "closed_set_error",
    "load_splits",
    "metrics",
    "openset_auroc",
    "oscr",
    "osr_split",
    "osr_splits",
    "random_class_split",
    "remap_known_labels",
    "save_splits",
    "splits",
]
