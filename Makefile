# The two commands: `make run` (everything on this machine) and `make test` (the whole suite).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run lint test test-fast fuzz kafka bench clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) (set PY=python3.x)"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install everything (idempotent)

run: setup  ## embedded broker + worker + simulated traffic + API
	$(BIN)/tokenpulse dev

# What `make lint` checks (the rules are in pyproject.toml: [tool.ruff], [tool.mypy]).
LINT_PATHS := alerts detectors streams tokenpulse
# Paths left out of `make lint` (none; `make lint LINT_SKIP=dir` for a work-in-progress branch).
LINT_SKIP :=

lint: setup  ## ruff (pycodestyle, pyflakes, isort, bugbear, complexity 15, ...) and mypy (strict on detectors/ and alerts/)
	$(BIN)/ruff check $(addprefix --extend-exclude ,$(LINT_SKIP)) .
	$(BIN)/mypy $(addprefix --exclude ^,$(LINT_SKIP)) $(filter-out $(LINT_SKIP),$(LINT_PATHS))

# Two pytest processes (pytest-xdist): the Tansu tier in one, the Apache Kafka tier in the other
# (tests/integration/conftest.py groups them by broker), the unit tests spread over both. The
# demo test's misses in that mode were a race in the test (fixed, see tests/integration/test_demo.py).
test: setup lint  ## lint, then the whole suite (unit, doctests, integration on Tansu; Apache Kafka when Java is present)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

test-fast: setup  ## unit tests and doctests only
	$(BIN)/python -m pytest -q -m "not integration"

fuzz: setup  ## property-based fuzzing of normalize and the ingest lanes: 100,000 examples per property (FUZZ_EXAMPLES=N for another count); see docs/fuzzing.md
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -p no:cacheprovider tests/streams/ingest/test_fuzz.py

kafka:  ## fetch Apache Kafka's jars from Maven Central (for the Apache Kafka integration tier)
	bash scripts/kafka/kafka.sh fetch

clean:
	rm -rf $(VENV) .tokenpulse .pytest_cache .mypy_cache .ruff_cache
