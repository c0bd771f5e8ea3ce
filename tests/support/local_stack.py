"""Starting and stopping ``python -m devstack run`` on free ports, for tests that drive the local
stack over real HTTP. A test module wraps :func:`running_local_stack` in a module-scoped fixture,
so its tests share one stack."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest
import requests

from devstack.environment import local_environment

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 60.0
# devstack gives chalice two 5-second grace periods; it needs a little more to finish itself.
STOP_TIMEOUT_SECONDS = 15.0
# conftest points this process at its own in-process moto; a stack that inherited those
# variables would use that DynamoDB (DYNAMODB_ENDPOINT set means "don't start moto").
_TEST_PROCESS_VARIABLES = frozenset(local_environment(endpoint="", jwks_json=""))


class LocalStack(NamedTuple):
    api: str
    log: Path
    # The stack's own DynamoDB (moto), e.g. to look at its tables behind the API's back.
    dynamodb: str
    # The demo app: a relying party of the demo organization (devstack/demo_app.py).
    demo: str
    # The process that runs it all: `python -m devstack run`, or `make run`.
    pid: int


@contextmanager
def running_local_stack(log_directory: Path) -> Iterator[LocalStack]:
    """``python -m devstack run`` on free ports until the block ends; everything it started is
    stopped afterwards, whatever happens."""
    port, dynamodb_port, demo_port = free_ports(3)
    log = log_directory / "devstack.log"
    command = [
        sys.executable,
        "-m",
        "devstack",
        "run",
        "--port",
        str(port),
        "--dynamodb-port",
        str(dynamodb_port),
        "--demo-port",
        str(demo_port),
        "--no-autoreload",
    ]
    with log.open("wb") as output:
        # Its own process group, so teardown reaches everything it started.
        devstack = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=stack_environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        api = f"http://localhost:{port}"
        _wait_for_api(api=api, devstack=devstack, log=log)
        yield LocalStack(
            api=api,
            log=log,
            dynamodb=f"http://127.0.0.1:{dynamodb_port}",
            demo=f"http://localhost:{demo_port}",
            pid=devstack.pid,
        )
    finally:
        _stop(devstack)


@contextmanager
def running_make_run(log_directory: Path) -> Iterator[LocalStack]:
    """``make run`` on free ports, as a newcomer starts it (chalice autoreloading), until the block
    ends; then stopped as Ctrl-C stops it, and everything it started must be gone."""
    port, dynamodb_port, demo_port = free_ports(3)
    log = log_directory / "make-run.log"
    arguments = f"--port {port} --dynamodb-port {dynamodb_port} --demo-port {demo_port}"
    with log.open("wb") as output:
        # Its own process group, as a terminal's foreground job is: Ctrl-C reaches make and devstack.
        make = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"DEVSTACK_ARGS={arguments}"],
            cwd=PROJECT_ROOT,
            env=stack_environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started: list[int] = []
    try:
        api = f"http://localhost:{port}"
        _wait_for_api(api=api, devstack=make, log=log)
        started = descendants(make.pid)
        yield LocalStack(
            api=api,
            log=log,
            dynamodb=f"http://127.0.0.1:{dynamodb_port}",
            demo=f"http://localhost:{demo_port}",
            pid=make.pid,
        )
    finally:
        left = _interrupt(make, started=[*started, *descendants(make.pid)])
    assert not left, f"make run left processes running after Ctrl-C: {left}\n{log.read_text()}"


def descendants(root: int) -> list[int]:
    """The processes below ``root``, children first."""
    children: dict[int, list[int]] = {}
    for pid, ppid, _ in _processes():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    parents = [root]
    while parents:
        below = [child for parent in parents for child in children.get(parent, [])]
        found.extend(below)
        parents = below
    return found


def chalice_workers(root: int) -> list[int]:
    """The processes below ``root`` that serve chalice local's requests: its reloader starts each
    with ``CHALICE_WORKER`` set, and a new one whenever it restarts the server."""
    workers = []
    for pid in descendants(root):
        try:
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"CHALICE_WORKER=true" in environment:
            workers.append(pid)
    return workers


def _interrupt(make: subprocess.Popen[bytes], *, started: list[int]) -> list[int]:
    """Ctrl-C ``make run``; return the processes it started that outlived it (then killed)."""
    try:
        os.killpg(make.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    try:
        make.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    alive = set(started)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if _alive(pid)}
        time.sleep(0.1)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if make.poll() is None:
        os.killpg(make.pid, signal.SIGKILL)
    make.wait()
    return sorted(alive)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stack_environment() -> dict[str, str]:
    """This process's environment without what points it at its own DynamoDB, and with localhost
    out of reach of any proxy: what the stack, and commands run next to it, get."""
    environment = {name: value for name, value in os.environ.items() if name not in _TEST_PROCESS_VARIABLES}
    # curl honours http_proxy; localhost must be reached directly.
    bypass = ",".join(
        filter(None, [environment.get("NO_PROXY") or environment.get("no_proxy"), "localhost", "127.0.0.1"])
    )
    return {**environment, "NO_PROXY": bypass, "no_proxy": bypass}


def free_ports(count: int) -> list[int]:
    # Held open together so the kernel hands out distinct ports.
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _wait_for_api(*, api: str, devstack: subprocess.Popen[bytes], log: Path) -> None:
    # 401 for an anonymous /me means chalice serves keyward, not merely that the port is open.
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    with requests.Session() as http:
        http.trust_env = False
        while time.monotonic() < deadline:
            if devstack.poll() is not None:
                pytest.fail(f"devstack run exited with {devstack.returncode}:\n{log.read_text()}")
            try:
                if http.get(f"{api}/me", timeout=2).status_code == 401:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
    pytest.fail(f"keyward did not answer at {api}/me within {START_TIMEOUT_SECONDS}s:\n{log.read_text()}")


def _stop(devstack: subprocess.Popen[bytes]) -> None:
    # devstack starts chalice in a session of its own; note its group now, in case devstack
    # cannot stop it and has to be killed.
    groups = [devstack.pid, *_child_process_groups(devstack.pid)]
    try:
        os.killpg(devstack.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        devstack.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    devstack.wait()


def _child_process_groups(parent: int) -> list[int]:
    return [pgid for _, ppid, pgid in _processes() if ppid == parent]


def _processes() -> Iterator[tuple[int, int, int]]:
    """Each process's ID, its parent's and its process group's."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces and parentheses; the fields after its last ")" don't.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        yield int(stat.parent.name), int(fields[1]), int(fields[2])
