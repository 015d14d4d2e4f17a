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
:func:`assign_prototypes`, :func:`update_class_representatives`, :func:`dual_head_scores`,
:func:`dual_head_probabilities`, :func:`lpc_latent_dim`.
"""

from ._base import HEADS, Head, create, names
from .assignment import DEFAULT_MOMENTUM, assign_prototypes, update_class_representatives
from .class_mean import ClassMeanPrototypes
from .cosine import DEFAULT_TEMPERATURE, CosineHead
from .dual import DUAL_PREDICTIONS, DualHead, dual_head_probabilities, dual_head_scores
from .etf import FixedETFHead, simplex_etf
from .hyperspherical import HypersphericalPrototypeHead
from .linear import LinearHead
from .lpc import LPC_WIDTHS, LPCBottleneckHead, lpc_latent_dim
from .prototypes import PROTOTYPE_METHODS, optimize_prototypes, prototype_stats

__all__ = [
    "DEFAULT_MOMENTUM",
    "DEFAULT_TEMPERATURE",
    "DUAL_PREDICTIONS",
    "HEADS",
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
    "create",
    "dual_head_probabilities",
    "dual_head_scores",
    "lpc_latent_dim",
    "names",
    "optimize_prototypes",
    "prototype_stats",
    "simplex_etf",
    "update_class_representatives",
]
