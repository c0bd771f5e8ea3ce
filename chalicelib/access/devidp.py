"""The local stage's stand-in IdP, for the console's demo sign-in: ID tokens signed with the dev
IdP's private key (``KEYWARD_DEV_IDP_KEY_FILE``), exactly as ``python -m devstack token`` mints them."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from chalicelib.base.config import settings
from chalicelib.base.errors import ConfigurationError, MalformedRequest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

# Long enough to sign in with, short enough that a token left in a log is soon useless.
ID_TOKEN_LIFETIME_SECONDS = 300
_MAX_NAME_LENGTH = 128


@functools.cache
def _signing_key(path: str) -> tuple[rsa.RSAPrivateKey, str]:
    """The dev IdP's private key and its ``kid``, read once per process."""
    # Loaded on the first demo sign-in, not at cold start.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        private_key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise ConfigurationError(
            f"KEYWARD_DEV_IDP_KEY_FILE ({path}) is not a readable PEM private key: {error}"
        ) from None
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ConfigurationError(f"KEYWARD_DEV_IDP_KEY_FILE ({path}) does not hold an RSA private key")
    return private_key, key_id(private_key.public_key())


def key_id(public_key: rsa.RSAPublicKey) -> str:
    """The dev IdP key's ``kid``: its RFC 7638 thumbprint, stable for as long as the key is."""
    numbers = public_key.public_numbers()
    required = {"e": _base64url_uint(numbers.e), "kty": "RSA", "n": _base64url_uint(numbers.n)}
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def _base64url_uint(value: int) -> str:
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@overload
def _text(value: object, *, field: str, required: Literal[True]) -> str: ...
@overload
def _text(value: object, *, field: str, required: bool) -> str | None: ...
def _text(value: object, *, field: str, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise MalformedRequest(f"'{field}' must be a non-empty string.")
    if len(value) > _MAX_NAME_LENGTH:
        raise MalformedRequest(f"'{field}' is longer than {_MAX_NAME_LENGTH} characters.")
    return value.strip()


def mint_id_token(*, org: object, user: object, admin: object, name: object = None, email: object = None) -> str:
    """``POST /dev/id-token``: an RS256 ID token for ``user`` of ``org`` from the dev IdP.

    The token is what the organization's IdP would hand over; ``POST /auth/login`` verifies it
    like any other (the local stage's JWKS holds the dev IdP's public key).

    Raises:
        MalformedRequest: a field is missing or of the wrong type.
        ConfigurationError: the stage has no usable dev IdP key.
    """
    org_id = _text(org, field="org", required=True)
    user_id = _text(user, field="user", required=True)
    if not isinstance(admin, bool):
        raise MalformedRequest("'admin' must be true or false.")
    display_name = _text(name, field="name", required=False)
    email_address = _text(email, field="email", required=False)

    import jwt

    config = settings()
    if config.dev_idp_key_file is None:
        raise ConfigurationError("KEYWARD_DEV_IDP_KEY_FILE is not set: this stage has no dev IdP.")
    private_key, kid = _signing_key(config.dev_idp_key_file)
    claims = id_token_claims(
        org=org_id,
        user=user_id,
        admin=admin,
        name=display_name,
        email=email_address,
        lifetime_seconds=ID_TOKEN_LIFETIME_SECONDS,
    )
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": kid})


def id_token_claims(
    *,
    org: str,
    user: str,
    admin: bool,
    name: str | None,
    email: str | None,
    lifetime_seconds: int,
    issuer: str | None = None,
    audience: str | None = None,
) -> dict[str, Any]:
    """The claims of a dev IdP ID token, named as this stage's settings expect them."""
    config = settings()
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer if issuer is not None else config.oidc_issuer,
        "aud": audience if audience is not None else config.oidc_audience,
        "sub": user,
        "iat": now,
        "exp": now + lifetime_seconds,
        config.org_claim: org,
        config.groups_claim: [config.admin_group] if admin else [],
    }
    # Left out unless given, so a sign-in keeps the names the member already has.
    if name is not None:
        claims[config.name_claim] = name
    if email is not None:
        claims[config.email_claim] = email
    return claims
