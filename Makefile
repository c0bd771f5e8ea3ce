# keyward: local development entry points. `make run` starts the whole stack on localhost.

VENV := .venv
PYTHON := $(VENV)/bin/python
# Lambda runs Python 3.11; an older or newer python3 still works for local development.
BOOTSTRAP_PYTHON := $(shell command -v python3.11 2>/dev/null || command -v python3)

.PHONY: install run test bench mutate clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PYTHON) || $(BOOTSTRAP_PYTHON) -m venv $(VENV)
	$(PYTHON) -m pip install --disable-pip-version-check --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PYTHON) -m devstack run

test: $(VENV)/.installed
	$(PYTHON) -m pytest -q

# matplotlib draws the bench's plot; it is the bench's alone, not a development dependency.
$(VENV)/.bench-installed: $(VENV)/.installed bench/requirements.txt
	$(PYTHON) -m pip install --disable-pip-version-check --quiet -r bench/requirements.txt
	touch $@

# `make bench BENCH_ARGS="invalidation --sizes 10000"` runs a part of it; see `python -m bench --help`.
bench: $(VENV)/.bench-installed
	$(PYTHON) -m bench $(BENCH_ARGS)

$(VENV)/.mutate-installed: $(VENV)/.installed requirements-mutate.txt
	$(PYTHON) -m pip install --disable-pip-version-check --quiet -r requirements-mutate.txt
	touch $@

# Mutation testing of the security modules (docs/testing.md); slow, and not part of `make test`.
# `make mutate MUTATE_MODULES="challenges mfa"` runs some of them.
mutate: $(VENV)/.mutate-installed
	$(PYTHON) -m mutation.run $(MUTATE_MODULES)

clean:
	rm -rf $(VENV) .pytest_cache .mutation
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
