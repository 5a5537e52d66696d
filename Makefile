# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU machines take the local CPU build of this exact torch; GPU machines get the CUDA build.
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= results/demo

.PHONY: install demo test lint bench clean-demo

$(STAMP): pyproject.toml envs/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -c envs/constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m dynamight_core simulate --out $(DEMO_OUT)/data --n-particles 2000 --snr 0.1
	$(BIN)/python -m dynamight_core split-halves --star $(DEMO_OUT)/data/particles.star \
		--out $(DEMO_OUT)/halves.csv
	$(BIN)/python -m dynamight_core reconstruct --star $(DEMO_OUT)/data/particles.star \
		--halves $(DEMO_OUT)/halves.csv --out-half1 $(DEMO_OUT)/consensus/half1.mrc \
		--out-half2 $(DEMO_OUT)/consensus/half2.mrc --out-full $(DEMO_OUT)/consensus/full.mrc
	$(BIN)/python -m dynamight_core fsc --half1 $(DEMO_OUT)/consensus/half1.mrc \
		--half2 $(DEMO_OUT)/consensus/half2.mrc --mask $(DEMO_OUT)/data/mask.mrc \
		--full $(DEMO_OUT)/consensus/full.mrc --reference $(DEMO_OUT)/data/truth/average.mrc \
		--out-tsv $(DEMO_OUT)/consensus/fsc.tsv --out-json $(DEMO_OUT)/consensus/fsc.json \
		--out-png $(DEMO_OUT)/consensus/fsc.png
	@echo "demo finished: see $(DEMO_OUT)/consensus/fsc.json and fsc.png"

lint: $(STAMP)
	$(BIN)/ruff check dynamight_core tests benchmarks
	$(BIN)/ruff format --check dynamight_core tests benchmarks

test: $(STAMP) lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean-demo:
	rm -rf $(DEMO_OUT)
