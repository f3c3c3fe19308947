# roadrisk: every target delegates to a nox session (noxfile.py); `make` alone prints this list.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
TOOLS := .tools
NOX := $(TOOLS)/bin/nox

# Passed through to the sessions (noxfile.py documents every knob).
export PROFILE MODEL RECIPE DEVICE ARGS TORCH TORCH_INDEX_URL WHEELHOUSE BASE_IMAGE PIP_CERT DATA_DIR CPUS RUNS_DIR HOST_UID HOST_GID PLATFORMS SWEEP SPEC EXECUTOR TRACK

# nox itself lives in a local tools venv: no global installs.
$(NOX): requirements/tools.txt
	@$(PYTHON) -m venv $(TOOLS) && $(TOOLS)/bin/pip install --quiet -r requirements/tools.txt

.PHONY: help
help: ## Show this list of targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: PROFILE=smoke|quick|full MODEL=tabm|realmlp|hgb RECIPE=reference|fast DEVICE=auto|cpu|cuda|mps ARGS='...'"
	@echo "             DATA_DIR=kaggle-files CPUS=N (docker) TORCH=cpu|cuda (host venv) BASE_IMAGE WHEELHOUSE PIP_CERT PLATFORMS=linux/arm64 (images)"
	@echo "             TRACK=mlflow (log runs to RUNS_DIR/mlflow.db: docs/tracking.md)"

.PHONY: run-native
run-native: $(NOX) ## Train in the host venv (CUDA > MPS > CPU) -> runs/native/
	@$(NOX) -s run_native

.PHONY: run-docker
run-docker: $(NOX) ## Train in the CPU image -> runs/docker/
	@$(NOX) -s "run_docker(cpu)"

.PHONY: run-docker-mps
run-docker-mps: $(NOX) ## Train in the image a Mac user tries (asks for MPS, shows why it gets CPU) -> runs/docker-mps/
	@$(NOX) -s "run_docker(mps)"

.PHONY: run-docker-gpu
run-docker-gpu: $(NOX) ## Train in the NVIDIA image (needs the NVIDIA Container Toolkit) -> runs/docker-gpu/
	@$(NOX) -s "run_docker(gpu)"

.PHONY: run-cluster
run-cluster: $(NOX) ## A Ray head + 2 workers (CLUSTER_WORKERS=N) run the smoke sweep, then stop -> runs/cluster/<sweep>/
	@$(NOX) -s run_cluster

.PHONY: images
images: $(NOX) ## Build the CPU and MPS images
	@$(NOX) -s build_images

.PHONY: compare
compare: $(NOX) ## Diff devices, timings, accuracy; rank runs and ensembles -> reports/ (ARGS='--runs-dir runs/SWEEP')
	@$(NOX) -s compare

.PHONY: sweep
sweep: $(NOX) ## Train many members on fixed folds (SPEC=sweeps/quick-cpu.toml EXECUTOR=inline|process|ray) -> runs/<name>/
	@$(NOX) -s sweep

.PHONY: tune
tune: $(NOX) ## Search a model's parameters with Optuna, pruned per fold, resumable (SPEC=sweeps/tune-quick-cpu.toml) -> runs/<name>/ (docs/tune.md)
	@$(NOX) -s tune

.PHONY: ensemble
ensemble: $(NOX) ## Blend a sweep's complete runs (SWEEP=runs/quick-cpu) -> SWEEP/ensemble/ (docs/ensemble.md)
	@$(NOX) -s ensemble

.PHONY: mlflow-ui
mlflow-ui: $(NOX) ## Open the MLflow UI on the runs' store -> http://127.0.0.1:5000
	@$(NOX) -s mlflow_ui

.PHONY: bench
bench: $(NOX) ## Benchmarks as ratios (overhead, data, container tax, accelerator, scaling) -> reports/bench.{md,json}
	@$(NOX) -s bench

.PHONY: examples
examples: $(NOX) ## Regenerate the measured runs the README and docs quote -> docs/examples/
	@$(NOX) -s examples

.PHONY: doctor
doctor: $(NOX) ## Print this machine's environment block and device choice
	@$(NOX) -s doctor

.PHONY: probe
probe: $(NOX) ## Should I use my GPU? Time short fits on CPU and each accelerator here -> runs/probe/ (docs/devices.md)
	@$(NOX) -s probe

.PHONY: test
test: $(NOX) ## Run the whole test suite (pandas 3), and all but the container tests with pandas 2
	@$(NOX) -s tests

.PHONY: test-fast
test-fast: $(NOX) ## The edit-test loop: every test not marked slow (no torch training, no containers), about 2 min
	@$(NOX) -s tests_fast

.PHONY: check-platforms
check-platforms: $(NOX) ## Resolve every platform's pinned dependencies, every Python, no install (docs/platforms.md)
	@$(NOX) -s check_platforms

.PHONY: lint
lint: $(NOX) ## ruff and hadolint
	@$(NOX) -s lint

.PHONY: clean
clean: ## Remove venvs, caches and reports (keeps runs/)
	rm -rf .nox $(TOOLS) reports .pytest_cache .ruff_cache docker/.wheelhouse
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
