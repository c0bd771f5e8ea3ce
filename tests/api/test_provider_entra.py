"""Entra ID's external authentication method profile, as Microsoft's provider reference describes
it: Entra posts an authorization request (response_type=id_token, response_mode=form_post, a nonce,
a claims request for acr and amr, and an id_token_hint of its own, issued already expired); keyward
starts the member's session from the hint, checks their key, and posts an ID token back. The
request is built by Authlib; the ID token verified against the JWKS with PyJWT."""

from __future__ import annotations

import html
import json
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.base.config import settings
from chalicelib.base.models import AuditEvent
from devstack.idp import DevIdentityProvider
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import KeywardClient, Member, Reply
from tests.support.oidc import (
    ENTRA_REDIRECT_URI,
    ISSUER,
    register_client,
    relying_party,
    request_id_of,
    verified_id_token,
)

# The claims request of the profile's "Example of an EAM that satisfies MFA".
ENTRA_CLAIMS = {
    "id_token": {
        "acr": {"essential": True, "values": ["possessionorinherence"]},
        "amr": {
            "essential": True,
            "values": ["face", "fido", "fpt", "hwk", "iris", "otp", "pop", "retina", "sc", "sms", "swk", "tel", "vbm"],
        },
    }
}
TENANT = "9122040d-6c67-4c5b-b112-36a304b66dad"


@pytest.fixture
def entra(api: KeywardClient) -> tuple[str, Any]:
    """Entra as keyward's relying party: its client ID is the application's ID, which is also the
    audience of the hints it issues (the profile's "Default id_token_hint claims")."""
    client_id, _ = register_client(
        client_id=settings().oidc_audience, secret=None, redirect_uris=(ENTRA_REDIRECT_URI,), flows=("id_token",)
    )
    return client_id, relying_party(api, client_id=client_id, secret=None, redirect_uri=ENTRA_REDIRECT_URI)


@pytest.fixture
def bob(api: KeywardClient) -> Member:
    member = api.login(user="bob")
    assert api.add_key(member, SoftwareAuthenticator()).status == 201
    return member


def _hint(idp: DevIdentityProvider, *, user: str = "bob", org: str = "acme", lifetime_seconds: int = -1) -> str:
    # Entra issues the hint expired, so that it can serve as nothing but a hint.
    return idp.mint(org=org, user=user, lifetime_seconds=lifetime_seconds, tid=TENANT, oid=secrets.token_hex(8))


def _entra_request(api: KeywardClient, session: Any, hint: str, *, nonce: str, state: str) -> Reply:
    """The request as Entra sends it: every parameter in the body of a POST."""
    url, _ = session.create_authorization_url(
        f"{ISSUER}/oidc/authorize",
        response_type="id_token",
        response_mode="form_post",
        nonce=nonce,
        state=state,
        id_token_hint=hint,
        claims=json.dumps(ENTRA_CLAIMS),
        **{"client-request-id": secrets.token_hex(8)},
    )
    return api.call(
        "POST",
        "/oidc/authorize",
        raw=urlsplit(url).query,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


def _posted_back(page: Reply) -> dict[str, str]:
    """The fields of the form keyward's page posts to Entra."""
    assert page.status == 200, page.body
    assert f'action="{ENTRA_REDIRECT_URI}"' in page.body
    return {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.body)
    }


def _check_key(api: KeywardClient, token: str, request_id: str, authenticator: SoftwareAuthenticator) -> dict:
    options = api.call("POST", f"/oidc/authorize/{request_id}/options", token=token)
    assert options.status == 200 and "challenge_id" in options.body, options.body
    answer = api.call(
        "POST",
        f"/oidc/authorize/{request_id}/verify",
        token=token,
        body={
            "challenge_id": options.body["challenge_id"],
            "credential": authenticator.authenticate(options.body["publicKey"]),
        },
    )
    assert answer.status == 200, answer.body
    return answer.body


def test_entra_gets_an_id_token_for_the_hints_subject(api: KeywardClient, idp, entra, bob: Member) -> None:
    client_id, session = entra
    nonce, state = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    request_id = request_id_of(_entra_request(api, session, _hint(idp), nonce=nonce, state=state))

    signed_in = api.call("POST", f"/oidc/authorize/{request_id}/session")
    assert signed_in.status == 200, signed_in.body
    assert signed_in.body["state"] == "mfa_required"
    answer = _check_key(api, signed_in.body["token"], request_id, bob.authenticators[0])

    assert answer["refusal"] is None
    done = answer["done"]
    assert done["mode"] == "form_post" and done["redirect_uri"] == ENTRA_REDIRECT_URI
    assert set(done["params"]) == {"id_token", "state", "iss"}
    assert done["params"]["iss"] == ISSUER
    assert done["params"]["state"] == state
    claims = verified_id_token(session, done["params"]["id_token"], audience=client_id)
    assert claims["sub"] == "bob"
    assert claims["nonce"] == nonce
    assert claims["tid"] == TENANT
    assert claims["acr"] == "possessionorinherence"
    assert claims["amr"] == ["hwk"]
    assert jwt.get_unverified_header(done["params"]["id_token"])["alg"] == "RS256"
    logins = [event for event in AuditEvent.scan() if event.action == "login"]
    assert any(event.details["method"] == "id_token_hint" for event in logins)


def _refused_at_once(page: Reply) -> dict[str, str]:
    fields = _posted_back(page)
    assert fields["error"] == "access_denied", fields
    return fields


def test_a_hint_expired_longer_than_the_grace_is_refused(api: KeywardClient, idp, entra, bob: Member) -> None:
    _, session = entra
    page = _entra_request(api, session, _hint(idp, lifetime_seconds=-3600), nonce="n", state="st")
    assert _refused_at_once(page)["state"] == "st"


def test_a_foreign_hint_is_refused(api: KeywardClient, idp, entra, bob: Member) -> None:
    _, session = entra
    forged = jwt.decode(_hint(idp), options={"verify_signature": False})
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hint = jwt.encode(
        forged, other_key, algorithm="RS256", headers={"kid": jwt.get_unverified_header(_hint(idp))["kid"]}
    )
    _refused_at_once(_entra_request(api, session, hint, nonce="n", state="st"))


def test_a_hint_for_another_organization_is_refused(api: KeywardClient, idp, entra) -> None:
    _, session = entra
    _refused_at_once(_entra_request(api, session, _hint(idp, org="globex"), nonce="n", state="st"))
    assert any(event.action == "oidc.refused" for event in AuditEvent.scan())


def test_a_member_with_no_key_is_told_so(api: KeywardClient, idp, entra) -> None:
    _, session = entra
    request_id = request_id_of(_entra_request(api, session, _hint(idp, user="carol"), nonce="n", state="st"))
    answer = api.call("POST", f"/oidc/authorize/{request_id}/session")
    assert answer.status == 200
    assert answer.body["refusal"]["Code"] == "SecurityKeyRequired"
    assert answer.body["done"]["params"]["error"] == "access_denied"


def test_a_hint_for_someone_else_than_the_browsers_session_is_refused(
    api: KeywardClient, idp, entra, bob: Member
) -> None:
    _, session = entra
    alice = api.login(user="alice")
    assert api.add_key(alice, SoftwareAuthenticator()).status == 201
    request_id = request_id_of(_entra_request(api, session, _hint(idp), nonce="n", state="st"))
    answer = api.call("POST", f"/oidc/authorize/{request_id}/options", token=alice.token)
    assert answer.body["refusal"]["Code"] == "HintMismatch"
    assert answer.body["done"]["params"]["error"] == "access_denied"


def test_a_key_the_policy_refuses_gets_no_id_token(api: KeywardClient, idp, entra, bob: Member) -> None:
    _, session = entra
    admin = api.login(user="alice", admin=True)
    assert api.add_key(admin, SoftwareAuthenticator()).status == 201
    admin = api.mfa_login(org="acme", user="alice", authenticator=admin.authenticators[0], admin=True)
    policy = api.call("PUT", "/org/mfa/policy", token=admin.token, body={"user_verification": "required"})
    assert policy.status == 200, policy.body

    request_id = request_id_of(_entra_request(api, session, _hint(idp), nonce="n", state="st"))
    token = api.call("POST", f"/oidc/authorize/{request_id}/session").body["token"]
    answer = _check_key(api, token, request_id, bob.authenticators[0])  # no user verification
    assert answer["refusal"]["Code"] == "UserVerificationRequired"
    assert answer["done"]["params"] == {
        "error": "access_denied",
        "error_description": answer["refusal"]["Message"],
        "state": "st",
        "iss": ISSUER,
    }
