"""The OpenID provider's code flow, driven by Authlib as the relying party: discovery, the
authorization request, keyward's key check bound to it, the redirect with the code, and the token
exchange with PKCE; every ID token verified against the JWKS with PyJWT."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest

from chalicelib.base.models import AuditEvent, Authorization
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import KeywardClient, Member
from tests.support.oidc import (
    ISSUER,
    REDIRECT_URI,
    local_path,
    metadata,
    register_client,
    relying_party,
    request_id_of,
    verified_id_token,
)


def _actions() -> list[str]:
    return [event.action for event in AuditEvent.scan(consistent_read=True)]


@pytest.fixture
def bob(api: KeywardClient) -> Member:
    first = api.login(user="bob")
    api.add_key(first, SoftwareAuthenticator())
    return api.mfa_login(org="acme", user="bob", authenticator=first.authenticators[0])


def _authorize(api: KeywardClient, session: Any, verifier: str, **params: Any) -> tuple[str, str]:
    endpoint = metadata(session)["authorization_endpoint"]
    url, state = session.create_authorization_url(endpoint, code_verifier=verifier, **params)
    return request_id_of(api.call("GET", local_path(url))), state


def _key_check(api: KeywardClient, member: Member, request_id: str) -> dict[str, Any]:
    options = api.call("POST", f"/oidc/authorize/{request_id}/options", token=member.token)
    assert options.status == 200, options.body
    assert "challenge_id" in options.body, options.body
    credential = member.authenticators[0].authenticate(options.body["publicKey"])
    answer = api.call(
        "POST",
        f"/oidc/authorize/{request_id}/verify",
        token=member.token,
        body={"challenge_id": options.body["challenge_id"], "credential": credential},
    )
    assert answer.status == 200, answer.body
    return answer.body


def _callback(done: dict[str, Any]) -> str:
    assert done["mode"] == "query"
    query = "&".join(f"{name}={value}" for name, value in done["params"].items())
    return f"{done['redirect_uri']}?{query}"


def test_discovery_names_every_endpoint_under_the_issuer(api: KeywardClient) -> None:
    client_id, secret = register_client()
    document = metadata(relying_party(api, client_id=client_id, secret=secret))
    assert document["issuer"] == ISSUER
    assert document["authorization_endpoint"] == f"{ISSUER}/oidc/authorize"
    assert document["token_endpoint"] == f"{ISSUER}/oidc/token"
    assert document["jwks_uri"] == f"{ISSUER}/oidc/jwks"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert "form_post" in document["response_modes_supported"]
    assert set(document["response_types_supported"]) == {"code", "id_token"}


def test_code_flow_with_pkce_issues_an_id_token_the_jwks_verifies(api: KeywardClient, bob: Member) -> None:
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    request_id, state = _authorize(api, session, verifier, nonce=nonce)

    answer = _key_check(api, bob, request_id)
    assert answer["refusal"] is None
    assert answer["done"]["params"]["state"] == state
    assert answer["done"]["params"]["iss"] == ISSUER
    assert answer["done"]["redirect_uri"] == REDIRECT_URI

    token = session.fetch_token(
        metadata(session)["token_endpoint"], authorization_response=_callback(answer["done"]), code_verifier=verifier
    )
    assert token["token_type"] == "Bearer"
    claims = verified_id_token(session, token["id_token"], audience=client_id)
    assert claims["sub"] == "bob"
    assert claims["nonce"] == nonce
    assert claims["org"] == "acme"
    assert claims["amr"][:2] == ["hwk", "user"]
    assert claims["exp"] - claims["iat"] == 300
    assert abs(claims["auth_time"] - claims["iat"]) < 60
    header = jwt.get_unverified_header(token["access_token"])
    assert header["typ"] == "at+jwt"
    access = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert access["sid"] == claims["sid"] and access["client_id"] == client_id and access["scope"] == "openid"
    assert {"oidc.authorized", "oidc.token_issued"} <= set(_actions())


def test_a_public_client_redeems_with_pkce_alone(api: KeywardClient, bob: Member) -> None:
    client_id, _ = register_client(secret=None)
    session = relying_party(api, client_id=client_id, secret=None)
    verifier = secrets.token_urlsafe(48)
    request_id, _ = _authorize(api, session, verifier)
    answer = _key_check(api, bob, request_id)
    token = session.fetch_token(
        metadata(session)["token_endpoint"], authorization_response=_callback(answer["done"]), code_verifier=verifier
    )
    assert verified_id_token(session, token["id_token"], audience=client_id)["sub"] == "bob"


def _code_for(api: KeywardClient, member: Member) -> tuple[str, str, str, str]:
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    verifier = secrets.token_urlsafe(48)
    request_id, _ = _authorize(api, session, verifier)
    done = _key_check(api, member, request_id)["done"]
    assert secret is not None
    return client_id, secret, done["params"]["code"], verifier


def _redeem(api: KeywardClient, client_id: str, secret: str, **form: str) -> Any:
    """A token request as a confidential client sends it: HTTP Basic and a form (RFC 6749 §4.1.3)."""
    body = urlencode({"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI, **form})
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return api.client.http.request(
        method="POST",
        path="/oidc/token",
        headers={"content-type": "application/x-www-form-urlencoded", "authorization": f"Basic {basic}"},
        body=body.encode(),
    )


def _error_of(response: Any) -> str:
    return json.loads(response.body)["error"]


def test_a_code_is_redeemed_once(api: KeywardClient, bob: Member) -> None:
    client_id, secret, code, verifier = _code_for(api, bob)
    assert _redeem(api, client_id, secret, code=code, code_verifier=verifier).status_code == 200
    again = _redeem(api, client_id, secret, code=code, code_verifier=verifier)
    assert again.status_code == 400 and _error_of(again) == "invalid_grant"
    assert "oidc.refused" in _actions()


def test_a_missing_or_wrong_pkce_verifier_is_refused(api: KeywardClient, bob: Member) -> None:
    client_id, secret, code, verifier = _code_for(api, bob)
    assert _error_of(_redeem(api, client_id, secret, code=code)) == "invalid_grant"
    assert _error_of(_redeem(api, client_id, secret, code=code, code_verifier=secrets.token_urlsafe(48))) == (
        "invalid_grant"
    )
    assert _redeem(api, client_id, secret, code=code, code_verifier=verifier).status_code == 200


def test_another_redirect_uri_at_the_token_endpoint_is_refused(api: KeywardClient, bob: Member) -> None:
    client_id, secret, code, verifier = _code_for(api, bob)
    answer = _redeem(api, client_id, secret, code=code, code_verifier=verifier, redirect_uri="https://app.example/x")
    assert _error_of(answer) == "invalid_grant"


def test_a_wrong_secret_is_invalid_client(api: KeywardClient, bob: Member) -> None:
    client_id, _, code, verifier = _code_for(api, bob)
    answer = _redeem(api, client_id, "wrong", code=code, code_verifier=verifier)
    assert answer.status_code == 401 and _error_of(answer) == "invalid_client"


def test_an_unregistered_redirect_uri_gets_an_error_page_and_no_redirect(api: KeywardClient) -> None:
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret, redirect_uri="https://evil.example/cb")
    url, _ = session.create_authorization_url(f"{ISSUER}/oidc/authorize", code_verifier=secrets.token_urlsafe(48))
    page = api.call("GET", local_path(url))
    assert page.status == 400
    assert "InvalidRedirectUri" in page.body
    assert "location" not in {name.lower() for name in page.headers}


def test_a_request_without_pkce_is_refused_at_the_redirect_uri(api: KeywardClient) -> None:
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    session.code_challenge_method = None
    url, state = session.create_authorization_url(f"{ISSUER}/oidc/authorize")
    page = api.call("GET", local_path(url))
    assert page.status == 302
    location = urlsplit(page.headers["Location"])
    params = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    assert params["error"] == ["invalid_request"] and params["state"] == [state]
    assert "oidc.refused" in _actions()


def test_a_member_with_no_key_is_refused(api: KeywardClient) -> None:
    carol = api.login(user="carol")
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    request_id, _ = _authorize(api, session, secrets.token_urlsafe(48))
    answer = api.call("POST", f"/oidc/authorize/{request_id}/options", token=carol.token)
    assert answer.status == 200
    assert answer.body["refusal"]["Code"] == "SecurityKeyRequired"
    assert answer.body["done"]["params"]["error"] == "access_denied"
    assert Authorization.get(f"request#{request_id}").used_at is not None


def test_a_session_ended_by_enforcement_before_redemption_gets_nothing(
    api: KeywardClient, bob: Member, stream: Any
) -> None:
    from tests.support.keyward_client import enforce_in_table

    client_id, secret, code, verifier = _code_for(api, bob)
    enforce_in_table("acme")
    stream.drain()
    answer = _redeem(api, client_id, secret, code=code, code_verifier=verifier)
    assert answer.status_code == 400 and _error_of(answer) == "invalid_grant"


def test_max_age_lets_a_recent_key_check_count_and_prompt_login_asks_again(api: KeywardClient, bob: Member) -> None:
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    verifier = secrets.token_urlsafe(48)

    request_id, _ = _authorize(api, session, verifier, max_age=300)
    answer = api.call("POST", f"/oidc/authorize/{request_id}/options", token=bob.token)
    assert answer.status == 200 and answer.body["refusal"] is None
    token = session.fetch_token(
        metadata(session)["token_endpoint"],
        authorization_response=_callback(answer.body["done"]),
        code_verifier=verifier,
    )
    claims = verified_id_token(session, token["id_token"], audience=client_id)
    assert claims["amr"] == ["hwk", "user"]

    request_id, _ = _authorize(api, session, verifier, max_age=300, prompt="login")
    assert "challenge_id" in api.call("POST", f"/oidc/authorize/{request_id}/options", token=bob.token).body
    request_id, _ = _authorize(api, session, verifier)
    assert "challenge_id" in api.call("POST", f"/oidc/authorize/{request_id}/options", token=bob.token).body


def test_an_answered_request_cannot_be_answered_again(api: KeywardClient, bob: Member) -> None:
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    request_id, _ = _authorize(api, session, secrets.token_urlsafe(48))
    _key_check(api, bob, request_id)
    again = api.call("POST", f"/oidc/authorize/{request_id}/options", token=bob.token)
    assert again.status == 404 and again.code == "AuthorizationRequestNotFound"
