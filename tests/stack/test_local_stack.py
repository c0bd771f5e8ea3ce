"""The local stack end to end: ``python -m devstack run`` on free ports, driven over real HTTP by
the README's curl walk-through and by ``requests``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest
import requests

from tests.support.local_stack import (
    LocalStack,
    free_ports,
    running_local_stack,
    stack_environment,
)
from tests.support.walkthrough import run_readme_walkthrough, walked_through


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_local_stack(tmp_path_factory.mktemp("local-stack")) as stack:
        yield stack


def test_the_readme_walkthrough_runs_against_the_local_stack(local_stack, tmp_path):
    key_file = tmp_path / "keys" / "default.json"
    environment = {
        **stack_environment(),
        "API": local_stack.api,
        "PY": sys.executable,
        # A key of its own, so the test never replaces a developer's .devstack/keys/default.json.
        "KEYWARD_DEV_KEY_FILE": str(key_file),
    }

    walkthrough = run_readme_walkthrough(directory=tmp_path, environment=environment)

    walked_through(
        walkthrough,
        report=f"stdout:\n{walkthrough.stdout}\nstderr:\n{walkthrough.stderr}\n"
        f"devstack log:\n{local_stack.log.read_text()}",
    )
    stored = json.loads(key_file.read_text())
    assert stored["sign_count"] == 1
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.parent.stat().st_mode & 0o777 == 0o700


def test_the_readme_walkthrough_stops_at_the_first_failed_step(tmp_path):
    # Nothing listens on the port: the first request fails, and so must the script, saying why;
    # without pipefail `curl | jq` succeeds with jq, and the script would walk on and exit 0.
    [closed_port] = free_ports(1)
    environment = {
        **stack_environment(),
        "API": f"http://localhost:{closed_port}",
        "PY": sys.executable,
        "KEYWARD_DEV_KEY_FILE": str(tmp_path / "keys" / "default.json"),
    }

    walkthrough = run_readme_walkthrough(directory=tmp_path, environment=environment)

    assert walkthrough.returncode != 0
    assert walkthrough.stdout == ""
    assert "curl: (7)" in walkthrough.stderr, walkthrough.stderr
    assert not (tmp_path / "keys").exists()


def test_the_local_stack_refuses_bad_requests_with_reason_codes(local_stack):
    with requests.Session() as http:
        http.trust_env = False  # a proxy from the environment must not stand between us and localhost

        wrong_token = http.get(
            f"{local_stack.api}/me", headers={"authorization": "Bearer not-a-keyward-token"}, timeout=10
        )
        too_large = http.post(
            f"{local_stack.api}/auth/login",
            data=json.dumps({"id_token": "x" * (64 * 1024)}),
            headers={"content-type": "application/json"},
            timeout=10,
        )

    assert wrong_token.status_code == 401
    assert wrong_token.json()["Code"] == "InvalidToken"
    assert too_large.status_code == 413
    assert too_large.json()["Code"] == "BodyTooLarge"
