"""Every authorization, refusal and token issuance of the OpenID provider is an audit event, and so
reaches EventBridge through the outbox like every other event; none holds a code, a token, a PKCE
verifier, a client secret or the IdP's hint. And each refusal the issue lists, on the code path
and on Entra's: its OAuth error, and what is stored (the request answered, no code)."""

# ruff: noqa: F811  (tests name the imported bus_queue fixture)

from __future__ import annotations

import base64
import json
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.base.config import settings
from chalicelib.base.models import AuditEvent, Authorization
from tests.api.test_outbox import bus_queue  # noqa: F401  (the fixture: an SQS queue fed by keyward's bus)
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import KeywardClient, Member, Reply, enforce_in_table
from tests.support.oidc import (
    ENTRA_REDIRECT_URI,
    ISSUER,
    REDIRECT_URI,
    authorization_request,
    callback_url,
    key_check,
    local_path,
    register_client,
    relying_party,
    request_id_of,
)

TENANT = "9122040d-6c67-4c5b-b112-36a304b66dad"
ENTRA_CLAIMS = {
    "id_token": {
        "acr": {"essential": True, "values": ["possessionorinherence"]},
        "amr": {"essential": True, "values": ["fido", "hwk", "otp"]},
    }
}


@pytest.fixture
def bob(api: KeywardClient) -> Member:
    first = api.login(user="bob")
    assert api.add_key(first, SoftwareAuthenticator()).status == 201
    return api.mfa_login(org="acme", user="bob", authenticator=first.authenticators[0])


def _events(action: str) -> list[AuditEvent]:
    return [event for event in logged_events("acme") if event.action == action]


def _refusals() -> list[dict[str, Any]]:
    return [event.details.as_dict() for event in _events("oidc.refused")]


def _codes() -> list[Authorization]:
    return [item for item in Authorization.scan(consistent_read=True) if item.authorization_id.startswith("code#")]


def _requests() -> list[Authorization]:
    return [item for item in Authorization.scan(consistent_read=True) if item.authorization_id.startswith("request#")]


def _redeem(api: KeywardClient, client_id: str, secret: str, **form: str) -> tuple[int, dict[str, Any]]:
    body = urlencode({"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI, **form})
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = api.client.http.request(
        method="POST",
        path="/oidc/token",
        headers={"content-type": "application/x-www-form-urlencoded", "authorization": f"Basic {basic}"},
        body=body.encode(),
    )
    return response.status_code, json.loads(response.body)


def _code(api: KeywardClient, member: Member) -> tuple[str, str, str, str]:
    client_id, secret = register_client()
    assert secret is not None
    session = relying_party(api, client_id=client_id, secret=secret)
    verifier = secrets.token_urlsafe(48)
    request_id, _ = authorization_request(api, session, verifier)
    answer = key_check(api, member.token, request_id, member.authenticators[0])
    assert answer["refusal"] is None, answer
    return client_id, secret, answer["done"]["params"]["code"], verifier


# --- Entra ---------------------------------------------------------------------------------------


@pytest.fixture
def entra(api: KeywardClient) -> tuple[str, Any]:
    client_id, _ = register_client(
        client_id=settings().oidc_audience, secret=None, redirect_uris=(ENTRA_REDIRECT_URI,), flows=("id_token",)
    )
    return client_id, relying_party(api, client_id=client_id, secret=None, redirect_uri=ENTRA_REDIRECT_URI)


def _hint(idp: Any, *, user: str = "bob", org: str = "acme", lifetime_seconds: int = -1) -> str:
    return str(idp.mint(org=org, user=user, lifetime_seconds=lifetime_seconds, tid=TENANT, oid=secrets.token_hex(8)))


def _entra_request(api: KeywardClient, session: Any, hint: str, *, nonce: str = "n-1", state: str = "st") -> Reply:
    url, _ = session.create_authorization_url(
        f"{ISSUER}/oidc/authorize",
        response_type="id_token",
        response_mode="form_post",
        nonce=nonce,
        state=state,
        id_token_hint=hint,
        claims=json.dumps(ENTRA_CLAIMS),
    )
    return api.call(
        "POST",
        "/oidc/authorize",
        raw=urlsplit(url).query,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


def _form_fields(page: Reply) -> dict[str, str]:
    import html
    import re

    assert page.status == 200, page.body
    assert f'action="{ENTRA_REDIRECT_URI}"' in page.body
    return {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.body)
    }


# --- audit: authorizations and token issuance ----------------------------------------------------


def test_a_code_flow_is_audited_from_authorization_to_token_and_reaches_the_bus(
    api: KeywardClient, bob: Member, audit_stream: Any, bus_queue: Any
) -> None:
    audit_stream.drain()
    bus_queue()  # what the sign-in sent
    client_id, secret, code, verifier = _code(api, bob)
    status, issued = _redeem(api, client_id, secret, code=code, code_verifier=verifier)
    assert status == 200
    status, _ = _redeem(api, client_id, secret, code=code, code_verifier=verifier)
    assert status == 400

    [authorized] = _events("oidc.authorized")
    session_id = bob.token.split(".")[3]
    assert (authorized.user_id, authorized.target) == ("bob", client_id)
    assert authorized.details.as_dict() == {
        "client_id": client_id,
        "response_type": "code",
        "session_id": session_id,
        "acr": "possessionorinherence",
        "amr": ["hwk", "user"],
    }
    [token_issued] = _events("oidc.token_issued")
    assert token_issued.details.as_dict() == {"client_id": client_id, "session_id": session_id}
    assert _refusals() == [{"client_id": client_id, "reason": "code_reused", "error": "invalid_grant"}]

    audit_stream.drain()
    delivered = [event for event in bus_queue() if event["detail-type"].startswith("oidc.")]
    assert sorted(event["detail-type"] for event in delivered) == [
        "oidc.authorized",
        "oidc.refused",
        "oidc.token_issued",
    ]
    assert all(event["detail"]["org_id"] == "acme" for event in delivered)

    stored = json.dumps([event.details.as_dict() for event in AuditEvent.scan(consistent_read=True)])
    for secret_value in (code, verifier, secret, issued["access_token"], issued["id_token"], bob.token):
        assert secret_value not in stored
    assert json.dumps(delivered).count(code) == 0 and json.dumps(delivered).count(verifier) == 0


def test_entras_authorization_is_audited_without_the_hint_or_the_id_token(
    api: KeywardClient, idp: Any, entra: tuple[str, Any], bob: Member, audit_stream: Any, bus_queue: Any
) -> None:
    client_id, session = entra
    hint = _hint(idp)
    request_id = request_id_of(_entra_request(api, session, hint))
    token = api.call("POST", f"/oidc/authorize/{request_id}/session").body["token"]
    answer = key_check(api, token, request_id, bob.authenticators[0])
    assert answer["refusal"] is None
    id_token = answer["done"]["params"]["id_token"]

    [authorized] = _events("oidc.authorized")
    assert authorized.details["response_type"] == "id_token" and authorized.details["client_id"] == client_id
    assert authorized.details["amr"] == ["hwk"]
    stored = json.dumps([event.details.as_dict() for event in AuditEvent.scan(consistent_read=True)])
    assert hint not in stored and id_token not in stored and hint.split(".")[2] not in stored
    audit_stream.drain()
    assert "oidc.authorized" in [event["detail-type"] for event in bus_queue()]


# --- refusals: the code path ---------------------------------------------------------------------


def test_an_unregistered_redirect_uri_stores_nothing_and_redirects_nowhere(api: KeywardClient) -> None:
    client_id, secret = register_client()
    for wrong in (
        "https://evil.example/callback",
        f"{REDIRECT_URI}/x",
        f"{REDIRECT_URI}?next=x",
        "http://app.example/callback",
    ):
        session = relying_party(api, client_id=client_id, secret=secret, redirect_uri=wrong)
        url, _ = session.create_authorization_url(f"{ISSUER}/oidc/authorize", code_verifier=secrets.token_urlsafe(48))
        page = api.call("GET", local_path(url))
        assert (page.status, "InvalidRedirectUri" in page.body) == (400, True), wrong
        assert "location" not in {name.lower() for name in page.headers}
        assert wrong not in page.body
    assert _requests() == []


def test_a_request_without_pkce_is_audited_and_stores_no_request(api: KeywardClient) -> None:
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    session.code_challenge_method = None
    url, _ = session.create_authorization_url(f"{ISSUER}/oidc/authorize")
    page = api.call("GET", local_path(url))
    assert page.status == 302
    assert _requests() == []
    assert _refusals() == [
        {"client_id": client_id, "reason": "InvalidAuthorizationRequest", "error": "invalid_request"}
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"code_verifier": None}, "pkce_mismatch"),
        ({"code_verifier": "wrong"}, "pkce_mismatch"),
        ({"redirect_uri": "https://app.example/other"}, "redirect_uri_mismatch"),
    ],
)
def test_a_refused_redemption_is_audited_and_leaves_the_code_unused(
    api: KeywardClient, bob: Member, change: dict[str, str | None], reason: str
) -> None:
    client_id, secret, code, verifier = _code(api, bob)
    form = {"code": code, "code_verifier": verifier}
    for name, value in change.items():
        if value is None:
            form.pop(name)
        else:
            form[name] = secrets.token_urlsafe(48) if value == "wrong" else value
    status, body = _redeem(api, client_id, secret, **form)
    assert (status, body["error"]) == (400, "invalid_grant")
    assert _refusals() == [{"client_id": client_id, "reason": reason, "error": "invalid_grant"}]
    [item] = _codes()
    assert item.used_at is None
    assert _events("oidc.token_issued") == []


def test_a_code_redeemed_by_another_organizations_client_is_refused_and_audited(
    api: KeywardClient, bob: Member
) -> None:
    client_id, _, code, verifier = _code(api, bob)
    other_id, other_secret = register_client(org_id="globex")
    assert other_secret is not None
    status, body = _redeem(api, other_id, other_secret, code=code, code_verifier=verifier)
    assert (status, body["error"]) == (400, "invalid_grant")
    assert _refusals() == [{"client_id": other_id, "reason": "code_of_another_client", "error": "invalid_grant"}]
    [item] = _codes()
    assert item.used_at is None and item.client_id == client_id


def test_a_session_ended_by_enforcement_between_authorize_and_token_is_refused_and_audited(
    api: KeywardClient, bob: Member, stream: Any
) -> None:
    client_id, secret, code, verifier = _code(api, bob)
    enforce_in_table("acme")
    status, body = _redeem(api, client_id, secret, code=code, code_verifier=verifier)
    assert (status, body["error"]) == (400, "invalid_grant")
    stream.drain()
    status, body = _redeem(api, client_id, secret, code=code, code_verifier=verifier)
    assert (status, body["error"]) == (400, "invalid_grant")
    assert [refusal["reason"] for refusal in _refusals()] == ["session_ended", "session_ended"]
    assert _events("oidc.token_issued") == []


def test_a_session_ended_between_authorize_and_the_key_check_gets_no_code(
    api: KeywardClient, bob: Member, stream: Any
) -> None:
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    request_id, _ = authorization_request(api, session, secrets.token_urlsafe(48))
    enforce_in_table("acme")
    stream.drain()
    answer = api.call("POST", f"/oidc/authorize/{request_id}/options", token=bob.token)
    assert (answer.status, answer.code) == (401, "SessionEndedByEnforcement")
    assert _codes() == [] and _events("oidc.authorized") == []


def test_a_key_the_policy_refuses_gets_no_code(api: KeywardClient, admin: Member) -> None:
    bob = api.login(user="bob")
    assert api.add_key(bob, SoftwareAuthenticator()).status == 201
    policy = api.call("PUT", "/org/mfa/policy", token=admin.token, body={"user_verification": "required"})
    assert policy.status == 200, policy.body
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    request_id, state = authorization_request(api, session, secrets.token_urlsafe(48))

    answer = key_check(api, bob.token, request_id, bob.authenticators[0])  # no user verification

    assert answer["refusal"]["Code"] == "UserVerificationRequired"
    assert answer["done"]["params"]["error"] == "access_denied" and answer["done"]["params"]["state"] == state
    assert urlsplit(callback_url(answer["done"])).netloc == "app.example"
    assert Authorization.get(f"request#{request_id}").used_at is not None
    assert _codes() == []
    assert _refusals() == [{"client_id": client_id, "reason": "UserVerificationRequired", "error": "access_denied"}]


def test_a_member_with_no_key_is_refused_and_audited(api: KeywardClient) -> None:
    carol = api.login(user="carol")
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    request_id, _ = authorization_request(api, session, secrets.token_urlsafe(48))
    answer = api.call("POST", f"/oidc/authorize/{request_id}/options", token=carol.token)
    assert answer.body["refusal"]["Code"] == "SecurityKeyRequired"
    assert _codes() == []
    [refusal] = _events("oidc.refused")
    assert refusal.user_id == "carol"
    assert refusal.details.as_dict() == {
        "client_id": client_id,
        "reason": "SecurityKeyRequired",
        "error": "access_denied",
    }


def test_a_declined_check_is_refused_and_audited(api: KeywardClient, bob: Member) -> None:
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    request_id, state = authorization_request(api, session, secrets.token_urlsafe(48))
    answer = api.call("POST", f"/oidc/authorize/{request_id}/cancel")
    assert answer.body["done"]["params"]["error"] == "access_denied" and answer.body["done"]["params"]["state"] == state
    assert _refusals() == [{"client_id": client_id, "reason": "InvalidAuthorizationRequest", "error": "access_denied"}]
    assert api.call("POST", f"/oidc/authorize/{request_id}/options", token=bob.token).status == 404


# --- refusals: Entra's path ----------------------------------------------------------------------


def _refused_at_once(page: Reply, reason: str) -> None:
    fields = _form_fields(page)
    assert fields["error"] == "access_denied" and fields["state"] == "st", fields
    assert "id_token" not in fields
    assert _requests() == []
    assert [refusal["reason"] for refusal in _refusals()] == [reason]


def test_entra_an_expired_hint_is_refused_stores_nothing_and_is_audited(
    api: KeywardClient, idp: Any, entra: tuple[str, Any], bob: Member
) -> None:
    _, session = entra
    _refused_at_once(_entra_request(api, session, _hint(idp, lifetime_seconds=-3600)), "InvalidIdToken")


def test_entra_a_foreign_hint_is_refused_stores_nothing_and_is_audited(
    api: KeywardClient, idp: Any, entra: tuple[str, Any], bob: Member
) -> None:
    _, session = entra
    genuine = _hint(idp)
    forged = jwt.encode(
        jwt.decode(genuine, options={"verify_signature": False}),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": jwt.get_unverified_header(genuine)["kid"]},
    )
    _refused_at_once(_entra_request(api, session, forged), "InvalidIdToken")


def test_entra_a_hint_of_another_organizations_idp_is_refused(
    api: KeywardClient, idp: Any, entra: tuple[str, Any]
) -> None:
    _, session = entra
    page = _entra_request(api, session, _hint(idp, org="globex"))
    fields = _form_fields(page)
    assert fields["error"] == "access_denied" and "id_token" not in fields
    assert _requests() == []
    [refusal] = [event for event in AuditEvent.scan(consistent_read=True) if event.action == "oidc.refused"]
    assert refusal.details["reason"] == "ClientOfAnotherOrganization"


def test_entra_a_member_with_no_key_gets_no_id_token_and_the_request_is_answered(
    api: KeywardClient, idp: Any, entra: tuple[str, Any]
) -> None:
    _, session = entra
    request_id = request_id_of(_entra_request(api, session, _hint(idp, user="carol")))
    answer = api.call("POST", f"/oidc/authorize/{request_id}/session")
    assert answer.body["refusal"]["Code"] == "SecurityKeyRequired"
    assert "id_token" not in answer.body["done"]["params"]
    assert Authorization.get(f"request#{request_id}").used_at is not None
    assert [refusal["reason"] for refusal in _refusals()] == ["SecurityKeyRequired"]


def test_entra_a_session_ended_by_enforcement_before_the_key_check_gets_no_id_token(
    api: KeywardClient, idp: Any, entra: tuple[str, Any], bob: Member, stream: Any
) -> None:
    _, session = entra
    request_id = request_id_of(_entra_request(api, session, _hint(idp)))
    token = api.call("POST", f"/oidc/authorize/{request_id}/session").body["token"]
    options = api.call("POST", f"/oidc/authorize/{request_id}/options", token=token)
    assert "challenge_id" in options.body
    enforce_in_table("acme")
    stream.drain()
    answer = api.call(
        "POST",
        f"/oidc/authorize/{request_id}/verify",
        token=token,
        body={
            "challenge_id": options.body["challenge_id"],
            "credential": bob.authenticators[0].authenticate(options.body["publicKey"]),
        },
    )
    assert (answer.status, answer.code) == (401, "SessionEndedByEnforcement")
    assert _events("oidc.authorized") == []
    assert Authorization.get(f"request#{request_id}").used_at is None


def test_entra_a_hint_for_someone_else_than_the_browsers_session_is_refused_and_audited(
    api: KeywardClient, idp: Any, entra: tuple[str, Any], bob: Member
) -> None:
    _, session = entra
    alice = api.login(user="alice")
    assert api.add_key(alice, SoftwareAuthenticator()).status == 201
    request_id = request_id_of(_entra_request(api, session, _hint(idp)))
    answer = api.call("POST", f"/oidc/authorize/{request_id}/options", token=alice.token)
    assert answer.body["refusal"]["Code"] == "HintMismatch"
    assert "id_token" not in answer.body["done"]["params"]
    assert Authorization.get(f"request#{request_id}").used_at is not None
    [refusal] = _events("oidc.refused")
    assert refusal.user_id == "alice" and refusal.details["reason"] == "HintMismatch"


@pytest.mark.parametrize("step", ["options", "verify"])
def test_a_session_that_must_register_is_told_so_whatever_request_it_names(api: KeywardClient, step: str) -> None:
    """Like every route, the key check's steps refuse a session that owes a registration with
    the rule's reason, not with news of whether the request it named exists."""
    api.login(user="alice", admin=True)
    enforce_in_table("acme")
    waiting = api.login(user="nina")
    assert waiting.state == "registration_required"
    body = {} if step == "options" else {"challenge_id": "x", "credential": {}}
    refused = api.call("POST", f"/oidc/authorize/{'x' * 32}/{step}", token=waiting.token, body=body)
    assert (refused.status, refused.code) == (403, "RegistrationRequired")
