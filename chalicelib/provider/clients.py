"""Relying parties: the apps and IdPs an organization's admins let ask keyward for a key check.

A relying party is registered by an admin of one organization and serves only that organization's
members: every read and change of one names the organization, and another organization's client
is unknown to it. A confidential client authenticates with a secret shown once, at creation and
at each rotation; keyward keeps only its SHA-256 (the secret carries 256 random bits, so no slow
hash is needed). A public client (a single-page or native app) has no secret and may use only
the code flow, whose code PKCE binds: the ``id_token`` flow hands the token to whatever answers at
the redirect URI, which only a confidential client's server should be.

The operator may also configure relying parties for the whole stage (KEYWARD_PROVIDER_CLIENTS,
Entra ID's multi-tenant external authentication method): they have no secret, and serve the
organizations they list or, listing none, any organization whose member presents a valid ID token
hint (:attr:`Client.org_id` is then None).

A redirect URI is registered only when it is an absolute https URL — http only for a loopback host
(RFC 8252 §7.3) — without fragment, credentials or wildcard, and compared exactly at authorization
(RFC 9700 §4.1.3). Every change of a registration is written in one transaction with its audit event.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pynamodb.exceptions import DoesNotExist

from chalicelib.base import audit, clock
from chalicelib.base.config import PROVIDER_FLOWS, PROVIDER_SIGNING_ALGS, PreconfiguredClient, settings
from chalicelib.base.context import Caller
from chalicelib.base.errors import (
    ConfigurationError,
    InvalidClient,
    InvalidClientRegistration,
    InvalidRedirectUri,
    PublicClientHasNoSecret,
    UnknownClient,
)
from chalicelib.base.models import RelyingParty
from chalicelib.base.storage import ConditionsFailed, Item, transaction

# "code": code + PKCE; "id_token": the ID token posted back (form_post), Entra's profile.
FLOWS = PROVIDER_FLOWS
SIGNING_ALGS = PROVIDER_SIGNING_ALGS
CONFIDENTIAL = "confidential"
PUBLIC = "public"
CLIENT_TYPES = (CONFIDENTIAL, PUBLIC)
MAX_NAME_LENGTH = 100
MAX_REDIRECT_URIS = 10
MAX_REDIRECT_URI_LENGTH = 2048
# Hosts a native app's loopback redirect may name over plain http (RFC 8252 §7.3).
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_NOT_FOUND = "No relying party of this organization has this client ID."


@dataclass(frozen=True)
class Client:
    """A relying party as the provider reads it.

    ``org_id`` is the organization that registered it, or None for a client the operator
    configured for the stage: it serves ``organizations`` (None: any organization whose member
    presents a valid ID token hint). Ask :meth:`serves` rather than comparing ``org_id``.
    """

    client_id: str
    org_id: str | None
    name: str
    redirect_uris: tuple[str, ...]
    flows: frozenset[str]
    confidential: bool
    signing_alg: str
    organizations: frozenset[str] | None = None

    def serves(self, org_id: str) -> bool:
        """Whether the client may ask keyward about members of ``org_id``."""
        if self.org_id is not None:
            return self.org_id == org_id
        return self.organizations is None or org_id in self.organizations


@dataclass(frozen=True)
class Registered:
    """A relying party and the only copy of its secret the API ever shows (None for a public client)."""

    relying_party: RelyingParty
    secret: str | None


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


# --- the provider's lookups -----------------------------------------------------------------------


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


def _from_stage(configured: PreconfiguredClient) -> Client:
    for uri in configured.redirect_uris:
        try:
            check_redirect_uri(uri)
        except InvalidRedirectUri as refused:
            raise ConfigurationError(f"KEYWARD_PROVIDER_CLIENTS: {configured.client_id}: {refused}") from None
    return Client(
        client_id=configured.client_id,
        org_id=None,
        name=configured.name,
        redirect_uris=configured.redirect_uris,
        flows=configured.flows,
        confidential=False,
        signing_alg=configured.signing_alg,
        organizations=configured.organizations,
    )


@functools.cache
def preconfigured() -> dict[str, Client]:
    """The stage's operator-configured clients by client ID, their redirect URIs held to the rule.

    Raises:
        ConfigurationError: one of them registers a redirect URI the rule refuses.
    """
    return {configured.client_id: _from_stage(configured) for configured in settings().provider_clients}


def _stored(client_id: str) -> RelyingParty:
    if not isinstance(client_id, str) or not 0 < len(client_id) <= 128:
        raise UnknownClient(_NOT_FOUND)
    try:
        return RelyingParty.get(client_id, consistent_read=True)
    except DoesNotExist:
        raise UnknownClient(_NOT_FOUND) from None


def client_for(client_id: str) -> Client:
    """The relying party registered under ``client_id``, or configured for the stage.

    Raises:
        UnknownClient: none is.
    """
    stage_client = preconfigured().get(client_id)
    if stage_client is not None:
        return stage_client
    return _client(_stored(client_id))


def authenticate(*, client_id: str, secret: str | None) -> Client:
    """The relying party, authenticated: a confidential client by its secret; a public client
    (and one configured for the stage) by presenting none (its code is bound by PKCE instead).

    Raises:
        InvalidClient: an unknown client, a wrong or missing secret, or a secret for a public client.
    """
    stage_client = preconfigured().get(client_id)
    if stage_client is not None:
        if secret is not None:
            raise InvalidClient("The client is public and has no secret.")
        return stage_client
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


# --- what a registration may say --------------------------------------------------------------------


def check_redirect_uri(uri: object) -> str:
    """``uri``, if keyward registers it as a redirect URI (see the module docstring).

    Raises:
        InvalidRedirectUri: it is not.
    """
    if not isinstance(uri, str) or not uri:
        raise InvalidRedirectUri("Each redirect URI must be a non-empty string.")
    if len(uri) > MAX_REDIRECT_URI_LENGTH or not uri.isprintable() or " " in uri:
        raise InvalidRedirectUri(
            f"A redirect URI must be at most {MAX_REDIRECT_URI_LENGTH} printable characters without spaces."
        )
    if "*" in uri:
        raise InvalidRedirectUri(f"{uri!r}: redirect URIs are matched exactly; wildcards are not allowed.")
    if "#" in uri:
        raise InvalidRedirectUri(f"{uri!r}: a redirect URI must not have a fragment.")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
        host = parts.hostname
    except ValueError:
        raise InvalidRedirectUri(f"{uri!r} is not a URL.") from None
    if not host or parts.scheme not in ("https", "http"):
        raise InvalidRedirectUri(f"{uri!r} must be an absolute https URL.")
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise InvalidRedirectUri(f"{uri!r}: plain http is allowed only for localhost and 127.0.0.1.")
    if parts.username is not None or parts.password is not None:
        raise InvalidRedirectUri(f"{uri!r}: a redirect URI must not hold credentials.")
    return uri


def _redirect_uris(uris: object) -> list[str]:
    if not isinstance(uris, list) or not uris:
        raise InvalidRedirectUri("'redirect_uris' must be a non-empty list of URLs.")
    if len(uris) > MAX_REDIRECT_URIS:
        raise InvalidRedirectUri(f"A relying party registers at most {MAX_REDIRECT_URIS} redirect URIs.")
    checked = [check_redirect_uri(uri) for uri in uris]
    if len(set(checked)) != len(checked):
        raise InvalidRedirectUri("'redirect_uris' lists a URI twice.")
    return checked


def _name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidClientRegistration("'name' is required: the name members see when an app asks for their key.")
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidClientRegistration(f"'name' must be at most {MAX_NAME_LENGTH} printable characters.")
    return name


def _flows(flows: object) -> set[str]:
    if not isinstance(flows, list) or not flows or not all(isinstance(flow, str) and flow in FLOWS for flow in flows):
        raise InvalidClientRegistration(f"'flows' must be a non-empty list of {', '.join(repr(f) for f in FLOWS)}.")
    return set(flows)


def _signing_alg(alg: object) -> str:
    if alg not in SIGNING_ALGS:
        raise InvalidClientRegistration(f"'signing_alg' must be one of {', '.join(SIGNING_ALGS)}.")
    return str(alg)


def _check_public_flows(*, confidential: bool, flows: Iterable[str]) -> None:
    if not confidential and set(flows) != {"code"}:
        raise InvalidClientRegistration("A public client may use only the 'code' flow (with PKCE).")


# --- registering and changing -----------------------------------------------------------------------

# New client IDs drawn before giving up on finding one free (each is 144 random bits: never reached).
_ID_ATTEMPTS = 3


def create(
    *,
    caller: Caller,
    name: object,
    redirect_uris: object,
    flows: object,
    client_type: object = CONFIDENTIAL,
    signing_alg: object = "RS256",
) -> Registered:
    """``POST /org/oidc-clients``: register a relying party for the caller's organization.

    Raises:
        InvalidClientRegistration: the name, flows, type or signing algorithm is not registrable,
            or a public client asks for the ``id_token`` flow.
        InvalidRedirectUri: a redirect URI is not registrable, none is given or too many.
    """
    checked_name = _name(name)
    uris = _redirect_uris(redirect_uris)
    wanted_flows = _flows(flows)
    if client_type not in CLIENT_TYPES:
        raise InvalidClientRegistration(f"'type' must be {CONFIDENTIAL!r} or {PUBLIC!r}.")
    confidential = client_type == CONFIDENTIAL
    _check_public_flows(confidential=confidential, flows=wanted_flows)
    alg = _signing_alg(signing_alg)
    org_id = caller.session.org_id
    secret = new_secret() if confidential else None
    for _ in range(_ID_ATTEMPTS):
        client_id = secrets.token_urlsafe(18)
        if client_id in preconfigured():
            continue
        item = RelyingParty(
            client_id,
            org_id=org_id,
            name=checked_name,
            redirect_uris=uris,
            flows=wanted_flows,
            secret_hash=secret_hash(secret) if secret is not None else None,
            signing_alg=alg,
            created_at=clock.now(),
            created_by=caller.actor.name,
        )
        entry = audit.event(
            org_id=org_id,
            actor=caller.actor,
            action="oidc_client.created",
            target=client_id,
            client=caller.client,
            details={**_settings_of(item), "type": CONFIDENTIAL if confidential else PUBLIC},
        )
        try:
            with transaction() as write:
                # Globally unique: a token request names only the client.
                write.save(Item.RELYING_PARTY, item, condition=RelyingParty.client_id.does_not_exist())
                write.save(Item.AUDIT, entry)
        except ConditionsFailed:
            continue
        return Registered(relying_party=item, secret=secret)
    raise RuntimeError("no free client ID was drawn")  # pragma: no cover


def list_clients(*, org_id: str) -> list[RelyingParty]:
    """``GET /org/oidc-clients``: the organization's relying parties, oldest first."""
    found = list(RelyingParty.by_org.query(org_id))
    return sorted(found, key=lambda item: (item.created_at, item.client_id))


def get(*, org_id: str, client_id: str) -> RelyingParty:
    """``GET /org/oidc-clients/{client_id}``.

    Raises:
        UnknownClient: the organization registered no such client (another organization's is unknown too).
    """
    item = _stored(client_id)
    if item.org_id != org_id:
        raise UnknownClient(_NOT_FOUND)
    return item


def _settings_of(item: RelyingParty) -> dict[str, Any]:
    """What the audit log records of a registration: everything but its secret."""
    return {
        "name": item.name,
        "redirect_uris": list(item.redirect_uris or ()),
        "flows": sorted(item.flows or ()),
        "signing_alg": item.signing_alg,
    }


def _still_ours(org_id: str) -> Any:
    return RelyingParty.client_id.exists() & (RelyingParty.org_id == org_id)


def change(
    *,
    caller: Caller,
    client_id: str,
    name: object = None,
    redirect_uris: object = None,
    flows: object = None,
    signing_alg: object = None,
) -> RelyingParty:
    """``PATCH /org/oidc-clients/{client_id}``: rename it, or change its redirect URIs, flows or
    signing algorithm (None leaves one as it is). A change that changes nothing writes nothing.

    Raises:
        UnknownClient: the organization registered no such client, or it was deleted meanwhile.
        InvalidClientRegistration, InvalidRedirectUri: as for :func:`create`.
    """
    new_name = _name(name) if name is not None else None
    new_uris = _redirect_uris(redirect_uris) if redirect_uris is not None else None
    new_flows = _flows(flows) if flows is not None else None
    new_alg = _signing_alg(signing_alg) if signing_alg is not None else None
    org_id = caller.session.org_id
    item = get(org_id=org_id, client_id=client_id)
    if new_flows is not None:
        # Whether a client is public never changes, so the rule holds on what was read.
        _check_public_flows(confidential=item.secret_hash is not None, flows=new_flows)
    before = _settings_of(item)
    actions: list[Any] = []
    changed: list[str] = []
    if new_name is not None and new_name != item.name:
        actions.append(RelyingParty.name.set(new_name))
        item.name = new_name
        changed.append("name")
    if new_uris is not None and new_uris != list(item.redirect_uris or ()):
        # PynamoDB types a list of UnicodeAttribute as holding attributes, not the strings it holds.
        stored_uris: Any = new_uris
        actions.append(RelyingParty.redirect_uris.set(stored_uris))
        item.redirect_uris = stored_uris
        changed.append("redirect_uris")
    if new_flows is not None and new_flows != set(item.flows or ()):
        actions.append(RelyingParty.flows.set(new_flows))
        item.flows = new_flows
        changed.append("flows")
    if new_alg is not None and new_alg != item.signing_alg:
        actions.append(RelyingParty.signing_alg.set(new_alg))
        item.signing_alg = new_alg
        changed.append("signing_alg")
    if not actions:
        return item
    item.updated_at = clock.now()
    actions.append(RelyingParty.updated_at.set(item.updated_at))
    entry = audit.event(
        org_id=org_id,
        actor=caller.actor,
        action="oidc_client.changed",
        target=client_id,
        client=caller.client,
        details={
            **_settings_of(item),
            "changed": changed,
            "before": {field: before[field] for field in changed},
        },
    )
    try:
        with transaction() as write:
            write.update(Item.RELYING_PARTY, RelyingParty(client_id), actions=actions, condition=_still_ours(org_id))
            write.save(Item.AUDIT, entry)
    except ConditionsFailed:
        raise UnknownClient(_NOT_FOUND) from None
    return item


def delete(*, caller: Caller, client_id: str) -> None:
    """``DELETE /org/oidc-clients/{client_id}``: the client can no longer start an authorization or
    redeem a code (tokens it already holds expire as they would).

    Raises:
        UnknownClient: the organization registered no such client, or it was deleted meanwhile.
    """
    org_id = caller.session.org_id
    item = get(org_id=org_id, client_id=client_id)
    entry = audit.event(
        org_id=org_id,
        actor=caller.actor,
        action="oidc_client.deleted",
        target=client_id,
        client=caller.client,
        details=_settings_of(item),
    )
    try:
        with transaction() as write:
            write.delete(Item.RELYING_PARTY, RelyingParty(client_id), condition=_still_ours(org_id))
            write.save(Item.AUDIT, entry)
    except ConditionsFailed:
        raise UnknownClient(_NOT_FOUND) from None


def rotate_secret(*, caller: Caller, client_id: str) -> Registered:
    """``POST /org/oidc-clients/{client_id}/secret``: a new secret, shown once; the old one stops
    authenticating at once.

    Raises:
        UnknownClient: the organization registered no such client, or it was deleted meanwhile.
        PublicClientHasNoSecret: the client is public.
    """
    org_id = caller.session.org_id
    item = get(org_id=org_id, client_id=client_id)
    if item.secret_hash is None:
        raise PublicClientHasNoSecret("A public client authenticates with PKCE alone; it has no secret to rotate.")
    secret = new_secret()
    item.secret_hash = secret_hash(secret)
    item.updated_at = clock.now()
    entry = audit.event(
        org_id=org_id,
        actor=caller.actor,
        action="oidc_client.secret_rotated",
        target=client_id,
        client=caller.client,
        details={"name": item.name},
    )
    try:
        with transaction() as write:
            write.update(
                Item.RELYING_PARTY,
                RelyingParty(client_id),
                actions=[RelyingParty.secret_hash.set(item.secret_hash), RelyingParty.updated_at.set(item.updated_at)],
                condition=_still_ours(org_id) & RelyingParty.secret_hash.exists(),
            )
            write.save(Item.AUDIT, entry)
    except ConditionsFailed:
        raise UnknownClient(_NOT_FOUND) from None
    return Registered(relying_party=item, secret=secret)


def describe(item: RelyingParty) -> dict[str, Any]:
    """A registration as the API shows it: never its secret, nor the secret's hash."""
    return {
        "client_id": item.client_id,
        "name": item.name,
        "redirect_uris": list(item.redirect_uris or ()),
        "flows": sorted(item.flows or ()),
        "type": CONFIDENTIAL if item.secret_hash is not None else PUBLIC,
        "signing_alg": item.signing_alg or "RS256",
        "created_at": clock.iso(item.created_at),
        "created_by": item.created_by,
        "updated_at": clock.iso(item.updated_at) if item.updated_at is not None else None,
    }
