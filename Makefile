# keyward: local development entry points. `make run` starts the whole stack on localhost.

VENV := .venv
PYTHON := $(VENV)/bin/python
# Lambda runs Python 3.11; an older or newer python3 still works for local development.
BOOTSTRAP_PYTHON := $(shell command -v python3.11 2>/dev/null || command -v python3)

.PHONY: install run test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PYTHON) || $(BOOTSTRAP_PYTHON) -m venv $(VENV)
	$(PYTHON) -m pip install --disable-pip-version-check --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PYTHON) -m devstack run

# The console's browser tests drive Debian's chromium; without it, stop and say how to get it.
test: $(VENV)/.installed
	@test -x /usr/bin/chromium || { echo "make test: the console's browser tests need Debian's chromium (/usr/bin/chromium). Install it with: sudo apt-get install -y chromium" >&2; exit 1; }
	$(PYTHON) -m pytest -q

# matplotlib draws the bench's plot; it is the bench's alone, not a development dependency.
$(VENV)/.bench-installed: $(VENV)/.installed bench/requirements.txt
	$(PYTHON) -m pip install --disable-pip-version-check --quiet -r bench/requirements.txt
	touch $@

# `make bench BENCH_ARGS="invalidation --sizes 10000"` runs a part of it; see `python -m bench --help`.
bench: $(VENV)/.bench-installed
	$(PYTHON) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
