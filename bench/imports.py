"""Cold-import cost of ``app`` against ``import chalice, pynamodb.models``, in fresh interpreters.

Each statement runs in its own ``python -c`` process, interleaved so drift hits all alike; the
median wall time of a bare ``python -c pass`` is subtracted from both. The children's CPU time
(user + system) is recorded too: on a busy machine it varies less than wall time. A warm-up
run compiles every module into a private bytecode cache (``PYTHONPYCACHEPREFIX``), so the
figures are import work, not compilation, and the source tree stays clean. The app gets the
local stage's environment with a DynamoDB endpoint nothing listens on, so an import that
contacted DynamoDB would fail rather than go unnoticed.
"""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BARE, BASELINE, APP = "pass", "import chalice, pynamodb.models", "import app"
# Loaded only by the requests that run a WebAuthn ceremony, never at cold start.
DEFERRED = ("webauthn", "cryptography")


@dataclass(frozen=True)
class ImportCost:
    # Milliseconds per statement, one sample per fresh interpreter.
    wall_ms: dict[str, list[float]]
    cpu_ms: dict[str, list[float]]
    # For the baseline and the app: each deferred package it loaded, with the import chain that did.
    deferred_loaded: dict[str, dict[str, list[str]]]

    @staticmethod
    def ratio(samples: dict[str, list[float]]) -> float:
        """The app's median cost over the baseline's, each less a bare interpreter's."""
        bare = statistics.median(samples[BARE])
        return (statistics.median(samples[APP]) - bare) / (statistics.median(samples[BASELINE]) - bare)


def _environment(bytecode_cache: str) -> dict[str, str]:
    from devstack.environment import local_environment
    from devstack.idp import DevIdentityProvider

    jwks = DevIdentityProvider.ephemeral().jwks_json()
    unwanted = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "PYTHONDONTWRITEBYTECODE")
    environment = {name: value for name, value in os.environ.items() if name not in unwanted}
    return {**environment, **local_environment(endpoint="http://127.0.0.1:9", jwks_json=jwks),
            "PYTHONPYCACHEPREFIX": bytecode_cache}


def _python(statement: str, environment: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, *options, "-c", statement], env=environment, cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"python -c {statement!r} failed:\n{done.stderr[-2000:]}")
    return done


def _run_ms(statement: str, environment: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU time of one fresh interpreter running ``statement``."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    _python(statement, environment)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall * 1000, cpu * 1000


def import_chain(importtime_log: str, module: str) -> list[str]:
    """From ``-X importtime`` output: the modules, outermost first, whose import loaded ``module``."""
    entries: list[tuple[int, str]] = []
    for line in importtime_log.splitlines():
        fields = line.split("|")
        if len(fields) != 3 or not fields[1].strip().isdigit():
            continue
        name = fields[2].lstrip()
        entries.append(((len(fields[2]) - len(name) - 1) // 2, name))
    # A module's line follows those of everything it imported, so its importers come later.
    for index, (depth, name) in enumerate(entries):
        if name == module:
            chain = [name]
            for outer_depth, outer in entries[index + 1:]:
                if outer_depth < depth:
                    chain.append(outer)
                    depth = outer_depth
            chain.reverse()
            # A submodule's import loads its parent packages inside it, which may import it again:
            # keep each module's innermost entry, and stop at the first of ``module``'s package.
            chain = [name for at, name in enumerate(chain) if name not in chain[at + 1:]]
            first = next(at for at, name in enumerate(chain) if name == module or name.startswith(module + "."))
            return chain[:first + 1]
    return []


def measure_import_cost(runs: int = 15) -> ImportCost:
    with tempfile.TemporaryDirectory(prefix="keyward-bench-pyc-") as bytecode_cache:
        return _measure(_environment(bytecode_cache), runs)


def _measure(environment: dict[str, str], runs: int) -> ImportCost:
    statements = (BARE, BASELINE, APP)
    for statement in statements:  # warm-up: write bytecode caches, fill the OS page cache
        _run_ms(statement, environment)
    wall: dict[str, list[float]] = {statement: [] for statement in statements}
    cpu: dict[str, list[float]] = {statement: [] for statement in statements}
    for _ in range(runs):
        for statement in statements:
            wall_ms, cpu_ms = _run_ms(statement, environment)
            wall[statement].append(wall_ms)
            cpu[statement].append(cpu_ms)
    return ImportCost(wall_ms=wall, cpu_ms=cpu, deferred_loaded={
        statement: _deferred_loaded(statement, environment) for statement in (BASELINE, APP)})


def _deferred_loaded(statement: str, environment: dict[str, str]) -> dict[str, list[str]]:
    probe = f"import sys; {statement}; print(*(m for m in {DEFERRED!r} if m in sys.modules))"
    done = _python(probe, environment, "-X", "importtime")
    return {module: import_chain(done.stderr, module) for module in done.stdout.split()}
