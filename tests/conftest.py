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


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
