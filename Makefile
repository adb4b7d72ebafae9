# bothways: the README's two commands are `make demo` and `make test`; both set up first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
TEST_ENV := PYTHONWARNINGS=default PYTHONASYNCIODEBUG=1

.PHONY: setup demo test test-py test-js test-matrix lint types bench bench-charts fuzz soak mutation clean

setup: $(STAMP)

$(STAMP): pyproject.toml js/package.json js/package-lock.json scripts/system-deps
	bash scripts/system-deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	cd js && npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

demo: setup
	$(PY) -m bothways.cli demo

test: setup lint test-js test-py

test-py: setup
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadfile --durations=15

test-js: setup
	cd js && $(TEST_ENV) BOTHWAYS_PYTHON=$(abspath $(PY)) npm test

# Every other claimed Python (unit + cross suites) and Node LTS line (JavaScript suites): scripts/matrix.
test-matrix: setup
	PY=$(PY) bash scripts/matrix

lint: setup
	$(PY) -m ruff check src tests bench soak spec examples setup.py
	$(PY) -m ruff format --check src tests bench soak spec examples setup.py
	$(PY) -m mypy
	cd js && npm run lint
	for f in examples/tutorial/*.js; do node --check "$$f" || exit 1; done

types: setup
	$(PY) -m mypy

# Every benchmark with a progress line, each rewriting its section of bench/RESULTS.md, then the
# header and the charts (bench/charts/*.png). bench-charts redraws the charts only.
bench: setup
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) bench/report.py

bench-charts: setup
	$(PY) bench/report.py --charts-only

# Every fuzz target for about SECONDS each: hypothesis (pytest tests/fuzz), fast-check, and
# atheris (coverage-guided) where a wheel exists for this Python. make test runs each briefly.
SECONDS ?= 60
fuzz: setup
	-$(PY) -m pip install --quiet --only-binary=:all: atheris
	BOTHWAYS_FUZZ_SECONDS=$(SECONDS) $(PY) -m pytest tests/fuzz --timeout=0 -q -rxX
	cd js && BOTHWAYS_FUZZ_SECONDS=$(SECONDS) node --test test/fuzz.test.js
	$(PY) -m tests.fuzz.atheris_main $(SECONDS)

# Every channel and calls both ways at a fixed rate for MINUTES, with random faults, checked for
# loss, duplicates beyond each channel's promise, and leaks: report in soak/results/ (CI: 2 min).
MINUTES ?= 2
soak: setup
	$(PY) -m soak --minutes $(MINUTES) --out soak/results

# Mutation testing of wire, rpc and the stdio transport in both languages (mutmut, Stryker):
# scripts/mutation, results in docs/mutation.md. Tens of minutes; not part of make test.
mutation: setup
	PY=$(PY) bash scripts/mutation

clean:
	rm -rf $(VENV) .matrix js/node_modules .pytest_cache .mypy_cache .ruff_cache
