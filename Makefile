# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU machines take the local CPU build of this exact torch; GPU machines get the CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test lint bench clean-demo

$(STAMP): pyproject.toml envs/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -c envs/constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores all --printshellcmds
	@echo "demo finished: see results/consensus/fsc.json, results/vae/half*/latents.csv and training.png, results/provenance.json"

lint: $(STAMP)
	$(BIN)/ruff check dynamight_core tests benchmarks
	$(BIN)/ruff format --check dynamight_core tests benchmarks

test: $(STAMP) lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean-demo:
	rm -rf results/simulated results/consensus results/logs results/records results/benchmarks \
		results/.checkpoints results/halves.csv results/provenance.json results/gaussians results/vae
