"""POST /oidc/introspect (RFC 7662): a token is active while it verifies, has not expired and its
keyward session stands; anything else is inactive, and only a confidential client of the token's
own organization learns more than that."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from urllib.parse import quote, urlencode

import pytest

from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.models import RelyingParty
from tests.support.access_tokens import (
    RegisteredClient,
    access_token,
    foreign_access_token,
    register_client,
    session_id_of,
)
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import Reply

FORM = "application/x-www-form-urlencoded"


def _basic(client: RegisteredClient) -> str:
    pair = f"{quote(client.client_id, safe='')}:{quote(client.secret or '', safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def introspect(api, client: RegisteredClient | None, token: str | None, *, post_secret: bool = False, **form) -> Reply:
    headers = {"content-type": FORM}
    fields = dict(form)
    if token is not None:
        fields["token"] = token
    if client is not None and post_secret:
        fields |= {"client_id": client.client_id, "client_secret": client.secret}
    elif client is not None:
        headers["authorization"] = _basic(client)
    response = api.client.http.request(
        method="POST", path="/oidc/introspect", headers=headers, body=urlencode(fields).encode()
    )
    return Reply(status=response.status_code, body=json.loads(response.body), headers=dict(response.headers))


@pytest.fixture
def bob(api):
    """bob of acme, signed in through his security key."""
    key = SoftwareAuthenticator()
    assert api.add_key(api.login(user="bob"), key).status == 201
    return api.mfa_login(org="acme", user="bob", authenticator=key)


@pytest.fixture
def payroll():
    return register_client("acme")


def test_a_fresh_access_token_is_active_with_what_its_session_proved(api, bob, payroll):
    token = access_token(bob, payroll, scope="openid payroll")

    reply = introspect(api, payroll, token)

    assert reply.status == 200, reply.body
    assert reply.headers["Cache-Control"] == "no-store"
    body = reply.body
    assert body["active"] is True
    assert (body["sub"], body["org"], body["sid"]) == ("bob", "acme", session_id_of(bob))
    assert (body["client_id"], body["aud"], body["scope"]) == (payroll.client_id, payroll.client_id, "openid payroll")
    assert body["iss"] == settings().provider_issuer and body["token_type"] == "Bearer"
    assert body["exp"] - body["iat"] == 600
    assert body["admin"] is False and body["mfa"] is True
    assert abs(body["key_checked_at"] - clock.now().timestamp()) < 60


def test_client_secret_post_authenticates_too(api, bob, payroll):
    reply = introspect(api, payroll, access_token(bob, payroll), post_secret=True, token_type_hint="access_token")

    assert reply.status == 200 and reply.body["active"] is True


def test_a_session_token_is_active_while_the_session_stands(api, bob, payroll):
    body = introspect(api, payroll, bob.token).body

    assert body["active"] is True
    assert (body["sub"], body["org"], body["sid"], body["mfa"]) == ("bob", "acme", session_id_of(bob), True)
    # It was issued to no client.
    assert "client_id" not in body and "aud" not in body

    assert api.call("POST", "/auth/logout", token=bob.token).status == 204
    assert introspect(api, payroll, bob.token).body == {"active": False}


def test_a_session_waiting_for_its_key_check_is_not_active(api, bob, payroll):
    waiting = api.login(user="bob")
    assert waiting.state == "mfa_required"

    assert introspect(api, payroll, waiting.token).body == {"active": False}
    assert introspect(api, payroll, access_token(waiting, payroll)).body == {"active": False}


def test_a_member_without_keys_is_active_without_mfa(api, payroll):
    carol = api.login(user="carol")

    body = introspect(api, payroll, access_token(carol, payroll)).body

    assert body["active"] is True and body["mfa"] is False and "key_checked_at" not in body


def test_logout_ends_the_access_tokens_of_the_session(api, bob, payroll):
    token = access_token(bob, payroll)
    assert introspect(api, payroll, token).body["active"] is True

    assert api.call("POST", "/auth/logout", token=bob.token).status == 204

    assert introspect(api, payroll, token).body == {"active": False}


def test_enforcement_ends_the_access_tokens_at_once_and_after_the_stream_deleted_the_session(
    api, admin, bob, payroll, stream
):
    token = access_token(bob, payroll)
    assert introspect(api, payroll, token).body["active"] is True

    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    # The request-time rule: ended before the stream function has deleted anything.
    assert introspect(api, payroll, token).body == {"active": False}

    assert stream.drain()
    assert introspect(api, payroll, token).body == {"active": False}
    # The admin's own session, which enforced it, stands.
    assert introspect(api, payroll, access_token(admin, payroll)).body["active"] is True


def test_an_access_token_expires_by_keywards_clock(api, bob, payroll, monkeypatch):
    token = access_token(bob, payroll)
    issued = clock.now()

    monkeypatch.setattr(clock, "now", lambda: issued + timedelta(seconds=590))
    assert introspect(api, payroll, token).body["active"] is True
    monkeypatch.setattr(clock, "now", lambda: issued + timedelta(seconds=601))
    assert introspect(api, payroll, token).body == {"active": False}


def test_an_access_token_past_its_exp_is_inactive(api, bob, payroll):
    past = int(clock.now().timestamp()) - 700
    token = access_token(bob, payroll, iat=past, exp=past + 600)

    assert introspect(api, payroll, token).body == {"active": False}


def test_a_token_signed_by_a_foreign_key_is_inactive(api, bob, payroll):
    assert introspect(api, payroll, foreign_access_token(bob, payroll)).body == {"active": False}


def test_an_id_token_is_no_access_token(api, bob, payroll):
    from chalicelib.provider import signing
    from tests.support.access_tokens import access_claims

    id_token = signing.sign(access_claims(bob, payroll), typ="JWT")

    assert introspect(api, payroll, id_token).body == {"active": False}


@pytest.mark.parametrize(
    "garbage",
    [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IifQ.",
        "kw1.x.y.z.w",
        "kw1." + "A" * 9000,
        "x" * 20000,
        "\u00e9t\u00e9",
    ],
)
def test_garbage_is_inactive_never_an_error(api, payroll, garbage):
    reply = introspect(api, payroll, garbage)

    assert (reply.status, reply.body) == (200, {"active": False})


def test_a_token_naming_a_session_it_does_not_belong_to_is_inactive(api, bob, payroll):
    carol = api.login(user="carol")

    assert introspect(api, payroll, access_token(bob, payroll, sub="carol")).body == {"active": False}
    assert introspect(api, payroll, access_token(bob, payroll, org="globex")).body == {"active": False}
    assert introspect(api, payroll, access_token(carol, payroll, sid=session_id_of(bob))).body == {"active": False}


def test_another_organizations_client_learns_nothing(api, bob, payroll):
    api.login(org="globex", user="gina")
    globex = register_client("globex")
    token = access_token(bob, payroll)

    assert introspect(api, globex, token).body == {"active": False}
    assert introspect(api, globex, bob.token).body == {"active": False}
    assert introspect(api, payroll, token).body["active"] is True


def test_deleting_the_relying_party_ends_its_tokens(api, bob, payroll):
    other = register_client("acme")
    token = access_token(bob, payroll)
    assert introspect(api, other, token).body["active"] is True

    RelyingParty(payroll.client_id).delete()

    assert introspect(api, other, token).body == {"active": False}


def test_offboarding_ends_the_members_tokens(api, admin, bob, payroll):
    token = access_token(bob, payroll)

    assert api.call("DELETE", "/org/members/bob", token=admin.token).status == 204

    assert introspect(api, payroll, token).body == {"active": False}
    assert introspect(api, payroll, bob.token).body == {"active": False}


# --- client authentication -----------------------------------------------------------------------


def _refused(reply: Reply, status: int, error: str) -> None:
    assert (reply.status, reply.body["error"]) == (status, error), reply.body
    assert reply.body["error_description"]
    if status == 401:
        assert reply.headers["WWW-Authenticate"].startswith('Basic realm="keyward"')


def test_an_unauthenticated_request_is_refused(api, bob):
    _refused(introspect(api, None, bob.token), 401, "invalid_client")


def test_a_wrong_secret_is_refused(api, bob, payroll):
    wrong = RegisteredClient(client_id=payroll.client_id, secret="not-" + (payroll.secret or ""), org="acme")

    _refused(introspect(api, wrong, bob.token), 401, "invalid_client")
    _refused(introspect(api, wrong, bob.token, post_secret=True), 401, "invalid_client")


def test_an_unknown_client_is_refused(api, bob):
    _refused(introspect(api, RegisteredClient("nobody", "secret", "acme"), bob.token), 401, "invalid_client")


def test_a_public_client_may_not_introspect(api, bob):
    public = register_client("acme", confidential=False)

    _refused(introspect(api, public, bob.token), 401, "invalid_client")
    _refused(introspect(api, None, bob.token, client_id=public.client_id), 401, "invalid_client")


def test_one_client_authentication_method_only(api, bob, payroll):
    reply = introspect(api, payroll, bob.token, client_secret=payroll.secret)

    _refused(reply, 400, "invalid_request")


def test_malformed_basic_credentials_are_refused(api, bob):
    response = api.client.http.request(
        method="POST",
        path="/oidc/introspect",
        headers={"content-type": FORM, "authorization": "Basic !!!"},
        body=urlencode({"token": bob.token}).encode(),
    )

    assert response.status_code == 401 and json.loads(response.body)["error"] == "invalid_client"


def test_the_token_is_required_once(api, payroll, bob):
    _refused(introspect(api, payroll, None), 400, "invalid_request")
    response = api.client.http.request(
        method="POST",
        path="/oidc/introspect",
        headers={"content-type": FORM, "authorization": _basic(payroll)},
        body=f"token={bob.token}&token={bob.token}".encode(),
    )
    assert response.status_code == 400 and json.loads(response.body)["error"] == "invalid_request"


def test_a_json_body_is_refused(api, payroll, bob):
    reply = api.call("POST", "/oidc/introspect", body={"token": bob.token}, headers={"authorization": _basic(payroll)})

    assert reply.status == 415


def test_the_tokens_of_a_client_the_operator_configured_stand_for_the_organizations_it_serves(
    api, bob, payroll, monkeypatch
):
    import dataclasses

    from chalicelib.base.config import load
    from chalicelib.provider import clients

    configured = load(
        {
            "KEYWARD_PROVIDER_CLIENTS": json.dumps(
                [
                    {
                        "client_id": "every-org",
                        "name": "Everyone's",
                        "redirect_uris": ["https://a.example/cb"],
                        "flows": ["code"],
                    },
                    {
                        "client_id": "globex-only",
                        "name": "Globex's",
                        "redirect_uris": ["https://g.example/cb"],
                        "flows": ["code"],
                        "organizations": ["globex"],
                    },
                ]
            )
        }
    ).provider_clients
    monkeypatch.setattr(clients, "settings", lambda: dataclasses.replace(settings(), provider_clients=configured))
    clients.preconfigured.cache_clear()
    try:
        every_org = RegisteredClient(client_id="every-org", secret=None, org="")
        globex_only = RegisteredClient(client_id="globex-only", secret=None, org="globex")

        assert introspect(api, payroll, access_token(bob, every_org)).body["active"] is True
        assert introspect(api, payroll, access_token(bob, globex_only)).body == {"active": False}
    finally:
        clients.preconfigured.cache_clear()
