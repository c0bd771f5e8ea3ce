"""The Lambda authorizer organizations attach to their own API Gateway routes, called with the
events API Gateway sends (REST API payload 1.0, HTTP API payload 2.0) and answering as API
Gateway expects: an IAM policy or a raised "Unauthorized" (1.0), a simple response (2.0)."""

from __future__ import annotations

import copy
import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.provider import authorizer
from tests.support.access_tokens import access_token, foreign_access_token, register_client
from tests.support.authenticator import SoftwareAuthenticator

METHOD_ARN = "arn:aws:execute-api:eu-west-1:123456789012:abcdef123/prod/GET/payroll/runs"
STAGE = "arn:aws:execute-api:eu-west-1:123456789012:abcdef123/prod/*/*"

# API Gateway's REST API REQUEST authorizer event (payload 1.0), as its documentation shows it.
REST_EVENT: dict[str, Any] = {
    "type": "REQUEST",
    "methodArn": METHOD_ARN,
    "resource": "/payroll/runs",
    "path": "/payroll/runs",
    "httpMethod": "GET",
    "headers": {
        "Accept": "application/json",
        "Host": "abcdef123.execute-api.eu-west-1.amazonaws.com",
        "User-Agent": "curl/8.5.0",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    },
    "multiValueHeaders": {"Accept": ["application/json"]},
    "queryStringParameters": None,
    "multiValueQueryStringParameters": None,
    "pathParameters": {},
    "stageVariables": None,
    "requestContext": {
        "resourceId": "05c7jb",
        "resourcePath": "/payroll/runs",
        "httpMethod": "GET",
        "extendedRequestId": "abc=",
        "requestTime": "01/Jan/2026:09:00:00 +0000",
        "path": "/prod/payroll/runs",
        "accountId": "123456789012",
        "protocol": "HTTP/1.1",
        "stage": "prod",
        "domainPrefix": "abcdef123",
        "requestTimeEpoch": 1767258000000,
        "requestId": "c4f3a2b1-0000-4000-8000-000000000000",
        "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
        "domainName": "abcdef123.execute-api.eu-west-1.amazonaws.com",
        "apiId": "abcdef123",
    },
}

# API Gateway's HTTP API Lambda authorizer event (payload 2.0): headers in lower case.
HTTP_EVENT: dict[str, Any] = {
    "version": "2.0",
    "type": "REQUEST",
    "routeArn": METHOD_ARN,
    "identitySource": [],
    "routeKey": "GET /payroll/runs",
    "rawPath": "/payroll/runs",
    "rawQueryString": "",
    "headers": {
        "accept": "application/json",
        "host": "abcdef123.execute-api.eu-west-1.amazonaws.com",
        "user-agent": "curl/8.5.0",
        "x-forwarded-for": "203.0.113.7",
    },
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "abcdef123",
        "domainName": "abcdef123.execute-api.eu-west-1.amazonaws.com",
        "domainPrefix": "abcdef123",
        "http": {
            "method": "GET",
            "path": "/payroll/runs",
            "protocol": "HTTP/1.1",
            "sourceIp": "203.0.113.7",
            "userAgent": "curl/8.5.0",
        },
        "requestId": "Y2ZhYmMxMjM=",
        "routeKey": "GET /payroll/runs",
        "stage": "$default",
        "time": "01/Jan/2026:09:00:00 +0000",
        "timeEpoch": 1767258000000,
    },
    "pathParameters": {},
    "stageVariables": {},
}


def rest_event(token: str | None, *, header: str = "Authorization") -> dict[str, Any]:
    event = copy.deepcopy(REST_EVENT)
    if token is not None:
        event["headers"][header] = f"Bearer {token}"
        event["multiValueHeaders"][header] = [f"Bearer {token}"]
    return event


def http_event(token: str | None) -> dict[str, Any]:
    event = copy.deepcopy(HTTP_EVENT)
    if token is not None:
        event["headers"]["authorization"] = f"Bearer {token}"
        event["identitySource"] = [f"Bearer {token}"]
    return event


def invoke(api, event: dict[str, Any]) -> Any:
    """The function as Lambda runs it (through Chalice's test client); an exception propagates as
    Lambda reports it to API Gateway."""
    return api.client.lambda_.invoke("api_authorizer", event).payload


@pytest.fixture
def bob(api):
    key = SoftwareAuthenticator()
    assert api.add_key(api.login(user="bob"), key).status == 201
    return api.mfa_login(org="acme", user="bob", authenticator=key)


@pytest.fixture
def payroll():
    return register_client("acme")


@pytest.fixture
def mfa_not_required(monkeypatch):
    monkeypatch.setattr(authorizer, "settings", lambda: dataclasses.replace(settings(), authorizer_require_mfa=False))


def _allowed_context(bob) -> dict[str, Any]:
    return {"org": "acme", "user": "bob", "admin": False, "mfa": True}


# --- REST APIs: payload 1.0, an IAM policy ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["access token", "session token"])
def test_a_rest_api_request_with_a_standing_token_is_allowed_on_the_whole_stage(api, bob, payroll, kind):
    token = access_token(bob, payroll) if kind == "access token" else bob.token

    answer = invoke(api, rest_event(token))

    assert answer["principalId"] == "bob"
    assert answer["policyDocument"] == {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": STAGE}],
    }
    context = answer["context"]
    assert {name: context[name] for name in ("org", "user", "admin", "mfa")} == _allowed_context(bob)
    assert isinstance(context["key_checked_at"], int)
    assert abs(context["key_checked_at"] - clock.now().timestamp()) < 60
    # API Gateway takes strings, numbers and booleans only.
    assert all(isinstance(value, str | int | bool) for value in context.values())


def test_the_header_is_found_however_the_client_spelled_it(api, bob):
    answer = invoke(api, rest_event(bob.token, header="authorization"))

    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_an_admin_is_told_as_such(api, admin):
    assert invoke(api, rest_event(admin.token))["context"]["admin"] is True


def _unauthorized(api, event: dict[str, Any]) -> None:
    with pytest.raises(Exception) as raised:
        invoke(api, event)
    # Exactly this message, which API Gateway turns into a 401.
    assert str(raised.value) == "Unauthorized"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer garbage", "Basic Ym9iOnNlY3JldA==", "Bearer kw1.x.y.z.w", "Bearer a.b.c"],
)
def test_a_rest_api_request_without_a_token_that_stands_is_unauthorized(api, authorization):
    event = rest_event(None)
    if authorization is not None:
        event["headers"]["Authorization"] = authorization

    _unauthorized(api, event)


def test_a_rest_api_request_after_logout_is_unauthorized(api, bob, payroll):
    token = access_token(bob, payroll)
    assert api.call("POST", "/auth/logout", token=bob.token).status == 204

    _unauthorized(api, rest_event(token))
    _unauthorized(api, rest_event(bob.token))


def test_enforcement_ends_access_at_the_next_uncached_call(api, admin, bob, payroll, stream):
    token = access_token(bob, payroll)
    assert invoke(api, rest_event(token))["policyDocument"]["Statement"][0]["Effect"] == "Allow"

    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )

    _unauthorized(api, rest_event(token))
    assert stream.drain()
    _unauthorized(api, rest_event(token))


def test_an_expired_or_forged_access_token_is_unauthorized(api, bob, payroll, monkeypatch):
    token = access_token(bob, payroll)
    _unauthorized(api, rest_event(foreign_access_token(bob, payroll)))

    issued = clock.now()
    monkeypatch.setattr(clock, "now", lambda: issued + timedelta(seconds=601))
    _unauthorized(api, rest_event(token))


def test_a_session_waiting_for_its_key_check_is_unauthorized(api, bob):
    _unauthorized(api, rest_event(api.login(user="bob").token))


def test_without_a_key_check_the_member_is_denied_not_unauthorized(api):
    carol = api.login(user="carol")

    answer = invoke(api, rest_event(carol.token))

    # Known, but not enough: an explicit Deny is API Gateway's 403.
    assert answer["principalId"] == "carol"
    assert answer["policyDocument"]["Statement"] == [
        {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": STAGE}
    ]
    assert "context" not in answer


def test_with_mfa_not_required_a_member_without_keys_is_allowed_and_told_so(api, mfa_not_required):
    carol = api.login(user="carol")

    answer = invoke(api, rest_event(carol.token))

    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert answer["context"] == {"org": "acme", "user": "carol", "admin": False, "mfa": False}


def test_an_event_without_a_method_arn_is_unauthorized(api, bob):
    event = rest_event(bob.token)
    event["methodArn"] = "not-an-arn"

    _unauthorized(api, event)


# --- HTTP APIs: payload 2.0, simple responses --------------------------------------------------------


@pytest.mark.parametrize("kind", ["access token", "session token"])
def test_an_http_api_request_with_a_standing_token_is_authorized(api, bob, payroll, kind):
    token = access_token(bob, payroll) if kind == "access token" else bob.token

    answer = invoke(api, http_event(token))

    assert answer["isAuthorized"] is True
    assert {name: answer["context"][name] for name in ("org", "user", "admin", "mfa")} == _allowed_context(bob)
    assert set(answer) == {"isAuthorized", "context"}


@pytest.mark.parametrize("authorization", [None, "Bearer garbage", "Token abc"])
def test_an_http_api_request_without_a_token_that_stands_is_not_authorized(api, authorization):
    event = http_event(None)
    if authorization is not None:
        event["headers"]["authorization"] = authorization

    assert invoke(api, event) == {"isAuthorized": False}


def test_an_http_api_request_after_logout_or_without_a_key_check_is_not_authorized(api, bob):
    carol = api.login(user="carol")
    assert invoke(api, http_event(carol.token)) == {"isAuthorized": False}

    assert invoke(api, http_event(bob.token))["isAuthorized"] is True
    assert api.call("POST", "/auth/logout", token=bob.token).status == 204
    assert invoke(api, http_event(bob.token)) == {"isAuthorized": False}
