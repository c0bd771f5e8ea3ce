"""Relying parties: the apps and IdPs an organization's admins let ask keyward for a key check.

A relying party is registered by an admin of one organization and serves only that organization's
members. A confidential client authenticates with a secret shown once at creation; keyward keeps
only its SHA-256 (the secret carries 256 random bits, so no slow hash is needed). A public client
(a single-page or native app) has no secret and must use PKCE, as every code flow must.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist

from chalicelib.base.errors import InvalidClient, UnknownClient
from chalicelib.base.models import RelyingParty

FLOWS = ("code", "id_token")


@dataclass(frozen=True)
class Client:
    """A relying party as the provider reads it."""

    client_id: str
    org_id: str
    name: str
    redirect_uris: tuple[str, ...]
    flows: frozenset[str]
    confidential: bool
    signing_alg: str


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _client(item: RelyingParty) -> Client:
    return Client(
        client_id=item.client_id,
        org_id=item.org_id,
        name=item.name,
        redirect_uris=tuple(str(uri) for uri in item.redirect_uris or ()),
        flows=frozenset(item.flows or ()),
        confidential=item.secret_hash is not None,
        signing_alg=item.signing_alg or "RS256",
    )


def _stored(client_id: str) -> RelyingParty:
    if not isinstance(client_id, str) or not 0 < len(client_id) <= 128:
        raise UnknownClient("No relying party has this client ID.")
    try:
        return RelyingParty.get(client_id, consistent_read=True)
    except DoesNotExist:
        raise UnknownClient("No relying party has this client ID.") from None


def client_for(client_id: str) -> Client:
    """The relying party registered under ``client_id``.

    Raises:
        UnknownClient: none is.
    """
    return _client(_stored(client_id))


def authenticate(*, client_id: str, secret: str | None) -> Client:
    """The relying party, authenticated: a confidential client by its secret; a public client
    by presenting none (its code is bound by PKCE instead).

    Raises:
        InvalidClient: an unknown client, a wrong or missing secret, or a secret for a public client.
    """
    try:
        item = _stored(client_id)
    except UnknownClient:
        raise InvalidClient("The client could not be authenticated.") from None
    if item.secret_hash is None:
        if secret is not None:
            raise InvalidClient("The client is public and has no secret.")
        return _client(item)
    if secret is None or not hmac.compare_digest(secret_hash(secret), item.secret_hash):
        raise InvalidClient("The client could not be authenticated.")
    return _client(item)


def redirect_allowed(client: Client, redirect_uri: str) -> bool:
    """Whether ``redirect_uri`` is one the client registered, compared exactly (RFC 9700 §4.1.3)."""
    return redirect_uri in client.redirect_uris
