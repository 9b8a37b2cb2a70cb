# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv/ (or reuse it) and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: install demo test test-all lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# CPU torch first where no torch is installed: an unpinned `torch` would pull
# a multi-GB CUDA build. Users who already have torch keep theirs.
$(STAMP): $(PY) pyproject.toml
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install --quiet "torch==2.13.0" \
		|| $(PIP) install --quiet torch
	$(PIP) install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/superact run --model minilm --dataset wordnet-supersenses --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check superact_lens theory tests benchmarks
	$(VENV)/bin/ruff format --check superact_lens theory tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_stream.py --quick
	$(PY) benchmarks/bench_calibrate.py
	$(PY) benchmarks/bench_theory.py --quick

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
