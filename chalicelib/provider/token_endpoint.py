"""The token endpoint (RFC 6749 §3.2, OIDC Core §3.1.3): a relying party redeems its code for an
ID token and an access token.

The rules: the client authenticates (its secret, by HTTP Basic or in the body; a public client
by presenting none, its code being bound by PKCE instead); the code is one this provider issued
to that client, for exactly this ``redirect_uri`` (RFC 6749 §4.1.3), unexpired, and its PKCE
verifier hashes to the stored challenge (RFC 7636 §4.6); the keyward session the code was issued
under still stands — a session ended by enforcement, logout or offboarding between the key check
and the redemption issues nothing. The code is used up by a write conditional on ``used_at``
being absent, with the issuance's audit event: of two redemptions, one succeeds. Every refused
redemption of a code this provider issued is audited with its reason (another client's code, a
second redemption, an expired code, another redirect URI, a wrong verifier, an ended session):
each may be a stolen code in use. RFC 6749 §4.1.2: the first redemption's tokens live only as
long as their session, which the organization's admins can end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.access import sessions
from chalicelib.base import audit, clock, metrics
from chalicelib.base.errors import InvalidGrant, UnsupportedGrantType
from chalicelib.base.models import Authorization
from chalicelib.base.storage import ConditionsFailed, Item, transaction
from chalicelib.provider import authorization, clients, tokens
from chalicelib.provider.clients import Client

# RFC 7636 §4.1: 43 to 128 unreserved characters.
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


@dataclass(frozen=True)
class Issued:
    """The token response (RFC 6749 §5.1, OIDC Core §3.1.3.3)."""

    access_token: str
    expires_in: int
    id_token: str
    scope: str

    def as_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "id_token": self.id_token,
            "scope": self.scope,
        }


def exchange(
    *,
    client_id: str | None,
    secret: str | None,
    form: dict[str, str],
    client: audit.Client,
) -> Issued:
    """``POST /oidc/token``, ``grant_type=authorization_code``.

    Raises:
        InvalidClient: the client did not authenticate.
        UnsupportedGrantType: another grant type.
        InvalidGrant: see the module's rules.
    """
    relying_party = clients.authenticate(client_id=client_id or "", secret=secret)
    if form.get("grant_type") != "authorization_code":
        raise UnsupportedGrantType("Only grant_type=authorization_code is supported.")
    code = form.get("code") or ""
    if not code or len(code) > 256:
        raise InvalidGrant("The code is missing or unknown.")
    try:
        item = Authorization.get(f"code#{authorization.code_hash(code)}", consistent_read=True)
    except Authorization.DoesNotExist:
        raise InvalidGrant("The code is unknown.") from None
    details = authorization.details_of(item)
    now = clock.now()
    org_id, user_id, session_id = str(item.org_id), str(item.user_id), str(details["session_id"])
    refusal = _why_refused(item, details, relying_party=relying_party, form=form, now=now)
    # The code's session is judged as every request judges it, with its organization and member
    # in one transactional read; the organization read spreads the event (audit.event).
    standing = None if refusal is not None else sessions.standing(org_id=org_id, user_id=user_id, session_id=session_id)
    if standing is None:
        reason, message = refusal or ("session_ended", "The keyward session this code was issued in has ended.")
        _refused(item, relying_party, client, reason=reason)
        raise InvalidGrant(message)

    subject = tokens.Subject(
        org_id=org_id,
        user_id=user_id,
        session_id=session_id,
        auth_time=datetime.fromisoformat(details["auth_time"]),
        context=tokens.AuthenticationContext(acr=details["acr"], amr=tuple(details["amr"])),
        admin=bool(details.get("admin")),
        tenant_id=details.get("tenant_id"),
    )
    id_token = tokens.id_token(
        subject=subject,
        client_id=relying_party.client_id,
        algorithm=relying_party.signing_alg,
        nonce=details.get("nonce"),
    )
    access_token, expires_in = tokens.access_token(subject=subject, client_id=relying_party.client_id, scope="openid")
    event = audit.event(
        org_id=org_id,
        actor=audit.actor_of(user_id),
        action="oidc.token_issued",
        target=relying_party.client_id,
        user_id=user_id,
        client=client,
        details={"client_id": relying_party.client_id, "session_id": session_id},
        spread_over=standing.org,
    )
    try:
        with transaction() as write:
            write.update(
                Item.CODE,
                Authorization(item.authorization_id),
                actions=[Authorization.used_at.set(now)],
                condition=Authorization.used_at.does_not_exist(),
            )
            write.save(Item.AUDIT, event)
    except ConditionsFailed:
        _refused(item, relying_party, client, reason="code_reused")
        raise InvalidGrant("The code was redeemed already.") from None
    metrics.count("ProviderTokensIssued", client_id=relying_party.client_id, org=org_id, user=user_id)
    return Issued(access_token=access_token, expires_in=expires_in, id_token=id_token, scope="openid")


def _why_refused(
    item: Authorization, details: dict[str, Any], *, relying_party: Client, form: dict[str, str], now: datetime
) -> tuple[str, str] | None:
    """Why a code this provider issued is not redeemed by this request, its session aside: the
    audited reason and the client's message; None when it is."""
    if item.client_id != relying_party.client_id:
        # Another client holds this code: stolen, or injected into that client's session.
        return "code_of_another_client", "The code was issued to another client."
    if item.used_at is not None:
        return "code_reused", "The code was redeemed already."
    if item.expires_at <= now:
        return "code_expired", "The code has expired."
    if form.get("redirect_uri") != details["redirect_uri"]:
        return "redirect_uri_mismatch", "'redirect_uri' is not the one the code was issued for."
    verifier = form.get("code_verifier") or ""
    if not _VERIFIER.fullmatch(verifier) or authorization.pkce_challenge(verifier) != details["code_challenge"]:
        return "pkce_mismatch", "The PKCE code_verifier does not match the code's challenge."
    return None


def _refused(item: Authorization, relying_party: Client, client: audit.Client, *, reason: str) -> None:
    audit.record(
        org_id=str(item.org_id),
        actor=audit.actor_of(str(item.user_id)),
        action="oidc.refused",
        target=relying_party.client_id,
        user_id=item.user_id,
        client=client,
        details={"client_id": relying_party.client_id, "reason": reason, "error": "invalid_grant"},
    )
    metrics.count("ProviderRefusals", by=("Reason", reason), client_id=relying_party.client_id, org=str(item.org_id))
