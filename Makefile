# Two commands for a fresh machine: `make demo` and `make test` (both set up ./.venv first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install demo test bench soak acceptance lint fmt clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "slotml needs Python 3.11+ (set PY=python3.11)")'
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: install
	$(BIN)/slotml demo -- $(DEMO_ARGS)

# The whole suite; prints its slowest tests. MySQL tests need SLOTML_TEST_MYSQL_URL's server
# (.ci/run prepares one); without it they are reported loudly at the end, and fail under CI=true.
# TEST_WORKERS pytest-xdist processes, one file each at a time (--dist loadfile keeps a module's
# shared run in one process): much of the suite waits on the wall clock (real-time collector
# scenarios), so two processes on two cores overlap that waiting with the CPU-bound tests.
# TEST_WORKERS=0 runs in this process (pdb, -x).
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

# The collector through SIGKILLs and database outages (MariaDB via the tests' TCP proxy,
# SLOTML_TEST_MYSQL_URL's server), checked row by row; not part of `make test`.
# SOAK_ARGS="--seed 2", "--minutes 30", or "--memory --minutes 120" (RSS slope, 5m + 15m).
soak: install
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# Issue 17's acceptance on sim history (truth, power, phantom; ~40 min on 2 cores; histories are
# kept in data/acceptance and reused). Seeds 101-105 are pre-registered: refused here.
acceptance: install
	$(BIN)/python -m bench.acceptance_maker $(ACCEPTANCE_ARGS)

lint: install
	$(BIN)/ruff check .

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
