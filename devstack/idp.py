"""A local stand-in for an organization's OIDC identity provider: one RSA key, RS256 ID tokens."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from chalicelib.access.devidp import id_token_claims, key_id

DEFAULT_KEY_PATH = Path(__file__).resolve().parent.parent / ".devstack" / "idp-key.pem"


class DevIdentityProvider:
    """Mints ID tokens the way an organization's IdP would, for keyward's ``local`` stage."""

    def __init__(self, *, private_key: rsa.RSAPrivateKey) -> None:
        self._private_key = private_key
        public_jwk: dict[str, Any] = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        # RFC 7517 asks for "use" or "key_ops", not both; "use" is what IdPs publish.
        public_jwk.pop("key_ops", None)
        self._public_jwk = {**public_jwk, "kid": key_id(private_key.public_key()), "use": "sig", "alg": "RS256"}

    @classmethod
    def ephemeral(cls) -> DevIdentityProvider:
        """A provider whose key lives only in memory, for tests."""
        return cls(private_key=_new_key())

    @classmethod
    def load_or_create(cls, path: Path = DEFAULT_KEY_PATH) -> DevIdentityProvider:
        """The provider whose key is kept at ``path``, creating the key the first time."""
        if not path.exists():
            _create_key_file(path)
        private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA private key")
        return cls(private_key=private_key)

    @property
    def kid(self) -> str:
        return str(self._public_jwk["kid"])

    def jwks_json(self) -> str:
        """The provider's public keys, as the JWKS document keyward verifies tokens with."""
        return json.dumps({"keys": [self._public_jwk]}, sort_keys=True)

    def mint(
        self,
        *,
        org: str,
        user: str,
        admin: bool = False,
        name: str | None = None,
        email: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        lifetime_seconds: int = 3600,
        **extra_claims: Any,
    ) -> str:
        """An RS256 ID token for ``user`` of ``org``; ``extra_claims`` override the standard ones.

        Claim names, the admin group, issuer and audience default to what this process's
        settings say keyward expects. ``name`` and ``email`` are left out when not given.
        """
        claims = id_token_claims(
            org=org,
            user=user,
            admin=admin,
            name=name,
            email=email,
            lifetime_seconds=lifetime_seconds,
            issuer=issuer,
            audience=audience,
        )
        claims.update(extra_claims)
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": self.kid})


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = _new_key().private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    # mkstemp creates the file 0600; linking it into place either publishes a complete key or
    # finds that a concurrent `devstack` already did, whose key then wins.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".idp-key-")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)
