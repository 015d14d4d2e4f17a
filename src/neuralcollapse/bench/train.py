"""Training-throughput benchmarks (``neuralcollapse bench train``).

1. **Batched device augmentation vs per-image CPU transforms**: images per second of a training epoch of a
   CIFAR ResNet-18 on synthetic CIFAR-shaped uint8 data (3×32×32, 100 classes), batch 128, SGD. *Ours*: the
   training system's path — uint8 tensors kept on the device (``data_on_device="auto"``), batches gathered by
   :class:`~neuralcollapse.data.samplers.TensorBatchLoader`, :class:`~neuralcollapse.data.augment.BatchAugment`
   (reflect pad 4 + random crop + flip) and normalisation on the device. *Baseline*: a plain ``Dataset`` whose
   ``__getitem__`` converts, pads, crops, flips and normalises one image at a time on the CPU, batched by a
   ``DataLoader`` (CUDA: 4 workers, pinned memory; CPU: in-process). Same model, optimiser and precision for
   both (CUDA: bf16 autocast + channels-last). Target on a GPU: ≥ 3× at batch 128; on a CPU the model
   dominates and the ratio is reported only.
2. **GeometryMonitor overhead**: the time spent inside the monitor (its hooks and forward hook, timed
   directly) relative to a Lightning epoch (training + validation) without it — target ≤ 1.02× — and, for
   reference, the end-to-end wall time with vs without (best of interleaved repeats; noisy on a shared
   machine). Not measured by the quick mode's tiny epochs (fixed costs dominate): reported only.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import BenchRow, ratio_row

__all__ = ["run"]

GROUP = "train"
BATCH = 128
NUM_CLASSES = 100
#: Images per epoch: (quick CPU, full CPU, CUDA).
EPOCH_IMAGES = {"quick": 256, "cpu": 512, "cuda": 20480}
#: Warm-up batches before timing.
WARMUP_BATCHES = 1
#: Timed repetitions (interleaved; the best of each is reported).
REPEATS = 3
MEAN, STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)


def _synthetic(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return x, y


class _PerImageCIFAR(torch.utils.data.Dataset):
    """The usual per-sample pipeline: ToTensor → RandomCrop(32, 4, reflect) → flip → Normalize, one image at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.x[i].float().div(255.0)
        img = F.pad(img[None], (4, 4, 4, 4), mode="reflect")[0]
        top, left = random.randint(0, 8), random.randint(0, 8)
        img = img[:, top : top + 32, left : left + 32]
        if random.random() < 0.5:
            img = img.flip(-1)
        return (img - self.mean) / self.std, self.y[i]


def _model(
    device: torch.device,
    channels_last: bool,
    *,
    num_classes: int = NUM_CLASSES,
    backbone: str = "resnet18",
    backbone_kwargs: dict[str, Any] | None = None,
    compile: bool = False,
    compile_backend: str = "inductor",
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The benchmarked network (backbone + linear classifier) and its SGD optimiser; ``compile`` wraps the network
    in ``torch.compile`` (``compile_backend``: ``"inductor"``, or ``"eager"`` to check the tracing alone)."""
    from .. import models

    torch.manual_seed(0)
    body = models.create(backbone, num_classes=num_classes, in_channels=3, **(backbone_kwargs or {}))
    net = nn.Sequential(body, nn.Linear(body.num_features, num_classes)).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    if compile:
        net = torch.compile(net, backend=compile_backend)  # parameters are shared with the wrapped module
    return net, opt


def _step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, amp: bool) -> None:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        loss = F.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _epoch_ours(
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    channels_last: bool,
    amp: bool,
    *,
    warmup: int = WARMUP_BATCHES,
    batch: int = BATCH,
    **model_kwargs: Any,
) -> float:
    """Images per second of one timed epoch of the batched on-device pipeline (after ``warmup`` batches of
    ``batch`` images); ``model_kwargs`` go to :func:`_model` (``compile``, ``backbone``, ``num_classes`` …)."""
    from ..data.augment import BatchAugment
    from ..data.samplers import TensorBatchLoader

    net, opt = _model(device, channels_last, **model_kwargs)
    aug = BatchAugment(crop_padding=4, pad_mode="reflect", flip=True, mean=MEAN, std=STD, seed=0)
    # As the training system with data_on_device="auto": the uint8 data live on the GPU, batches are gathered there.
    loader = TensorBatchLoader(x.to(device), y.to(device), batch_size=batch, shuffle=True, drop_last=True, seed=0)

    def run_epoch(limit: int | None = None) -> int:
        seen = 0
        for i, (xb, yb, _) in enumerate(loader):
            if limit is not None and i >= limit:
                break
            xb = aug(xb.to(device, non_blocking=True))
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            _step(net, opt, xb, yb.to(device, non_blocking=True), amp)
            seen += xb.shape[0]
        return seen

    run_epoch(limit=warmup)  # warm-up (cuDNN autotune, allocator, compilation)
    _sync(device)
    start = time.perf_counter()
    seen = run_epoch()
    _sync(device)
    return seen / (time.perf_counter() - start)


def _epoch_baseline(
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    channels_last: bool,
    amp: bool,
    *,
    workers: int | None = None,
    dataset: torch.utils.data.Dataset | None = None,
    warmup: int = WARMUP_BATCHES,
    batch: int = BATCH,
    **model_kwargs: Any,
) -> float:
    """Images per second of one timed epoch (after ``warmup`` batches) of the per-image pipeline: ``dataset``
    (default ``_PerImageCIFAR(x, y)``) in a ``DataLoader`` with ``workers`` processes (default: 4 on CUDA, 0 on
    CPU)."""
    net, opt = _model(device, channels_last, **model_kwargs)
    random.seed(0)
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if device.type == "cuda" else 0
    dataset = _PerImageCIFAR(x, y) if dataset is None else dataset
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0)

    def run_epoch(limit: int | None = None) -> int:
        seen = 0
        for i, (xb, yb) in enumerate(loader):
            if limit is not None and i >= limit:
                break
            xb = xb.to(device, non_blocking=True)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            _step(net, opt, xb, yb.to(device, non_blocking=True), amp)
            seen += xb.shape[0]
        return seen

    run_epoch(limit=warmup)
    _sync(device)
    start = time.perf_counter()
    seen = run_epoch()
    _sync(device)
    return seen / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------ monitor
class _TimedMonitor:
    """Wraps a GeometryMonitor's hooks (and its forward hook) with wall-clock timers."""

    @staticmethod
    def build(device: torch.device) -> Any:
        from ..training.monitor import GeometryMonitor

        class Timed(GeometryMonitor):
            seconds = 0.0

            def _timed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
                _sync(device)
                start = time.perf_counter()
                out = fn(*args, **kwargs)
                _sync(device)
                Timed.seconds += time.perf_counter() - start
                return out

            def _hook(self, *args: Any) -> None:
                self._timed(super()._hook, *args)

            def on_validation_epoch_start(self, *args: Any) -> None:
                self._timed(super().on_validation_epoch_start, *args)

            def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
                self._timed(super().on_validation_batch_end, *args, **kwargs)

            def on_validation_epoch_end(self, *args: Any) -> None:
                self._timed(super().on_validation_epoch_end, *args)

        return Timed(NUM_CLASSES, classifier="fc")


def _monitor_cost(device: torch.device, quick: bool) -> tuple[float, float, float]:
    """(best epoch seconds without the monitor, with it, best seconds spent inside the monitor)."""
    import lightning as L

    from ..training.runner import quiet_lightning

    n_train, n_val = (256, 128) if quick else ((20480, 5120) if device.type == "cuda" else (2048, 512))
    x, y = _synthetic(n_train + n_val, seed=1)
    xf = (x.float() / 255.0 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    train = torch.utils.data.TensorDataset(xf[:n_train], y[:n_train])
    val = torch.utils.data.TensorDataset(xf[n_train:], y[n_train:])

    class Net(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            from .. import models

            self.backbone = models.create("resnet18" if device.type == "cuda" else "convnet", in_channels=3)
            self.fc = nn.Linear(self.backbone.num_features, NUM_CLASSES)

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            return self.fc(self.backbone(inp))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return F.cross_entropy(self(batch[0]), batch[1])

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self(batch[0])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    def epoch(with_monitor: bool) -> tuple[float, float]:
        torch.manual_seed(0)
        monitor = _TimedMonitor.build(device) if with_monitor else None
        with quiet_lightning():
            trainer = L.Trainer(max_epochs=1, accelerator=device.type, devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                num_sanity_val_steps=0, callbacks=[monitor] if monitor else [],
                                precision="bf16-mixed" if device.type == "cuda" else "32-true")
            loaders = (torch.utils.data.DataLoader(train, batch_size=BATCH, shuffle=True),
                       torch.utils.data.DataLoader(val, batch_size=256))
            if monitor is not None:
                type(monitor).seconds = 0.0
            start = time.perf_counter()
            trainer.fit(Net(), *loaders)
            _sync(device)
        return time.perf_counter() - start, (type(monitor).seconds if monitor is not None else 0.0)

    epoch(False)  # warm-up: imports, allocator, the metric's first construction
    epoch(True)
    plain, monitored, inside = [], [], []
    for _ in range(REPEATS):  # interleaved, so drifts in machine load hit both alike
        plain.append(epoch(False)[0])
        total, spent = epoch(True)
        monitored.append(total)
        inside.append(spent)
    # Best of the repeats: the least-disturbed measurement of each (other processes only ever add time).
    return min(plain), min(monitored), min(inside)


def run(quick: bool = False) -> list[BenchRow]:
    """Rows: images/s of ours and of the per-image baseline (ratio = ours / baseline), and the monitor overhead."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    n = EPOCH_IMAGES["cuda"] if cuda else EPOCH_IMAGES["quick" if quick else "cpu"]
    if cuda and quick:
        n = EPOCH_IMAGES["cuda"] // 4
    x, y = _synthetic(n)
    ours, base = 0.0, 0.0
    for _ in range(1 if quick else 2):  # interleaved rounds, best of each
        ours = max(ours, _epoch_ours(x, y, device, channels_last=cuda, amp=cuda))
        base = max(base, _epoch_baseline(x, y, device, channels_last=cuda, amp=cuda))
    setting = f"ResNet-18, 32x32, batch {BATCH}, {n} images, {'bf16 + channels-last' if cuda else 'fp32'}, {device}"
    rows = [
        ratio_row(GROUP, "epoch throughput: batched device aug vs per-image CPU transforms", ours, base,
                  unit="img/s", min_ratio=3.0 if cuda else None,
                  note=setting + ("" if cuda else "; CPU: model-bound, reported only")),
    ]
    plain, monitored, inside = _monitor_cost(device, quick)
    rows.append(ratio_row(GROUP, "GeometryMonitor cost: (epoch + time inside the monitor) / epoch", plain + inside,
                          plain, unit="s", max_ratio=None if quick else 1.02,
                          note=("quick: tiny epoch, fixed costs dominate; " if quick else "")
                          + f"train + validation epoch ({'ResNet-18' if cuda else 'ConvNet'}, K = {NUM_CLASSES}); "
                          "monitor hooks timed directly"))
    rows.append(ratio_row(GROUP, "GeometryMonitor epoch wall time (with / without)", monitored, plain, unit="s",
                          note=f"end to end, best of {REPEATS} interleaved repeats (noisy on a shared machine)"))
    return rows
