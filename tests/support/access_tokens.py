"""Relying parties and access tokens as the OpenID provider registers and issues them (the claims
of RFC 9068 and keyward's own, as the provider's token endpoint writes them), for tests of what
accepts them: token introspection and the API Gateway authorizer."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.models import RelyingParty
from chalicelib.provider import clients, signing
from tests.support.keyward_client import Member

ACCESS_TOKEN_LIFETIME = 600


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    secret: str | None
    org: str


def register_client(org: str = "acme", *, confidential: bool = True) -> RegisteredClient:
    """A relying party of ``org``, stored as its registration stores it."""
    client_id = f"client-{secrets.token_hex(6)}"
    secret = secrets.token_urlsafe(32) if confidential else None
    RelyingParty(
        client_id,
        org_id=org,
        name="Payroll",
        redirect_uris=["https://payroll.example/callback"],
        flows={"code"},
        secret_hash=clients.secret_hash(secret) if secret else None,
        created_at=clock.now(),
        created_by="alice",
    ).save()
    return RegisteredClient(client_id=client_id, secret=secret, org=org)


def session_id_of(member: Member) -> str:
    return member.token.split(".")[3]


def access_claims(member: Member, client: RegisteredClient, **overrides: Any) -> dict[str, Any]:
    issued = int(clock.now().timestamp())
    claims = {
        "iss": settings().provider_issuer,
        "sub": member.user,
        "aud": client.client_id,
        "client_id": client.client_id,
        "org": member.org,
        "sid": session_id_of(member),
        "scope": "openid",
        "iat": issued,
        "exp": issued + ACCESS_TOKEN_LIFETIME,
        "jti": secrets.token_urlsafe(16),
        "auth_time": issued,
        "amr": ["hwk", "user"],
        "admin": False,
    }
    return {**claims, **overrides}


def access_token(member: Member, client: RegisteredClient, **overrides: Any) -> str:
    """An access token for ``member``'s session, issued to ``client``, signed by the provider's key."""
    return signing.sign(access_claims(member, client, **overrides), typ="at+jwt")


def foreign_access_token(member: Member, client: RegisteredClient) -> str:
    """The same claims, signed by a key the provider never had, under the ``kid`` of its own
    current key: only the signature tells them apart."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    access_token(member, client)  # the provider has a current key
    [published] = [key for key in signing.published_keys() if key.algorithm == "RS256"]
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(
        access_claims(member, client), forged, algorithm="RS256", headers={"kid": published.kid, "typ": "at+jwt"}
    )
