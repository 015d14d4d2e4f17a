"""``GeometryMonitor``: neural-collapse metrics of ANY LightningModule, measured during its validation pass.

No extra forward pass: the features are captured while the module runs its own ``validation_step`` — by a
forward hook on a named layer, or from what ``validation_step`` returns — and folded into the streaming
:class:`neuralcollapse.metrics.NeuralCollapse` (one pass, O(d² + K·d) memory, DDP-correct). The hook is
attached only during monitored validation epochs, so other epochs cost nothing. Its cost is measured by
``neuralcollapse bench train`` (target ≤ 2 % of the epoch time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from ..output import HeadOutput

__all__ = ["GeometryMonitor"]

_LABEL_KEYS = ("labels", "label", "targets", "target", "y")
POOLS = ("avg", "flatten")


def _get_module(root: nn.Module, name: str) -> nn.Module:
    try:
        return root.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in root.named_modules() if n]
        shown = ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")
        raise ValueError(f"module has no layer {name!r}; named layers: {shown}") from None


def default_labels(batch: Any) -> Tensor:
    """Labels of a batch: the second element of a tuple/list batch, or a ``labels``/``target``/``y`` entry of a
    dict batch."""
    if isinstance(batch, list | tuple) and len(batch) >= 2 and isinstance(batch[1], Tensor):
        return batch[1]
    if isinstance(batch, Mapping):
        for key in _LABEL_KEYS:
            if isinstance(batch.get(key), Tensor):
                return batch[key]
    raise ValueError(
        "GeometryMonitor cannot find the labels in the batch (expected (x, y, ...) or a dict with one of "
        f"{', '.join(_LABEL_KEYS)}); pass `labels_fn=`"
    )


class GeometryMonitor(Callback):
    """Stream NC1–NC4 (and the other :func:`neuralcollapse.metrics.neural_collapse` keys) of a validation set.

    Feature sources, first that applies:

    1. ``classifier="fc"``: a hook on that layer; its **input** is the feature, its output the logits, and
       when it has ``weight``/``bias`` (``nn.Linear``) they are the classifier W, b of NC2–NC4.
    2. ``layer="avgpool"``: a hook on that layer; its **output** is the feature (4-D outputs are averaged over
       space, ``pool="avg"``, or flattened).
    3. neither: what ``validation_step`` returns — a :class:`~neuralcollapse.output.HeadOutput`, or a dict
       with ``"features"`` (and optionally ``"logits"``, ``"labels"``).

    Args:
        num_classes: K.
        classifier: name of the classifier layer (see above), or None.
        layer: name of a feature layer (see above), or None.
        every_n_epochs: compute and log every k epochs (and never during the sanity check); default 1.
        dataloader_idx: which validation dataloader to measure (default 0).
        labels_fn: ``batch → labels`` (default: :func:`default_labels`).
        weight, bias: a fixed classifier (K×d, K) when no classifier layer provides one.
        prefix: logged key prefix (default ``"geometry/"``).
        pool: how 4-D layer outputs become vectors: "avg" (global average) or "flatten".
        allow_missing_classes: classes absent from the validation set are dropped (True, default) instead of
            raising (``NeuralCollapse(allow_missing_classes=...)``).

    Example:
        >>> monitor = GeometryMonitor(num_classes=10, classifier="fc", every_n_epochs=5)  # doctest: +SKIP
        >>> trainer = L.Trainer(callbacks=[monitor])  # doctest: +SKIP
    """

    def __init__(
        self,
        num_classes: int,
        *,
        classifier: str | None = None,
        layer: str | None = None,
        every_n_epochs: int = 1,
        dataloader_idx: int = 0,
        labels_fn: Callable[[Any], Tensor] | None = None,
        weight: Tensor | None = None,
        bias: Tensor | None = None,
        prefix: str = "geometry/",
        pool: str = "avg",
        allow_missing_classes: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2; got {num_classes!r}")
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"`every_n_epochs` must be an int >= 1; got {every_n_epochs!r}")
        if classifier is not None and layer is not None:
            raise ValueError("give at most one of `classifier` (hooked layer's input) and `layer` (its output)")
        if pool not in POOLS:
            raise ValueError(f"`pool` must be one of {', '.join(map(repr, POOLS))}; got {pool!r}")
        if bias is not None and weight is None:
            raise ValueError("`bias` needs `weight`")
        self.num_classes = num_classes
        self.classifier = classifier
        self.layer = layer
        self.every_n_epochs = every_n_epochs
        self.dataloader_idx = dataloader_idx
        self.labels_fn = labels_fn or default_labels
        self.weight = weight
        self.bias = bias
        self.prefix = prefix
        self.pool = pool
        self.allow_missing_classes = bool(allow_missing_classes)
        self.metric: Any = None
        self.last: dict[str, float] = {}
        self._handle: Any = None
        self._captured: tuple[Tensor, Tensor | None] | None = None
        self._active = False

    # ----------------------------------------------------------------------------------- capture
    def _vector(self, x: Tensor) -> Tensor:
        if x.ndim > 2:
            return x.mean(dim=tuple(range(2, x.ndim))) if self.pool == "avg" else x.flatten(1)
        return x

    def _hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if self.classifier is not None:
            feats = inputs[0]
            logits = output if isinstance(output, Tensor) else getattr(output, "logits", None)
        else:
            feats = output.features if isinstance(output, HeadOutput) else output
            logits = None
        if isinstance(feats, Tensor):
            self._captured = (self._vector(feats.detach()), None if logits is None else logits.detach())

    def _monitored(self, trainer: Any) -> bool:
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._active = self._monitored(trainer)
        if not self._active:
            return
        if self.metric is not None:
            self.metric.reset()
        name = self.classifier or self.layer
        if name is not None and self._handle is None:
            self._handle = _get_module(pl_module, name).register_forward_hook(self._hook)

    def _detach_hook(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def on_validation_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self._active or dataloader_idx != self.dataloader_idx:
            self._captured = None
            return
        labels: Tensor | None = None
        if self._captured is not None:
            features, logits = self._captured
        elif isinstance(outputs, HeadOutput):
            features, logits = outputs.features, outputs.logits
        elif isinstance(outputs, Mapping) and isinstance(outputs.get("features"), Tensor):
            features, logits = outputs["features"], outputs.get("logits")
            labels = outputs.get("labels")
        else:
            raise ValueError(
                "GeometryMonitor found no features: pass `classifier=` or `layer=` (a named layer to hook), or "
                "return a HeadOutput or a dict with 'features' from validation_step"
            )
        self._captured = None
        if labels is None:
            labels = self.labels_fn(batch)
        features = self._vector(features.detach()).float()
        if self.metric is None:
            from ..metrics.streaming import NeuralCollapse

            self.metric = NeuralCollapse(self.num_classes, int(features.shape[1]),
                                         allow_missing_classes=self.allow_missing_classes).to(features.device)
        self.metric.update(features, labels.to(features.device), None if logits is None else logits.detach().float())

    def _classifier_params(self, pl_module: Any) -> tuple[Tensor | None, Tensor | None]:
        if self.weight is not None:
            return self.weight, self.bias
        if self.classifier is not None:
            layer = _get_module(pl_module, self.classifier)
            w, b = getattr(layer, "weight", None), getattr(layer, "bias", None)
            if isinstance(w, Tensor) and w.ndim == 2 and w.shape[0] == self.num_classes:
                return w.detach(), b.detach() if isinstance(b, Tensor) else None
        return None, None

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._detach_hook()
        if not self._active or self.metric is None:
            return
        self._active = False
        weight, bias = self._classifier_params(pl_module)
        if weight is not None and weight.shape[1] != self.metric.dim:
            weight, bias = None, None
        values = self.metric.compute(weight=weight, bias=bias)
        self.last = {k: float(v) for k, v in values.items()}
        for key, value in self.last.items():
            pl_module.log(self.prefix + key, value, on_step=False, on_epoch=True, sync_dist=False)
        record = getattr(pl_module, "add_to_record", None)
        if callable(record):
            record({self.prefix + k: v for k, v in self.last.items()})

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._detach_hook()

    def state_dict(self) -> dict[str, Any]:
        return {"last": dict(self.last)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last = dict(state_dict.get("last", {}))
