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

.PHONY: install repro test lint ui plots plots-page exps verify bench clean-store

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP)

PORT ?= 5000

# DVC reads params.yaml and hashes every input before any stage can check them: an alias bomb in
# params.yaml or a FIFO as a data path would hang it, so they are refused first.
repro: install
	python -m backprop.lab.preflight
	dvc repro
	@echo
	@echo "Report:  report/report.md and report/report.html"
	@echo "Figures: report/figures/"
	@echo "Check:   make verify (the committed conclusions hold on this machine)"
	@echo
	@echo "Next, in this shell:"
	@echo "  source .venv/bin/activate"
	@echo "  dvc exp run -S train.lr=0.03    # an experiment: re-runs only the stages the change reaches"
	@echo "  make exps                       # the experiments side by side, in 120 columns"
	@echo "  make ui PORT=$(PORT)               # the MLflow UI on http://127.0.0.1:$(PORT)"

# Three workers on 2 cores (the end-to-end tests spend a third of their time waiting on servers and
# subprocesses: 2 workers kept the cores 74% busy), each test file whole in one (its servers start
# once), the longest files first
# (tests/conftest.py LONGEST_FIRST), the tests of each file in a random order (pytest-randomly
# prints its seed; `--randomly-seed=N` repeats that order); the slowest 20 listed.
test: install
	ruff check .
	ruff format --check .
	mypy
	python -m pytest -n 3 --dist loadfile --no-loadscope-reorder --durations=20

lint: install
	ruff check --fix .
	ruff format .

# The UI binds to loopback only; the store is the project's own SQLite file.
# MLflow 3's UI opens an experiment in its GenAI view unless told otherwise (a browser-wide
# switch, not the experiment's kind tag): the printed link opens on the runs.
ui: install
	@echo "Runs: http://127.0.0.1:$(PORT)/#/experiments/1/runs?workflowType=machine_learning"
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port $(PORT)

# DVC's own page loads its JavaScript from a CDN; .dvc/plots-offline.html (committed, so a fresh
# clone has it) inlines vega from the pinned vl-convert-python, and .dvc/config's
# plots.html_template points every `dvc plots show` and `dvc plots diff` at it.
plots: install
	dvc plots show -o dvc_plots
	@echo "Plots: dvc_plots/index.html (offline)"

# Rewrite the offline page after a vl-convert-python upgrade (a test says when it is stale).
plots-page: install
	python -m backprop.lab.plots_page .dvc/plots-offline.html

# The experiments in 120 columns: each task's headline loss and, where an override replaced
# train.lr, the lr the task trained at (<task>.lr) always; the params that differ between the
# rows; no dependency hashes, no constant counts (folds), no other metric (`dvc exp show --json`).
EXPS_KEEP := ^(Experiment|regression\.test_mse|classification\.test_log_loss|(regression|classification)\.lr)$$
EXPS_DROP := ^(Created|regression\..*|classification\..*)$$|^(?!(data|train|sweep|curves|tracking)\.)

exps: install
	@dvc exp show --no-pager --only-changed --keep '$(EXPS_KEEP)' --drop '$(EXPS_DROP)'

# A fresh `dvc repro --force`'s tracked outputs against the committed ones (HEAD): fits identical
# to the stored digits, the fits that differ and why, and a failure if any conclusion differs.
verify: install
	dvc repro --force
	python scripts/verify.py --against HEAD

bench: install
	python benchmarks/engine.py
	python benchmarks/pipeline.py

clean-store:
	rm -rf mlflow.db mlflow.db-wal mlflow.db-shm mlflow.db.lock mlflow.db.reserve mlartifacts
