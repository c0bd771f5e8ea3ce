"""Whether a presented token stands now: what token introspection (RFC 7662) and the API Gateway
authorizer answer.

Two kinds of token are accepted. An access token the provider issued (a JWS of ``typ`` "at+jwt",
RFC 9068) is active while its signature verifies with a key the provider publishes, it has not
expired, its relying party is still registered with its organization, and the keyward session it
names (``org`` + ``sid``) still stands: a logout, an enforcement, the member's offboarding, a
first key or idleness end the session and every access token issued within it, at once. A keyward
session token (``kw1.…``) is active while :func:`chalicelib.access.sessions.resolve` accepts it.
Either way the session must be active: one still waiting for its security-key check, or for a
first key, proves nothing yet.

Anything else (ended, expired, malformed, signed by another key, unknown) is simply inactive:
the answer never says why, so that it tells a holder of a stolen or made-up token nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalicelib.access import assurance, sessions
from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.context import AlsoRead, SessionState
from chalicelib.base.errors import NotAuthenticated
from chalicelib.base.models import RelyingParty

if TYPE_CHECKING:
    from chalicelib.base.context import Caller

ACCESS_TOKEN_TYPE = "at+jwt"
SESSION_TOKEN_PREFIX = "kw1."
# Longer than any token keyward issues (a session token is at most 2,048 characters; an access
# token about 1,500): anything longer is not worth parsing.
_MAX_TOKEN_LENGTH = 8192
_CLIENT = "client"


@dataclass(frozen=True)
class ActiveToken:
    """A token that stands now, and what it says of its holder, judged from the session today:
    ``admin`` and ``mfa`` are the member's and the session's now, not as they were at issue."""

    user_id: str
    org_id: str
    session_id: str
    admin: bool
    mfa: bool
    """The session proved a key the member still holds and the organization accepts now."""
    key_checked_at: int | None
    issued_at: int
    expires_at: int
    client_id: str | None
    """The relying party an access token was issued to; None for a session token."""
    scope: str | None

    def introspection(self) -> dict[str, Any]:
        """The RFC 7662 §2.2 answer, with keyward's own members (``org``, ``sid``, ``admin``,
        ``mfa``, ``key_checked_at``)."""
        answer: dict[str, Any] = {
            "active": True,
            "sub": self.user_id,
            "iss": settings().provider_issuer,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "token_type": "Bearer",
            "org": self.org_id,
            "sid": self.session_id,
            "admin": self.admin,
            "mfa": self.mfa,
        }
        if self.client_id is not None:
            answer |= {"client_id": self.client_id, "aud": self.client_id}
        if self.scope is not None:
            answer["scope"] = self.scope
        if self.key_checked_at is not None:
            answer["key_checked_at"] = self.key_checked_at
        return answer


INACTIVE: dict[str, Any] = {"active": False}


def judge(token: object) -> ActiveToken | None:
    """The token as it stands now, or None when it is not active (for whatever reason).

    Raises:
        pynamodb.exceptions.PynamoDBException: DynamoDB failed; whether the token stands is unknown.
    """
    if not isinstance(token, str) or not 0 < len(token) <= _MAX_TOKEN_LENGTH:
        return None
    if token.startswith(SESSION_TOKEN_PREFIX):
        return _session_token(token)
    return _access_token(token)


def _session_token(token: str) -> ActiveToken | None:
    try:
        caller = sessions.resolve(authorization=f"Bearer {token}")
    except NotAuthenticated:
        return None
    return _active(
        caller,
        issued_at=_epoch(caller.session.created_at),
        expires_at=_epoch(caller.session.expires_at),
        client_id=None,
        scope=None,
    )


def _access_token(token: str) -> ActiveToken | None:
    import jwt

    from chalicelib.provider import clients, signing

    try:
        claims = signing.verify(token, typ=ACCESS_TOKEN_TYPE)
    except (jwt.PyJWTError, ValueError):
        return None
    user_id, org_id, session_id, client_id = (claims.get(name) for name in ("sub", "org", "sid", "client_id"))
    issued_at, expires_at, scope = claims.get("iat"), claims.get("exp"), claims.get("scope")
    if not (
        isinstance(user_id, str)
        and isinstance(org_id, str)
        and isinstance(session_id, str)
        and isinstance(client_id, str)
        and client_id
        and isinstance(issued_at, int)
        and isinstance(expires_at, int)
        and (scope is None or isinstance(scope, str))
    ):
        return None
    # PyJWT checked expiry against the system clock; keyward's clock is the one its rules use.
    if expires_at <= clock.now().timestamp():
        return None
    # A client the operator configured for the stage serves the organizations it lists; an
    # organization's own is read with the session: deleting it ends its tokens.
    stage_client = clients.preconfigured().get(client_id)
    if stage_client is not None and not stage_client.serves(org_id):
        return None
    caller = sessions.standing(
        org_id=org_id,
        user_id=user_id,
        session_id=session_id,
        also=[] if stage_client is not None else [AlsoRead(_CLIENT, RelyingParty, client_id)],
    )
    if caller is None:
        return None
    if stage_client is None:
        registered = caller.read[_CLIENT]
        if registered is None or registered.org_id != org_id:
            return None
    return _active(caller, issued_at=issued_at, expires_at=expires_at, client_id=client_id, scope=scope)


def _active(
    caller: Caller, *, issued_at: int, expires_at: int, client_id: str | None, scope: str | None
) -> ActiveToken | None:
    if caller.state is not SessionState.ACTIVE:
        return None
    checked = caller.session.key_checked_at
    return ActiveToken(
        user_id=caller.session.user_id,
        org_id=caller.session.org_id,
        session_id=caller.session.session_id,
        admin=caller.is_admin,
        mfa=assurance.standing_of(caller) is assurance.Standing.VERIFIED,
        key_checked_at=None if checked is None else _epoch(checked),
        issued_at=issued_at,
        expires_at=expires_at,
        client_id=client_id,
        scope=scope,
    )


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())
