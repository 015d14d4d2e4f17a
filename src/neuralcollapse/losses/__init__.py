"""Loss functions (functional + ``nn.Module``) and the named terms of :class:`Objective`.

Families, one file each: ``occe`` (one-cold cross-entropy) and ``anticlass`` (soft anti-class targets),
``cross_entropy`` (CE, label smoothing, BCE), ``complement`` (CE+NL, COT, CCE), ``focal`` (focal, ASL,
cyclical focal, AdaFocal), ``normalized`` (NormFace, NTCE, NONL), ``contrastive`` (SupCon), ``margin``
(ArcFace, CosFace), ``lpc`` (latent point collapse penalty), ``prototype`` (prototype alignment,
dot-regression).
"""

import importlib as _importlib

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

_FAMILIES = (
    "anticlass", "complement", "contrastive", "cross_entropy", "focal", "lpc", "margin", "normalized", "occe",
    "prototype",
)

# Some families share their name with a function they export (``cross_entropy``): read each module's
# ``__all__`` through importlib rather than the package attribute the star-import may have replaced.
__all__ = [
    "TERMS",
    "LossTerm",
    "Objective",
    "ObjectiveOutput",
    "create_term",
    "parse_objective",
    "register_term",
    "term_names",
    *(name for family in _FAMILIES for name in _importlib.import_module(f"{__name__}.{family}").__all__),
]
