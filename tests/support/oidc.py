"""A relying party the project did not write (Authlib's OAuth2Session) talking to keyward's
OpenID provider, in this process: requests' transport is swapped for Chalice's test client, so
Authlib builds every authorization URL and token request itself. ID tokens are verified with
PyJWT against the JWKS that discovery names."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session
from requests.adapters import BaseAdapter

from chalicelib.base.models import RelyingParty
from chalicelib.provider.clients import secret_hash
from tests.support.keyward_client import KeywardClient, Reply

ISSUER = "http://localhost:8000"
REDIRECT_URI = "https://app.example/callback"
ENTRA_REDIRECT_URI = "https://login.microsoftonline.com/common/federation/externalauthprovider"


class ChaliceAdapter(BaseAdapter):
    """requests' transport over Chalice's in-process test client."""

    def __init__(self, client: Any) -> None:
        super().__init__()
        self._client = client

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(request.url or "")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        body = request.body.encode() if isinstance(request.body, str) else request.body
        answer = self._client.http.request(
            method=request.method, path=path, headers=dict(request.headers), body=body or b""
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers.update(answer.headers)
        response._content = answer.body if isinstance(answer.body, bytes) else answer.body.encode()
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def register_client(
    *,
    org_id: str = "acme",
    client_id: str | None = None,
    secret: str | None = "s3cret-" + "x" * 40,
    redirect_uris: tuple[str, ...] = (REDIRECT_URI,),
    flows: tuple[str, ...] = ("code",),
    signing_alg: str = "RS256",
) -> tuple[str, str | None]:
    client_id = client_id or f"app-{secrets.token_hex(4)}"
    RelyingParty(
        client_id,
        org_id=org_id,
        name="Expense reports",
        redirect_uris=list(redirect_uris),
        flows=set(flows),
        secret_hash=secret_hash(secret) if secret is not None else None,
        signing_alg=signing_alg,
        created_at=datetime.now(UTC),
        created_by="alice",
    ).save()
    return client_id, secret


def relying_party(
    api: KeywardClient, *, client_id: str, secret: str | None, redirect_uri: str = REDIRECT_URI, **kwargs: Any
) -> OAuth2Session:
    session = OAuth2Session(
        client_id=client_id,
        client_secret=secret,
        scope="openid",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
        **kwargs,
    )
    session.mount(ISSUER, ChaliceAdapter(api.client))
    return session


def metadata(session: OAuth2Session) -> dict[str, Any]:
    answer = session.get(f"{ISSUER}/.well-known/openid-configuration", withhold_token=True)
    assert answer.status_code == 200
    return answer.json()


def local_path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def request_id_of(page: Reply) -> str:
    assert page.status == 200, page.body
    found = re.search(r'data-request="([^"]+)"', page.body)
    assert found, page.body
    return found.group(1)


def verified_id_token(session: OAuth2Session, id_token: str, *, audience: str) -> dict[str, Any]:
    """The ID token's claims, checked as a relying party checks them: signature against the JWKS
    at discovery's jwks_uri, issuer, audience, expiry."""
    jwks = jwt.PyJWKSet.from_dict(session.get(metadata(session)["jwks_uri"], withhold_token=True).json())
    kid = jwt.get_unverified_header(id_token)["kid"]
    key = next(key for key in jwks.keys if key.key_id == kid)
    return jwt.decode(
        id_token,
        key=key.key,
        algorithms=["RS256", "ES256"],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )


def authorization_request(api: KeywardClient, session: OAuth2Session, verifier: str, **params: Any) -> tuple[str, str]:
    """The client's authorization request as Authlib builds it, sent by the browser: the pending
    request's ID on keyward's page, and the state Authlib chose."""
    url, state = session.create_authorization_url(
        metadata(session)["authorization_endpoint"], code_verifier=verifier, **params
    )
    return request_id_of(api.call("GET", local_path(url))), state


def key_check(api: KeywardClient, token: str, request_id: str, authenticator: Any) -> dict[str, Any]:
    """keyward's page: a challenge for the request, the member's key answers it; the page's answer."""
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


def callback_url(done: dict[str, Any]) -> str:
    """Where the browser lands with a query-mode answer."""
    assert done["mode"] == "query", done
    return f"{done['redirect_uri']}?{urlencode(done['params'])}"


def signed_in_through_keyward(
    api: KeywardClient, token: str, authenticator: Any, *, client_id: str, secret: str | None, **params: Any
) -> dict[str, Any]:
    """The whole code flow with PKCE for the member of session ``token``: the token response."""
    session = relying_party(api, client_id=client_id, secret=secret)
    verifier = secrets.token_urlsafe(48)
    request_id, _ = authorization_request(api, session, verifier, **params)
    answer = key_check(api, token, request_id, authenticator)
    assert answer["refusal"] is None, answer
    return dict(
        session.fetch_token(
            metadata(session)["token_endpoint"],
            authorization_response=callback_url(answer["done"]),
            code_verifier=verifier,
        )
    )
