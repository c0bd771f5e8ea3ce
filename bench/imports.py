"""Cold-import cost of ``app`` against ``import chalice, pynamodb.models``, in fresh interpreters,
and what the first requests of a fresh process cost.

Each statement runs in its own ``python -c`` process, interleaved so drift hits all alike. The
ratios compare whole processes (interpreter start-up included), and the import work alone (less
the median of a bare ``python -c pass``). The children's CPU time (user + system) is recorded
too: on a busy machine it varies less than wall time. Two bytecode situations are measured:

- cached: a warm-up run compiles every module into a private bytecode cache
  (``PYTHONPYCACHEPREFIX``), as the Lambda package's own ``.pyc`` provide (``python -m deploy``);
- compiled at every start: an empty cache that may not be written (``-B``), as a Lambda package
  without bytecode runs in its read-only directory.

Either way the source tree stays clean. The app gets the local stage's environment with a
DynamoDB endpoint nothing listens on, so an import that contacted DynamoDB would fail rather
than go unnoticed.
"""
from __future__ import annotations

import json
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
class Samples:
    # Milliseconds per statement, one sample per fresh interpreter.
    wall_ms: dict[str, list[float]]
    cpu_ms: dict[str, list[float]]


@dataclass(frozen=True)
class ImportCost:
    cached: Samples
    # No bytecode to load and none may be written: every start compiles what it imports.
    compiled: Samples
    # For the baseline and the app: each deferred package it loaded, with the import chain that did.
    deferred_loaded: dict[str, dict[str, list[str]]]

    @staticmethod
    def ratio(samples: dict[str, list[float]]) -> float:
        """The app's median cost over the baseline's, each less a bare interpreter's."""
        bare = statistics.median(samples[BARE])
        return (statistics.median(samples[APP]) - bare) / (statistics.median(samples[BASELINE]) - bare)

    @staticmethod
    def whole_process_ratio(samples: dict[str, list[float]]) -> float:
        """The app's median process over the baseline's, interpreter start-up included."""
        return statistics.median(samples[APP]) / statistics.median(samples[BASELINE])


def _environment(bytecode_cache: str, *, endpoint: str = "http://127.0.0.1:9", jwks_json: str | None = None,
                 write_bytecode: bool = True) -> dict[str, str]:
    from devstack.environment import local_environment
    from devstack.idp import DevIdentityProvider

    jwks = jwks_json or DevIdentityProvider.ephemeral().jwks_json()
    unwanted = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "PYTHONDONTWRITEBYTECODE")
    environment = {name: value for name, value in os.environ.items() if name not in unwanted}
    environment = {**environment, **local_environment(endpoint=endpoint, jwks_json=jwks),
                   "PYTHONPYCACHEPREFIX": bytecode_cache}
    if not write_bytecode:
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
    return environment


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
    with tempfile.TemporaryDirectory(prefix="keyward-bench-pyc-") as bytecode_cache, \
            tempfile.TemporaryDirectory(prefix="keyward-bench-no-pyc-") as empty_cache:
        cached = _environment(bytecode_cache)
        compiled = _environment(empty_cache, write_bytecode=False)
        return ImportCost(cached=_measure(cached, runs), compiled=_measure(compiled, runs), deferred_loaded={
            statement: _deferred_loaded(statement, cached) for statement in (BASELINE, APP)})


def _measure(environment: dict[str, str], runs: int) -> Samples:
    statements = (BARE, BASELINE, APP)
    for statement in statements:  # warm-up: write bytecode caches (where allowed), fill the OS page cache
        _run_ms(statement, environment)
    wall: dict[str, list[float]] = {statement: [] for statement in statements}
    cpu: dict[str, list[float]] = {statement: [] for statement in statements}
    for _ in range(runs):
        for statement in statements:
            wall_ms, cpu_ms = _run_ms(statement, environment)
            wall[statement].append(wall_ms)
            cpu[statement].append(cpu_ms)
    return Samples(wall_ms=wall, cpu_ms=cpu)


def _deferred_loaded(statement: str, environment: dict[str, str]) -> dict[str, list[str]]:
    probe = f"import sys; {statement}; print(*(m for m in {DEFERRED!r} if m in sys.modules))"
    done = _python(probe, environment, "-X", "importtime")
    return {module: import_chain(done.stderr, module) for module in done.stdout.split()}


# --- the first requests of a fresh process -------------------------------------------------------

# A fresh interpreter, as a Lambda cold start: import the app, then serve one authenticated
# GET /me and one MFA verify through chalice's test client against the bench's moto. The test
# client is imported first and timed apart: it is the harness, not keyward.
FIRST_REQUESTS = """
import json, sys, time
started = time.perf_counter()
from chalice.test import Client
harness = time.perf_counter()
import app
imported = time.perf_counter()
request = json.loads(sys.stdin.read())
headers = {"content-type": "application/json", "user-agent": "keyward-bench"}
with Client(app.app) as client:
    read = time.perf_counter()
    me = client.http.get("/me", headers={**headers, "authorization": "Bearer " + request["active_token"]})
    answered_me = time.perf_counter()
    verify = client.http.post("/auth/mfa/verify", body=json.dumps(request["verify"]),
                              headers={**headers, "authorization": "Bearer " + request["mfa_token"]})
    answered_verify = time.perf_counter()
print(json.dumps({"statuses": [me.status_code, verify.status_code], "harness_ms": (harness - started) * 1000,
                  "import_ms": (imported - harness) * 1000, "me_ms": (answered_me - read) * 1000,
                  "verify_ms": (answered_verify - answered_me) * 1000}))
"""


@dataclass(frozen=True)
class FirstRequests:
    """Milliseconds per fresh process, one sample each: the whole process (wall), and its phases."""

    process_ms: list[float]
    import_ms: list[float]
    me_ms: list[float]
    verify_ms: list[float]

    def total_ms(self) -> list[float]:
        """import app + first GET /me + first MFA verify, per process."""
        return [sum(phases) for phases in zip(self.import_ms, self.me_ms, self.verify_ms)]


def measure_first_requests(runs: int = 15) -> FirstRequests:
    """On the bench's local stack: a member with a security key; per run, a fresh process serves
    an authenticated GET /me and the MFA verify of a new login, with cached bytecode."""
    from bench.stack import local_stack

    stack = local_stack()
    from chalice.test import Client

    from app import app
    from tests.authenticator import SoftwareAuthenticator
    from tests.keyward_client import KeywardClient

    key = SoftwareAuthenticator()
    figures: dict[str, list[float]] = {"process_ms": [], "import_ms": [], "me_ms": [], "verify_ms": []}
    with Client(app) as chalice_client, tempfile.TemporaryDirectory(prefix="keyward-bench-pyc-") as bytecode_cache:
        api = KeywardClient(client=chalice_client, idp=stack.idp)
        member = api.login(org="bench-first", user="grace")
        if api.add_key(member, key).status != 201:
            raise RuntimeError("the bench member's security key was not registered")
        active = api.mfa_login(org="bench-first", user="grace", authenticator=key)
        environment = _environment(bytecode_cache, endpoint=stack.endpoint, jwks_json=stack.idp.jwks_json())
        for run in range(runs + 1):  # the first run writes the bytecode cache and is not counted
            pending = api.login(org="bench-first", user="grace")
            options = api.mfa_options(pending)
            assertion = key.authenticate(options.body["publicKey"])
            request = {"active_token": active.token, "mfa_token": pending.token,
                       "verify": {"challenge_id": options.body["challenge_id"], "credential": assertion}}
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", FIRST_REQUESTS], input=json.dumps(request), env=environment,
                                  cwd=ROOT, capture_output=True, text=True)
            process_ms = (time.perf_counter() - started) * 1000
            if done.returncode != 0:
                raise RuntimeError(f"the first-request process failed:\n{done.stderr[-2000:]}")
            phases = json.loads(done.stdout.splitlines()[-1])
            if phases["statuses"] != [200, 200]:
                raise RuntimeError(f"first requests answered {phases['statuses']}, expected [200, 200]")
            if run:
                figures["process_ms"].append(process_ms)
                for phase in ("import_ms", "me_ms", "verify_ms"):
                    figures[phase].append(phases[phase])
    return FirstRequests(**figures)
