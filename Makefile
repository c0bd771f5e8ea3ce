# keyward: local development entry points. `make run` starts the whole stack on localhost.

VENV := .venv
PYTHON := $(VENV)/bin/python
# Lambda runs keyward on Python 3.13, and chalice packages for the Python that runs it: development,
# tests and packaging all use 3.13. `make BOOTSTRAP_PYTHON=/path/to/python3.13` overrides the search;
# where none is found, .ci/install-python installs one (uv's build, or the system's package).
BOOTSTRAP_PYTHON ?= $(shell .ci/find-python)
# The stamp names the version, so a .venv of another Python is rebuilt rather than reused.
INSTALLED := $(VENV)/.installed-3.13

.PHONY: install system-packages run check test test-fast explore bench package mutate clean

install: $(INSTALLED)

$(INSTALLED): requirements.txt requirements-dev.txt
	@python="$(BOOTSTRAP_PYTHON)"; \
	if [ -z "$$python" ]; then \
	  echo "make: Python 3.13 not found; installing it (.ci/install-python)" >&2; \
	  python=$$(.ci/install-python make) || { \
	    echo "make: Python 3.13 could not be installed. Install it with one of:" >&2; \
	    echo "  uv python install 3.13          (any Linux or macOS; uv: https://docs.astral.sh/uv/)" >&2; \
	    echo "  pyenv install 3.13              (builds it from source)" >&2; \
	    echo "  apt-get install python3.13-venv (Debian 13, Ubuntu 24.10 and later)" >&2; \
	    echo "or pass BOOTSTRAP_PYTHON=/path/to/python3.13." >&2; \
	    exit 1; }; \
	fi; \
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null \
	  || { echo "make: creating $(VENV) with $$python" >&2; rm -rf $(VENV) && "$$python" -m venv $(VENV); }
	$(PYTHON) -m pip install --disable-pip-version-check --quiet -r requirements-dev.txt
	touch $@

# `make run DEVSTACK_ARGS="--port 9000 --dynamodb-port 9001 --demo-port 9002"` passes options on
# (`python -m devstack run --help`).
run: $(INSTALLED)
	$(PYTHON) -m devstack run $(DEVSTACK_ARGS)

# Lint, format, types and import contracts, as configured in pyproject.toml; quick, unlike `make test`.
check: $(INSTALLED)
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# What the suite needs of the system: Debian's chromium for the console's browser tests, curl and
# jq for the README's walk-through. Installed with apt-get as root or with sudo that asks no
# password; elsewhere this stops and names the command that installs them.
system-packages:
	@.ci/install-system-packages "make test"

test: $(INSTALLED) system-packages
	$(PYTHON) -m pytest -q

# The edit-test loop: the layers that need neither Chromium nor the local stack (docs/testing.md).
# The stack, browser and deploy layers run with `make test`.
test-fast: $(INSTALLED)
	$(PYTHON) -m pytest -q tests/api tests/contract tests/bench tests/tooling

# A longer hunt of the assurance model (docs/testing.md): randomized, shrunk, with statistics of
# the rules that ran. `make explore EXPLORE_EXAMPLES=2000` hunts longer.
EXPLORE_EXAMPLES ?= 500
explore: $(INSTALLED)
	KEYWARD_MODEL_EXAMPLES=$(EXPLORE_EXAMPLES) $(PYTHON) -m pytest -q -p no:cacheprovider \
	  --hypothesis-show-statistics tests/api/test_assurance_model.py

# matplotlib draws the bench's plot; it is the bench's alone, not a development dependency.
$(VENV)/.bench-installed: $(INSTALLED) bench/requirements.txt
	$(PYTHON) -m pip install --disable-pip-version-check --quiet -r bench/requirements.txt
	touch $@

# `make bench BENCH_ARGS="invalidation --sizes 10000"` runs a part of it; see `python -m bench --help`.
bench: $(VENV)/.bench-installed
	$(PYTHON) -m bench $(BENCH_ARGS)

# `make package STAGE=dev`: the stage's CloudFormation template and Lambda package in out/ (docs/deploy.md).
STAGE ?= prod
package: $(INSTALLED)
	$(PYTHON) -m deploy --stage $(STAGE) out/

$(VENV)/.mutate-installed: $(INSTALLED) requirements-mutate.txt
	$(PYTHON) -m pip install --disable-pip-version-check --quiet -r requirements-mutate.txt
	touch $@

# Mutation testing of the security modules (docs/testing.md); slow, and not part of `make test`.
# `make mutate MUTATE_MODULES="challenges mfa"` runs some of them; MUTATE_JOBS=2 runs two mutants at a time.
MUTATE_JOBS ?= 1
mutate: $(VENV)/.mutate-installed
	$(PYTHON) -m mutation.run --jobs $(MUTATE_JOBS) $(MUTATE_MODULES)

clean:
	rm -rf $(VENV) .pytest_cache .mutation .mypy_cache .ruff_cache .import_linter_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
