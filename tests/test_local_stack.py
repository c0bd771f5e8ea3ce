"""The local stack end to end: ``python -m devstack run`` on free ports, driven over real HTTP by
the README's curl walk-through and by ``requests``."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest
import requests

from devstack.environment import local_environment

PROJECT_ROOT = Path(__file__).resolve().parent.parent
README = PROJECT_ROOT / "README.md"
START_TIMEOUT_SECONDS = 60.0
# devstack gives chalice two 5-second grace periods; it needs a little more to finish itself.
STOP_TIMEOUT_SECONDS = 15.0
WALKTHROUGH_TIMEOUT_SECONDS = 120.0
# conftest points this process at its own in-process moto; a stack that inherited those
# variables would use that DynamoDB (DYNAMODB_ENDPOINT set means "don't start moto").
_TEST_PROCESS_VARIABLES = frozenset(local_environment(endpoint="", jwks_json=""))


class LocalStack(NamedTuple):
    api: str
    log: Path


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    port, dynamodb_port = _free_ports(2)
    log = tmp_path_factory.mktemp("local-stack") / "devstack.log"
    command = [
        sys.executable, "-m", "devstack", "run",
        "--port", str(port), "--dynamodb-port", str(dynamodb_port), "--no-autoreload",
    ]
    with log.open("wb") as output:
        # Its own process group, so teardown reaches everything it started.
        devstack = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=_stack_environment(), stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        api = f"http://localhost:{port}"
        _wait_for_api(api=api, devstack=devstack, log=log)
        yield LocalStack(api=api, log=log)
    finally:
        _stop(devstack)


def test_the_readme_walkthrough_runs_against_the_local_stack(local_stack, tmp_path):
    key_file = tmp_path / "keys" / "default.json"
    environment = {
        **_stack_environment(),
        "API": local_stack.api,
        "PY": sys.executable,
        # A key of its own, so the test never replaces a developer's .devstack/keys/default.json.
        "KEYWARD_DEV_KEY_FILE": str(key_file),
    }

    walkthrough = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _readme_walkthrough()],
        cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=WALKTHROUGH_TIMEOUT_SECONDS,
    )

    report = f"stdout:\n{walkthrough.stdout}\nstderr:\n{walkthrough.stderr}\ndevstack log:\n{local_stack.log.read_text()}"
    assert walkthrough.returncode == 0, report
    # Step 3 prints the bare state; step 4 then prints the key list, and nothing else follows.
    assert "\nmfa_required\n" in walkthrough.stdout, report
    keys_listing = json.loads(walkthrough.stdout.split("\nmfa_required\n", 1)[1])
    [demo_key] = [key for key in keys_listing["keys"] if key["name"] == "Demo key"]
    assert demo_key["last_used_at"] is not None, report

    stored = json.loads(key_file.read_text())
    assert stored["sign_count"] == 1
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.parent.stat().st_mode & 0o777 == 0o700


def test_the_local_stack_refuses_bad_requests_with_reason_codes(local_stack):
    with requests.Session() as http:
        http.trust_env = False  # a proxy from the environment must not stand between us and localhost

        wrong_token = http.get(f"{local_stack.api}/me", headers={"authorization": "Bearer not-a-keyward-token"}, timeout=10)
        too_large = http.post(
            f"{local_stack.api}/auth/login", data=json.dumps({"id_token": "x" * (64 * 1024)}),
            headers={"content-type": "application/json"}, timeout=10,
        )

    assert wrong_token.status_code == 401
    assert wrong_token.json()["Code"] == "InvalidToken"
    assert too_large.status_code == 413
    assert too_large.json()["Code"] == "BodyTooLarge"


def _readme_walkthrough() -> str:
    section = re.search(r"<!-- walkthrough:start -->(.*?)<!-- walkthrough:end -->", README.read_text(), re.DOTALL)
    assert section is not None, "README.md has no walkthrough markers"
    fenced = re.search(r"^```sh\n(.*?)^```", section.group(1), re.DOTALL | re.MULTILINE)
    assert fenced is not None, "the README's walkthrough has no ```sh block"
    return fenced.group(1)


def _stack_environment() -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if name not in _TEST_PROCESS_VARIABLES}
    # curl honours http_proxy; localhost must be reached directly.
    bypass = ",".join(filter(None, [environment.get("NO_PROXY") or environment.get("no_proxy"), "localhost", "127.0.0.1"]))
    return {**environment, "NO_PROXY": bypass, "no_proxy": bypass}


def _free_ports(count: int) -> list[int]:
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
    groups: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces and parentheses; the fields after its last ")" don't.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ppid, pgid = int(fields[1]), int(fields[2])
        if ppid == parent:
            groups.append(pgid)
    return groups
