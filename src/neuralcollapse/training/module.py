"""``CollapseModule``: the LightningModule composing backbone → head → objective.

One training step: uint8/float batch → float in [0, 1] → batched augmentation on the device (pad-and-crop or
random-resized crop, flip, optional mixup) → normalisation → ``net`` → ``Objective`` (+ per-step context from
the callbacks, e.g. soft anti-class targets) → optimiser step with the learning rate set from the progress
(:mod:`neuralcollapse.training.optim`). Optimisation is manual so that COT's second update (a second SGD
optimiser with its own momentum buffers on the complement entropy, docs/methods.md §3) and DL2PA's per-step
representative updates fit in the same step.

Epoch metrics (sample-weighted means, all-reduced under DDP): ``train/<part>``, ``train/acc``, ``lr``,
``<stage>/<part>``, ``<stage>/acc`` for each evaluation split (``test``, and ``val`` when a validation split is
held out), and every ``nc_every`` epochs the neural-collapse metrics of the test split (``test_nc/<key>``,
features captured during validation — no extra pass) and of the un-augmented training split in eval mode
(``train_nc/<key>``, one extra forward pass; docs/methods.md §2.9).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from ..data.augment import to_float
from ..output import HeadOutput
from .config import TrainConfig
from .network import DataInfo, build_monitor, build_network, build_objective, feature_dim
from .optim import build_optimizer, effective_lr, set_learning_rates

__all__ = ["CollapseModule", "derive_seed"]


def derive_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed from ``seed`` and integer ``parts`` (epoch, rank): SplitMix64-style mixing, stable across
    platforms and Python versions (unlike ``hash``)."""
    x = (int(seed) + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    for p in parts:
        x = (x ^ (int(p) + 0x9E3779B97F4A7C15 + ((x << 6) & 0xFFFFFFFFFFFFFFFF) + (x >> 2))) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


class _Averages:
    """Sample-weighted running sums of named scalars (float64), all-reduced once at the epoch end."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count: Tensor | None = None

    def add(self, values: Mapping[str, Tensor], n: int) -> None:
        for key, value in values.items():
            v = value.detach().to(torch.float64) * n
            self.sums[key] = self.sums[key] + v if key in self.sums else v
        device = next(iter(values.values())).device if values else torch.device("cpu")
        c = torch.tensor(float(n), dtype=torch.float64, device=device)
        self.count = c if self.count is None else self.count + c

    def compute(self, reduce: Any) -> dict[str, float]:
        if self.count is None:
            return {}
        keys = sorted(self.sums)
        stacked = torch.stack([self.sums[k] for k in keys] + [self.count])
        stacked = reduce(stacked)
        total = float(stacked[-1])
        return {k: float(stacked[i]) / max(total, 1.0) for i, k in enumerate(keys)}

    def reset(self) -> None:
        self.sums, self.count = {}, None


class CollapseModule(L.LightningModule):
    """Backbone → head → objective, with the training-system extras (see the module docstring).

    Args:
        config: a :class:`TrainConfig` or its dict.
        data_info: a :class:`~neuralcollapse.training.network.DataInfo` or its dict (classes, channels, size,
            normalisation).

    Attributes:
        net: ``models.Classifier`` (``net.backbone``, ``net.head``).
        objective: the run's ``Objective``; ``monitor``: zero-weight terms logged for comparison.
        step_context: per-step keyword arguments for the objective, filled by callbacks
            (``anticlass_target`` from :class:`~neuralcollapse.training.callbacks.AnticlassSelfDistillation`).

    Example:
        >>> import torch
        >>> from neuralcollapse.training import CollapseModule, TrainConfig
        >>> info = dict(dataset="digits", num_classes=10, in_channels=1, image_size=[8, 8], mean=[0.3],
        ...             std=[0.4], train_size=1000)
        >>> module = CollapseModule(TrainConfig(model_kwargs={"hidden": [32]}), info)
        >>> module(torch.zeros(4, 1, 8, 8, dtype=torch.uint8)).logits.shape
        torch.Size([4, 10])
    """

    def __init__(self, config: TrainConfig | Mapping[str, Any], data_info: DataInfo | Mapping[str, Any]) -> None:
        super().__init__()
        cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
        info = data_info if isinstance(data_info, DataInfo) else DataInfo.from_dict(dict(data_info))
        self.config = cfg
        self.info = info
        self.save_hyperparameters({"config": cfg.to_dict(), "data_info": info.to_dict()})
        self.automatic_optimization = False
        self.net = build_network(cfg, info)
        self.objective = build_objective(cfg)
        self.monitor = build_monitor(cfg)
        self.augment = self._build_augment(cfg)
        self.register_buffer("input_mean", torch.tensor(info.mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("input_std", torch.tensor(info.std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.feature_dim = feature_dim(self.net, info)
        self.use_cot = "cot" in self.objective
        self.cot_weight = 0.0
        if self.use_cot:
            # COT's complement-entropy step is a separate update: keep it out of the first step's total.
            self.cot_weight = self.objective.weights["cot"]
            self.objective.set_weight("cot", 0.0)
        self.step_context: dict[str, Any] = {}
        self.eval_stages: list[str] = ["test"]
        self._train_avg = _Averages()
        self._eval_avg: dict[str, _Averages] = {}
        self._nc: dict[str, Any] = {}
        self._last_prototypes: Tensor | None = None
        self._record: dict[str, float] = {}
        self._train_finalised = -1
        self.channels_last = False

    # ------------------------------------------------------------------------------------------ building
    @staticmethod
    def _build_augment(cfg: TrainConfig) -> Any:
        if not cfg.augment and cfg.mixup_alpha == 0:
            return None
        from ..data.augment import BatchAugment

        kwargs: dict[str, Any] = {"mixup_alpha": cfg.mixup_alpha, "seed": cfg.seed}
        if cfg.augment:
            rrc = None if cfg.random_resized_crop is None else tuple(cfg.random_resized_crop)
            kwargs.update(crop_padding=cfg.crop_padding, pad_mode=cfg.pad_mode, flip=cfg.flip, random_resized_crop=rrc)
        else:
            kwargs.update(crop_padding=0, flip=False, random_resized_crop=None)
        return BatchAugment(**kwargs)

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is not None and hasattr(dm, "eval_stages"):
            self.eval_stages = list(dm.eval_stages)
        wants = self.config.channels_last
        on_cuda = self._trainer is not None and self.trainer.accelerator.__class__.__name__ == "CUDAAccelerator"
        if wants is True or (wants == "auto" and on_cuda):
            if any(isinstance(m, torch.nn.Conv2d) for m in self.net.modules()):
                self.net.to(memory_format=torch.channels_last)
                self.channels_last = True

    @property
    def head(self) -> torch.nn.Module:
        return self.net.head

    def configure_optimizers(self) -> Any:
        dm = self.trainer.datamodule if self._trainer is not None else None
        per_rank = dm.batch_size_per_rank if dm is not None and hasattr(dm, "batch_size_per_rank") else None
        world = self.trainer.world_size if self._trainer is not None else 1
        world_batch = (per_rank or self.config.batch_size) * max(1, world)
        lr = effective_lr(self.config, world_batch)
        optimizers = [build_optimizer(self.config, self.net, head=self.net.head, lr=lr)]
        if self.use_cot:
            # COT (Chen et al., ICLR 2019): a second SGD optimiser, same lr and weight decay, own momentum buffers.
            second = self.config.replace(optimizer="sgd", constant_lr_groups=[])
            optimizers.append(build_optimizer(second, self.net, lr=lr))
        return optimizers

    # ------------------------------------------------------------------------------------------ inputs
    def prepare_input(self, x: Tensor) -> Tensor:
        """uint8 → float in [0, 1]; floats pass through. Normalisation is applied by :meth:`normalize`."""
        return to_float(x)

    def normalize(self, x: Tensor) -> Tensor:
        x = (x - self.input_mean) / self.input_std
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: Tensor) -> HeadOutput:
        """Head output for a raw batch (uint8 or float in [0, 1]); normalised here."""
        return self.net(self.normalize(self.prepare_input(x)))

    # ------------------------------------------------------------------------------------------ helpers
    def _context(self) -> dict[str, Any]:
        return {"epoch": self.current_epoch, "num_epochs": self.config.epochs}

    def _num_batches(self) -> int:
        n = self.trainer.num_training_batches
        return int(n) if n not in (None, float("inf")) and n > 0 else 1

    def _reduce_sum(self, t: Tensor) -> Tensor:
        if self._trainer is None or self.trainer.world_size == 1:
            return t
        return self.trainer.strategy.reduce(t, reduce_op="sum")

    @torch.no_grad()
    def sync_batchnorm_stats(self) -> None:
        """Average the BatchNorm running statistics (``running_mean``/``running_var``) over the DDP ranks; a
        no-op on one process. Each rank's statistics follow its own batches, and only rank 0's are saved: run
        before every evaluation and checkpoint so that what is evaluated and logged is what is saved (with
        SyncBatchNorm the ranks already agree and this leaves them unchanged)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return
        buffers = [
            b
            for m in self.net.modules()
            if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.track_running_stats
            for b in (m.running_mean, m.running_var)
            if b is not None
        ]
        if not buffers:
            return
        flat = torch.cat([b.detach().reshape(-1).to(torch.float64) for b in buffers])
        flat = self._reduce_sum(flat) / self.trainer.world_size
        offset = 0
        for b in buffers:
            b.copy_(flat[offset : offset + b.numel()].view_as(b))
            offset += b.numel()

    def _nc_metric(self, stage: str) -> Any:
        if stage not in self._nc:
            from ..metrics.streaming import NeuralCollapse

            self._nc[stage] = NeuralCollapse(self.info.num_classes, self.feature_dim).to(self.device)
        return self._nc[stage]

    def nc_epoch(self, epoch: int | None = None) -> bool:
        """Whether the NC metrics are computed after the 0-indexed ``epoch`` (every ``nc_every`` epochs and the
        last epoch)."""
        k = self.config.nc_every
        e = self.current_epoch if epoch is None else epoch
        return k > 0 and ((e + 1) % k == 0 or e + 1 == self.config.epochs)

    def classifier_matrix(self) -> tuple[Tensor | None, Tensor | None]:
        """(W, b) the NC metrics compare features with: the head's prototypes in class order when it reports
        them (normalised/fixed heads), else its ``weight``/``bias``."""
        weight = self._last_prototypes
        if weight is None:
            w = getattr(self.net.head, "weight", None)
            weight = w.detach() if isinstance(w, Tensor) else None
        bias = getattr(self.net.head, "bias", None)
        bias = bias.detach() if isinstance(bias, Tensor) and weight is not None else None
        if weight is not None and weight.ndim != 2:
            weight, bias = None, None
        if bias is not None and (bias.ndim != 1 or bias.shape[0] != weight.shape[0]):
            bias = None
        return weight, bias

    # ------------------------------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        epoch = self.current_epoch
        rank = self.global_rank
        # Fresh, position-determined RNG streams per (seed, epoch, rank): augmentation and dropout of an epoch
        # are identical whether or not the run was resumed before it.
        seed = derive_seed(self.config.seed, epoch, rank)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)  # noqa: NPY002 - user code and third-party transforms read the global RNG
        random.seed(seed)
        if self.augment is not None:
            self.augment.generator.manual_seed(derive_seed(self.config.seed, epoch, rank, 1))
        dm = self.trainer.datamodule
        if dm is not None and hasattr(dm, "set_epoch"):
            dm.set_epoch(epoch)
        self._train_avg.reset()
        self._record = {}

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        x, y, idx = batch
        cfg = self.config
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        progress = self.current_epoch + batch_idx / self._num_batches()
        lr = set_learning_rates([o.optimizer for o in optimizers], cfg, progress)

        x = self.prepare_input(x)
        mix = None
        if self.augment is not None:
            x, mix = self._augment(x, y)
        x = self.normalize(x)
        context = {**self._context(), **self.step_context}
        out = self.net(x)
        if mix is None:
            total, parts = self.objective(out, y, **context)
        else:
            y_b, lam = mix
            total_a, parts_a = self.objective(out, y, **context)
            total_b, parts_b = self.objective(out, y_b, **context)
            total = lam * total_a + (1.0 - lam) * total_b
            parts = {k: lam * parts_a[k] + (1.0 - lam) * parts_b[k] for k in parts_a}
        opt = optimizers[0]
        opt.zero_grad(set_to_none=True)
        self.manual_backward(total)
        if cfg.grad_clip is not None:
            self.clip_gradients(opt, gradient_clip_val=cfg.grad_clip, gradient_clip_algorithm="norm")
        opt.step()

        if self.use_cot:
            # COT's second update on the complement entropy: new forward, own optimiser (docs/methods.md §3).
            out2 = self.net(x)
            second = self.objective.term("cot")(out2, y, **context)
            opt2 = optimizers[1]
            opt2.zero_grad(set_to_none=True)
            self.manual_backward(second * self.cot_weight)
            opt2.step()
            parts = {**parts, "cot": second.detach()}

        out = out.detach()
        head = self.net.head
        if hasattr(head, "update_representatives"):
            # DL2PA: momentum representatives from this step's features (mixup: the mixed features with y_a,
            # weighted by λ, as the reference); per-class sums all-reduced under DDP.
            lam = 1.0 if mix is None else mix[1]
            head.update_representatives(out.features, y, lam=lam, all_reduce=self.trainer.world_size > 1)
        with torch.no_grad():
            if self.monitor is not None:
                _, extra = self.monitor(out, y, **self._context())
                parts = {**parts, **extra}
            label = y if mix is None or mix[1] >= 0.5 else mix[0]
            acc = (out.logits.argmax(dim=1) == label).to(torch.float64).mean()
        values = {f"train/{k}": v for k, v in parts.items()}
        values["train/loss"] = total.detach()
        values["train/acc"] = acc
        self._train_avg.add(values, int(y.shape[0]))
        self._last_lr = lr
        return {"loss": total.detach(), "output": out, "target": y, "index": idx}

    def _augment(self, x: Tensor, y: Tensor) -> tuple[Tensor, tuple[Tensor, float] | None]:
        """Crop/flip on the device; with mixup also (partner labels, λ) for λ·L(y) + (1 − λ)·L(y_b)."""
        if self.config.mixup_alpha > 0:
            mixed, _, y_b, lam = self.augment(x, y)
            return mixed, (y_b, float(lam))
        return self.augment(x), None

    def finalize_train_epoch(self) -> dict[str, float]:
        """Reduce the training averages of the current epoch into the epoch record (idempotent)."""
        if self._train_finalised != self.current_epoch:
            values = self._train_avg.compute(self._reduce_sum)
            values["lr"] = float(getattr(self, "_last_lr", 0.0))
            self._record.update(values)
            self._train_finalised = self.current_epoch
            for key, value in values.items():
                self.log(key, value, on_step=False, on_epoch=True, sync_dist=False, prog_bar=key == "train/acc")
        return dict(self._record)

    def on_train_epoch_end(self) -> None:
        self.sync_batchnorm_stats()  # before the checkpoint (Lightning runs checkpoint callbacks after this hook)
        self.finalize_train_epoch()

    def add_to_record(self, values: Mapping[str, float]) -> None:
        """Add metrics computed elsewhere (callbacks: γ, re-assignments, geometry) to this epoch's record.
        Values are floats, except lists (e.g. DL2PA's ``dl2pa/assignment``), kept as lists of numbers."""
        self._record.update({str(k): [float(x) if isinstance(x, float) else x for x in v] if isinstance(v, list)
                             else float(v) for k, v in values.items()})

    def epoch_record(self) -> dict[str, float]:
        """All metrics of the current epoch so far (train, evaluation, NC), as floats."""
        self.finalize_train_epoch()
        return dict(self._record)

    # ------------------------------------------------------------------------------------------ evaluation
    def on_validation_epoch_start(self) -> None:
        self.sync_batchnorm_stats()  # every rank evaluates the model that is saved
        if self.trainer.sanity_checking:
            return
        self._eval_avg = {stage: _Averages() for stage in self.eval_stages}
        self._last_prototypes = None
        for metric in self._nc.values():
            metric.reset()
        if self.nc_epoch() and self.config.nc_on_train:
            self._train_geometry_pass()

    @torch.no_grad()
    def _train_geometry_pass(self) -> None:
        """NC metrics of the un-augmented training split in eval mode (OCCE paper Fig. 4 protocol)."""
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "train_eval_dataloader"):
            return
        metric = self._nc_metric("train")
        avg = _Averages()
        limit = self.trainer.limit_val_batches if isinstance(self.trainer.limit_val_batches, int) else None
        for i, (x, y, _) in enumerate(dm.train_eval_dataloader()):
            if limit is not None and i >= limit:
                break
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with self.trainer.precision_plugin.forward_context():
                out = self(x)
            metric.update(out.features.float(), y, out.logits.float())
            values = self._eval_values("train_clean", out, y)
            avg.add(values, int(y.shape[0]))
            if out.prototypes is not None:
                self._last_prototypes = out.prototypes.detach().float()
        self._record.update(avg.compute(self._reduce_sum))
        if self.nc_epoch():
            self._nc_metric("test").set_class_means(metric.means().to(torch.float32))

    def _eval_values(self, stage: str, out: HeadOutput, y: Tensor) -> dict[str, Tensor]:
        """Loss parts, total and accuracy of an eval-mode batch, keyed ``<stage>/<name>``."""
        total, parts = self.objective(out, y, **self._context())
        if self.monitor is not None:
            _, extra = self.monitor(out, y, **self._context())
            parts = {**parts, **extra}
        values = {f"{stage}/{k}": v for k, v in parts.items()}
        values[f"{stage}/loss"] = total
        values[f"{stage}/acc"] = (out.logits.argmax(dim=1) == y).to(torch.float64).mean()
        return values

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y, _ = batch
        stage = self.eval_stages[dataloader_idx] if dataloader_idx < len(self.eval_stages) else f"eval{dataloader_idx}"
        out = self(x)
        values = self._eval_values(stage, out, y)
        if self.trainer.sanity_checking:
            return
        self._eval_avg.setdefault(stage, _Averages()).add(values, int(y.shape[0]))
        if out.prototypes is not None:
            self._last_prototypes = out.prototypes.detach().float()
        if stage == "test" and self.nc_epoch():
            self._nc_metric("test").update(out.features.float(), y, out.logits.float())

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        values: dict[str, float] = {}
        for avg in self._eval_avg.values():
            values.update(avg.compute(self._reduce_sum))
        if self.nc_epoch():
            weight, bias = self.classifier_matrix()
            for stage, metric in self._nc.items():
                if int(self._reduce_sum(metric.counts.sum().clone())) == 0:
                    continue
                if weight is not None and weight.shape[1] != metric.dim:
                    weight, bias = None, None
                try:
                    nc = metric.compute(weight=weight, bias=bias)
                except ValueError:  # e.g. a class absent from a small split: report nothing, never NaN
                    continue
                values.update({f"{stage}_nc/{k}": float(v) for k, v in nc.items() if _finite(v)})
        self._record.update(values)
        for key, value in values.items():
            self.log(key, value, on_step=False, on_epoch=True, sync_dist=False, prog_bar=key == "test/acc")

    # ------------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),  # noqa: NPY002 - the global RNG is what user code draws from
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["rng_states"] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("rng_states")
        if not state:
            return
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])  # noqa: NPY002
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
