"""POST /auth/login binds an ID token to the sign-in that asked for it: the ``nonce`` the client
made must come back in the token, and a token for several audiences must name keyward as its
authorized party (``azp``). A refused login stores nothing."""

from __future__ import annotations

import pytest

from chalicelib.base.config import settings
from chalicelib.base.models import Member, Organization, Session

NONCE = "n-0S6_WzA2Mj"


def _nothing_stored() -> None:
    assert list(Session.scan()) == []
    assert list(Member.scan()) == []
    assert list(Organization.scan()) == []


def _login(api, idp, *, body_nonce=None, send_nonce=True, **claims):
    id_token = idp.mint(org="acme", user="bob", **claims)
    body = {"id_token": id_token}
    if send_nonce:
        body["nonce"] = body_nonce
    return api.call("POST", "/auth/login", body=body)


def test_the_nonce_the_client_made_comes_back_in_the_token(api, idp):
    reply = _login(api, idp, body_nonce=NONCE, nonce=NONCE)

    assert reply.status == 200, reply.body
    assert [s.user_id for s in Session.scan()] == ["bob"]


@pytest.mark.parametrize("claims", [{"nonce": "another-sign-in"}, {}, {"nonce": NONCE + "x"}, {"nonce": 7}])
def test_a_token_with_another_nonce_or_none_is_refused(api, idp, claims):
    reply = _login(api, idp, body_nonce=NONCE, **claims)

    assert (reply.status, reply.code) == (401, "NonceMismatch"), reply.body
    _nothing_stored()


def test_without_a_nonce_from_the_client_the_tokens_nonce_is_not_checked(api, idp):
    reply = _login(api, idp, send_nonce=False, nonce="whatever")

    assert reply.status == 200, reply.body


@pytest.mark.parametrize("nonce", ["", 12, None, ["n"], "n" * 257])
def test_a_malformed_nonce_is_a_bad_request(api, idp, nonce):
    reply = _login(api, idp, body_nonce=nonce, nonce="n")

    assert (reply.status, reply.code) == (400, "MalformedRequest"), reply.body
    _nothing_stored()


def test_a_token_for_several_audiences_is_accepted_when_keyward_is_its_authorized_party(api, idp):
    ours = settings().oidc_audience
    reply = _login(api, idp, send_nonce=False, aud=[ours, "https://other.example"], azp=ours)

    assert reply.status == 200, reply.body


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": ["__ours__", "https://other.example"]},  # no azp at all
        {"aud": ["__ours__", "https://other.example"], "azp": "https://other.example"},
        {"aud": ["__ours__"], "azp": "https://other.example"},
        {"aud": "__ours__", "azp": "https://other.example"},  # a single audience, another azp
    ],
)
def test_a_token_issued_to_another_party_is_refused(api, idp, claims):
    ours = settings().oidc_audience
    claims = {
        name: (
            [ours if a == "__ours__" else a for a in value]
            if isinstance(value, list)
            else (ours if value == "__ours__" else value)
        )
        for name, value in claims.items()
    }

    reply = _login(api, idp, send_nonce=False, **claims)

    assert (reply.status, reply.code) == (401, "InvalidIdToken"), reply.body
    assert "azp" in reply.body["Message"]
    _nothing_stored()


def test_a_token_for_other_audiences_only_is_refused_whatever_its_azp(api, idp):
    ours = settings().oidc_audience
    reply = _login(api, idp, send_nonce=False, aud=["https://other.example"], azp=ours)

    assert (reply.status, reply.code) == (401, "InvalidIdToken"), reply.body
    _nothing_stored()
