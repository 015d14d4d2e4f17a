"""Loss functions (functional + ``nn.Module``) and the named terms of :class:`Objective`.

Families, one file each: ``occe`` (one-cold cross-entropy, soft anti-class targets), ``cross_entropy``
(CE, label smoothing, BCE), ``complement`` (CE+NL, COT, CCE), ``focal`` (focal, ASL, cyclical focal,
AdaFocal), ``normalized`` (NormFace, NTCE, NONL), ``contrastive`` (SupCon), ``margin`` (ArcFace, CosFace),
``lpc`` (latent point collapse penalty), ``prototype`` (prototype alignment, dot-regression).
"""

from . import (
    anticlass,
    complement,
    contrastive,
    cross_entropy,
    focal,
    lpc,
    margin,
    normalized,
    occe,
    prototype,
)
from ._terms import TERMS, LossTerm, create_term, register_term, term_names
from .anticlass import *  # noqa: F403
from .complement import *  # noqa: F403
from .contrastive import *  # noqa: F403
from .cross_entropy import *  # noqa: F403
from .focal import *  # noqa: F403
from .lpc import *  # noqa: F403
from .margin import *  # noqa: F403
from .normalized import *  # noqa: F403
from .objective import Objective, ObjectiveOutput, parse_objective
from .occe import *  # noqa: F403
from .prototype import *  # noqa: F403

__all__ = [
    "TERMS",
    "LossTerm",
    "Objective",
    "ObjectiveOutput",
    "create_term",
    "parse_objective",
    "register_term",
    "term_names",
    *anticlass.__all__,
    *complement.__all__,
    *contrastive.__all__,
    *cross_entropy.__all__,
    *focal.__all__,
    *lpc.__all__,
    *margin.__all__,
    *normalized.__all__,
    *occe.__all__,
    *prototype.__all__,
]
