"""Classifier heads: what turns backbone features h (N, d) into a :class:`~neuralcollapse.output.HeadOutput`.

Every head is built as ``Head(in_features, num_classes, **kw)`` (or ``heads.create(name, in_features=...,
num_classes=..., **kw)``) and exposes ``in_features``, ``num_classes``, ``weight`` (K, d') and ``bias`` (K or
None), where d' is the width of ``HeadOutput.features``; normalised and fixed heads also expose ``prototypes``
(unit rows in class order).

| name (aliases) | class | method |
|---|---|---|
| ``linear`` | :class:`LinearHead` | z = Wh + b |
| ``dual`` | :class:`DualHead` | CE head + anti-class head (OCCE paper §3.3) |
| ``cosine`` (``normalized``, ``normface``) | :class:`CosineHead` | cosines / τ, no bias (NormFace, NTCE, NONL) |
| ``etf`` | :class:`FixedETFHead` | fixed simplex ETF (+ BN/normalise for ETF + DR) |
| ``prototypes`` (``dl2pa``, ``hyperspherical``) | :class:`HypersphericalPrototypeHead` | DL2PA / HPN |
| ``lpc`` | :class:`LPCBottleneckHead` | linear bottleneck + classifier (latent point collapse) |
| ``class_mean`` | :class:`ClassMeanPrototypes` | fitted class-mean prototypes (SCL phase 2) |

Functions: :func:`simplex_etf`, :func:`optimize_prototypes`, :func:`prototype_stats`,
:func:`assign_prototypes`, :func:`update_class_representatives`, :func:`matching_cosine`,
:func:`reassignment_batches`, :func:`dual_head_scores`,
:func:`dual_head_probabilities`, :func:`lpc_latent_dim`.
"""

from ._base import HEADS, Head, create, names
from .assignment import (
    DEFAULT_ASSIGNMENTS_PER_EPOCH,
    DEFAULT_INITIAL_ASSIGNMENT,
    DEFAULT_MOMENTUM,
    DEFAULT_WARMUP_ITERATIONS,
    INITIAL_ASSIGNMENTS,
    assign_prototypes,
    check_assignments_per_epoch,
    matching_cosine,
    reassignment_batches,
    update_class_representatives,
)
from .class_mean import ClassMeanPrototypes
from .cosine import DEFAULT_TEMPERATURE, CosineHead
from .dual import DUAL_PREDICTIONS, DualHead, dual_head_probabilities, dual_head_scores
from .etf import FixedETFHead, simplex_etf
from .hyperspherical import HypersphericalPrototypeHead
from .linear import LinearHead
from .lpc import LPC_WIDTHS, LPCBottleneckHead, lpc_latent_dim
from .prototypes import PROTOTYPE_METHODS, optimize_prototypes, prototype_stats

__all__ = [
    "DEFAULT_ASSIGNMENTS_PER_EPOCH",
    "DEFAULT_INITIAL_ASSIGNMENT",
    "DEFAULT_MOMENTUM",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_WARMUP_ITERATIONS",
    "DUAL_PREDICTIONS",
    "HEADS",
    "INITIAL_ASSIGNMENTS",
    "LPC_WIDTHS",
    "PROTOTYPE_METHODS",
    "ClassMeanPrototypes",
    "CosineHead",
    "DualHead",
    "FixedETFHead",
    "Head",
    "HypersphericalPrototypeHead",
    "LPCBottleneckHead",
    "LinearHead",
    "assign_prototypes",
    "check_assignments_per_epoch",
    "create",
    "dual_head_probabilities",
    "dual_head_scores",
    "lpc_latent_dim",
    "matching_cosine",
    "names",
    "optimize_prototypes",
    "prototype_stats",
    "reassignment_batches",
    "simplex_etf",
    "update_class_representatives",
]
