"""The local stack end to end: ``python -m devstack run`` on free ports, driven over real HTTP by
the README's curl walk-through and by ``requests``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

from tests.support.local_stack import (
    PROJECT_ROOT,
    LocalStack,
    running_local_stack,
    stack_environment,
)

README = PROJECT_ROOT / "README.md"
WALKTHROUGH_TIMEOUT_SECONDS = 120.0


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

    walkthrough = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _readme_walkthrough()],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=WALKTHROUGH_TIMEOUT_SECONDS,
    )

    report = (
        f"stdout:\n{walkthrough.stdout}\nstderr:\n{walkthrough.stderr}\ndevstack log:\n{local_stack.log.read_text()}"
    )
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


def _readme_walkthrough() -> str:
    section = re.search(r"<!-- walkthrough:start -->(.*?)<!-- walkthrough:end -->", README.read_text(), re.DOTALL)
    assert section is not None, "README.md has no walkthrough markers"
    fenced = re.search(r"^```sh\n(.*?)^```", section.group(1), re.DOTALL | re.MULTILINE)
    assert fenced is not None, "the README's walkthrough has no ```sh block"
    return fenced.group(1)
