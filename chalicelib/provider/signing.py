"""The OpenID provider's signing keys: what signs its tokens and what the JWKS publishes.

Every token the provider issues is a JWS signed by the *current* key of its algorithm (RS256, which
Entra requires, or ES256 where a client's registration asks for it). A key is published in the
JWKS while it is current and, once retired, until every token it signed has expired, so that a
relying party that cached the JWKS never meets a token it cannot verify, nor one signed by a key
that was retired long ago. On AWS a private key never leaves KMS; locally it is a PEM file under
the local stage's key directory (``.devstack/provider-keys``), created on first use.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.errors import ConfigurationError
from chalicelib.base.models import SigningKey

ALGORITHMS = ("RS256", "ES256")
CURRENT, RETIRED = "current", "retired"


@dataclass(frozen=True)
class PublishedKey:
    """A key of the JWKS: its ``kid``, algorithm and public JWK."""

    kid: str
    algorithm: str
    jwk: dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _compact(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def _keys() -> list[SigningKey]:
    # A handful of items: the current key of each algorithm and the retired ones still published.
    return list(SigningKey.scan(consistent_read=True))


def _published(keys: list[SigningKey], now: datetime) -> list[SigningKey]:
    return [
        key for key in keys if key.state == CURRENT or (key.published_until is not None and key.published_until > now)
    ]


def published_keys() -> list[PublishedKey]:
    """The keys a relying party may meet in a token now: current ones and retired ones whose
    tokens may not have expired yet."""
    return [
        PublishedKey(kid=key.kid, algorithm=key.algorithm, jwk=json.loads(key.public_jwk))
        for key in _published(_keys(), clock.now())
    ]


def jwks() -> dict[str, Any]:
    """The JWK Set at the discovery document's ``jwks_uri`` (RFC 7517 §5)."""
    return {"keys": [key.jwk for key in published_keys()]}


def _current(algorithm: str) -> SigningKey:
    if algorithm not in ALGORITHMS:
        raise ConfigurationError(f"The provider signs with {', '.join(ALGORITHMS)}, not {algorithm!r}.")
    current = [key for key in _keys() if key.state == CURRENT and key.algorithm == algorithm]
    if current:
        # Two processes may have created the first local key at once: the newest signs.
        return max(current, key=lambda key: key.created_at)
    if settings().provider_key_dir is None:
        raise ConfigurationError(
            f"The provider has no current {algorithm} signing key: run `python -m keyward keys rotate`."
        )
    return _create_local_key(algorithm)


def sign(claims: dict[str, Any], *, algorithm: str = "RS256", typ: str = "JWT") -> str:
    """A compact JWS of ``claims``, signed by the current key of ``algorithm``."""
    key = _current(algorithm)
    header = {"alg": algorithm, "kid": key.kid, "typ": typ}
    signing_input = f"{_b64(_compact(header))}.{_b64(_compact(claims))}"
    signature = _sign_locally(key, signing_input.encode("ascii"))
    return f"{signing_input}.{_b64(signature)}"


def verify(token: str, *, typ: str | None = None, audience: str | None = None) -> dict[str, Any]:
    """The claims of a token this provider signed with a key it still publishes, checked for
    issuer, expiry and (when given) audience and header ``typ``.

    Raises:
        jwt.PyJWTError: any failure; callers turn it into their own refusal.
    """
    import jwt

    header = jwt.get_unverified_header(token)
    if typ is not None and header.get("typ") != typ:
        raise jwt.InvalidTokenError("The token is of another type.")
    published = {key.kid: key for key in published_keys()}
    key = published.get(header.get("kid", ""))
    if key is None:
        raise jwt.InvalidTokenError("The token is not signed by a key this provider publishes.")
    return jwt.decode(
        token,
        key=jwt.PyJWK(key.jwk).key,
        algorithms=[key.algorithm],
        issuer=settings().provider_issuer,
        audience=audience,
        options={"require": ["exp", "iat", "iss"], "verify_aud": audience is not None},
    )


# --- the local stage's keys -----------------------------------------------------------------------


def _key_dir() -> Path:
    directory = settings().provider_key_dir
    if directory is None:
        raise ConfigurationError("KEYWARD_PROVIDER_KEY_DIR is not set.")
    return Path(directory)


def _create_local_key(algorithm: str) -> SigningKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm == "RS256":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        private_key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    kid = f"{algorithm.lower()}-{secrets.token_hex(8)}"
    directory = _key_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{kid}.pem"
    path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    jwk.pop("key_ops", None)
    key = SigningKey(
        kid,
        algorithm=algorithm,
        public_jwk=json.dumps({**jwk, "kid": kid, "use": "sig", "alg": algorithm}),
        private_key_ref=path.name,
        state=CURRENT,
        created_at=clock.now(),
    )
    key.save(condition=SigningKey.kid.does_not_exist())
    return key


def _sign_locally(key: SigningKey, signing_input: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    private_key = serialization.load_pem_private_key((_key_dir() / key.private_key_ref).read_bytes(), password=None)
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        # JWS wants ES256 as r || s, 32 bytes each (RFC 7518 §3.4), not DER.
        r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    raise ConfigurationError(f"The signing key {key.kid} is neither RSA nor EC.")
