"""The IdP's JWKS as keyward fetches it (docs/operations.md, "Rotating the IdP's keys"): a token
whose ``kid`` is unknown cannot make each sign-in fetch the JWKS again, yet a key the IdP rotated
in is found once the cool-down has passed. Played against a JWKS URL served on loopback that
counts its fetches."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest

from chalicelib.access import identity
from chalicelib.base.config import IdentityProvider
from chalicelib.base.errors import InvalidIdToken
from devstack.idp import DevIdentityProvider


class _Jwks:
    """A JWKS URL whose key set can change, and how often it was fetched."""

    def __init__(self, provider: DevIdentityProvider) -> None:
        self.document = provider.jwks_json()
        self.fetches = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                body = jwks.document.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"


@pytest.fixture
def jwks_url() -> Iterator[tuple[_Jwks, DevIdentityProvider]]:
    provider = DevIdentityProvider.ephemeral()
    jwks = _Jwks(provider)
    thread = threading.Thread(target=jwks.server.serve_forever, daemon=True)
    thread.start()
    yield jwks, provider
    jwks.server.shutdown()
    jwks.server.server_close()


def _source(url: str) -> identity._KeySource:
    return identity._KeySource(
        IdentityProvider(
            issuer="https://idp.example.com",
            audience="keyward",
            jwks_url=url,
            jwks_json=None,
            org_claim="org",
            groups_claim="groups",
            admin_group="admins",
            name_claim="name",
            email_claim="email",
            organizations=None,
        )
    )


def _with_kid(provider: DevIdentityProvider, kid: str) -> str:
    return jwt.encode({"sub": "bob"}, provider._private_key, algorithm="RS256", headers={"kid": kid})


def test_tokens_with_random_kids_cost_no_fetch_each(jwks_url):
    jwks, provider = jwks_url
    source = _source(jwks.url)
    assert source.key_for(_with_kid(provider, provider.kid)).key_id == provider.kid
    assert jwks.fetches == 1
    for _ in range(25):
        with pytest.raises(InvalidIdToken):
            source.key_for(_with_kid(provider, secrets.token_urlsafe(8)))
    # An attacker's made-up key IDs reach the IdP at most once per cool-down, not once each.
    assert jwks.fetches <= 2
    # And the known key still verifies without a fetch.
    assert source.key_for(_with_kid(provider, provider.kid)).key_id == provider.kid
    assert jwks.fetches <= 2


def test_a_key_the_idp_rotated_in_is_fetched_once_the_cool_down_passed(jwks_url, monkeypatch):
    jwks, provider = jwks_url
    source = _source(jwks.url)
    assert source.key_for(_with_kid(provider, provider.kid)).key_id == provider.kid
    rotated = DevIdentityProvider.ephemeral()
    jwks.document = json.dumps(
        {"keys": json.loads(provider.jwks_json())["keys"] + json.loads(rotated.jwks_json())["keys"]}
    )
    later = jwt.jwks_client.time.monotonic() + 31
    monkeypatch.setattr(jwt.jwks_client.time, "monotonic", lambda: later)
    assert source.key_for(_with_kid(rotated, rotated.kid)).key_id == rotated.kid
    assert jwks.fetches == 2
