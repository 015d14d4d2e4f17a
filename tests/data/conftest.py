import os

import pytest

import neuralcollapse.data.base as base


@pytest.fixture(autouse=True)
def isolated_data_search(tmp_path_factory, monkeypatch):
    """Data look-ups in these tests never see this machine's files: the user cache, the working directory
    (``./data`` is searched) and the system packages' folders are empty temporary ones, and the data-folder
    variables are unset."""
    root = tmp_path_factory.mktemp("isolated")
    monkeypatch.setenv(base.CACHE_DIR_ENV, str(root / "cache"))
    monkeypatch.chdir(root)
    monkeypatch.setattr(
        base,
        "SYSTEM_PACKAGES",
        {name: tuple(base.SystemPackage(p.package, str(root / "system" / name), p.install) for p in pkgs)
         for name, pkgs in base.SYSTEM_PACKAGES.items()},
    )
    for var in [v for v in os.environ if v.startswith("NEURALCOLLAPSE_") and v.endswith("_DIR")]:
        if var != base.CACHE_DIR_ENV:
            monkeypatch.delenv(var)
    return root
