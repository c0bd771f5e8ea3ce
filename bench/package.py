"""``python -m bench package``: the Lambda package as chalice makes it against the pruned one.

Both are built in the same run from the current tree (``python -m deploy --unpruned`` and
``python -m deploy``; both with bytecode), so the difference is the pruning alone
(:mod:`deploy.prune`). For each: the zip's size, compressed and unpacked, its files and modules;
and the cold start as Lambda runs it: fresh ``python -I -B -S`` processes whose path is the unpacked
package, then a directory holding only boto3 and s3transfer (which the runtime provides, after the
package), serving through the Lambda handler, with API Gateway's events, an authenticated
``GET /me`` and the MFA verify of a new login against the bench's moto, then reading the bundled
authenticator metadata (the refresh function reads it, and so do registrations before the first
refresh). Old and new processes take turns.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNS = 15
PHASES = ("import_ms", "me_ms", "verify_ms", "metadata_ms")
# What the Lambda runtime brings that keyward's code imports and the package does not carry.
RUNTIME_PACKAGES = ("boto3", "s3transfer")
# The package's extension modules are built for Graviton (aarch64); on another machine the
# processes of both packages load this environment's builds of the same pinned versions instead.
BINARY_PACKAGES = ("cryptography", "cffi", "_cffi_backend", "cbor2")

FIRST_REQUESTS = """
import json, sys, time
started = time.perf_counter()
request = json.loads(sys.stdin.read())
sys.path[:0] = request["path"]
import app
imported = time.perf_counter()
class Context:
    function_name, memory_limit_in_mb, aws_request_id = "APIHandler", 512, "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:APIHandler"
    def get_remaining_time_in_millis(self):
        return 29000
statuses = []
for event in request["events"]:
    statuses.append(app.app(event, Context())["statusCode"])
    if len(statuses) == 1:
        answered_me = time.perf_counter()
answered_verify = time.perf_counter()
from chalicelib.ceremony import metadata
models = len(metadata.bundled_index())
read = time.perf_counter()
import botocore
print(json.dumps({"statuses": statuses, "models": models, "botocore": botocore.__file__,
                  "import_ms": (imported - started) * 1000, "me_ms": (answered_me - imported) * 1000,
                  "verify_ms": (answered_verify - answered_me) * 1000, "metadata_ms": (read - answered_verify) * 1000}))
"""


@dataclass(frozen=True)
class Contents:
    compressed: int
    unpacked: int
    files: int
    modules: int


@dataclass
class Package:
    name: str
    directory: Path
    contents: Contents
    samples: dict[str, list[float]] = field(default_factory=lambda: {phase: [] for phase in ("process_ms", *PHASES)})


def build(out: Path, *, pruned: bool) -> Path:
    """``python -m deploy`` into ``out``; returns the zip."""
    command = [sys.executable, "-m", "deploy", "--stage", "prod", str(out)]
    done = subprocess.run(
        command if pruned else [*command[:-1], "--unpruned", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=_packaging_environment(),
    )
    if done.returncode != 0:
        raise RuntimeError(f"python -m deploy failed: {done.stdout}{done.stderr}")
    return out / "deployment.zip"


def _packaging_environment() -> dict[str, str]:
    import os

    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KEYWARD_", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")) and name != "DYNAMODB_ENDPOINT"
    }
    environment.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return environment


def contents(archive: Path) -> Contents:
    with zipfile.ZipFile(archive) as opened:
        entries = opened.infolist()
    return Contents(
        compressed=archive.stat().st_size,
        unpacked=sum(entry.file_size for entry in entries),
        files=len(entries),
        modules=sum(entry.filename.endswith(".pyc") for entry in entries),
    )


def copied(names: tuple[str, ...], into: Path) -> Path:
    """This environment's installed packages (or extension modules) ``names``, alone in ``into``."""
    into.mkdir()
    for name in names:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, f"{name} is not installed"
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            # With its bytecode, as the runtime has it: copy2 keeps the times the .pyc were checked against.
            shutil.copytree(origin.parent, into / name)
        else:
            shutil.copy2(origin, into / origin.name)
    return into


def on_lambdas_machine() -> bool:
    return platform.machine() in ("aarch64", "arm64")


def _events(request: dict[str, Any]) -> list[dict[str, Any]]:
    def event(method: str, path: str, token: str, body: str | None) -> dict[str, Any]:
        return {
            "resource": path,
            "path": path,
            "httpMethod": method,
            "requestContext": {
                "httpMethod": method,
                "resourcePath": path,
                "path": path,
                "requestId": "bench",
                "identity": {"sourceIp": "127.0.0.1"},
            },
            "headers": {
                "content-type": "application/json",
                "user-agent": "keyward-bench",
                "authorization": "Bearer " + token,
            },
            "multiValueQueryStringParameters": None,
            "pathParameters": None,
            "stageVariables": {},
            "body": body,
            "isBase64Encoded": False,
        }

    return [
        event("GET", "/me", request["active_token"], None),
        event("POST", "/auth/mfa/verify", request["mfa_token"], json.dumps(request["verify"])),
    ]


def measure_package(*, runs: int = RUNS) -> tuple[Package, Package]:
    """Both packages, built and measured in this run: (as chalice makes it, pruned)."""
    from bench.imports import FirstRequestRunner, _environment

    with tempfile.TemporaryDirectory(prefix="keyward-bench-package-") as scratch:
        work = Path(scratch)
        packages = []
        for name, pruned in (("chalice's", False), ("pruned", True)):
            archive = build(work / name / "out", pruned=pruned)
            task = work / name / "task"
            with zipfile.ZipFile(archive) as opened:
                opened.extractall(task)
            packages.append(Package(name=name, directory=task, contents=contents(archive)))
        runtime = copied(RUNTIME_PACKAGES, work / "runtime")
        binaries = [] if on_lambdas_machine() else [str(copied(BINARY_PACKAGES, work / "binaries"))]
        with tempfile.TemporaryDirectory(prefix="keyward-bench-pyc-") as bytecode_cache:
            runner = FirstRequestRunner(bytecode_cache)
            environment = {
                name: value
                for name, value in _environment(
                    bytecode_cache, endpoint=runner.stack.endpoint, jwks_json=runner.stack.idp.jwks_json()
                ).items()
                if name != "PYTHONPYCACHEPREFIX"
            }
            environment.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
            for _ in range(runs):
                for package in packages:
                    path = [*binaries, str(package.directory), str(runtime)]
                    _first_requests(runner, package, path, environment)
    return packages[0], packages[1]


def _first_requests(runner: Any, package: Package, path: list[str], environment: dict[str, str]) -> None:
    pending = runner.api.login(org="bench-first", user="grace")
    options = runner.api.mfa_options(pending)
    assertion = runner.key.authenticate(options.body["publicKey"])
    request = {
        "active_token": runner.active.token,
        "mfa_token": pending.token,
        "verify": {"challenge_id": options.body["challenge_id"], "credential": assertion},
    }
    stdin = json.dumps({"path": path, "events": _events(request)})
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-I", "-B", "-S", "-c", FIRST_REQUESTS],
        input=stdin,
        env=environment,
        cwd=package.directory,
        capture_output=True,
        text=True,
    )
    process_ms = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"the {package.name} package's first requests failed: {done.stderr[-2000:]}")
    phases = json.loads(done.stdout.splitlines()[-1])
    if phases["statuses"] != [200, 200] or not phases["models"]:
        raise RuntimeError(f"the {package.name} package answered {phases['statuses']}, {phases['models']} models")
    if not phases["botocore"].startswith(str(package.directory)):
        raise RuntimeError(f"botocore came from {phases['botocore']}, not the package")
    package.samples["process_ms"].append(process_ms)
    for phase in PHASES:
        package.samples[phase].append(phases[phase])


def report(old: Package, new: Package) -> list[str]:
    def row(label: str, value: Any) -> str:
        return f"| {label} | {value(old)} | {value(new)} |"

    def ms(phase: str) -> Any:
        return lambda package: f"{median(package.samples[phase]):,.0f} ms"

    def total(package: Package) -> str:
        sums = [sum(values) for values in zip(*(package.samples[phase] for phase in PHASES[:3]), strict=True)]
        return f"{median(sums):,.0f} ms"

    runs = len(old.samples["process_ms"])
    return [
        f"Lambda package, as chalice makes it and pruned (medians of {runs} fresh processes each, in turn)",
        f"| | {old.name} | {new.name} |",
        "|---|---:|---:|",
        row(
            "deployment.zip",
            lambda package: f"{package.contents.compressed / 1e6:.1f} MB ({package.contents.compressed:,} bytes)",
        ),
        row("unpacked", lambda package: f"{package.contents.unpacked / 1e6:.1f} MB"),
        row("files", lambda package: f"{package.contents.files:,}"),
        row("modules (.pyc)", lambda package: f"{package.contents.modules:,}"),
        row("`import app`", ms("import_ms")),
        row("first authenticated `GET /me`", ms("me_ms")),
        row("first MFA verify", ms("verify_ms")),
        row("import + `GET /me` + MFA verify", total),
        row("then reading the bundled metadata", ms("metadata_ms")),
        row("the whole process (wall)", ms("process_ms")),
    ]
