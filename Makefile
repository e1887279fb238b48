# recsys-spark: `make run` sets everything up and runs the nightly pipeline on sample data;
# `make test` runs the test suite. Both create .venv on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAMPLE := data/sample/interactions.csv
OUTPUT := warehouse
# make test and make test-processes: pytest-xdist workers, each with its own Spark session (a JVM of up
# to 3g), a test module whole on one worker (its module fixtures run once); the slowest modules start
# first (tests/conftest.py)
TEST_WORKERS ?= 2
# more pytest options for make test and make test-processes, e.g. PYTEST_ARGS=--cpu-accounting=cpu.jsonl (where the time goes)
PYTEST_ARGS ?=
PYTEST_XDIST = $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

.PHONY: run test test-processes test-slow test-cluster venv java sample bench clean

$(STAMP): setup.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is needed; set PYTHON=python3.x")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

java:
	@command -v java >/dev/null 2>&1 || { echo "Java 17 is needed by Spark and was not found: install it (Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17) or set JAVA_HOME."; exit 1; }

$(SAMPLE): | $(STAMP)
	$(PY) scripts/generate_data.py $(SAMPLE)

sample: $(SAMPLE)

run: java venv $(SAMPLE)
	$(VENV)/bin/recsys-spark run --input $(SAMPLE) --output $(OUTPUT)

test: java venv
	$(PYTEST_XDIST)

# the scenarios that start and SIGKILL Spark processes of their own (marker `processes`; CI runs them)
test-processes: java venv
	$(PYTEST_XDIST) -m processes

test-slow: java venv
	$(PY) -m pytest -m slow

test-cluster: java venv
	$(PY) -m pytest -m cluster

clean:
	rm -rf $(OUTPUT) data/sample spark-warehouse .pytest_cache
