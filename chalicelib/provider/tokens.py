"""What the provider's tokens say: the ID token (OIDC Core §2) a relying party reads to learn that
a member just proved a key, and the access token (RFC 9068) an API accepts while the member's
keyward session stands.

A key check proves possession of a hardware-bound key (RFC 8176 ``hwk``) by a present user
(``user``), and, when the authenticator verified the user, a PIN or biometric too (``pin``).
Entra's external authentication method profile wants one ``amr`` value from those it lists and
one ``acr`` from those it asked for (the profile's "Microsoft Entra ID processing of the provider
response"); :func:`authentication_context` chooses them from the request's ``claims``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.base import clock
from chalicelib.base.errors import InvalidAuthorizationRequest
from chalicelib.provider import discovery, signing

ID_TOKEN_SECONDS = 300
ACCESS_TOKEN_SECONDS = 600
DEFAULT_ACR = "possessionorinherence"
# The amr values a key check earns, and those of Entra's list that name it: "hwk" first, as
# RFC 8176 and Entra's table both define it (a possession factor).
_AMR_FOR_ENTRA = ("hwk", "fido", "pop")


@dataclass(frozen=True)
class AuthenticationContext:
    """What an ID token says about the check: ``acr`` and ``amr``."""

    acr: str
    amr: tuple[str, ...]


def authentication_context(
    *, claims_request: dict[str, Any], acr_values: tuple[str, ...], user_verified: bool
) -> AuthenticationContext:
    """The ``acr`` and ``amr`` for a check, as the request asked for them.

    ``acr``: the first requested value a security key satisfies (a ``claims`` request's
    ``id_token.acr.values``, else ``acr_values``); OIDC Core §5.5.1.1 lets an unsatisfiable
    voluntary request go unmet, an essential one is refused. ``amr``: RFC 8176 ``hwk``, ``user``
    and ``pin`` when the user was verified; when the request names ``amr`` values (Entra does),
    the one of them a key check earns, alone, as the profile requires.

    Raises:
        InvalidAuthorizationRequest (``access_denied``): an essential acr or amr a key check cannot meet.
    """
    requested = claims_request.get("id_token")
    id_token_claims: dict[str, Any] = requested if isinstance(requested, dict) else {}
    acr_request = _member(id_token_claims, "acr")
    amr_request = _member(id_token_claims, "amr")

    requested_acr = _values(acr_request) or acr_values
    acr = next((value for value in requested_acr if value in discovery.ACR_VALUES), None)
    if acr is None:
        if requested_acr and acr_request.get("essential") is True:
            raise InvalidAuthorizationRequest(
                "A security key cannot satisfy the requested authentication context.", error="access_denied"
            )
        acr = DEFAULT_ACR

    requested_amr = _values(amr_request)
    if requested_amr:
        method = next((value for value in _AMR_FOR_ENTRA if value in requested_amr), None)
        if method is None:
            if amr_request.get("essential") is True:
                raise InvalidAuthorizationRequest(
                    "A security key is none of the requested authentication methods.", error="access_denied"
                )
            method = "hwk"
        return AuthenticationContext(acr=acr, amr=(method,))
    return AuthenticationContext(acr=acr, amr=("hwk", "user", "pin") if user_verified else ("hwk", "user"))


def _member(claims: dict[str, Any], name: str) -> dict[str, Any]:
    """The request for one claim (OIDC Core §5.5.1): an object, or null for "any value"."""
    found = claims.get(name)
    return found if isinstance(found, dict) else {}


def _values(request: dict[str, Any]) -> tuple[str, ...]:
    values = request.get("values")
    if isinstance(request.get("value"), str):
        values = [request["value"]]
    if not isinstance(values, list):
        return ()
    return tuple(value for value in values if isinstance(value, str))


@dataclass(frozen=True)
class Subject:
    """Whom a token is about and the check behind it."""

    org_id: str
    user_id: str
    session_id: str | None
    auth_time: datetime
    context: AuthenticationContext
    admin: bool
    tenant_id: str | None = None


def id_token(*, subject: Subject, client_id: str, algorithm: str, nonce: str | None) -> str:
    """An ID token (OIDC Core §2, and the profile's required claims): signed with the client's
    registered algorithm, valid for five minutes."""
    now = int(clock.now().timestamp())
    claims: dict[str, Any] = {
        "iss": discovery.issuer(),
        "sub": subject.user_id,
        "aud": client_id,
        "iat": now,
        "exp": now + ID_TOKEN_SECONDS,
        "auth_time": int(subject.auth_time.timestamp()),
        "acr": subject.context.acr,
        "amr": list(subject.context.amr),
        "org": subject.org_id,
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if subject.tenant_id is not None:
        claims["tid"] = subject.tenant_id
    if subject.session_id is not None:
        claims["sid"] = subject.session_id
    return signing.sign(claims, algorithm=algorithm, typ="JWT")


def access_token(*, subject: Subject, client_id: str, scope: str) -> tuple[str, int]:
    """An access token (RFC 9068, ``typ`` ``at+jwt``) and its lifetime in seconds; alive only while
    its session (``sid``) stands, which introspection and the authorizer check."""
    if subject.session_id is None:
        raise ValueError("An access token needs the keyward session it lives by.")
    now = int(clock.now().timestamp())
    claims = {
        "iss": discovery.issuer(),
        "sub": subject.user_id,
        "aud": client_id,
        "client_id": client_id,
        "org": subject.org_id,
        "sid": subject.session_id,
        "scope": scope,
        "iat": now,
        "exp": now + ACCESS_TOKEN_SECONDS,
        "jti": secrets.token_urlsafe(16),
        "auth_time": int(subject.auth_time.timestamp()),
        "amr": list(subject.context.amr),
        "admin": subject.admin,
    }
    return signing.sign(claims, algorithm="RS256", typ="at+jwt"), ACCESS_TOKEN_SECONDS
