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

Given a baseline tree (:mod:`bench.baseline`), its ``import app`` runs in the same rounds as the
current one's, and its first requests alternate with the current ones, so that the machine's
load weighs on both alike.
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

from bench.baseline import CURRENT, Tree, last_line

ROOT = Path(__file__).resolve().parent.parent
BARE, BASELINE, APP = "pass", "import chalice, pynamodb.models", "import app"
# The baseline tree's `import app`, as a row of the samples.
OLD_APP = "import app (old code)"
# Loaded only by the requests that run a WebAuthn ceremony, never at cold start.
DEFERRED = ("webauthn", "cryptography")


@dataclass(frozen=True)
class Samples:
    # Milliseconds per statement (OLD_APP: the baseline tree's `import app`), one sample per fresh interpreter.
    wall_ms: dict[str, list[float]]
    cpu_ms: dict[str, list[float]]


@dataclass(frozen=True)
class ImportCost:
    cached: Samples
    # No bytecode to load and none may be written: every start compiles what it imports.
    compiled: Samples
    # For the baseline and the app: each deferred package it loaded, with the import chain that did.
    deferred_loaded: dict[str, dict[str, list[str]]]
    # The baseline tree measured (its OLD_APP samples), or why it has no figures; None when not asked for.
    old_tree: Tree | None = None
    old_missing: str | None = None

    @staticmethod
    def ratio(samples: dict[str, list[float]], app: str = APP) -> float:
        """The app's median cost over the baseline's, each less a bare interpreter's."""
        bare = statistics.median(samples[BARE])
        return (statistics.median(samples[app]) - bare) / (statistics.median(samples[BASELINE]) - bare)

    @staticmethod
    def whole_process_ratio(samples: dict[str, list[float]], app: str = APP) -> float:
        """The app's median process over the baseline's, interpreter start-up included."""
        return statistics.median(samples[app]) / statistics.median(samples[BASELINE])


def _environment(
    bytecode_cache: str,
    *,
    endpoint: str = "http://127.0.0.1:9",
    jwks_json: str | None = None,
    write_bytecode: bool = True,
) -> dict[str, str]:
    from devstack.environment import local_environment
    from devstack.idp import DevIdentityProvider

    jwks = jwks_json or DevIdentityProvider.ephemeral().jwks_json()
    unwanted = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "PYTHONDONTWRITEBYTECODE")
    environment = {name: value for name, value in os.environ.items() if name not in unwanted}
    environment = {
        **environment,
        **local_environment(endpoint=endpoint, jwks_json=jwks),
        "PYTHONPYCACHEPREFIX": bytecode_cache,
    }
    if not write_bytecode:
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
    return environment


def _python(
    statement: str, environment: dict[str, str], *options: str, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *options, "-c", statement], env=environment, cwd=cwd, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"python -c {statement!r} failed:\n{done.stderr[-2000:]}")
    return done


def _run_ms(statement: str, environment: dict[str, str], cwd: Path = ROOT) -> tuple[float, float]:
    """Wall and CPU time of one fresh interpreter running ``statement`` in the tree at ``cwd``."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    _python(statement, environment, cwd=cwd)
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
            for outer_depth, outer in entries[index + 1 :]:
                if outer_depth < depth:
                    chain.append(outer)
                    depth = outer_depth
            chain.reverse()
            # A submodule's import loads its parent packages inside it, which may import it again:
            # keep each module's innermost entry, and stop at the first of ``module``'s package.
            chain = [name for at, name in enumerate(chain) if name not in chain[at + 1 :]]
            first = next(at for at, name in enumerate(chain) if name == module or name.startswith(module + "."))
            return chain[: first + 1]
    return []


def measure_import_cost(runs: int = 15, *, old: Tree | None = None) -> ImportCost:
    """The cold import with cached bytecode and compiling at every start; with ``old``, that
    tree's ``import app`` too (OLD_APP), in the same rounds."""
    with (
        tempfile.TemporaryDirectory(prefix="keyward-bench-pyc-") as bytecode_cache,
        tempfile.TemporaryDirectory(prefix="keyward-bench-no-pyc-") as empty_cache,
    ):
        cached = _environment(bytecode_cache)
        compiled = _environment(empty_cache, write_bytecode=False)
        old_missing = _old_import_fails(old, cached) if old else None
        rows = {BARE: (BARE, ROOT), BASELINE: (BASELINE, ROOT), APP: (APP, ROOT)}
        if old is not None and old_missing is None:
            rows[OLD_APP] = (APP, old.root)
        return ImportCost(
            cached=_measure(cached, runs, rows),
            compiled=_measure(compiled, runs, rows),
            deferred_loaded={statement: _deferred_loaded(statement, cached) for statement in (BASELINE, APP)},
            old_tree=old,
            old_missing=old_missing,
        )


def _old_import_fails(old: Tree, environment: dict[str, str]) -> str | None:
    """Why the old tree's ``import app`` cannot run here, or None when it can."""
    try:
        _python(APP, environment, cwd=old.root)
    except RuntimeError as failed:
        return last_line(str(failed))
    return None


def _measure(environment: dict[str, str], runs: int, rows: dict[str, tuple[str, Path]]) -> Samples:
    """``rows``: each label's statement and the tree it runs in, measured in turn, ``runs`` rounds."""
    for statement, cwd in rows.values():  # warm-up: write bytecode caches (where allowed), fill the OS page cache
        _run_ms(statement, environment, cwd)
    wall: dict[str, list[float]] = {label: [] for label in rows}
    cpu: dict[str, list[float]] = {label: [] for label in rows}
    for _ in range(runs):
        for label, (statement, cwd) in rows.items():
            wall_ms, cpu_ms = _run_ms(statement, environment, cwd)
            wall[label].append(wall_ms)
            cpu[label].append(cpu_ms)
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
        return [sum(phases) for phases in zip(self.import_ms, self.me_ms, self.verify_ms, strict=True)]


@dataclass(frozen=True)
class FirstRequestsCompared:
    new: FirstRequests
    # The baseline tree's figures, or why it has none; both None when no baseline was asked for.
    old_tree: Tree | None = None
    old: FirstRequests | None = None
    old_missing: str | None = None


class FirstRequestRunner:
    """In a tree's own process, on the bench's local stack: a member with a security key, and per
    :meth:`run` a fresh process of the same tree that serves an authenticated GET /me and the MFA
    verify of a new login, with cached bytecode."""

    def __init__(self, bytecode_cache: str) -> None:
        from bench.stack import local_stack

        self.stack = local_stack()
        from chalice.test import Client

        from app import app
        from bench.stack import test_support

        SoftwareAuthenticator = test_support("authenticator").SoftwareAuthenticator
        KeywardClient = test_support("keyward_client").KeywardClient

        self.key = SoftwareAuthenticator()
        self._client = Client(app)
        self.api = KeywardClient(client=self._client.__enter__(), idp=self.stack.idp)
        member = self.api.login(org="bench-first", user="grace")
        if self.api.add_key(member, self.key).status != 201:
            raise RuntimeError("the bench member's security key was not registered")
        self.active = self.api.mfa_login(org="bench-first", user="grace", authenticator=self.key)
        self.environment = _environment(
            bytecode_cache, endpoint=self.stack.endpoint, jwks_json=self.stack.idp.jwks_json()
        )

    def run(self) -> dict[str, float]:
        """One fresh process: the whole process's wall time and its phases, in milliseconds."""
        pending = self.api.login(org="bench-first", user="grace")
        options = self.api.mfa_options(pending)
        assertion = self.key.authenticate(options.body["publicKey"])
        request = {
            "active_token": self.active.token,
            "mfa_token": pending.token,
            "verify": {"challenge_id": options.body["challenge_id"], "credential": assertion},
        }
        started = time.perf_counter()
        # ROOT is this tree's: the bench is copied into the baseline tree.
        done = subprocess.run(
            [sys.executable, "-c", FIRST_REQUESTS],
            input=json.dumps(request),
            env=self.environment,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        process_ms = (time.perf_counter() - started) * 1000
        if done.returncode != 0:
            raise RuntimeError(f"the first-request process failed: {last_line(done.stderr)}")
        phases = json.loads(done.stdout.splitlines()[-1])
        if phases["statuses"] != [200, 200]:
            raise RuntimeError(f"first requests answered {phases['statuses']}, expected [200, 200]")
        return {"process_ms": process_ms, **{phase: phases[phase] for phase in ("import_ms", "me_ms", "verify_ms")}}


class _Worker:
    """``python -m bench.worker first-requests`` in a tree: one fresh process per line sent to it."""

    def __init__(self, tree: Tree, log: Path) -> None:
        self.tree = tree
        self._log = log.open("w")
        environment = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", "first-requests"],
            cwd=tree.root,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        try:
            self._answer()  # ready, once its member has a key
        except RuntimeError:
            self.close()
            raise

    def _answer(self) -> dict:
        line = self._process.stdout.readline()
        while line and not line.startswith("{"):  # anything else the tree's code printed
            line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            self._log.flush()
            raise RuntimeError(last_line(Path(self._log.name).read_text()))
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def run(self) -> dict[str, float]:
        self._process.stdin.write("run\n")
        self._process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            self._process.wait(timeout=60)
        self._process.stdout.close()
        self._log.close()


def _figures(samples: list[dict[str, float]]) -> FirstRequests:
    return FirstRequests(
        **{phase: [sample[phase] for sample in samples] for phase in ("process_ms", "import_ms", "me_ms", "verify_ms")}
    )


def measure_first_requests(runs: int = 15, *, old: Tree | None = None) -> FirstRequestsCompared:
    """Each tree's first requests in ``runs`` fresh processes (after one that fills the bytecode
    cache), the current tree's and ``old``'s in turn."""
    with tempfile.TemporaryDirectory(prefix="keyward-bench-first-") as logs:
        new_worker = _Worker(CURRENT, Path(logs) / "new.log")
        old_worker, old_missing = None, None
        try:
            if old is not None:
                try:
                    old_worker = _Worker(old, Path(logs) / "old.log")
                except RuntimeError as failed:
                    old_missing = str(failed)
            new_samples: list[dict[str, float]] = []
            old_samples: list[dict[str, float]] = []
            for run in range(runs + 1):  # the first run writes the bytecode cache and is not counted
                sample = new_worker.run()
                if run:
                    new_samples.append(sample)
                if old_worker is not None:
                    try:
                        sample = old_worker.run()
                    except RuntimeError as failed:
                        old_worker.close()
                        old_missing, old_worker = str(failed), None
                        continue
                    if run:
                        old_samples.append(sample)
        finally:
            new_worker.close()
            if old_worker is not None:
                old_worker.close()
    return FirstRequestsCompared(
        new=_figures(new_samples),
        old_tree=old,
        old=_figures(old_samples) if old is not None and old_missing is None else None,
        old_missing=old_missing,
    )
