# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Which torch build the venv gets: `make install TORCH_BUILD=cpu|cu126|cu129|cu130|cu132`.
# Left unset, envs/torch-build.sh picks one: cpu without an NVIDIA driver, else the CUDA build
# that the driver and the GPUs can run (README, "Two commands"). Each maps to the PyTorch
# wheel index https://download.pytorch.org/whl/<build>. cpu asks for plain torch==2.13.0, so
# a local wheel, a mirror or PyPI (whose Linux wheel is the CUDA 13.0 build) can also serve it.
TORCH_VERSION := 2.13.0
TORCH_BUILDS := cpu cu126 cu129 cu130 cu132
# (run once, and only when a recipe needs it)
TORCH_BUILD ?= $(eval TORCH_BUILD := $(shell bash envs/torch-build.sh))$(TORCH_BUILD)
TORCH_INDEX ?= https://download.pytorch.org/whl/$(TORCH_BUILD)
TORCH_SPEC = torch==$(TORCH_VERSION)$(if $(filter cpu,$(TORCH_BUILD)),,+$(TORCH_BUILD))

.PHONY: install demo test lint bench clean-demo

$(STAMP): pyproject.toml envs/constraints.txt
	@$(if $(filter $(TORCH_BUILD),$(TORCH_BUILDS)),true,echo "TORCH_BUILD=$(TORCH_BUILD): expected one of $(TORCH_BUILDS)" >&2; false)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" --extra-index-url "$(TORCH_INDEX)"
	$(BIN)/python -m pip install --quiet -c envs/constraints.txt -e ".[dev]"
	@echo "$(TORCH_BUILD)" > $(STAMP)

# Asked for another build than the venv has (recorded in the stamp): swap torch.
install:
	@if [ -s $(STAMP) ] && [ "$$(cat $(STAMP))" != "$(TORCH_BUILD)" ]; then \
		echo "torch build: $$(cat $(STAMP)) -> $(TORCH_BUILD)"; \
		$(BIN)/python -m pip uninstall --quiet --yes torch && rm $(STAMP); fi
	@$(MAKE) --no-print-directory $(STAMP) TORCH_BUILD=$(TORCH_BUILD)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores all --printshellcmds
	@echo "demo finished: see results/consensus/fsc.json, results/vae/half*/latents.csv and training.png, results/deformed/fsc.json, results/provenance.json"
	@echo "improved (deformed) maps beside the consensus, FSC to the simulation's truth:"
	@cat results/deformed/summary.txt
	@echo "validation report: results/report.html (open it in a browser; numbers in results/summary.json)"
	@cat results/report/summary.txt

# style, types (mypy, settings in pyproject.toml) and the allowed imports between packages
# (import-linter contracts in pyproject.toml; docs/architecture.md explains the layers)
lint: $(STAMP)
	$(BIN)/ruff check dynamight_core tests benchmarks
	$(BIN)/ruff format --check dynamight_core tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: $(STAMP) lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean-demo:
	rm -rf results/simulated results/consensus results/logs results/records results/benchmarks \
		results/.checkpoints results/halves.csv results/provenance.json results/gaussians results/vae \
		results/inverse results/deformed results/null results/postprocess results/local_resolution \
		results/latent results/report results/report.html results/summary.json
