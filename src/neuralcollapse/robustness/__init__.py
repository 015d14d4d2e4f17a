"""Robustness: DeepFool minimal adversarial perturbations, a gradient-norm Lipschitz proxy, and common
image corruptions (CIFAR-10-C / ImageNet-C families) with a corruption-accuracy table.

Depends on torch only; every tool evaluates the model in eval mode with frozen parameters and restores
its state afterwards.

Note: ``robustness.deepfool`` is the *function* (docs/design.md's public name); its module is reached with
``from neuralcollapse.robustness.deepfool import ...``.
"""

from . import corruptions as _corruptions
from . import deepfool as _deepfool_module
from .corruptions import *  # noqa: F403
from .deepfool import *  # noqa: F403

__all__ = [*_corruptions.__all__, *_deepfool_module.__all__]
