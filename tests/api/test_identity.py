"""POST /auth/login: the ID token is verified for real, and a failed login stores nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from chalicelib.base.models import Member, Organization, Session
from devstack.idp import DevIdentityProvider


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _nothing_stored() -> None:
    assert list(Session.scan()) == []
    assert list(Member.scan()) == []
    assert list(Organization.scan()) == []


def test_first_login_creates_the_org_and_member_and_an_active_session(api):
    reply = api.login_reply(org="acme", user="bob", name="Bob Member", email="bob@acme.example")

    assert reply.status == 200
    assert reply.body["state"] == "active"
    assert reply.body["user"] == {"id": "bob", "name": "Bob Member", "email": "bob@acme.example", "admin": False}
    assert reply.body["org"] == {"id": "acme", "mfa_enforced": False}
    assert reply.body["expires_at"].endswith("Z")
    assert Organization.get("acme").mfa_enforced is False
    member = Member.get("acme", "bob")
    assert (member.name, member.email, member.admin, member.key_count) == ("Bob Member", "bob@acme.example", False, 0)


def test_the_token_is_random_and_only_its_hash_is_stored(api):
    token = api.login().token
    [session] = list(Session.scan())

    assert session.token_hash == hashlib.sha256(token.encode()).hexdigest()
    secret = token.rsplit(".", 1)[1]
    assert len(secret) >= 43  # 256 bits of base64url
    for value in session.serialize().values():
        assert secret not in str(value)


def test_admin_rights_come_from_the_group_claim(api):
    reply = api.login_reply(org="acme", user="alice", admin=True)
    assert reply.body["user"]["admin"] is True
    assert Member.get("acme", "alice").admin is True


def test_a_later_login_refreshes_the_member_but_keeps_what_the_idp_does_not_own(api):
    api.login(user="bob")
    Member("acme", "bob").update(actions=[Member.key_count.set(0)])
    api.login_reply(user="bob", name="Robert", admin=True)
    member = Member.get("acme", "bob")
    assert (member.name, member.admin) == ("Robert", True)
    assert len(list(Session.scan())) == 2


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"audience": "someone-else"}, id="other audience"),
        pytest.param({"issuer": "https://evil.example"}, id="other issuer"),
        pytest.param({"lifetime_seconds": -120}, id="expired"),
        pytest.param({"org": None}, id="no org claim"),
        pytest.param({"org": "has spaces"}, id="unusable org claim"),
        pytest.param({"iat": None}, id="no iat"),
        pytest.param({"sub": "backup:bk_AAAAAAAAAAAAAAAAAAAAAA"}, id="sub in the backup namespace"),
    ],
)
def test_a_token_that_does_not_verify_is_refused_and_nothing_is_stored(api, idp, overrides):
    claims = dict(overrides)
    org = claims.pop("org", "acme")
    token = idp.mint(org=org or "acme", user="bob", **claims)
    if org is None or "iat" in overrides:
        payload = jwt.decode(token, options={"verify_signature": False})
        if org is None:
            del payload["org"]
        if "iat" in overrides:
            del payload["iat"]
        token = jwt.encode(payload, idp._private_key, algorithm="RS256", headers={"kid": idp.kid})

    reply = api.call("POST", "/auth/login", body={"id_token": token})

    assert reply.status == 401
    assert reply.code == "InvalidIdToken"
    _nothing_stored()


def test_a_token_signed_by_another_key_is_refused(api):
    impostor = DevIdentityProvider.ephemeral()
    reply = api.call("POST", "/auth/login", body={"id_token": impostor.mint(org="acme", user="bob")})
    assert (reply.status, reply.code) == (401, "InvalidIdToken")
    _nothing_stored()


def test_an_unsigned_or_symmetric_token_is_refused(api, idp):
    now = int(time.time())
    claims = {
        "iss": "http://localhost:8000/dev-idp",
        "aud": "keyward-local",
        "sub": "bob",
        "org": "acme",
        "iat": now,
        "exp": now + 600,
    }
    unsigned = jwt.encode(claims, key=None, algorithm="none", headers={"kid": idp.kid})
    # The classic algorithm confusion: HS256 keyed with the IdP's public key material.
    signing_input = ".".join(
        _b64(json.dumps(part).encode()) for part in ({"alg": "HS256", "typ": "JWT", "kid": idp.kid}, claims)
    )
    mac = hmac.new(idp.jwks_json().encode(), signing_input.encode(), hashlib.sha256).digest()
    hmac_signed = f"{signing_input}.{_b64(mac)}"
    for token in (unsigned, hmac_signed, "not-a-jwt"):
        reply = api.call("POST", "/auth/login", body={"id_token": token})
        assert (reply.status, reply.code) == (401, "InvalidIdToken"), token
    _nothing_stored()


def test_profile_claims_left_out_of_a_later_token_keep_the_stored_profile(api, idp):
    api.login_reply(user="bob", name="Bob Member", email="bob@acme.example")
    token = idp.mint(org="acme", user="bob")  # no name, no email
    reply = api.call("POST", "/auth/login", body={"id_token": token})
    assert reply.body["user"]["name"] == "Bob Member"
    assert Member.get("acme", "bob").email == "bob@acme.example"
