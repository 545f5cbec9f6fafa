# Two commands do all the set-up on a fresh machine: `make repro` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Stages run as `python -m stages.<name>`: with the venv first on PATH that is the project's
# interpreter, also for the queue workers that `dvc queue start` launches from this PATH.
export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export GIT_PYTHON_REFRESH := quiet

.PHONY: install repro test lint ui plots bench clean-store

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP)

repro: install
	dvc repro
	@echo
	@echo "Report:  report/report.md and report/report.html"
	@echo "Figures: report/figures/"
	@echo "Runs:    make ui, then open http://127.0.0.1:5000"

# Two workers, each test file whole in one (its servers start once), in a random order
# (pytest-randomly prints its seed; `--randomly-seed=N` repeats that order); the slowest 20 listed.
test: install
	ruff check .
	ruff format --check .
	python -m pytest -n 2 --dist loadfile --durations=20

lint: install
	ruff check --fix .
	ruff format .

# The UI binds to loopback only; the store is the project's own SQLite file.
ui: install
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

# DVC's own page loads its JavaScript from a CDN; this one inlines it, so it works offline.
PLOTS_TEMPLATE := .dvc/tmp/plots-offline.html

plots: install
	python -m backprop.lab.plots_page $(PLOTS_TEMPLATE)
	dvc plots show --html-template $(PLOTS_TEMPLATE) -o dvc_plots
	@echo "Plots: dvc_plots/index.html (offline)"

bench: install
	python benchmarks/engine.py
	python benchmarks/pipeline.py

clean-store:
	rm -rf mlflow.db mlflow.db-wal mlflow.db-shm mlflow.db.lock mlartifacts
