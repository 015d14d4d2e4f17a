import os

import numpy as np
import pytest
import torch

# Two pytest-xdist workers share two cores: one intra-op thread each avoids oversubscription.
torch.set_num_threads(int(os.environ.get("NC_TEST_THREADS", "1")))

try:
    from hypothesis import settings

    settings.register_profile("ci", max_examples=40, deadline=None)
    settings.load_profile("ci")
except ImportError:  # pragma: no cover
    pass


#: Device of the device-generic tests (those that take the ``device`` fixture): ``cpu`` (default) or ``cuda``.
#: ``NEURALCOLLAPSE_TEST_DEVICE=cuda pytest -m "cuda or device_generic"`` runs the CUDA-only tests and the
#: device-generic ones on a GPU (what ``neuralcollapse bench gpu`` does).
TEST_DEVICE_ENV = "NEURALCOLLAPSE_TEST_DEVICE"
TEST_DEVICES = ("cpu", "cuda")


def _test_device() -> str:
    return os.environ.get(TEST_DEVICE_ENV, "cpu").strip().lower() or "cpu"


def pytest_configure(config: pytest.Config) -> None:
    name = _test_device()
    if name not in TEST_DEVICES:
        raise pytest.UsageError(f"{TEST_DEVICE_ENV} must be one of {', '.join(TEST_DEVICES)}; got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"{TEST_DEVICE_ENV}=cuda but torch.cuda.is_available() is False")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests that take the ``device`` fixture ``device_generic``; skip ``cuda``-marked ones without CUDA."""
    no_cuda = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device_generic)
        if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
            item.add_marker(no_cuda)


@pytest.fixture
def device() -> torch.device:
    """The device of a device-generic test (``$NEURALCOLLAPSE_TEST_DEVICE``, default CPU)."""
    return torch.device(_test_device())


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
