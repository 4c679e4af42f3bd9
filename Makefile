# Two-command quick start: `make run` (main job on the embedded default experiment) and
# `make test` (the test suite). Both create .venv idempotently on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export KEDRO_DISABLE_TELEMETRY := 1
export MPLBACKEND := Agg

.PHONY: install run test viz benchmarks clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU wheel of torch first (it lies on disk on our machines); a bare `pip install torch`
	# would download a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev,mlflow,slurm]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/kedro run $(ARGS)

# The suite on every core (pytest-xdist); the session's tiny `kedro run` is made once for all
# workers (tests/conftest.py). `make test ARGS="-n 0 tests/rom"` runs serially.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto $(ARGS)

viz: $(STAMP)
	$(BIN)/kedro viz run --host 127.0.0.1 --port 4141

benchmarks: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV)
