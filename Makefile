# Two commands for a newcomer:  `make train` (main job on the embedded digits data) and `make test`.
# Both create ./.venv and install the package on first use. TORCH picks the torch requirement
# (CI here: TORCH=torch==2.13.0, a CPU build); any torch>=2.2 works.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch>=2.2
BIN := $(VENV)/bin

.PHONY: train test lint bench clean

$(BIN)/neuralcollapse: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
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
