"""The IdP step: verify an organization's OIDC ID token and record who signed in.

The IdP is trusted for who the user is, which organization they belong to and whether they are
an admin; an organization and its members are created on the first login that names them.
"""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.access import joining, sessions, tenancy
from chalicelib.base import audit, clock, metrics
from chalicelib.base.config import IdentityProvider
from chalicelib.base.errors import (
    ConcurrentChange,
    ConfigurationError,
    IdentityProviderUnavailable,
    InvalidIdToken,
    NonceMismatch,
    SecurityKeyRequired,
)
from chalicelib.base.models import Member, MemberActivity, Organization, member_key
from chalicelib.base.storage import ConditionsFailed

if TYPE_CHECKING:
    import jwt

# Symmetric algorithms are refused: a JWKS publishes public keys only.
_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_CLOCK_SKEW_SECONDS = 30
_MAX_TOKEN_LENGTH = 16 * 1024


@dataclass(frozen=True)
class Identity:
    """Who the IdP says the user is."""

    org_id: str
    user_id: str
    name: str
    email: str
    admin: bool
    # The IdP that vouched for it (its ``iss``).
    issuer: str
    # The token's ``tid`` (Entra's tenant), which an ID token answering Entra's hint repeats.
    tenant_id: str | None = None


@dataclass(frozen=True)
class SignIn:
    """The outcome of a login: the new session and whose it is."""

    issued: sessions.IssuedSession
    org: Organization
    member: Member


class _KeySource:
    """The IdP's public keys, from an inline JWKS or fetched (and cached) from a URL."""

    def __init__(self, config: IdentityProvider) -> None:
        import jwt

        self._inline: jwt.PyJWKSet | None = None
        self._client: jwt.PyJWKClient | None = None
        if config.jwks_json:
            try:
                self._inline = jwt.PyJWKSet.from_json(config.jwks_json)
            except (jwt.PyJWTError, ValueError) as error:
                raise ConfigurationError(f"KEYWARD_JWKS_JSON is not a usable JWKS: {error}") from None
        elif config.jwks_url:
            self._client = jwt.PyJWKClient(config.jwks_url, cache_jwk_set=True, lifespan=600, timeout=5)
        else:
            raise ConfigurationError("Set KEYWARD_JWKS_URL or KEYWARD_JWKS_JSON to the IdP's signing keys.")

    def key_for(self, id_token: str) -> jwt.PyJWK:
        import jwt

        if self._client is not None:
            try:
                return self._client.get_signing_key_from_jwt(id_token)
            except jwt.PyJWKClientConnectionError:
                raise IdentityProviderUnavailable("The IdP's signing keys could not be fetched.") from None
            except jwt.PyJWTError:
                raise InvalidIdToken("The ID token is not signed by a key of the configured IdP.") from None
        assert self._inline is not None
        kid = jwt.get_unverified_header(id_token).get("kid")
        if kid is None and len(self._inline.keys) == 1:
            return self._inline.keys[0]
        # What PyJWKSet's lookup does, for a kid of any type: a token without one matches a key without one.
        key = next((key for key in self._inline.keys if key.key_id == kid), None)
        if key is None:
            raise InvalidIdToken("The ID token is not signed by a key of the configured IdP.")
        return key


@functools.cache
def _key_source(config: IdentityProvider) -> _KeySource:
    return _KeySource(config)


def _text_claim(claims: dict[str, Any], name: str, *, limit: int) -> str:
    value = claims.get(name, "")
    if not isinstance(value, str):
        return ""
    return value.strip()[:limit]


def _check_authorized_party(claims: dict[str, Any], *, audience: str) -> None:
    """OIDC Core §3.1.3.7 steps 4–5: a token for several audiences must name us as its ``azp``,
    the party it was issued to; otherwise another of its audiences could replay it here."""
    authorized_party = claims.get("azp")
    if isinstance(claims.get("aud"), list) and authorized_party is None:
        raise InvalidIdToken("The ID token names several audiences but no authorized party ('azp').")
    if authorized_party is not None and authorized_party != audience:
        raise InvalidIdToken("The ID token was issued to another party ('azp').")


def _check_nonce(claims: dict[str, Any], *, nonce: str | None) -> None:
    """OIDC Core §3.2.2.11: the token's ``nonce`` must be the one the client sent to the IdP for
    this sign-in, so a token captured from another sign-in cannot be injected into this one."""
    if nonce is None:
        return
    presented = claims.get("nonce")
    # The client chooses the nonce the IdP signs in, a lone surrogate included: compared as the
    # code points they are ("surrogatepass"), such a claim is simply another nonce.
    if not isinstance(presented, str) or not hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"),
        nonce.encode("utf-8", "surrogatepass"),
    ):
        raise NonceMismatch("The ID token's nonce is not the one this sign-in sent; sign in again.")


def verify_id_token(*, id_token: str, nonce: str | None = None, expired_grace_seconds: int = 0) -> Identity:
    """Verify an OIDC ID token: signature against the JWKS, ``iss``, ``aud``, ``azp``, ``exp``,
    ``iat``, and ``nonce`` when the client sent the one it made.

    ``expired_grace_seconds`` accepts a token that expired at most that long ago: an
    ``id_token_hint`` from Entra ID is issued expired on purpose, so that it serves as nothing but
    a hint (the OpenID provider's authorization requests; a login never passes it).

    Raises:
        InvalidIdToken: any verification failure, or claims keyward cannot use.
        NonceMismatch: the client sent a nonce and the token carries another, or none.
        IdentityProviderUnavailable: the JWKS URL did not answer.
    """
    import jwt  # only logins need it, not every cold start

    if len(id_token) > _MAX_TOKEN_LENGTH:
        raise InvalidIdToken("The ID token is too long.")
    try:
        # Only to choose whose keys verify it: the issuer is checked again with the signature.
        unverified_issuer = jwt.decode(id_token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError as error:
        raise InvalidIdToken(f"The ID token did not verify: {error}") from None
    config = tenancy.provider_for_issuer(unverified_issuer)
    if config is None:
        raise InvalidIdToken("The ID token's issuer is not an identity provider of this deployment.")
    try:
        key = _key_source(config).key_for(id_token)
        algorithm = key.algorithm_name
        if algorithm not in _ALGORITHMS:
            raise InvalidIdToken(f"ID tokens signed with {algorithm} are not accepted.")
        claims = jwt.decode(
            id_token,
            key=key.key,
            algorithms=[algorithm],
            audience=config.audience,
            issuer=config.issuer,
            leeway=_CLOCK_SKEW_SECONDS + expired_grace_seconds,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as error:
        raise InvalidIdToken(f"The ID token did not verify: {error}") from None
    _check_authorized_party(claims, audience=config.audience)
    _check_nonce(claims, nonce=nonce)

    org_id = claims.get(config.org_claim)
    if not isinstance(org_id, str) or not tenancy.valid_org_id(org_id):
        raise InvalidIdToken(f"The ID token has no usable '{config.org_claim}' claim naming the organization.")
    tenancy.check_configured_binding(provider=config, org_id=org_id)
    user_id = claims["sub"]
    if not isinstance(user_id, str) or not 0 < len(user_id) <= 255 or not user_id.isprintable():
        raise InvalidIdToken("The ID token's 'sub' claim is not a usable user ID.")
    if user_id.startswith(audit.BACKUP_USER_PREFIX):
        # That namespace names sessions opened with backup credentials; no IdP user may enter it.
        raise InvalidIdToken("The ID token's 'sub' claim is not a usable user ID.")
    groups = claims.get(config.groups_claim, [])
    if isinstance(groups, str):
        groups = [groups]
    admin = isinstance(groups, list) and config.admin_group in groups
    return Identity(
        org_id=org_id,
        user_id=user_id,
        name=_text_claim(claims, config.name_claim, limit=256),
        email=_text_claim(claims, config.email_claim, limit=256),
        admin=admin,
        issuer=config.issuer,
        tenant_id=claims["tid"] if isinstance(claims.get("tid"), str) else None,
    )


def record_sign_in(*, identity: Identity) -> tuple[Organization, Member, joining.Returning | None, bool]:
    """The organization and member an ID token names, read together with the member's activity
    item (one round trip); created when missing. A returning member's changes (the login time,
    on their activity item, and profile claims that changed) come back to be written with the
    login's session, so a returning member's login is one read and one transaction, and writes
    nothing keyed by the organization alone. The last value says whether the login was counted
    against the organization's login rate already (a first login is, with its member).

    Raises:
        UnknownOrganization, WrongIdentityProvider: see :mod:`chalicelib.access.tenancy`.
    """
    from pynamodb.transactions import TransactGet

    from chalicelib.access.sessions import found_in
    from chalicelib.base.models import connection

    signed_in = clock.now()
    for _ in range(2):
        with TransactGet(connection=connection()) as reads:
            org_future = reads.get(Organization, identity.org_id)
            member_future = reads.get(Member, identity.org_id, identity.user_id)
            activity_future = reads.get(MemberActivity, member_key(identity.org_id, identity.user_id))
        org = tenancy.organization_for_sign_in(
            org_id=identity.org_id, issuer=identity.issuer, found=found_in(org_future)
        )
        stored = found_in(member_future)
        if stored is not None:
            update = joining.returning(
                member=stored,
                activity=found_in(activity_future),
                name=identity.name,
                email=identity.email,
                admin=identity.admin,
                signed_in=signed_in,
            )
            return org, update.member, update, False
        member = joining.join(
            org=org,
            user_id=identity.user_id,
            name=identity.name,
            email=identity.email,
            admin=identity.admin,
            signed_in=signed_in,
        )
        if member is not None:
            return org, member, None, True
        # A simultaneous first login created the member: this one is a returning member's.
    # Created by another first login, then offboarded, both between this login's reads.
    raise ConcurrentChange("Your membership changed during this sign-in; sign in again.")


def sign_in(*, id_token: str, client: audit.Client, nonce: str | None = None) -> SignIn:
    """``POST /auth/login``: verify the ID token and start a session in the state it calls for."""
    return sign_in_as(identity=verify_id_token(id_token=id_token, nonce=nonce), client=client)


def sign_in_as(*, identity: Identity, client: audit.Client, method: str = "idp", key_required: bool = False) -> SignIn:
    """Start the session of a person their IdP vouched for (``identity``, verified), in the state
    it calls for; the login's audit event names the ``method`` (``idp``, or ``id_token_hint``
    when an OpenID provider's authorization request carried the ID token).

    ``key_required``: start none for a member without a security key (the OpenID provider's
    sessions exist only to check one).

    Raises:
        SecurityKeyRequired: ``key_required``, and the member holds no key.
    """
    org, member, update, counted = record_sign_in(identity=identity)
    if key_required and member.key_count == 0:
        raise SecurityKeyRequired("You hold no security key: register one in the keyward console first.")
    login = audit.event(
        org_id=org.org_id,
        actor=audit.member_actor(member.user_id),
        action="login",
        target=member.user_id,
        user_id=member.user_id,
        client=client,
        details={"method": method},
        spread_over=org,
    )
    try:
        issued = sessions.start(
            org=org,
            member=member,
            client=client,
            audit_event=login,
            also=update.add_to if update is not None else None,
            login_counted=counted,
        )
    except ConditionsFailed:
        # The member was offboarded between the read and the write: nothing was started.
        raise InvalidIdToken("The member changed during this sign-in; sign in again.") from None
    metrics.count("Logins", by=("Method", method), org=org.org_id, user=member.user_id)
    return SignIn(issued=issued, org=org, member=member)
