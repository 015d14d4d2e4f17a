"""The one-call GPU check (``neuralcollapse bench gpu``, ``scripts/gpu-check.sh``).

A GPU is lent to this project now and then, for minutes. This module runs everything that needs one in a
single call with an overall time budget, each step in its own process with its own timeout (a hung step
costs its timeout, not the budget), and writes ``gpu-check.json``, ``gpu-check.md`` and ``gpu-check.log``
into ``--out`` after every step (a run cut short still leaves its results). Steps, in order:

``env``
    versions (Python, torch, CUDA, cuDNN, Lightning, timm, torchvision …), the device, its memory.
``tests``
    the CUDA-only tests (``@pytest.mark.cuda``) and the device-generic ones (those taking the ``device``
    fixture of ``tests/conftest.py``) with ``NEURALCOLLAPSE_TEST_DEVICE=cuda``.
``crosscheck``
    OOD detectors (msp, energy, mahalanobis, vim, knn), NC metrics (functional and streaming) and
    prototype assignment / prototype heads on CUDA tensors against the CPU results (max relative
    difference ≤ 1e-5, relative to the largest magnitude of the CPU result), including device mismatches:
    a detector fitted on CUDA or on the CPU and scored on the other device, a metric with CUDA state
    given CPU classifier weights, prototypes solved on the CPU used with CUDA class means and in a CUDA head.
``throughput``
    one epoch of ResNet-18 at 32×32, batch 128 (:mod:`neuralcollapse.bench.train`): *ours* — uint8 data on
    the device, batched augmentation, bf16 autocast, channels-last — against the *official-style*
    pipeline of the OCCE repository — per-image CPU transforms (torchvision ``RandomCrop(32, 4, reflect)``
    → flip → ``ToTensor`` → ``Normalize`` on PIL images, or the library's own per-image path
    ``bench.train._PerImageCIFAR`` when torchvision is absent) in a ``DataLoader`` with workers, fp32.
    img/s of each, the ratio (target ≥ 3×) and the peak GPU memory of each run. Data: Fashion-MNIST
    padded to 32×32 and replicated to 3 channels when ``--data`` is given, else synthetic CIFAR-shaped
    uint8 tensors.
``compile``
    *ours* with ``torch.compile`` (its own step: compilation can be slow).
``smoke``
    every paper family (CE+OCCE, NONL, LPC, DL2PA, ETF) through :func:`neuralcollapse.training.fit` on
    small data with bf16 for 2 epochs: finite losses, test accuracy above 2/K, NC metrics logged, and a
    checkpoint that resumes for one more epoch; peak GPU memory per run.
``suite``
    the whole test suite with ``NEURALCOLLAPSE_TEST_DEVICE=cuda``, in what is left of the budget.

``--dry-run`` runs the same steps on the CPU with tiny sizes (ConvNet instead of ResNet-18, an MLP on the
embedded digits for the smoke, 1 epoch + 1 resumed, ``torch.compile(backend="eager")``) and skips ``suite``:
a test runs it, so the script is known to work before GPU minutes are spent.

Example:
    >>> from neuralcollapse.bench.gpu import CheckOptions
    >>> CheckOptions(dry_run=True).sizes()["backbone"]
    'convnet'
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import BenchRow, ratio_row

__all__ = [
    "DEFAULT_BUDGET_S",
    "FAMILIES",
    "OUTPUT_FILES",
    "STEPS",
    "STEP_TIMEOUTS",
    "CheckOptions",
    "load_throughput_images",
    "relative_difference",
    "run",
    "run_check",
]

GROUP = "gpu"
#: The steps, in the order they run.
STEPS = ("env", "tests", "crosscheck", "throughput", "compile", "smoke", "suite")
#: Per-step timeouts in seconds (each is also capped by what is left of the budget).
STEP_TIMEOUTS: dict[str, float] = {
    "env": 60, "tests": 120, "crosscheck": 90, "throughput": 180, "compile": 150, "smoke": 240, "suite": 600,
}
#: Overall budget of one call (seconds): fits the device machine's 8-minute window with room to spare.
DEFAULT_BUDGET_S = 450.0
#: Seconds kept back from the budget for writing the report; steps with less than MIN_STEP_S left are skipped.
RESERVE_S = 5.0
MIN_STEP_S = 5.0
#: Largest relative difference allowed between CUDA and CPU results.
CROSSCHECK_TOL = 1e-5
#: Target of the throughput ratio ours / official-style on a GPU.
THROUGHPUT_TARGET = 3.0
#: What lands in ``--out`` (flat).
OUTPUT_FILES = ("gpu-check.json", "gpu-check.md", "gpu-check.log")
#: Characters of each step's output kept in gpu-check.log.
LOG_TAIL = 12000
#: The smoke runs: family → (objective preset, config changes on a GPU, config changes in the dry run).
FAMILIES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "ce+occe": ("ce+occe", {}, {}),
    "nonl": ("nonl", {}, {}),
    "lpc": ("lpc", {}, {"lr": 0.01, "head_kwargs": {"latent_dim": 16}}),
    "dl2pa": ("dl2pa", {}, {}),
    "etf": ("etf", {}, {}),
}
#: Set in the environment of every step's process (the dry-run test does not run itself recursively).
CHILD_ENV = "NEURALCOLLAPSE_GPU_CHECK_CHILD"
TEST_DEVICE_ENV = "NEURALCOLLAPSE_TEST_DEVICE"
#: This test file runs the dry run; the ``tests`` and ``suite`` steps leave it out.
SELF_TEST = "tests/test_gpu_check.py"

_SIZES = {
    "gpu": dict(images=50000, official_images=10240, batch=128, backbone="resnet18", backbone_kwargs={}, warmup=5,
                compile_warmup=3, compile_backend="inductor", workers=8, smoke_model="resnet18",
                smoke_model_kwargs={}, smoke_train=10000, smoke_epochs=2, smoke_batch=128, smoke_eval_batches=1.0,
                smoke_lr=None, smoke_tensorboard=True, cc_train=4000, cc_test=2000, cc_dim=128, cc_classes=10,
                cc_proto_dim=8, cc_proto_steps=500),
    "dry": dict(images=64, official_images=32, batch=16, backbone="convnet", backbone_kwargs={"widths": [4, 8]},
                warmup=1, compile_warmup=1, compile_backend="eager", workers=1, smoke_model="mlp",
                smoke_model_kwargs={"hidden": [32]}, smoke_train=512, smoke_epochs=1, smoke_batch=64,
                smoke_eval_batches=1, smoke_lr=0.1, smoke_tensorboard=False, cc_train=300, cc_test=200, cc_dim=16,
                cc_classes=5, cc_proto_dim=3, cc_proto_steps=50),
}


# ================================================================================================ options
@dataclass
class CheckOptions:
    """Settings of one GPU check (the command-line flags of ``neuralcollapse bench gpu``).

    Args:
        out: folder for ``gpu-check.{json,md,log}`` (created).
        dry_run: tiny sizes on the CPU (the CI check of the script itself).
        budget_s: overall time budget in seconds.
        data: Fashion-MNIST for the throughput and smoke steps: a folder with the four IDX files (as
            ``neuralcollapse train --dataset fashionmnist --data-dir`` reads them) or an ``.npz`` with
            ``train_x`` (uint8, (N, 28, 28), (N, 1, H, W) or (N, 3, H, W)) and ``train_y``; None = synthetic
            CIFAR-shaped data (throughput) and the digits (smoke).
        images: images of the throughput epoch (default 50,000; dry run 256).
        compile: ``"auto"`` (= on), ``"on"`` or ``"off"``: run the ``compile`` step.
        workers: DataLoader workers of the official-style pipeline (default min(8, CPUs); dry run 1).
        steps: the steps to run (a subset of :data:`STEPS`, run in their fixed order).
        families: the smoke step's paper families (a subset of :data:`FAMILIES`).
        timeouts: per-step timeout overrides in seconds.
        tests_dir: the test suite (default: ``tests/`` of the source checkout, when there is one).

    Raises:
        ValueError / TypeError: a bad setting, naming it (checked by :meth:`validate`).
    """

    out: str = "gpu-check"
    dry_run: bool = False
    budget_s: float = DEFAULT_BUDGET_S
    data: str | None = None
    images: int | None = None
    compile: str = "auto"
    workers: int | None = None
    steps: tuple[str, ...] = STEPS
    families: tuple[str, ...] = tuple(FAMILIES)
    timeouts: dict[str, float] = field(default_factory=dict)
    tests_dir: str | None = None

    def validate(self) -> CheckOptions:
        if not isinstance(self.budget_s, int | float) or isinstance(self.budget_s, bool) or not (
            math.isfinite(self.budget_s) and self.budget_s > 0
        ):
            raise ValueError(f"`budget_s` must be a positive number of seconds; got {self.budget_s!r}")
        if self.images is not None:
            batch = _SIZES["dry" if self.dry_run else "gpu"]["batch"]
            if isinstance(self.images, bool) or not isinstance(self.images, int) or self.images < 2 * batch:
                raise ValueError(f"`images` must be an int >= {2 * batch} (two batches); got {self.images!r}")
        if self.compile not in ("auto", "on", "off"):
            raise ValueError(f"`compile` must be one of 'auto', 'on', 'off'; got {self.compile!r}")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0
        ):
            raise ValueError(f"`workers` must be an int >= 0; got {self.workers!r}")
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown or not self.steps:
            raise ValueError(f"`steps` must be a non-empty subset of {', '.join(STEPS)}; got {list(self.steps)}")
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise ValueError(f"`families` must be a non-empty subset of {', '.join(FAMILIES)}; got "
                             f"{list(self.families)}")
        for name, seconds in self.timeouts.items():
            if name not in STEPS:
                raise ValueError(f"`timeouts` names unknown step {name!r}; steps: {', '.join(STEPS)}")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
                raise ValueError(f"`timeouts[{name!r}]` must be a positive number of seconds; got {seconds!r}")
        if self.data is not None and not Path(self.data).exists():
            raise FileNotFoundError(f"`data` {self.data!r} does not exist (a folder of IDX files or an .npz)")
        return self

    def sizes(self) -> dict[str, Any]:
        """The sizes of this run (GPU or dry run), with ``images``/``workers`` applied."""
        sizes = copy.deepcopy(_SIZES["dry" if self.dry_run else "gpu"])
        if self.images is not None:
            sizes["images"] = self.images
        if self.workers is not None:
            sizes["workers"] = self.workers
        elif not self.dry_run:
            sizes["workers"] = min(sizes["workers"], os.cpu_count() or 1)
        return sizes

    def timeout(self, step: str) -> float:
        return float(self.timeouts.get(step, STEP_TIMEOUTS[step]))


def _device(options: CheckOptions) -> torch.device:
    return torch.device("cpu" if options.dry_run else "cuda")


# ================================================================================================ helpers
def relative_difference(a: Any, b: Any) -> float:
    """max |a − b| / max |b| (b is the CPU reference; floor 1e-12), in float64 on the CPU; inf when the shapes
    differ. Dicts of numbers: the largest per-key |a − b| / max(|b|, 1e-6), inf when the keys differ.

    Example:
        >>> import torch
        >>> relative_difference(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]))
        0.2
    """
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)) or set(a) != set(b):
            return math.inf
        worst = 0.0
        for key, ref in b.items():
            x, r = float(a[key]), float(ref)
            if math.isinf(x) or math.isinf(r) or math.isnan(x) or math.isnan(r):
                same = (x == r) or (math.isnan(x) and math.isnan(r))
                worst = max(worst, 0.0 if same else math.inf)
                continue
            worst = max(worst, abs(x - r) / max(abs(r), 1e-6))
        return worst
    a = torch.as_tensor(a).detach().to("cpu", torch.float64)
    b = torch.as_tensor(b).detach().to("cpu", torch.float64)
    if a.shape != b.shape:
        return math.inf
    if a.numel() == 0:
        return 0.0
    scale = float(b.abs().max().clamp_min(1e-12))
    return float((a - b).abs().max()) / scale


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:500]


def _peak_memory_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


class _Recorder:
    """The result of a step, rewritten to its JSON file after every change (so a timeout keeps what was done)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.flush()

    def flush(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=_json_default))
        os.replace(tmp, self.path)


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)




# ================================================================================================ data
def load_throughput_images(path: str | os.PathLike | None, n: int, *, seed: int = 0,
                           verify: bool = True) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` uint8 images (n, 3, 32, 32) and int64 labels for the throughput step, and a description.

    ``path`` None: synthetic CIFAR-shaped data (:func:`neuralcollapse.bench.train._synthetic`, 100 classes).
    Otherwise Fashion-MNIST's training split — a folder of the four IDX files or an ``.npz`` with ``train_x`` /
    ``train_y`` — zero-padded from 28×28 to 32×32 and replicated to 3 channels; repeated cyclically when
    ``n`` exceeds it. IDX files are checked against the official digests unless ``verify=False``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an ``.npz`` without ``train_x``/``train_y``, or images that are not uint8 (N, H, W) /
            (N, C, H, W) with C in {1, 3} and H, W ≤ 32.

    Example:
        >>> x, y, what = load_throughput_images(None, 4)
        >>> tuple(x.shape), x.dtype, what.split(",")[0]
        ((4, 3, 32, 32), torch.uint8, 'synthetic CIFAR-shaped uint8')
    """
    from .train import NUM_CLASSES, _synthetic

    if path is None:
        x, y = _synthetic(n, seed=seed)
        return x, y, f"synthetic CIFAR-shaped uint8, {NUM_CLASSES} classes"
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"`data` {str(path)!r} does not exist (a folder of IDX files or an .npz)")
    if path.suffix == ".npz":
        import numpy as np

        with np.load(path) as arrays:
            if "train_x" not in arrays or "train_y" not in arrays:
                raise ValueError(f"{path}: an .npz needs arrays `train_x` and `train_y`; got {sorted(arrays)}")
            x, y = torch.from_numpy(arrays["train_x"]), torch.from_numpy(arrays["train_y"].astype("int64"))
        what = f"{path.name} (.npz)"
    else:
        from .. import data as ncdata

        splits = ncdata.create("fashionmnist", root=path, verify=verify)
        x, y = splits.train_x, splits.train_y
        what = "Fashion-MNIST train"
    if x.ndim == 3:
        x = x[:, None]
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[2] > 32 or x.shape[3] > 32:
        raise ValueError(f"`data` images must be uint8 (N, H, W) or (N, C, H, W), C in {{1, 3}}, H, W <= 32; got "
                         f"{x.dtype} {tuple(x.shape)}")
    if len(x) != len(y):
        raise ValueError(f"`data`: {len(x)} images but {len(y)} labels")
    top, left = (32 - x.shape[2]) // 2, (32 - x.shape[3]) // 2
    x = torch.nn.functional.pad(x, (left, 32 - x.shape[3] - left, top, 32 - x.shape[2] - top))
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    reps = -(-n // len(x))
    idx = torch.arange(n) % len(x) if reps > 1 else torch.arange(n)
    return x[idx].contiguous(), y[idx].to(torch.int64), f"{what}, padded to 32x32, 3 channels"


class _OfficialStyle(torch.utils.data.Dataset):
    """The OCCE repository's training pipeline, one image per ``__getitem__`` (as ``torchvision.datasets.CIFAR100``
    with its transform): HWC uint8 array → PIL image → ``RandomCrop(32, padding=4, padding_mode="reflect")`` →
    ``RandomHorizontalFlip()`` → ``ToTensor()`` → ``Normalize(mean, std)`` (docs/methods.md §2.7)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> None:
        from torchvision import transforms as T

        self.images = x.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = [int(v) for v in y.tolist()]
        self.transform = T.Compose([
            T.RandomCrop(32, padding=4, padding_mode="reflect"),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(tuple(mean), tuple(std)),
        ])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def _official_dataset(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.utils.data.Dataset, str]:
    """The official-style per-image dataset: torchvision's transforms on PIL images when they import and work,
    else the library's own per-image path (``bench.train._PerImageCIFAR``)."""
    from .train import MEAN, STD, _PerImageCIFAR

    try:
        dataset = _OfficialStyle(x, y, MEAN, STD)
        img, _ = dataset[0]
        if tuple(img.shape) != (3, 32, 32):
            raise ValueError(f"unexpected image shape {tuple(img.shape)}")
        return dataset, "torchvision per-image transforms on PIL images"
    except Exception as err:  # torchvision or PIL missing / broken: the library's per-image path
        reason = _error_text(err)
        return _PerImageCIFAR(x, y), f"per-image torch transforms (bench.train; torchvision unusable: {reason})"


# ================================================================================================ steps
def _step_env(options: CheckOptions, rec: _Recorder) -> bool:
    import importlib
    import importlib.metadata
    import importlib.util

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gib"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device_name=props.name, device_count=torch.cuda.device_count(),
                    capability=f"{props.major}.{props.minor}", device_memory_gib=round(props.total_memory / 2**30, 1),
                    bf16_supported=torch.cuda.is_bf16_supported(), cudnn=torch.backends.cudnn.version())
    # Installed distributions (metadata only: importing them all would cost seconds); torchvision and PIL are
    # imported because the official-style pipeline needs them to work, not just to be installed.
    packages: dict[str, str] = {}
    for module, dist in (("numpy", "numpy"), ("scipy", "scipy"), ("lightning", "lightning"),
                         ("torchmetrics", "torchmetrics"), ("timm", "timm"), ("torchvision", "torchvision"),
                         ("PIL", "pillow"), ("triton", "triton"), ("sklearn", "scikit-learn"), ("yaml", "pyyaml"),
                         ("tensorboard", "tensorboard"), ("matplotlib", "matplotlib"), ("rich", "rich"),
                         ("faiss", "faiss-cpu"), ("pytest", "pytest"), ("hypothesis", "hypothesis"),
                         ("xdist", "pytest-xdist")):
        if importlib.util.find_spec(module) is None:
            packages[module] = "missing"
            continue
        try:
            packages[module] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            packages[module] = "present"
    for module in ("torchvision", "PIL"):
        if packages[module] != "missing":
            try:
                importlib.import_module(module)
            except Exception as err:  # an installed but broken package is a finding
                packages[module] += f" (import fails: {_error_text(err)[:120]})"
    info["packages"] = packages
    rec.set("info", info)
    return options.dry_run or bool(info["cuda_available"])


def _crosscheck_data(sizes: dict[str, Any]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    k, d, n, m = sizes["cc_classes"], sizes["cc_dim"], sizes["cc_train"], sizes["cc_test"]
    centres = 3.0 * torch.randn(k, d, generator=g)
    y = torch.arange(n) % k
    f_train = centres[y] + torch.randn(n, d, generator=g)
    y_test = torch.arange(m) % k
    f_test = torch.cat([centres[y_test] + torch.randn(m, d, generator=g), 4.0 * torch.randn(m, d, generator=g)])
    weight = 0.3 * torch.randn(k, d, generator=g)
    bias = 0.1 * torch.randn(k, generator=g)
    return {"f_train": f_train, "y_train": y, "f_test": f_test, "weight": weight, "bias": bias,
            "logits_train": f_train @ weight.T + bias, "logits_test": f_test @ weight.T + bias}


def _to(data: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in data.items()}


def _crosscheck_cases(sizes: dict[str, Any], dev: torch.device) -> list[tuple[str, Callable[[], tuple[Any, Any,
                                                                                                  str | None]]]]:
    """(name, fn) pairs; fn returns (device result, CPU reference, expected device type of the result or None)."""
    from .. import ood
    from ..heads import FixedETFHead, HypersphericalPrototypeHead, assign_prototypes, optimize_prototypes
    from ..metrics import neural_collapse

    cpu = torch.device("cpu")
    host = _crosscheck_data(sizes)
    gpu = _to(host, dev)
    k, d = sizes["cc_classes"], sizes["cc_dim"]
    detectors: dict[str, dict[str, Any]] = {
        "msp": {}, "energy": {}, "mahalanobis": {}, "vim": {"dim": d // 2},
        "knn": {"k": min(50, sizes["cc_train"] // 2), "backend": "torch"},
    }

    def fit_inputs(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"features": t["f_train"], "labels": t["y_train"], "logits": t["logits_train"], "weight": t["weight"],
                "bias": t["bias"]}

    def score_inputs(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"features": t["f_test"], "logits": t["logits_test"]}

    def detector_case(name: str, fit_on: dict[str, torch.Tensor], score_on: dict[str, torch.Tensor]) -> Callable:
        def case() -> tuple[Any, Any, str | None]:
            kwargs = detectors[name]
            ref = ood.create(name, **kwargs).fit(**fit_inputs(host)).score(**score_inputs(host))
            out = ood.create(name, **kwargs).fit(**fit_inputs(fit_on)).score(**score_inputs(score_on))
            return out, ref, score_on["f_test"].device.type
        return case

    cases: list[tuple[str, Callable]] = []
    for name in detectors:
        cases.append((f"ood {name}: fit {dev.type}, score {dev.type}", detector_case(name, gpu, gpu)))
        if name in ("mahalanobis", "vim", "knn"):  # detectors with fitted state: the state's device differs
            cases.append((f"ood {name}: fit cpu, score {dev.type}", detector_case(name, host, gpu)))
            cases.append((f"ood {name}: fit {dev.type}, score cpu", detector_case(name, gpu, host)))

    def nc_functional(w_device: torch.device) -> Callable:
        def case() -> tuple[Any, Any, str | None]:
            ref = neural_collapse(host["f_train"], host["y_train"], weight=host["weight"], bias=host["bias"],
                                  logits=host["logits_train"])
            out = neural_collapse(gpu["f_train"], gpu["y_train"], weight=host["weight"].to(w_device),
                                  bias=host["bias"].to(w_device), logits=gpu["logits_train"])
            return out, ref, None
        return case

    cases.append((f"neural_collapse: features {dev.type}, weight {dev.type}", nc_functional(dev)))
    cases.append((f"neural_collapse: features {dev.type}, weight cpu", nc_functional(cpu)))

    def nc_streaming(w_device: torch.device) -> Callable:
        def case() -> tuple[Any, Any, str | None]:
            from ..metrics import NeuralCollapse

            ref = neural_collapse(host["f_train"], host["y_train"], weight=host["weight"], bias=host["bias"])
            metric = NeuralCollapse(num_classes=k, dim=d).to(dev)
            for start in range(0, len(host["y_train"]), 256):
                metric.update(gpu["f_train"][start : start + 256], gpu["y_train"][start : start + 256])
            out = metric.compute(weight=host["weight"].to(w_device), bias=host["bias"].to(w_device))
            state_device = metric.sums.device.type
            if state_device != dev.type:
                raise RuntimeError(f"metric state moved to {state_device}")
            missing = {"nc1", "nc2", "nc3", "nc4"} - set(out)
            if missing:
                raise RuntimeError(f"keys missing from compute(): {sorted(missing)}")
            return out, {key: ref[key] for key in out}, None  # no ncc_mismatch without class means
        return case

    cases.append((f"NeuralCollapse stream: state {dev.type}, weight {dev.type}", nc_streaming(dev)))
    cases.append((f"NeuralCollapse stream: state {dev.type}, weight cpu", nc_streaming(cpu)))

    proto_dim = sizes["cc_proto_dim"]
    prototypes = optimize_prototypes(k, proto_dim, steps=sizes["cc_proto_steps"], seed=0)  # solved on the CPU
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(k, generator=g)
    means = prototypes[perm] + 0.05 * torch.randn(k, proto_dim, generator=g)

    def assignment(proto_device: torch.device) -> Callable:
        def case() -> tuple[Any, Any, str | None]:
            ref = assign_prototypes(means, prototypes)
            out = assign_prototypes(means.to(dev), prototypes.to(proto_device))
            return out, ref, dev.type
        return case

    cases.append((f"assign_prototypes: means {dev.type}, prototypes cpu", assignment(cpu)))
    cases.append((f"assign_prototypes: means {dev.type}, prototypes {dev.type}", assignment(dev)))

    def prototype_head() -> tuple[Any, Any, str | None]:
        torch.manual_seed(0)
        head = HypersphericalPrototypeHead(d, k, prototypes=prototypes).eval()  # CPU-solved prototypes
        moved = copy.deepcopy(head).to(dev)
        h, y = host["f_train"][:256], host["y_train"][:256]
        ref_out, out = head(h), moved(h.to(dev))
        head.update_representatives(ref_out.features, y)
        moved.update_representatives(out.features, y.to(dev))
        head.reassign()
        moved.reassign()
        if moved.assignment.device.type != dev.type or not torch.equal(moved.assignment.cpu(), head.assignment):
            raise RuntimeError(f"assignment differs: {moved.assignment.tolist()} vs {head.assignment.tolist()}")
        return moved(h.to(dev)).logits, head(h).logits, dev.type

    cases.append((f"HypersphericalPrototypeHead: prototypes solved on cpu, used on {dev.type}", prototype_head))

    def etf_head() -> tuple[Any, Any, str | None]:
        torch.manual_seed(0)
        head = FixedETFHead(d, k, normalize=True).eval()
        moved = copy.deepcopy(head).to(dev)
        h = host["f_train"][:256]
        return moved(h.to(dev)).logits, head(h).logits, dev.type

    cases.append((f"FixedETFHead: built on cpu, used on {dev.type}", etf_head))
    return cases


def _step_crosscheck(options: CheckOptions, rec: _Recorder) -> bool:
    dev = _device(options)
    sizes = options.sizes()
    rec.set("setting", {"device": str(dev), "tolerance": CROSSCHECK_TOL, "classes": sizes["cc_classes"],
                        "dim": sizes["cc_dim"], "train": sizes["cc_train"], "test": 2 * sizes["cc_test"],
                        "relative_to": "max |CPU result| (dicts: per key, floor 1e-6)"})
    checks: list[dict[str, Any]] = []
    for name, case in _crosscheck_cases(sizes, dev):
        entry: dict[str, Any] = {"name": name, "tolerance": CROSSCHECK_TOL}
        try:
            out, ref, want_device = case()
            diff = relative_difference(out, ref)
            entry["max_rel_diff"] = diff
            ok = diff <= CROSSCHECK_TOL
            if want_device is not None and isinstance(out, torch.Tensor) and out.device.type != want_device:
                ok = False
                entry["error"] = f"result on {out.device.type}, expected {want_device}"
            entry["ok"] = ok
        except Exception as err:  # a failing case is recorded, the others still run
            entry.update(ok=False, max_rel_diff=None, error=_error_text(err))
        checks.append(entry)
        rec.set("checks", checks)
    return all(c["ok"] for c in checks)


def _throughput_setting(options: CheckOptions, x: torch.Tensor, what: str) -> dict[str, Any]:
    sizes = options.sizes()
    return {"backbone": sizes["backbone"], "backbone_kwargs": sizes["backbone_kwargs"], "image_size": "32x32",
            "batch": sizes["batch"], "images": len(x), "data": what, "warmup_batches": sizes["warmup"],
            "cudnn_benchmark": True}


def _timed_run(fn: Callable[[], float], dev: torch.device) -> dict[str, Any]:
    _reset_peak(dev)
    start = time.perf_counter()
    img_s = fn()
    return {"img_s": img_s, "peak_memory_mib": _peak_memory_mib(dev), "wall_s": time.perf_counter() - start}


def _step_throughput(options: CheckOptions, rec: _Recorder) -> bool:
    from .train import _epoch_baseline, _epoch_ours

    dev = _device(options)
    sizes = options.sizes()
    torch.backends.cudnn.benchmark = True
    x, y, what = load_throughput_images(options.data, sizes["images"])
    k = int(y.max()) + 1
    model = dict(backbone=sizes["backbone"], backbone_kwargs=sizes["backbone_kwargs"], num_classes=k,
                 batch=sizes["batch"])
    rec.set("setting", _throughput_setting(options, x, what))
    runs: dict[str, Any] = {}
    ours = _timed_run(lambda: _epoch_ours(x, y, dev, channels_last=True, amp=True, warmup=sizes["warmup"], **model),
                      dev)
    runs["ours"] = {**ours, "pipeline": "uint8 on the device, batched augmentation (BatchAugment), bf16 autocast, "
                    "channels-last, eager"}
    rec.set("runs", runs)
    dataset, how = _official_dataset(x, y)
    official = _timed_run(lambda: _epoch_baseline(x, y, dev, channels_last=False, amp=False,
                                                  workers=sizes["workers"], dataset=dataset, **model), dev)
    runs["official"] = {**official, "pipeline": f"{how}, DataLoader with {sizes['workers']} workers"
                        f"{', pinned memory' if dev.type == 'cuda' else ''}, fp32"}
    rec.set("runs", runs)
    ratio = ours["img_s"] / official["img_s"] if official["img_s"] > 0 else math.inf
    rec.set("ratio", {"ours_over_official": ratio, "target": f">= {THROUGHPUT_TARGET:g}x",
                      "passed": (ratio >= THROUGHPUT_TARGET) if dev.type == "cuda" else None})
    # The OCCE repository itself uses no DataLoader workers (docs/methods.md §2.7, defect 5): shown for reference.
    n0 = min(sizes["official_images"], len(x))
    dataset0, how0 = _official_dataset(x[:n0], y[:n0])
    zero = _timed_run(lambda: _epoch_baseline(x[:n0], y[:n0], dev, channels_last=False, amp=False, workers=0,
                                              dataset=dataset0, **model), dev)
    runs["official_0_workers"] = {**zero, "pipeline": f"{how0}, no DataLoader workers (as the OCCE repository), "
                                  f"fp32, {n0} images"}
    rec.set("runs", runs)
    return True


def _step_compile(options: CheckOptions, rec: _Recorder) -> bool:
    from .train import _epoch_ours

    dev = _device(options)
    sizes = options.sizes()
    torch.backends.cudnn.benchmark = True
    x, y, what = load_throughput_images(options.data, sizes["images"])
    model = dict(backbone=sizes["backbone"], backbone_kwargs=sizes["backbone_kwargs"], num_classes=int(y.max()) + 1,
                 batch=sizes["batch"])
    rec.set("setting", {**_throughput_setting(options, x, what), "warmup_batches": sizes["compile_warmup"],
                        "compile_backend": sizes["compile_backend"]})
    start = time.perf_counter()
    result = _timed_run(lambda: _epoch_ours(x, y, dev, channels_last=True, amp=True, warmup=sizes["compile_warmup"],
                                            compile=True, compile_backend=sizes["compile_backend"], **model), dev)
    result["wall_s_with_compilation"] = time.perf_counter() - start
    rec.set("runs", {"ours_compiled": {**result, "pipeline": "as ours, network wrapped in torch.compile("
                                       f"backend={sizes['compile_backend']!r})"}})
    return True


def _smoke_data(options: CheckOptions) -> tuple[dict[str, Any], str]:
    """TrainConfig data fields for the smoke runs and a description."""
    if options.data is not None and Path(options.data).is_dir():
        return {"dataset": "fashionmnist", "data_dir": str(options.data)}, "Fashion-MNIST (28x28, 1 channel)"
    try:
        import sklearn  # noqa: F401  (the embedded digits come from scikit-learn)

        return {"dataset": "digits"}, "embedded digits (8x8)"
    except ImportError:
        return {"dataset": _register_synthetic()}, "synthetic learnable 16x16 images (scikit-learn missing)"


SYNTHETIC_DATASET = "gpu-check-synthetic"


def _register_synthetic() -> str:
    """Register (once) a small learnable data set: 10 fixed random uint8 class patterns plus noise, 16×16×1."""
    from ..data.base import DATASETS, DatasetSplits, register_dataset

    if SYNTHETIC_DATASET in DATASETS:
        return SYNTHETIC_DATASET

    @register_dataset(SYNTHETIC_DATASET)
    def _load(root: Any = None, download: bool = False) -> DatasetSplits:
        g = torch.Generator().manual_seed(0)
        patterns = torch.rand(10, 1, 16, 16, generator=g) * 200

        def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.arange(n) % 10
            x = patterns[y] + 40 * torch.rand(n, 1, 16, 16, generator=g)
            return x.clamp(0, 255).to(torch.uint8), y

        (trx, trl), (tex, tel) = make(4000), make(1000)
        return DatasetSplits(name=SYNTHETIC_DATASET, train_x=trx, train_y=trl, test_x=tex, test_y=tel, num_classes=10,
                             in_channels=1, image_size=(16, 16), mean=(0.5,), std=(0.25,),
                             class_names=[str(i) for i in range(10)])

    return SYNTHETIC_DATASET


def _history_checks(history: list[dict[str, Any]], num_classes: int) -> dict[str, Any]:
    from .._validation import finite_or_none as _finite_or_none

    last = history[-1] if history else {}
    losses = [row.get(key) for row in history for key in ("train/loss", "test/loss")]
    nc_keys = [key for key in ("test_nc/nc1", "train_nc/nc1") if key in last]
    return {
        "epochs": [int(row["epoch"]) for row in history],
        "train_loss": _finite_or_none(last.get("train/loss")),
        "test_loss": _finite_or_none(last.get("test/loss")),
        "test_acc": _finite_or_none(last.get("test/acc")),
        "nc1": {key: _finite_or_none(last[key]) for key in nc_keys},
        "finite_losses": bool(losses) and all(_finite_or_none(v) is not None for v in losses),
        "above_chance": (_finite_or_none(last.get("test/acc")) or 0.0) > 2.0 / num_classes,
        "nc_logged": len(nc_keys) == 2 and all(_finite_or_none(last[key]) is not None for key in nc_keys),
    }


def _step_smoke(options: CheckOptions, rec: _Recorder) -> bool:
    import importlib.util

    from ..training import TrainConfig, fit
    from ..training.config import merge_settings
    from ..training.presets import expand_objective
    from ..training.runner import resume_config

    dev = _device(options)
    sizes = options.sizes()
    data_fields, what = _smoke_data(options)
    work = Path(rec.path).parent / "smoke"
    epochs = sizes["smoke_epochs"]
    base = TrainConfig(
        **data_fields, model=sizes["smoke_model"], model_kwargs=sizes["smoke_model_kwargs"], epochs=epochs,
        batch_size=sizes["smoke_batch"], train_subset=sizes["smoke_train"], precision="bf16-mixed",
        accelerator=dev.type if dev.type == "cpu" else "gpu", devices=1, augment=True,
        crop_padding=4 if data_fields["dataset"] == "fashionmnist" else 1, progress=False, plots=False,
        tensorboard=sizes["smoke_tensorboard"] and importlib.util.find_spec("tensorboard") is not None, seed=0,
        nc_every=1, nc_on_train=True, limit_eval_batches=sizes["smoke_eval_batches"],
        **({} if sizes["smoke_lr"] is None else {"lr": sizes["smoke_lr"]}),
    )
    rec.set("setting", {"data": what, "model": sizes["smoke_model"], "model_kwargs": sizes["smoke_model_kwargs"],
                        "epochs": epochs, "resumed_epochs": 1, "batch": sizes["smoke_batch"],
                        "train_subset": sizes["smoke_train"], "eval_batches": sizes["smoke_eval_batches"],
                        "precision": "bf16-mixed", "device": str(dev),
                        "chance_rule": "test/acc > 2/K after the resumed epoch"})
    families: dict[str, Any] = {}
    for family in options.families:
        objective, gpu_changes, dry_changes = FAMILIES[family]
        entry: dict[str, Any] = {"objective": objective}
        start = time.perf_counter()
        try:
            cfg = merge_settings(base, expand_objective(objective)).replace(
                out=str(work / family.replace("+", "_")), **(dry_changes if options.dry_run else gpu_changes))
            _reset_peak(dev)
            result = fit(cfg)
            entry["peak_memory_mib"] = _peak_memory_mib(dev)
            num_classes = _num_classes(result)
            entry.update(_history_checks(result.history, num_classes))
            entry["checkpoint"] = result.checkpoint is not None
            _reset_peak(dev)
            resumed = fit(resume_config(result.run_dir, {"epochs": epochs + 1}), resume=True)
            entry["resume_peak_memory_mib"] = _peak_memory_mib(dev)
            after = _history_checks(resumed.history, num_classes)
            entry["resumed_epochs"] = after["epochs"]
            entry["resumed_test_acc"] = after["test_acc"]
            entry["resumed"] = after["epochs"] == list(range(1, epochs + 2)) and after["finite_losses"]
            entry["above_chance"] = after["above_chance"]
            entry["ok"] = all(entry[k] for k in ("finite_losses", "above_chance", "nc_logged", "checkpoint", "resumed"))
        except Exception as err:  # one family failing does not stop the others
            entry.update(ok=False, error=_error_text(err), traceback=traceback.format_exc()[-2000:])
        entry["wall_s"] = time.perf_counter() - start
        families[family] = entry
        rec.set("families", families)
    return all(e["ok"] for e in families.values())


def _num_classes(result: Any) -> int:
    from ..training.checkpoint import load_checkpoint

    if result.checkpoint is not None:
        info = load_checkpoint(result.checkpoint).get("hyper_parameters", {}).get("data_info")
        if isinstance(info, dict) and "num_classes" in info:
            return int(info["num_classes"])
    return 10


_PYTHON_STEPS: dict[str, Callable[[CheckOptions, _Recorder], bool]] = {
    "env": _step_env, "crosscheck": _step_crosscheck, "throughput": _step_throughput, "compile": _step_compile,
    "smoke": _step_smoke,
}


def _child_main(argv: Sequence[str]) -> int:
    """Entry point of a step's process: ``python -m neuralcollapse.bench.gpu --child STEP OPTIONS RESULT``."""
    step, options_path, result_path = argv
    options = CheckOptions(**json.loads(Path(options_path).read_text()))
    options.steps, options.families = tuple(options.steps), tuple(options.families)
    rec = _Recorder(Path(result_path))
    try:
        ok = _PYTHON_STEPS[step](options, rec)
    except Exception as err:
        rec.set("error", _error_text(err))
        rec.set("traceback", traceback.format_exc()[-4000:])
        traceback.print_exc()
        return 3
    rec.set("ok", bool(ok))
    return 0 if ok else 1


# ================================================================================================ processes
@dataclass
class ProcessOutcome:
    """How a step's process ended: exit status (None after a timeout), wall time, the tail of its output."""

    rc: int | None
    wall_s: float
    timed_out: bool
    output: str
    cpu_s: float | None = None


def run_process(argv: Sequence[str], *, timeout: float, log_path: Path, env: dict[str, str] | None = None,
                cwd: str | os.PathLike | None = None) -> ProcessOutcome:
    """Run ``argv`` in its own process group with its output in ``log_path``; after ``timeout`` seconds the
    whole group (the step and any processes it started: DataLoader workers, pytest workers) gets SIGTERM,
    then SIGKILL 5 s later."""
    start = time.perf_counter()
    cpu_before = _children_cpu()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
        timed_out = False
        try:
            rc: int | None = proc.wait(timeout=max(timeout, 0.01))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            rc = None
    text = log_path.read_text(errors="replace")
    cpu = _children_cpu()
    cpu_s = None if cpu is None or cpu_before is None else cpu - cpu_before
    return ProcessOutcome(rc, time.perf_counter() - start, timed_out, text[-LOG_TAIL:], cpu_s)


def _children_cpu() -> float | None:
    """User + system CPU seconds of the waited-for child processes so far (None where unsupported)."""
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    except (ImportError, OSError):
        return None
    return usage.ru_utime + usage.ru_stime


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)  # the group led by the process this module started
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ================================================================================================ pytest steps
def _repo_tests_dir(options: CheckOptions) -> Path | None:
    if options.tests_dir is not None:
        return Path(options.tests_dir)
    candidate = Path(__file__).resolve().parents[3] / "tests"
    return candidate if (candidate / "conftest.py").is_file() else None


_DEVICE_TEST = re.compile(r"pytest\.mark\.cuda|def test_\w*\([^)]*\bdevice\b")


def device_test_files(tests_dir: Path) -> list[Path]:
    """Test files with CUDA-only (``@pytest.mark.cuda``) or device-generic (``device`` fixture) tests."""
    root = tests_dir.parent
    return sorted(p for p in tests_dir.rglob("test_*.py")
                  if p.relative_to(root).as_posix() != SELF_TEST and _DEVICE_TEST.search(p.read_text(errors="replace")))


def parse_junit(path: Path) -> dict[str, Any]:
    """Counts (tests, passed, failed, errors, skipped, time_s) and up to 40 failing test ids from a JUnit XML."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0, "time_s": 0.0}
    failing: list[str] = []
    for suite in suites:
        counts["tests"] += int(suite.get("tests", 0))
        counts["failed"] += int(suite.get("failures", 0))
        counts["errors"] += int(suite.get("errors", 0))
        counts["skipped"] += int(suite.get("skipped", 0))
        counts["time_s"] += float(suite.get("time", 0.0))
        for case in suite.iter("testcase"):
            bad = case.find("failure")
            if bad is None:
                bad = case.find("error")
            if bad is not None and len(failing) < 40:
                message = (bad.get("message") or "").splitlines()
                failing.append(f"{case.get('classname')}::{case.get('name')}: {message[0][:200] if message else ''}")
    counts["passed"] = counts["tests"] - counts["failed"] - counts["errors"] - counts["skipped"]
    return {**counts, "failing": failing}


_OUTCOME = re.compile(r"(?:^|\s)(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)(?:\s|$)")


def parse_pytest_log(text: str) -> dict[str, Any]:
    """Counts from the verbose (``-v``) lines of a pytest run cut short (no JUnit XML was written): one outcome
    word per test line, as ``tests/a.py::test_x PASSED [ 10%]`` or, with xdist, ``[gw0] [ 10%] PASSED tests/…``.

    Example:
        >>> parse_pytest_log("tests/a.py::t1 PASSED [ 50%]\ntests/a.py::t2 FAILED [100%]")["failed"]
        1
    """
    counts = {"tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "time_s": 0.0}
    failing: list[str] = []
    key = {"PASSED": "passed", "XPASS": "passed", "FAILED": "failed", "ERROR": "errors", "SKIPPED": "skipped",
           "XFAIL": "skipped"}
    for line in text.splitlines():
        if "::" not in line:
            continue
        match = _OUTCOME.search(line)
        if match is None:
            continue
        counts[key[match.group(1)]] += 1
        counts["tests"] += 1
        if match.group(1) in ("FAILED", "ERROR") and len(failing) < 40:
            failing.append(line.strip()[:240])
    return {**counts, "failing": failing, "partial": True}


def _pytest_argv(options: CheckOptions, step: str, junit: Path) -> tuple[list[str] | None, str]:
    tests_dir = _repo_tests_dir(options)
    if tests_dir is None or not tests_dir.is_dir():
        return None, "no tests/ folder next to the package (pass --tests-dir)"
    argv = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--junitxml", str(junit)]
    if step == "tests":
        files = device_test_files(tests_dir)
        if not files:
            return None, "no CUDA-only or device-generic tests found"
        argv += ["-m", "cuda or device_generic", *map(str, files)]
        return argv, f"{len(files)} files, -m 'cuda or device_generic'"
    import importlib.util

    argv += [str(tests_dir), "--ignore", str(tests_dir.parent / SELF_TEST)]
    if importlib.util.find_spec("xdist") is not None:
        argv += ["-n", str(max(1, min(8, (os.cpu_count() or 2) // 2)))]
    return argv, "whole suite" + (f", {argv[-1]} xdist workers" if "-n" in argv else "")


# ================================================================================================ orchestration
def _initial_report(options: CheckOptions, argv: Sequence[str] | None) -> dict[str, Any]:
    return {
        "meta": {
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "finished": None,
            "dry_run": options.dry_run,
            "device": "cpu" if options.dry_run else "cuda",
            "budget_s": options.budget_s,
            "wall_s": 0.0,
            "command": list(argv) if argv is not None else None,
            "torch": torch.__version__,
            "sizes": options.sizes(),
            "not_measured_on_gpu": options.dry_run,
        },
        "steps": {name: {"status": "pending" if name in options.steps else "skipped",
                         **({} if name in options.steps else {"reason": "not selected (--steps)"})}
                  for name in STEPS},
        "summary": {},
    }


def _summarise(report: dict[str, Any]) -> dict[str, Any]:
    steps = report["steps"]
    summary: dict[str, Any] = {"statuses": {name: s["status"] for name, s in steps.items()}}
    runs = dict(steps.get("throughput", {}).get("result", {}).get("runs", {}))
    runs.update(steps.get("compile", {}).get("result", {}).get("runs", {}))
    if runs:
        summary["throughput_img_s"] = {name: r.get("img_s") for name, r in runs.items()}
        official = runs.get("official", {}).get("img_s")
        if official:
            summary["ratio_vs_official"] = {name: r["img_s"] / official for name, r in runs.items() if r.get("img_s")}
        summary["throughput_target"] = steps["throughput"].get("result", {}).get("ratio")
    memory: dict[str, Any] = {f"throughput/{name}": r.get("peak_memory_mib") for name, r in runs.items()}
    for family, entry in steps.get("smoke", {}).get("result", {}).get("families", {}).items():
        memory[f"smoke/{family}"] = entry.get("peak_memory_mib")
        memory[f"smoke/{family} (resume)"] = entry.get("resume_peak_memory_mib")
    if memory:
        summary["peak_memory_mib"] = memory
    for name in ("tests", "suite"):
        counts = steps.get(name, {}).get("result")
        if counts and "tests" in counts:
            summary[f"{name}_counts"] = {k: counts[k] for k in ("tests", "passed", "failed", "errors", "skipped")}
    checks = steps.get("crosscheck", {}).get("result", {}).get("checks")
    if checks:
        diffs = [c["max_rel_diff"] for c in checks if c.get("max_rel_diff") is not None]
        summary["crosscheck"] = {"checks": len(checks), "failed": sum(not c["ok"] for c in checks),
                                 "max_rel_diff": max(diffs) if diffs else None}
    return summary


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return ""
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float):
        if x == 0 or (1e-3 <= abs(x) < 1e6):
            return f"{x:.{digits}g}"
        return f"{x:.2e}"
    return str(x)


def format_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown (steps, throughput, peak memory, cross-checks, smoke runs, tests)."""
    meta, steps = report["meta"], report["steps"]
    env = steps.get("env", {}).get("result", {}).get("info", {})
    lines = [f"# GPU check{' (dry run on the CPU: not measured on a GPU)' if meta['dry_run'] else ''}", ""]
    lines.append(f"Started {meta['started']}, wall {meta['wall_s']:.0f} s of a {meta['budget_s']:g} s budget; "
                 f"device {env.get('device_name', meta['device'])}; torch {meta['torch']}"
                 + (f", CUDA {env.get('torch_cuda')}, cuDNN {env.get('cudnn')}" if env.get("torch_cuda") else "")
                 + (f"; python {env['python']}, {env.get('cpu_count')} CPUs" if env.get("python") else "") + ".")
    lines += ["", "| step | status | wall s | CPU s | timeout s | note |", "|---|---|---|---|---|---|"]
    for name, s in steps.items():
        note = s.get("reason") or s.get("error") or s.get("what") or ""
        lines.append(f"| {name} | {s['status']} | {_fmt(s.get('wall_s'), 3)} | {_fmt(s.get('cpu_s'), 3)} | "
                     f"{_fmt(s.get('timeout_s'), 3)} | {str(note).replace('|', '/')[:160]} |")
    runs = dict(steps.get("throughput", {}).get("result", {}).get("runs", {}))
    runs.update(steps.get("compile", {}).get("result", {}).get("runs", {}))
    if runs:
        setting = steps.get("throughput", {}).get("result", {}).get("setting") or \
            steps.get("compile", {}).get("result", {}).get("setting", {})
        official = runs.get("official", {}).get("img_s")
        lines += ["", "## Training throughput", "",
                  f"{setting.get('backbone')} at {setting.get('image_size')}, batch {setting.get('batch')}, "
                  f"{setting.get('images')} images ({setting.get('data')}); one timed epoch after "
                  f"{setting.get('warmup_batches')} warm-up batches. Target: ours / official-style "
                  f">= {THROUGHPUT_TARGET:g}x on a GPU.", "",
                  "| run | img/s | ratio vs official | peak GPU MiB | pipeline |", "|---|---|---|---|---|"]
        for name, r in runs.items():
            ratio = r["img_s"] / official if official and r.get("img_s") else None
            lines.append(f"| {name} | {_fmt(r.get('img_s'))} | {'' if ratio is None else f'{ratio:.3g}x'} | "
                         f"{_fmt(r.get('peak_memory_mib'))} | {r.get('pipeline', '')} |")
    checks = steps.get("crosscheck", {}).get("result", {}).get("checks")
    if checks:
        lines += ["", f"## CUDA vs CPU (max relative difference <= {CROSSCHECK_TOL:g})", "",
                  "| check | max rel diff | ok | error |", "|---|---|---|---|"]
        for c in checks:
            lines.append(f"| {c['name']} | {_fmt(c.get('max_rel_diff'), 3)} | {_fmt(c['ok'])} | "
                         f"{str(c.get('error', '')).replace('|', '/')[:160]} |")
    families = steps.get("smoke", {}).get("result", {}).get("families")
    if families:
        setting = steps["smoke"]["result"].get("setting", {})
        lines += ["", "## Paper families (smoke)", "",
                  f"{setting.get('model')} on {setting.get('data')}, {setting.get('epochs')} epoch(s) + 1 resumed, "
                  f"batch {setting.get('batch')}, {setting.get('precision')}, {setting.get('device')}; chance rule "
                  f"{setting.get('chance_rule')}.", "",
                  "| family | ok | epochs | train loss | test acc | test NC1 | resumed | acc after resume | "
                  "peak GPU MiB | wall s | error |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for family, e in families.items():
            nc1 = (e.get("nc1") or {}).get("test_nc/nc1")
            lines.append(f"| {family} | {_fmt(e.get('ok'))} | {e.get('epochs', '')} | {_fmt(e.get('train_loss'))} | "
                         f"{_fmt(e.get('test_acc'))} | {_fmt(nc1)} | {e.get('resumed_epochs', '')} | "
                         f"{_fmt(e.get('resumed_test_acc'))} | {_fmt(e.get('peak_memory_mib'))} | "
                         f"{_fmt(e.get('wall_s'), 3)} | "
                         f"{str(e.get('error', '')).replace('|', '/')[:120]} |")
    for name in ("tests", "suite"):
        counts = steps.get(name, {}).get("result")
        if counts and "tests" in counts:
            lines += ["", f"## pytest: {name}", "",
                      f"{counts['passed']} passed, {counts['failed']} failed, {counts['errors']} errors, "
                      f"{counts['skipped']} skipped of {counts['tests']} ({counts['time_s']:.0f} s)."]
            lines += [f"- {f}" for f in counts.get("failing", [])]
    if env.get("packages"):
        lines += ["", "## Environment", "", ", ".join(f"{k} {v}" for k, v in env["packages"].items()) + "."]
    return "\n".join(lines) + "\n"


def _write_report(out: Path, report: dict[str, Any], log_parts: list[str]) -> None:
    report["summary"] = _summarise(report)
    for name, text in (("gpu-check.json", json.dumps(report, indent=2, default=_json_default)),
                       ("gpu-check.md", format_markdown(report)), ("gpu-check.log", "\n".join(log_parts) + "\n")):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out / name)


def _child_env(options: CheckOptions) -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # the folder holding the neuralcollapse package
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env[CHILD_ENV] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env[TEST_DEVICE_ENV] = "cpu" if options.dry_run else "cuda"
    return env


def run_check(options: CheckOptions, *, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the selected steps within the budget and write the report into ``options.out``; returns the report.

    Each step runs in its own process group with timeout min(step timeout, budget left − RESERVE_S); a step
    that fails, crashes or times out is recorded (``status`` ``failed``/``timeout``, with the error) and the
    next one runs. Statuses: ``ok``, ``failed``, ``timeout``, ``skipped`` (with ``reason``).
    """
    options.validate()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    deadline = start + float(options.budget_s)
    report = _initial_report(options, argv)
    log_parts: list[str] = []
    env = _child_env(options)
    cuda_missing = not options.dry_run and not torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        (work / "options.json").write_text(json.dumps(asdict(options)))
        for name in STEPS:
            entry = report["steps"][name]
            if name not in options.steps:
                continue
            reason = None
            if cuda_missing and name != "env":
                reason = "no CUDA device (torch.cuda.is_available() is False); --dry-run runs the CPU check"
            elif name == "suite" and options.dry_run:
                reason = "dry run: the whole suite is CI's job"
            elif name == "compile" and options.compile == "off":
                reason = "--compile off"
            left = deadline - time.perf_counter() - RESERVE_S
            timeout = min(options.timeout(name), left)
            if reason is None and timeout < MIN_STEP_S and options.timeout(name) >= MIN_STEP_S:
                reason = f"budget exhausted ({max(left, 0):.0f} s left)"
            if reason is not None:
                entry.update(status="skipped", reason=reason)
                _write_report(out, report, log_parts)
                continue
            entry.update(status="running", timeout_s=round(timeout, 1))
            _write_report(out, report, log_parts)
            result_path = work / f"{name}.json"
            if name in _PYTHON_STEPS:
                cmd: list[str] | None = [sys.executable, "-m", "neuralcollapse.bench.gpu", "--child", name,
                                         str(work / "options.json"), str(result_path)]
                what = ""
            else:
                cmd, what = _pytest_argv(options, name, work / f"{name}.xml")
                if cmd is None:
                    entry.update(status="skipped", reason=what)
                    _write_report(out, report, log_parts)
                    continue
            outcome = run_process(cmd, timeout=timeout, log_path=work / f"{name}.log", env=env,
                                  cwd=str(Path(__file__).resolve().parents[3]) if name not in _PYTHON_STEPS else None)
            entry.update(wall_s=round(outcome.wall_s, 2), cpu_s=None if outcome.cpu_s is None else round(
                outcome.cpu_s, 2), rc=outcome.rc)
            if what:
                entry["what"] = what
            if name in _PYTHON_STEPS:
                result = json.loads(result_path.read_text()) if result_path.is_file() else {}
                ok = outcome.rc == 0 and result.get("ok") is True
                if result.get("error"):
                    entry["error"] = result["error"]
            else:
                junit = work / f"{name}.xml"
                if junit.is_file():
                    result = parse_junit(junit)
                else:  # cut short: count the verbose lines written so far
                    result = parse_pytest_log((work / f"{name}.log").read_text(errors="replace"))
                ok = outcome.rc == 0 and bool(result) and result.get("passed", 0) > 0
                if outcome.rc not in (0, None) and not result.get("failing"):
                    entry["error"] = f"pytest exit status {outcome.rc}"
            entry["result"] = result
            if outcome.timed_out:
                entry.update(status="timeout", error=f"killed after {timeout:.0f} s")
            else:
                entry["status"] = "ok" if ok else "failed"
                if not ok and "error" not in entry:
                    entry["error"] = _failure_reason(name, result, outcome)
            log_parts.append(f"===== {name}: {entry['status']} in {outcome.wall_s:.1f} s (rc {outcome.rc}) =====\n"
                             + outcome.output)
            report["meta"]["wall_s"] = round(time.perf_counter() - start, 1)
            _write_report(out, report, log_parts)
    report["meta"]["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    report["meta"]["wall_s"] = round(time.perf_counter() - start, 1)
    _write_report(out, report, log_parts)
    return report


def _failure_reason(name: str, result: dict[str, Any], outcome: ProcessOutcome) -> str:
    if name == "crosscheck":
        bad = [c["name"] for c in result.get("checks", []) if not c.get("ok")]
        return f"{len(bad)} check(s) failed: " + "; ".join(bad[:4])
    if name == "smoke":
        bad = [f for f, e in result.get("families", {}).items() if not e.get("ok")]
        return "failed families: " + ", ".join(bad)
    if name in ("tests", "suite") and result:
        return f"{result.get('failed', 0)} failed, {result.get('errors', 0)} errors"
    if name == "env" and result.get("info", {}).get("cuda_available") is False:
        return "CUDA is not available"
    lines = [ln for ln in outcome.output.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else f"exit status {outcome.rc}")[:300]


def exit_status(report: dict[str, Any]) -> int:
    """0 when every selected step passed or was skipped on purpose, else 1."""
    bad = [s for s in report["steps"].values()
           if s["status"] in ("failed", "timeout") or str(s.get("reason", "")).startswith("budget")]
    return 1 if bad else 0


# ================================================================================================ CLI / bench
def add_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """The ``neuralcollapse bench gpu`` flags (:func:`neuralcollapse.cli.add_gpu_arguments`, defined there so that
    the command's parser imports no torch)."""
    from ..cli import add_gpu_arguments

    add_gpu_arguments(parser)


def options_from_args(args: argparse.Namespace) -> CheckOptions:
    """CheckOptions from parsed flags (``--quick`` counts as ``--dry-run``)."""
    timeouts: dict[str, float] = {}
    for item in args.timeout or []:
        step, sep, seconds = str(item).partition("=")
        try:
            timeouts[step.strip()] = float(seconds)
        except ValueError:
            raise ValueError(f"`--timeout` must be STEP=SECONDS; got {item!r}") from None
        if not sep:
            raise ValueError(f"`--timeout` must be STEP=SECONDS; got {item!r}")
    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip()) if args.steps else STEPS
    families = tuple(f.strip() for f in args.families.split(",") if f.strip()) if args.families else tuple(FAMILIES)
    return CheckOptions(
        out=args.out or "gpu-check", dry_run=bool(args.dry_run or getattr(args, "quick", False)),
        budget_s=DEFAULT_BUDGET_S if args.budget_s is None else args.budget_s, data=args.data, images=args.images,
        compile=args.compile, workers=args.workers, steps=steps, families=families, timeouts=timeouts,
        tests_dir=args.tests_dir,
    )


def main_from_args(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """Run the check from parsed flags, print the Markdown report, return the exit status."""
    try:
        options = options_from_args(args).validate()
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise SystemExit(f"neuralcollapse bench gpu: {err}") from None
    report = run_check(options, argv=argv)
    print(format_markdown(report))
    print(f"wrote {', '.join(str(Path(options.out) / f) for f in OUTPUT_FILES)}")
    return exit_status(report)


def run(quick: bool = False) -> list[BenchRow]:
    """Bench-group form (``run_groups(["gpu"])``): the check (a dry run with ``quick`` or without CUDA) into a
    temporary folder, as rows: throughput (ratio vs the official-style pipeline), peak memory, step statuses."""
    dry = quick or not torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="gpu-check-out-") as tmp:
        report = run_check(CheckOptions(out=tmp, dry_run=dry))
    rows: list[BenchRow] = []
    runs = dict(report["steps"]["throughput"].get("result", {}).get("runs", {}))
    runs.update(report["steps"]["compile"].get("result", {}).get("runs", {}))
    official = runs.get("official", {}).get("img_s")
    for name, r in runs.items():
        if name != "official" and official and r.get("img_s"):
            rows.append(ratio_row(GROUP, f"epoch throughput {name} vs official-style", r["img_s"], official,
                                  unit="img/s", min_ratio=None if dry else THROUGHPUT_TARGET,
                                  note=r.get("pipeline", "") + ("; dry run" if dry else "")))
    for name, mib in report["summary"].get("peak_memory_mib", {}).items():
        if mib is not None:
            rows.append(BenchRow(GROUP, f"peak GPU memory {name}", mib, "MiB"))
    for name, s in report["steps"].items():
        rows.append(BenchRow(GROUP, f"step {name}", float(s.get("wall_s") or 0.0), "s",
                             passed=None if s["status"] in ("skipped", "pending") else s["status"] == "ok",
                             note=f"{s['status']}: {s.get('reason') or s.get('error') or ''}"[:200]))
    return rows


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return _child_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m neuralcollapse.bench.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="folder for gpu-check.{json,md,log} (default gpu-check/)")
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(_main())
