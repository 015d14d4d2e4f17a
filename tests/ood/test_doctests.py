"""The docstring examples of the ood and openset modules run and print what they claim."""

import doctest
import importlib
import pkgutil

import pytest

import neuralcollapse.ood
import neuralcollapse.openset

MODULES = sorted(
    f"{pkg.__name__}.{info.name}"
    for pkg in (neuralcollapse.ood, neuralcollapse.openset)
    for info in pkgutil.iter_modules(pkg.__path__)
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
