"""The OpenID provider held to the specifications a relying party's library holds it to: OpenID
Connect Discovery §3, the token response of RFC 6749 §5.1 and its errors (§5.2), RFC 9207's ``iss``
in every authorization response once discovery announces it, ``auth_time`` when ``max_age`` was
asked for (OIDC Core §2), the form_post answer page (OAuth 2.0 Form Post Response Mode) under the
page's Content Security Policy, and the JWKS's certificates."""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest

from chalicelib.base.config import settings
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import KeywardClient, Member, Reply
from tests.support.oidc import (
    ENTRA_REDIRECT_URI,
    ISSUER,
    REDIRECT_URI,
    authorization_request,
    callback_url,
    key_check,
    local_path,
    metadata,
    register_client,
    relying_party,
    request_id_of,
    verified_id_token,
)

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def bob(api: KeywardClient) -> Member:
    first = api.login(user="bob")
    assert api.add_key(first, SoftwareAuthenticator()).status == 201
    return api.mfa_login(org="acme", user="bob", authenticator=first.authenticators[0])


def _token_request(api: KeywardClient, form: dict[str, str], *, basic: tuple[str, str] | None = None) -> Any:
    headers = {"content-type": FORM}
    if basic is not None:
        headers["authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    return api.client.http.request(method="POST", path="/oidc/token", headers=headers, body=urlencode(form).encode())


def _code(api: KeywardClient, member: Member, **params: Any) -> tuple[str, str, str, str]:
    client_id, secret = register_client()
    assert secret is not None
    session = relying_party(api, client_id=client_id, secret=secret)
    verifier = secrets.token_urlsafe(48)
    request_id, _ = authorization_request(api, session, verifier, **params)
    answer = key_check(api, member.token, request_id, member.authenticators[0])
    return client_id, secret, answer["done"]["params"]["code"], verifier


def test_discovery_has_every_required_member_of_openid_connect_discovery(api: KeywardClient) -> None:
    document = metadata(relying_party(api, client_id="any", secret=None))
    for required in (
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ):
        assert document.get(required), required
    assert document["issuer"] == ISSUER and not document["issuer"].endswith("/")
    assert "RS256" in document["id_token_signing_alg_values_supported"]  # §3: MUST be included
    assert "openid" in document["scopes_supported"]
    assert set(document["response_modes_supported"]) >= {"query", "form_post"}
    assert document["authorization_response_iss_parameter_supported"] is True
    assert "plain" not in document["code_challenge_methods_supported"]


def test_the_token_response_is_never_cached_and_says_what_it_holds(api: KeywardClient, bob: Member) -> None:
    client_id, secret, code, verifier = _code(api, bob)
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": REDIRECT_URI}
    answer = _token_request(api, form, basic=(client_id, secret))
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store" and answer.headers["Pragma"] == "no-cache"
    body = json.loads(answer.body)
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600 and body["scope"] == "openid"
    again = _token_request(api, form, basic=(client_id, secret))
    assert again.status_code == 400 and again.headers["Cache-Control"] == "no-store"
    assert set(json.loads(again.body)) == {"error", "error_description"}


def test_a_client_failing_basic_authentication_is_challenged(api: KeywardClient, bob: Member) -> None:
    client_id, _, code, verifier = _code(api, bob)
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": REDIRECT_URI}
    answer = _token_request(api, form, basic=(client_id, "wrong"))
    assert answer.status_code == 401 and json.loads(answer.body)["error"] == "invalid_client"
    assert answer.headers["WWW-Authenticate"].startswith("Basic ")


def test_a_confidential_clients_code_is_not_redeemed_without_its_secret(api: KeywardClient, bob: Member) -> None:
    """Who stole a code and its verifier still lacks the client's secret."""
    client_id, secret, code, verifier = _code(api, bob)
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": REDIRECT_URI}
    answer = _token_request(api, {**form, "client_id": client_id})
    assert answer.status_code == 401 and json.loads(answer.body)["error"] == "invalid_client"
    assert _token_request(api, form, basic=(client_id, secret)).status_code == 200


def test_an_unsupported_grant_type_is_named(api: KeywardClient) -> None:
    client_id, secret = register_client()
    assert secret is not None
    answer = _token_request(api, {"grant_type": "password", "username": "bob"}, basic=(client_id, secret))
    assert answer.status_code == 400 and json.loads(answer.body)["error"] == "unsupported_grant_type"


# --- RFC 9207: iss in every authorization response -----------------------------------------------


def test_every_query_response_names_the_issuer(api: KeywardClient, bob: Member) -> None:
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    request_id, _ = authorization_request(api, session, secrets.token_urlsafe(48))
    granted = key_check(api, bob.token, request_id, bob.authenticators[0])["done"]
    assert granted["params"]["iss"] == ISSUER

    request_id, _ = authorization_request(api, session, secrets.token_urlsafe(48))
    declined = api.call("POST", f"/oidc/authorize/{request_id}/cancel").body["done"]
    assert declined["params"]["iss"] == ISSUER and declined["params"]["error"] == "access_denied"

    session.code_challenge_method = None
    url, _ = session.create_authorization_url(f"{ISSUER}/oidc/authorize")
    refused = api.call("GET", local_path(url))
    assert parse_qs(urlsplit(refused.headers["Location"]).query)["iss"] == [ISSUER]


def _entra(api: KeywardClient) -> Any:
    client_id, _ = register_client(
        client_id=settings().oidc_audience, secret=None, redirect_uris=(ENTRA_REDIRECT_URI,), flows=("id_token",)
    )
    return relying_party(api, client_id=client_id, secret=None, redirect_uri=ENTRA_REDIRECT_URI)


def _entra_page(api: KeywardClient, session: Any, hint: str) -> Reply:
    url, _ = session.create_authorization_url(
        f"{ISSUER}/oidc/authorize", response_type="id_token", response_mode="form_post", nonce="n", state="st",
        id_token_hint=hint,
    )  # fmt: skip
    return api.call("POST", "/oidc/authorize", raw=urlsplit(url).query, headers={"content-type": FORM})


def _posted(page: Reply) -> dict[str, str]:
    return {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.body)
    }


def test_every_form_post_response_names_the_issuer(api: KeywardClient, idp: Any, bob: Member) -> None:
    session = _entra(api)
    refused = _posted(_entra_page(api, session, idp.mint(org="globex", user="bob", lifetime_seconds=-1)))
    assert refused["error"] == "access_denied" and refused["iss"] == ISSUER

    request_id = request_id_of(_entra_page(api, session, idp.mint(org="acme", user="bob", lifetime_seconds=-1)))
    token = api.call("POST", f"/oidc/authorize/{request_id}/session").body["token"]
    granted = key_check(api, token, request_id, bob.authenticators[0])["done"]
    assert granted["mode"] == "form_post"
    assert granted["params"]["iss"] == ISSUER
    assert jwt.decode(granted["params"]["id_token"], options={"verify_signature": False})["iss"] == ISSUER


# --- the ID token --------------------------------------------------------------------------------


def test_max_age_gets_an_auth_time_no_later_than_the_tokens_issue(api: KeywardClient, bob: Member) -> None:
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    verifier = secrets.token_urlsafe(48)
    request_id, _ = authorization_request(api, session, verifier, max_age=0)
    answer = key_check(api, bob.token, request_id, bob.authenticators[0])  # max_age=0: a check now
    token = session.fetch_token(
        metadata(session)["token_endpoint"], authorization_response=callback_url(answer["done"]), code_verifier=verifier
    )
    claims = verified_id_token(session, token["id_token"], audience=client_id)
    assert isinstance(claims["auth_time"], int) and claims["auth_time"] <= claims["iat"]
    assert claims["iat"] - claims["auth_time"] < 60
    if "at_hash" in claims:  # OIDC Core §3.1.3.6: optional in the code flow, and then right
        digest = __import__("hashlib").sha256(token["access_token"].encode()).digest()
        assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


# --- the form_post page and its Content Security Policy ------------------------------------------


def test_the_form_post_page_posts_itself_by_the_consoles_script_under_its_csp(api: KeywardClient, idp: Any) -> None:
    page = _entra_page(api, _entra(api), idp.mint(org="globex", user="bob", lifetime_seconds=-1))
    assert page.status == 200
    assert 'data-step="respond"' in page.body
    assert re.search(rf'<form id="response" method="post" action="{re.escape(ENTRA_REDIRECT_URI)}">', page.body)
    # No inline script: the page's one script is the console's, which submits #response.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.body, flags=re.S)
    assert scripts and all(
        'src="console/authorize.js"' in attributes and not body.strip() for attributes, body in scripts
    )
    assert "on" + "load=" not in page.body.lower() and "onclick=" not in page.body.lower()
    script = api.call("GET", "/console/authorize.js")
    assert script.status == 200 and "authorizeScreen.response.submit()" in script.body
    csp = {
        directive.split()[0]: directive.split()[1:]
        for directive in page.headers["Content-Security-Policy"].split(";")
        if directive.strip()
    }
    assert csp["script-src"] == ["'self'"] and csp["default-src"] == ["'none'"]
    assert csp["form-action"] == ["https://login.microsoftonline.com"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"
    # A button submits it where the script does not run.
    assert '<button type="submit">' in page.body


def test_the_key_check_page_may_post_only_to_the_clients_origin(api: KeywardClient) -> None:
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    url, _ = session.create_authorization_url(f"{ISSUER}/oidc/authorize", code_verifier=secrets.token_urlsafe(48))
    page = api.call("GET", local_path(url))
    assert "form-action https://app.example;" in page.headers["Content-Security-Policy"]


def test_every_published_key_has_its_certificate(api: KeywardClient, bob: Member) -> None:
    client_id, secret, code, verifier = _code(api, bob)
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": REDIRECT_URI}
    assert _token_request(api, form, basic=(client_id, secret)).status_code == 200  # signed with the key
    keys = api.call("GET", "/oidc/jwks").body["keys"]
    assert keys
    for key in keys:
        assert key["kid"] and key["use"] == "sig" and key["alg"] in ("RS256", "ES256")
        assert key["x5c"] and key["x5t"] and key["x5t#S256"]
        assert "d" not in key and "p" not in key
