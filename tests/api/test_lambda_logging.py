"""keyward's logs as Lambda runs it: the runtime puts its own handler on the root logger and calls
the function's handler with an event and a context; what reaches CloudWatch is what that handler
writes and what the function prints on standard output. Every line keyward writes is one JSON
object naming the invocation's request ID, and the member once the request is authenticated."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import KeywardClient

# The Python runtime's text format and its filter, which adds the request ID to every record.
RUNTIME_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s"
# What a request or its answer holds that no log line may: tokens, secrets, codes, credentials.
SECRET_FIELDS = {
    "token",
    "id_token",
    "secret",
    "code",
    "clientDataJSON",
    "attestationObject",
    "authenticatorData",
    "signature",
}


class _RuntimeHandler(logging.Handler):
    """What the runtime's LambdaLoggerHandler writes to CloudWatch, as lines."""

    def __init__(self) -> None:
        super().__init__()
        self.request_id = ""
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter(RUNTIME_FORMAT, "%Y-%m-%dT%H:%M:%S"))
        self.addFilter(self._add_request_id)

    def _add_request_id(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend(self.format(record).splitlines())


class LambdaRuntime:
    """Invokes keyward's functions as Lambda does, one invocation at a time; its ``http`` speaks
    Chalice's test client's interface, so that a KeywardClient can send its requests through it."""

    def __init__(self, handler: _RuntimeHandler, capsys: pytest.CaptureFixture[str]) -> None:
        from app import app

        self.app = app
        self.handler = handler
        self.capsys = capsys
        self.http = self
        self.request_ids: list[str] = []
        self.sent: list[Any] = []
        self._printed: list[str] = []

    def invoke(self, function: Any, event: dict[str, Any]) -> Any:
        request_id = str(uuid.uuid4())
        self.request_ids.append(request_id)
        self.handler.request_id = request_id
        context = SimpleNamespace(
            aws_request_id=request_id,
            function_name="keyward-dev",
            memory_limit_in_mb=512,
            invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:keyward-dev",
            get_remaining_time_in_millis=lambda: 30_000,
        )
        return function(event, context)

    def request(self, *, method: str, path: str, headers: dict[str, str], body: str | None = None) -> Any:
        """One API Gateway proxy request, as the REST API sends it to the API function."""
        route, _, query = path.partition("?")
        resource, parameters = self._resource_of(route)
        self.sent.append(json.loads(body) if body else None)
        event = {
            "resource": resource,
            "path": route,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "queryStringParameters": dict(re.findall(r"([^&=]+)=([^&]*)", query)) or None,
            "multiValueQueryStringParameters": {k: [v] for k, v in re.findall(r"([^&=]+)=([^&]*)", query)} or None,
            "pathParameters": parameters or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": resource,
                "httpMethod": method,
                "path": "/api" + route,
                "stage": "api",
                "requestId": str(uuid.uuid4()),
                "identity": {"sourceIp": "198.51.100.7", "userAgent": headers.get("user-agent")},
            },
            "body": body,
            "isBase64Encoded": False,
        }
        answer = self.invoke(self.app, event)
        self.sent.append(json.loads(answer["body"]) if answer["body"].startswith("{") else None)
        return SimpleNamespace(status_code=answer["statusCode"], body=answer["body"], headers=answer["headers"])

    def _resource_of(self, path: str) -> tuple[str, dict[str, str]]:
        if path in self.app.routes:
            return path, {}
        for resource in self.app.routes:
            pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(resource))
            found = re.fullmatch(pattern, path)
            if found:
                return resource, found.groupdict()
        raise AssertionError(f"no route for {path}")

    def cloudwatch(self) -> list[str]:
        """Every line the invocations so far sent to CloudWatch: the runtime handler's and the printed."""
        self._printed.extend(self.capsys.readouterr().out.splitlines())
        return self.handler.lines + self._printed

    def keyward_lines(self) -> list[dict[str, Any]]:
        """keyward's lines, each of which must be a JSON object."""
        return [json.loads(line) for line in self.cloudwatch() if line.startswith("{")]

    def log_lines(self) -> list[str]:
        """The lines that are logs, not metrics: a metric is a JSON line with an ``_aws`` member
        (chalicelib/base/metrics.py), which CloudWatch reads as embedded metric format."""
        return [line for line in self.cloudwatch() if "_aws" not in (json.loads(line) if line.startswith("{") else {})]


@pytest.fixture
def runtime(capsys: pytest.CaptureFixture[str]) -> Iterator[LambdaRuntime]:
    handler = _RuntimeHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield LambdaRuntime(handler, capsys)
    finally:
        root.removeHandler(handler)


@pytest.fixture
def lambda_api(runtime: LambdaRuntime, idp: Any) -> KeywardClient:
    return KeywardClient(client=runtime, idp=idp)


def _one_line_saying(runtime: LambdaRuntime, text: str) -> dict[str, Any]:
    lines = [line for line in runtime.log_lines() if text in line]
    assert len(lines) == 1, f"{text!r} was written {len(lines)} times: {lines}"
    return json.loads(lines[0])


def test_a_domain_modules_warning_reaches_cloudwatch_as_one_json_line_with_the_request_and_member(runtime, lambda_api):
    key = SoftwareAuthenticator()
    bob = lambda_api.login(user="bob")
    assert lambda_api.add_key(bob, key).status == 201
    lambda_api.mfa_login(org="acme", user="bob", authenticator=key)
    key.sign_count = 0  # a clone that lags behind
    pending = lambda_api.login(user="bob")
    options = lambda_api.mfa_options(pending).body

    reply = lambda_api.mfa_verify(pending, options["challenge_id"], key.authenticate(options["publicKey"]))

    assert reply.code == "SignCountRegression"
    line = _one_line_saying(runtime, "sign-count regression")
    assert line["level"] == "WARNING" and line["logger"] == "keyward.mfa"
    assert line["function_request_id"] == runtime.request_ids[-1]
    assert (line["org"], line["user"]) == ("acme", "bob")


def test_each_refusal_is_logged_once_at_info_with_its_reason_code(runtime, lambda_api):
    assert lambda_api.call("GET", "/me").code == "MissingToken"
    bob = lambda_api.login(user="bob")
    assert lambda_api.call("GET", "/org/mfa", token=bob.token).status == 403

    missing = _one_line_saying(runtime, "MissingToken")
    assert (missing["level"], missing["reason"], missing["status"], missing["route"]) == (
        "INFO",
        "MissingToken",
        401,
        "/me",
    )
    assert missing["function_request_id"] == runtime.request_ids[0] and "user" not in missing
    [refused] = [line for line in runtime.keyward_lines() if line.get("route") == "/org/mfa" and "_aws" not in line]
    assert refused["status"] == 403 and refused["reason"]
    assert (refused["org"], refused["user"], refused["function_request_id"]) == ("acme", "bob", runtime.request_ids[-1])
    # Each is counted once as well, in a line of its own that is a metric, not a log.
    counted = [line for line in runtime.keyward_lines() if "_aws" in line and line.get("Reason") == "MissingToken"]
    assert [line["Refusals"] for line in counted] == [1]


def test_an_invocation_names_no_member_of_the_one_before(runtime, lambda_api):
    bob = lambda_api.login(user="bob")
    assert lambda_api.call("GET", "/org/mfa", token=bob.token).status == 403
    assert lambda_api.call("GET", "/me", token="not-a-session").status == 401

    # Its log line and its metric line (the refusal's count) alike.
    lines = [line for line in runtime.keyward_lines() if line["function_request_id"] == runtime.request_ids[-1]]
    [logged] = [line for line in lines if "_aws" not in line]
    assert logged["route"] == "/me" and len(lines) == 2
    assert all("org" not in line and "user" not in line for line in lines)


def test_the_stream_functions_failures_reach_cloudwatch_with_their_request_id(runtime, lambda_api):
    from app import end_sessions_on_enforcement

    lambda_api.login(user="bob")
    typo = {
        "eventName": "MODIFY",
        "dynamodb": {
            "SequenceNumber": "42",
            "OldImage": {"org_id": {"S": "acme"}, "mfa_enforced": {"BOOL": False}},
            "NewImage": {"org_id": {"S": "acme"}, "mfa_enforced": {"S": "true"}},
        },
    }

    reply = runtime.invoke(end_sessions_on_enforcement, {"Records": [typo]})

    assert reply == {"batchItemFailures": [{"itemIdentifier": "42"}]}
    line = _one_line_saying(runtime, "record 42 failed")
    assert line["level"] == "ERROR" and line["function_request_id"] == runtime.request_ids[-1]
    assert "mfa_enforced was set to" in line["exception"]


def test_the_scheduled_refresh_logs_a_failed_download_with_its_request_id(runtime, monkeypatch, tmp_path):
    from app import refresh_authenticator_metadata
    from chalicelib.background import metadata_refresh
    from chalicelib.base.config import settings

    unreachable = dataclasses.replace(settings(), mds_url=(tmp_path / "no-such-blob").as_uri())
    monkeypatch.setattr(metadata_refresh, "settings", lambda: unreachable)
    event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events"}
    event |= {"account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": []}
    event |= {"detail": {}}

    with pytest.raises(OSError):
        runtime.invoke(refresh_authenticator_metadata, event)

    line = _one_line_saying(runtime, "could not download the metadata BLOB")
    assert line["level"] == "ERROR" and line["function_request_id"] == runtime.request_ids[-1]


def _secret_values(document: Any) -> Iterator[str]:
    """The values of SECRET_FIELDS anywhere in a request's or an answer's body."""
    if isinstance(document, dict):
        for name, value in document.items():
            if name in SECRET_FIELDS and isinstance(value, str) and len(value) >= 8:
                yield value
            yield from _secret_values(value)
    elif isinstance(document, list):
        for value in document:
            yield from _secret_values(value)


def test_no_token_secret_code_or_credential_reaches_the_logs(runtime, lambda_api, idp):
    logging.getLogger("keyward").setLevel(logging.DEBUG)
    try:
        key = SoftwareAuthenticator()
        alice = lambda_api.login(user="alice", admin=True)
        assert lambda_api.add_key(alice, key).status == 201
        alice = lambda_api.mfa_login(org="acme", user="alice", authenticator=key, admin=True)
        created = lambda_api.call("POST", "/org/backup-credentials", token=alice.token)
        assert created.status == 201, created.body
        signed_in = lambda_api.call(
            "POST", "/auth/backup-login", body={"key_id": created.body["key_id"], "secret": created.body["secret"]}
        )
        assert signed_in.status == 200, signed_in.body
        wrong = created.body["secret"][:-2] + ("BB" if created.body["secret"].endswith("AA") else "AA")
        key_id = created.body["key_id"]
        refused = lambda_api.call("POST", "/auth/backup-login", body={"key_id": key_id, "secret": wrong})
        assert refused.status == 401
        forged = SoftwareAuthenticator(credential_id=key.credential_id)
        pending = lambda_api.login(user="alice", admin=True)
        options = lambda_api.mfa_options(pending).body
        forgery = forged.authenticate(options["publicKey"])
        assert lambda_api.mfa_verify(pending, options["challenge_id"], forgery).status == 401
    finally:
        logging.getLogger("keyward").setLevel(logging.INFO)

    secrets = {value for body in runtime.sent for value in _secret_values(body)}
    assert {created.body["secret"], alice.token, signed_in.body["token"]} <= secrets
    logged = "\n".join(runtime.cloudwatch())
    assert "refused POST /auth/backup-login" in logged and "refused POST /auth/mfa/verify" in logged
    for secret in secrets:
        assert secret not in logged, f"{secret[:12]}... was logged"
