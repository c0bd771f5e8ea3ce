"""The access tokens the token endpoint really issues (Authlib's code flow with PKCE, not tokens
minted by the test), judged by token introspection and the API Gateway authorizer: active and
allowed while their keyward session stands, inactive and refused once a logout, an enforcement
or the member's offboarding ended it. A keyward session token goes the same way."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import KeywardClient, Member
from tests.support.oidc import register_client, signed_in_through_keyward

METHOD_ARN = "arn:aws:execute-api:eu-west-1:123456789012:abcdef123/prod/GET/payroll/runs"


@pytest.fixture
def bob(api: KeywardClient) -> Member:
    first = api.login(user="bob")
    assert api.add_key(first, SoftwareAuthenticator()).status == 201
    return api.mfa_login(org="acme", user="bob", authenticator=first.authenticators[0])


@pytest.fixture
def payroll() -> tuple[str, str]:
    client_id, secret = register_client()
    assert secret is not None
    return client_id, secret


def _issued(api: KeywardClient, member: Member, payroll: tuple[str, str]) -> str:
    client_id, secret = payroll
    token = signed_in_through_keyward(api, member.token, member.authenticators[0], client_id=client_id, secret=secret)
    return str(token["access_token"])


def _introspect(api: KeywardClient, payroll: tuple[str, str], token: str) -> dict[str, Any]:
    client_id, secret = payroll
    basic = base64.b64encode(f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()).decode()
    response = api.client.http.request(
        method="POST",
        path="/oidc/introspect",
        headers={"content-type": "application/x-www-form-urlencoded", "authorization": f"Basic {basic}"},
        body=urlencode({"token": token}).encode(),
    )
    assert response.status_code == 200, response.body
    return dict(json.loads(response.body))


def _authorizer(api: KeywardClient, token: str) -> str:
    """What API Gateway (REST API, payload 1.0) makes of the token: Allow, Deny or Unauthorized."""
    event = {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "headers": {"Authorization": f"Bearer {token}"},
        "httpMethod": "GET",
        "path": "/payroll/runs",
    }
    try:
        answer = api.client.lambda_.invoke("api_authorizer", event).payload
    except Exception as error:  # the function raised: API Gateway's 401
        assert str(error) == "Unauthorized", error
        return "Unauthorized"
    assert answer["principalId"] == "bob"
    [statement] = answer["policyDocument"]["Statement"]
    return str(statement["Effect"])


def _http_authorizer(api: KeywardClient, token: str) -> bool:
    """HTTP API (payload 2.0, simple responses): isAuthorized."""
    event = {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": METHOD_ARN,
        "headers": {"authorization": f"Bearer {token}"},
    }
    return bool(api.client.lambda_.invoke("api_authorizer", event).payload["isAuthorized"])


def _stands(api: KeywardClient, payroll: tuple[str, str], token: str) -> None:
    body = _introspect(api, payroll, token)
    assert body["active"] is True and (body["sub"], body["org"], body["mfa"]) == ("bob", "acme", True), body
    assert _authorizer(api, token) == "Allow"
    assert _http_authorizer(api, token) is True


def _ended(api: KeywardClient, payroll: tuple[str, str], token: str) -> None:
    assert _introspect(api, payroll, token) == {"active": False}
    assert _authorizer(api, token) == "Unauthorized"
    assert _http_authorizer(api, token) is False


def test_an_issued_access_token_stands_with_its_session_until_logout(
    api: KeywardClient, bob: Member, payroll: tuple[str, str]
) -> None:
    access = _issued(api, bob, payroll)
    body = _introspect(api, payroll, access)
    assert (body["client_id"], body["sid"]) == (payroll[0], bob.token.split(".")[3])
    _stands(api, payroll, access)
    _stands(api, payroll, bob.token)

    assert api.call("POST", "/auth/logout", token=bob.token).status == 204

    _ended(api, payroll, access)
    _ended(api, payroll, bob.token)


def test_an_issued_access_token_ends_with_enforcement_before_and_after_the_stream(
    api: KeywardClient, admin: Member, bob: Member, payroll: tuple[str, str], stream: Any
) -> None:
    access = _issued(api, bob, payroll)
    _stands(api, payroll, access)

    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    _ended(api, payroll, access)
    _ended(api, payroll, bob.token)
    assert stream.drain()
    _ended(api, payroll, access)
    _ended(api, payroll, bob.token)


def test_an_issued_access_token_ends_with_the_members_offboarding(
    api: KeywardClient, admin: Member, bob: Member, payroll: tuple[str, str]
) -> None:
    access = _issued(api, bob, payroll)
    _stands(api, payroll, access)

    assert api.call("DELETE", "/org/members/bob", token=admin.token).status == 204

    _ended(api, payroll, access)
    _ended(api, payroll, bob.token)


def test_the_token_endpoint_reads_the_codes_session_in_one_round_trip(
    api: KeywardClient, bob: Member, payroll: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session, organization and member come in one transactional read, as every request reads them."""
    from botocore import handlers

    from chalicelib.base import models

    operations: list[str] = []

    def fresh_connections() -> None:
        for model in models.ALL_MODELS:
            model._connection = None
        models.connection.cache_clear()

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        body = params.get("body") or b"{}"
        request = json.loads(body if isinstance(body, str) else body.decode())
        tables = [item["Get"]["TableName"] for item in request.get("TransactItems", []) if "Get" in item]
        operations.append(f"{model.name}:{','.join(tables) or request.get('TableName', '')}")

    from chalicelib.provider import token_endpoint

    redeem = token_endpoint.exchange

    def recorded(**kwargs: Any) -> Any:
        handlers.BUILTIN_HANDLERS.append(("before-call.dynamodb", record))
        fresh_connections()
        try:
            return redeem(**kwargs)
        finally:
            handlers.BUILTIN_HANDLERS.remove(("before-call.dynamodb", record))
            fresh_connections()

    monkeypatch.setattr(token_endpoint, "exchange", recorded)
    _issued(api, bob, payroll)

    reads = [operation for operation in operations if not operation.startswith(("TransactWriteItems", "PutItem"))]
    session_reads = [operation for operation in reads if "sessions" in operation or "members" in operation]
    assert len(session_reads) == 1, operations
    assert session_reads[0].startswith("TransactGetItems:"), operations
    assert not any(operation.startswith("GetItem:") and "orgs" in operation for operation in reads), operations
