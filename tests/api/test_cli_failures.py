"""The command-line tools fail in one line that says what to do, with a non-zero exit status and
no traceback: an operator's ``python -m keyward`` and the dev stack's ``python -m devstack``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoRegionError
from pynamodb.exceptions import PutError

from devstack.dynamodb import dynamodb_environment
from keyward import exits
from tests.support.process_stack import prepared

PROJECT = Path(__file__).resolve().parents[2]


def _command(module: str, *arguments: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.strip().splitlines()
    return line


@pytest.fixture
def with_tables() -> dict[str, str]:
    """The environment of an operator whose DynamoDB is this test run's."""
    return {**os.environ, **dynamodb_environment(endpoint=prepared().endpoint)}


def test_recounting_an_unknown_organization_says_how_to_create_it(with_tables):
    line = _one_line(_command("keyward", "org", "recount", "nosuch", environment=with_tables))
    assert "no organization 'nosuch'" in line and "python -m keyward org create nosuch" in line


def test_recounting_a_known_organization_still_counts(api, with_tables):
    api.login(org="acme", user="bob")
    done = _command("keyward", "org", "recount", "acme", environment=with_tables)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("acme: 1 members")


def test_an_operator_sets_an_organizations_login_rate_and_takes_it_back(api, capsys):
    from chalicelib.base.models import Organization
    from keyward.__main__ import main

    api.login(org="acme", user="bob")
    capsys.readouterr()  # the login's metric line
    assert main(["org", "login-rate", "acme", "3"]) == 0
    assert Organization.get("acme", consistent_read=True).login_rate == 3
    assert capsys.readouterr().out == "acme: 3 logins a second\n"
    assert main(["org", "login-rate", "acme", "0"]) == 0
    assert Organization.get("acme", consistent_read=True).login_rate == 0
    assert main(["org", "login-rate", "acme", "default"]) == 0
    assert Organization.get("acme", consistent_read=True).login_rate is None
    assert "the deployment's login rate, now 200 a second" in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.parametrize(
    ("org", "rate", "said"),
    [
        ("nosuch", "5", "no organization 'nosuch'"),
        ("acme", "many", "not a login rate: 'many'"),
        ("acme", "-1", "not a login rate: '-1'"),
        ("acme", "2.5", "not a login rate: '2.5'"),
        ("not an org id", "5", "not a usable organization ID"),
    ],
)
def test_a_login_rate_the_operator_cannot_set_is_one_line(api, with_tables, org, rate, said):
    from chalicelib.base.models import Organization

    api.login(org="acme", user="bob")
    line = _one_line(_command("keyward", "org", "login-rate", org, rate, environment=with_tables))
    assert said in line, line
    assert Organization.get("acme", consistent_read=True).login_rate is None


def test_creating_an_organization_without_aws_credentials_says_where_they_come_from(tmp_path):
    # What the shell of an operator who has not configured AWS holds: no credentials anywhere.
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "DYNAMODB_"))}
    environment |= {
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    line = _one_line(_command("keyward", "org", "create", "globex", environment=environment))
    assert line.startswith("error: no AWS credentials found: set AWS_PROFILE"), line


def test_devstack_mds_with_a_path_that_holds_no_file_names_it(tmp_path, with_tables):
    line = _one_line(_command("devstack", "mds", str(tmp_path / "no-blob.jwt"), environment=with_tables))
    assert line == f"no BLOB file at {tmp_path / 'no-blob.jwt'}: pass the path of an existing file"
    blob = tmp_path / "blob.jwt"
    blob.write_text("not a BLOB")
    arguments = ("mds", str(blob), "--trust-root", str(tmp_path))
    assert "no trust root file at" in _one_line(_command("devstack", *arguments, environment=with_tables))


def _failing_with(error: BaseException):
    def main() -> int:
        raise error

    return main


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (NoRegionError(), "error: no AWS region: set AWS_REGION"),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
            "error: could not reach http://127.0.0.1:9: check DYNAMODB_ENDPOINT",
        ),
        (
            PutError(
                "Failed to put item",
                ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no table"}}, "PutItem"),
            ),
            "error: AWS refused PutItem: ResourceNotFoundException: no table (is the KEYWARD_*_TABLE setting",
        ),
        (FileNotFoundError(2, "No such file or directory", "/nowhere"), "error: No such file or directory: /nowhere"),
        (RuntimeError("something unforeseen"), "error: RuntimeError: something unforeseen (run with KEYWARD_DEBUG=1"),
    ],
)
def test_a_failure_is_one_line_that_says_what_to_do(error, said, capsys, monkeypatch):
    monkeypatch.delenv("KEYWARD_DEBUG", raising=False)
    assert exits.run(_failing_with(error)) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(said), line


def test_keyward_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("KEYWARD_DEBUG", "1")
    with pytest.raises(RuntimeError):
        exits.run(_failing_with(RuntimeError("something unforeseen")))
