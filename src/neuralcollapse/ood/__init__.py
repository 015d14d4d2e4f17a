"""Post-hoc out-of-distribution detectors and detection metrics.

Every detector reads cached representations (features, logits, labels, the last layer's weight and bias;
ODIN alone runs a model) and returns scores where **higher = more in-distribution**::

    from neuralcollapse import ood

    det = ood.create("vim", dim=256).fit(features=F_train, weight=W, bias=b)
    s_id, s_ood = det.score(features=F_id), det.score(features=F_ood)
    ood.evaluate(s_id, s_ood)   # {"auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_id"}

``ood.names()`` lists the registered detectors (aliases: ``"ebo"`` → ``"energy"``, ``"mds"`` →
``"mahalanobis"``); formulas, defaults and pitfalls are in each module's docstring.
"""

from __future__ import annotations

from . import (
    ash,
    dice,
    energy,
    knn,
    mahalanobis,
    maxlogit,
    msp,
    odin,
    react,
    relation,
    rmds,
    scale,
    she,
    vim,
)
from .ash import ASH, ash_features
from .base import Detector, NotFittedError, Requires
from .dice import DICE
from .energy import Energy, energy_score
from .knn import KNN
from .mahalanobis import Mahalanobis
from .maxlogit import MaxLogit, maxlogit_score
from .metrics import evaluate
from .msp import MSP, msp_score
from .odin import ODIN
from .react import ReAct
from .registry import DETECTORS, create, get, names, register_detector
from .relation import Relation
from .rmds import RMDS
from .scale import Scale, scale_features
from .search import GridSearchResult, grid_search
from .she import SHE
from .vim import ViM

__all__ = [
    "ASH",
    "DETECTORS",
    "DICE",
    "KNN",
    "MSP",
    "ODIN",
    "RMDS",
    "SHE",
    "Detector",
    "Energy",
    "GridSearchResult",
    "Mahalanobis",
    "MaxLogit",
    "NotFittedError",
    "ReAct",
    "Relation",
    "Requires",
    "Scale",
    "ViM",
    "ash",
    "ash_features",
    "create",
    "dice",
    "energy",
    "energy_score",
    "evaluate",
    "get",
    "grid_search",
    "knn",
    "mahalanobis",
    "maxlogit",
    "maxlogit_score",
    "msp",
    "msp_score",
    "names",
    "odin",
    "react",
    "register_detector",
    "relation",
    "rmds",
    "scale",
    "scale_features",
    "she",
    "vim",
]
