"""Sessions: issue a bearer token at login, resolve it on every request, rotate it after MFA,
end it at logout; and the request-time enforcement rule.

A token is ``kw1.<org>.<user>.<session id>.<secret>``: the names in it let one DynamoDB round
trip fetch the session together with its organization and member; the secret carries 256 random
bits, and only the token's SHA-256 is stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactGetError, UpdateError
from pynamodb.transactions import TransactGet

from chalicelib.access import grace, lifecycle, login_rate, tenancy
from chalicelib.base import audit, clock, metrics
from chalicelib.base.audit import BACKUP_USER_PREFIX, UNKNOWN_CLIENT, Client
from chalicelib.base.config import settings
from chalicelib.base.context import AlsoRead, AlsoReads, Caller, SessionState
from chalicelib.base.errors import (
    InvalidToken,
    MemberNotFound,
    MissingToken,
    NotAuthenticated,
    SessionEndedByEnforcement,
    SessionEndedByNewKey,
    SessionExpired,
    SessionIdle,
    SessionNotFound,
)
from chalicelib.base.models import (
    AuditEvent,
    BackupCredential,
    Member,
    Organization,
    SecurityKey,
    Session,
    connection,
    member_session_key,
    org_shard_key,
    session_shard,
)
from chalicelib.base.storage import (
    TRANSACTION_CANCELED,
    ConditionsFailed,
    Contended,
    Item,
    LabelledWrite,
    response_code,
    transaction,
)

log = logging.getLogger("keyward.sessions")

_TOKEN_VERSION = "kw1"
LAST_SEEN_RESOLUTION = timedelta(minutes=5)
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{22}")
# An ID token's sub as keyward accepts it (chalicelib/access/identity.py), or a backup session's name.
_MAX_USER_ID = 255
# The longest token keyward issues: an organization ID of 128 and a user ID of 255 characters of
# up to 4 UTF-8 bytes each, base64url-encoded, with the session ID and the secret (about 1,600).
_MAX_TOKEN_LENGTH = 2048


@dataclass(frozen=True)
class IssuedSession:
    """A session together with the only copy of its bearer token."""

    token: str
    session: Session


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _encode_name(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _decode_name(part: str) -> str:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidToken("The bearer token is not a keyward session token.") from None


def _new_token(session: Session) -> str:
    return ".".join(
        (
            _TOKEN_VERSION,
            _encode_name(session.org_id),
            _encode_name(session.user_id),
            session.session_id,
            secrets.token_urlsafe(32),
        )
    )


def _parse_token(token: str) -> tuple[str, str, str]:
    """The organization, user and session a token names, or :class:`InvalidToken`."""
    parts = token.split(".")
    if len(token) > _MAX_TOKEN_LENGTH or len(parts) != 5 or parts[0] != _TOKEN_VERSION:
        raise InvalidToken("The bearer token is not a keyward session token.")
    org_id, user_id, session_id = _decode_name(parts[1]), _decode_name(parts[2]), parts[3]
    # Only names keyward could have issued: longer ones would exceed DynamoDB's key sizes, which
    # the real service refuses with an error rather than finding nothing.
    if (
        not tenancy.valid_org_id(org_id)
        or not 0 < len(user_id) <= _MAX_USER_ID
        or not _SESSION_ID.fullmatch(session_id)
    ):
        raise InvalidToken("The bearer token is not a keyward session token.")
    return org_id, user_id, session_id


def initial_state(*, org: Organization, member: Member) -> SessionState:
    """The state a fresh login starts in: MFA first for key holders, registration when enforced."""
    if member.key_count > 0:
        return SessionState.MFA_REQUIRED
    if org.mfa_enforced and not grace.registration_deferred(org):
        return SessionState.REGISTRATION_REQUIRED
    return SessionState.ACTIVE


# Tries of a login whose counter shard another login's transaction holds; after them the login
# starts uncounted. The rate sheds storms; it is no reason to refuse a person, and shards that
# keep meeting other transactions are busy, not full (a full shard fails its condition instead).
_COUNTED_TRIES = 3


def start(
    *,
    org: Organization,
    member: Member,
    client: Client,
    audit_event: AuditEvent,
    state: SessionState | None = None,
    also: Callable[[LabelledWrite], None] | None = None,
    login_counted: bool = False,
) -> IssuedSession:
    """Create a session for a member who has just proved who they are; the login's audit event,
    the count of the organization's logins this second (unless ``login_counted``: a first login
    counted it with the member it created), and whatever ``also`` adds, are written with it in
    one transaction.

    Raises:
        OrganizationRateLimited: the organization has started as many sessions this second as its
            login rate allows (chalicelib/access/login_rate.py); nothing was written.
        ConditionsFailed: a condition of ``also``'s writes failed; nothing was written.
    """
    started = clock.now()
    expires = started + timedelta(seconds=settings().session_lifetime_seconds)
    session = Session.of_member(
        lifecycle.new_session_id(started),
        org_id=org.org_id,
        user_id=member.user_id,
        state=(state or initial_state(org=org, member=member)).value,
        admin=bool(member.admin),
        created_at=started,
        expires_at=expires,
        # DynamoDB's TTL only tidies up; expiry itself is checked on every request.
        ttl=expires + timedelta(days=1),
        enforcement_generation=org.enforcement_generation,
        member_generation=member.session_generation,
        sign_out_generation=member.sign_out_generation or 0,
        org_enforced_at_start=bool(org.mfa_enforced),
        source_ip=client.source_ip,
        user_agent=(client.user_agent or "")[:512] or None,
        last_seen_at=started,
    )
    token = _new_token(session)
    session.token_hash = _hash(token)
    audit.add_details(audit_event, session_id=session.session_id, state=session.state)
    for attempt in range(1 if login_counted else _COUNTED_TRIES + 1):
        counted = not login_counted and attempt < _COUNTED_TRIES
        try:
            with transaction() as write:
                write.save(Item.SESSION, session, condition=Session.session_id.does_not_exist())
                write.save(Item.AUDIT, audit_event)
                if counted:
                    login_rate.count_login(write, org=org, at=started)
                if also is not None:
                    also(write)
            break
        except ConditionsFailed as refused:
            if Item.LOGIN_RATE in refused.labels:
                metrics.count("LoginsRateLimited", org=org.org_id, limit=login_rate.limit_of(org))
                raise login_rate.refusal(org) from None
            if Item.SESSION not in refused.labels:
                raise  # a condition of the caller's own writes
            # 128 random bits collided: astronomically unlikely
            raise InvalidToken("Could not start a session; try again.") from None
        except Contended as busy:
            # Another login's transaction held the same counter shard at that moment: the next
            # try draws a shard again. Only contention costs a round trip more.
            if not counted or busy.labels != {Item.LOGIN_RATE}:
                raise
            metrics.count("LoginRateContention", org=org.org_id)
    if not counted and not login_counted:
        log.warning("login of %s started uncounted: its counter shards were contended", org.org_id)
    return IssuedSession(token=token, session=session)


def resolve(*, authorization: str | None, client: Client = UNKNOWN_CLIENT, also: AlsoReads | None = None) -> Caller:
    """The caller behind an ``Authorization: Bearer`` header, in one DynamoDB round trip, with
    the items ``also`` names (``Caller.read``) in the same transactional read.

    Raises:
        MissingToken, InvalidToken: no header, or a token keyward did not issue or has ended.
        SessionExpired: the session's absolute lifetime is over.
        SessionEndedByEnforcement: the organization enforced MFA after this session started.
        SessionEndedByNewKey: the member registered their first key after this session started,
            and the session's proof is not a key the member holds.
        SessionIdle: the session went unused for longer than the idle timeout.
    """
    if not authorization:
        raise MissingToken("Send the session token as 'Authorization: Bearer <token>'.")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise MissingToken("Send the session token as 'Authorization: Bearer <token>'.")
    org_id, user_id, session_id = _parse_token(token)

    extra = list(also(org_id, user_id)) if also is not None else []
    read = _read_with_session(org_id=org_id, user_id=user_id, session_id=session_id, extra=extra)
    if read.session is None:
        raise lifecycle.missing_session_refusal(session_id=session_id, org=read.org)
    if read.org is None or read.member is None:
        raise InvalidToken("The session does not exist or has ended.")
    session, org, member = read.session, read.org, read.member

    token_hash = _hash(token)
    # The hash comparison covers the whole token, so a forged user part cannot match.
    if not hmac.compare_digest(session.token_hash, token_hash) or session.user_id != user_id:
        raise InvalidToken("The session does not exist or has ended.")
    ended = why_ended(session=session, org=org, member=member, now=clock.now())
    if ended is not None:
        raise ended
    grace.apply_deadline(session=session, org=org, member=member)
    _note_activity(session)
    return Caller(
        session=session,
        org=org,
        member=member,
        token_hash=token_hash,
        client=client,
        read=read.also,
    )


@dataclass(frozen=True)
class _SessionRead:
    """A session with its organization and member as one transactional read found them (None
    where an item does not exist), and what else the request named."""

    session: Session | None
    org: Organization | None
    member: Member | None
    also: dict[str, Any]


def _read_with_session(*, org_id: str, user_id: str, session_id: str, extra: Sequence[AlsoRead]) -> _SessionRead:
    backup_key_id = user_id[len(BACKUP_USER_PREFIX) :] if user_id.startswith(BACKUP_USER_PREFIX) else None
    for attempt in range(2):
        try:
            with TransactGet(connection=connection()) as reads:
                session_future = reads.get(Session, session_id)
                org_future = reads.get(Organization, org_id)
                # A backup session's "member" is its backup credentials: deleting them ends it.
                member_future = (
                    reads.get(BackupCredential, backup_key_id) if backup_key_id else reads.get(Member, org_id, user_id)
                )
                extra_futures = {read.label: reads.get(read.model, read.hash_key, read.range_key) for read in extra}
            break
        except TransactGetError as error:
            # A transactional read is cancelled while a transaction writes the same item
            # (an MFA verify of this session, say); that write is done in milliseconds.
            if attempt or response_code(error) != TRANSACTION_CANCELED:
                raise
    found = found_in(member_future)
    member = backup_member(found) if isinstance(found, BackupCredential) else found
    if member is not None and member.org_id != org_id:
        member = None
    session = found_in(session_future)
    # Session IDs are unique across organizations; a token naming another organization than its
    # session's is no token of that session.
    if session is not None and session.org_id != org_id:
        session = None
    return _SessionRead(
        session=session,
        org=found_in(org_future),
        member=member,
        also={label: found_in(future) for label, future in extra_futures.items()},
    )


def standing(*, org_id: str, user_id: str, session_id: str, also: Sequence[AlsoRead] = ()) -> Caller | None:
    """The session ``session_id`` of ``user_id`` as it stands now, with its organization, member
    and the items ``also`` names, in one round trip; None when it does not exist, is another
    member's, or has ended by any rule of :func:`why_ended`.

    For a token that names a session rather than being its bearer token (the OpenID provider's
    access tokens): unlike :func:`resolve`, it writes nothing. The session is not used, so its
    activity is not recorded; a keyless member's session past the registration deadline reads as
    ``registration_required``, as :func:`resolve` would record it.
    """
    if (
        not tenancy.valid_org_id(org_id)
        or not 0 < len(user_id) <= _MAX_USER_ID
        or not _SESSION_ID.fullmatch(session_id)
    ):
        return None
    read = _read_with_session(org_id=org_id, user_id=user_id, session_id=session_id, extra=also)
    session, org, member = read.session, read.org, read.member
    if session is None or org is None or member is None or session.user_id != user_id:
        return None
    if why_ended(session=session, org=org, member=member, now=clock.now()) is not None:
        return None
    if grace.past_deadline(session=session, org=org, member=member):
        session.state = "registration_required"
    return Caller(session=session, org=org, member=member, token_hash=session.token_hash, read=read.also)


def why_ended(*, session: Session, org: Organization, member: Member, now: datetime) -> NotAuthenticated | None:
    """The refusal a request with this session meets, or None while the session works: the
    rules a session ends by besides its deletion, read from the items the request brought."""
    if outlived_member(session=session, member=member):
        return InvalidToken("The session does not exist or has ended.")
    if session.expires_at <= now:
        return SessionExpired("The session has expired; sign in again.")
    if ended_by_enforcement(session=session, org=org):
        return SessionEndedByEnforcement("The organization now enforces MFA; sign in again.")
    if signed_out(session=session, member=member):
        return InvalidToken("The session does not exist or has ended.")
    if ended_by_new_key(session=session, member=member):
        return SessionEndedByNewKey(
            "A security key was registered to your account since this session started; sign in again."
        )
    if now - (session.last_seen_at or session.created_at) >= _idle_timeout():
        return SessionIdle("The session was unused for too long; sign in again.")
    return None


def outlived_member(*, session: Session, member: Member) -> bool:
    """A session started before its member was created belongs to an earlier, offboarded member
    of the same user ID: it must not come back to life when that user signs in again."""
    return member.created_at is not None and session.created_at < member.created_at


def signed_out(*, session: Session, member: Member) -> bool:
    """A session started before every session of its member was ended at once has ended, even
    if the read that listed the sessions to delete (an eventually consistent index) missed it."""
    return session.sign_out_generation < (member.sign_out_generation or 0)


def found_in(future: Any) -> Any:
    """What a transactional read found, or None where no such item exists."""
    try:
        return future.get()
    except DoesNotExist:
        return None


def backup_member(credential: BackupCredential) -> Member:
    """The admin a backup-credentials session acts as; not stored as a member."""
    return Member(
        credential.org_id,
        BACKUP_USER_PREFIX + credential.key_id,
        name=f"Backup credentials {credential.key_id}",
        email="",
        admin=True,
        key_count=0,
        created_at=credential.created_at,
        sign_out_generation=credential.sign_out_generation,
    )


def _idle_timeout() -> timedelta:
    return timedelta(seconds=settings().session_idle_seconds)


def _note_activity(session: Session) -> None:
    """Keep ``last_seen_at`` roughly current without a write on every request.

    It may lag by up to the resolution, so the resolution stays well below the idle timeout:
    a session in use must never look idle.
    """
    seen = clock.now()
    resolution = min(LAST_SEEN_RESOLUTION, _idle_timeout() / 4)
    if session.last_seen_at is not None and seen - session.last_seen_at < resolution:
        return
    try:
        session.update(actions=[Session.last_seen_at.set(seen)], condition=Session.session_id.exists())
    except UpdateError:
        # Only bookkeeping: the request itself must not fail for it.
        log.warning("could not record activity of session %s", session.session_id)


def ended_by_enforcement(*, session: Session, org: Organization) -> bool:
    """The request-time enforcement rule: a session that started before the organization's latest
    enforcement has ended, whether or not the stream function has deleted it yet — except the
    session that enforced it. It stays ended when the enforcement is relaxed again.

    Every switch of ``mfa_enforced`` from off to on is an enforcement, the API's and an operator's
    edit of the table alike. The API records its enforcement in the same write (a new
    generation); an operator's edit is recorded by the stream function a moment later. Until
    then, a session that started while the organization did not enforce MFA has ended already.
    """
    if session.enforcement_generation < org.enforcement_generation:
        return session.session_id != org.enforcing_session_id
    if not org.mfa_enforced:
        return False
    if session.org_enforced_at_start is None:
        # A session from before keyward recorded the flag at the start: the earlier rule, which
        # ends every session while an operator's enforcement is not yet recorded.
        return org.enforced_at is None
    return not session.org_enforced_at_start


def holds_key(member: Member, key_id: str | None) -> bool:
    """Whether the member holds the key of this ID now: from the credential list on the member
    item, which every request reads; only a member whose keys predate that list costs a read."""
    if key_id is None or member.key_count == 0:
        return False
    if member.credentials is not None:
        return key_id in member.credentials.as_dict()
    try:
        key = SecurityKey.get(member.org_id, key_id, consistent_read=True, attributes_to_get=["user_id"])
    except SecurityKey.DoesNotExist:
        return False
    return key.user_id == member.user_id


def ended_by_new_key(*, session: Session, member: Member) -> bool:
    """A member going from no key to a key ends every other session of theirs that started
    before and has not proved a key the member holds: whoever holds such a session knew no more
    than the IdP password (and perhaps a key of their own, since deleted), which the key now
    stands beside. The registering session moves to the new generation in the registration's own
    transaction.
    """
    return session.member_generation < member.session_generation and not holds_key(member, session.verified_key_id)


def rotated_token(caller: Caller) -> tuple[str, str]:
    """A new token for the caller's session and its hash, to be written with the MFA result."""
    token = _new_token(caller.session)
    return token, _hash(token)


def end(*, caller: Caller) -> None:
    """Log out: delete the session, unless its token changed in the meantime; audited."""
    session = caller.session
    try:
        with transaction() as write:
            write.delete(
                Item.SESSION,
                Session(session.session_id),
                condition=Session.token_hash == caller.token_hash,
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=session.org_id,
                    actor=caller.actor,
                    action="logout",
                    target=session.session_id,
                    user_id=session.user_id,
                    client=caller.client,
                ),
            )
    except ConditionsFailed:
        raise InvalidToken("The session does not exist or has ended.") from None


# --- session hygiene --------------------------------------------------------------------------


def stored_sessions_of(*, org_id: str, user_id: str, limit: int | None = None) -> Iterator[Session]:
    """A member's stored sessions, oldest first: one query of their shard of the by-org-shard index.

    Eventually consistent (a global index): a session started a moment ago may be missing.
    What ends sessions relies on the generation rules, not on finding every one here.
    """
    shard = org_shard_key(org_id, session_shard(user_id))
    return Session.by_org_shard.query(
        shard,
        Session.member_session.startswith(member_session_key(user_id, "")),
        # Another member's user ID of the same digest prefix is as good as impossible; checked all the same.
        filter_condition=Session.user_id == user_id,
        limit=limit,
    )


def sessions_of(*, org_id: str, user_id: str) -> list[Session]:
    """A member's live sessions, newest first (expired ones wait for DynamoDB's TTL)."""
    now = clock.now()
    found = stored_sessions_of(org_id=org_id, user_id=user_id)
    return sorted((s for s in found if s.expires_at > now), key=lambda s: s.created_at, reverse=True)


def open_sessions_of(caller: Caller) -> list[Session]:
    """``GET /me/sessions``: the caller's sessions that still work, newest first. Sessions that
    ended by a rule (a first key, enforcement, idleness) rather than by deletion are left out:
    they wait for DynamoDB's TTL, but no request can use them any more."""
    now = clock.now()
    found = sessions_of(org_id=caller.session.org_id, user_id=caller.session.user_id)
    return [
        session
        for session in found
        if why_ended(session=session, org=caller.org, member=caller.member, now=now) is None
    ]


def open_sessions_of_member(*, caller: Caller, user_id: str) -> list[Session]:
    """``GET /org/members/{user_id}/sessions``: a member's sessions that still work, newest first,
    as an admin of their organization sees them (``open_sessions_of`` for the member themself).

    Raises:
        MemberNotFound: the organization has no such member (nor backup credentials of that ID).
    """
    org_id = caller.session.org_id
    member = _member_or_none(org_id=org_id, user_id=user_id)
    if member is None:
        raise MemberNotFound("No such member.")
    now = clock.now()
    return [
        session
        for session in sessions_of(org_id=org_id, user_id=user_id)
        if why_ended(session=session, org=caller.org, member=member, now=now) is None
    ]


def _member_or_none(*, org_id: str, user_id: str) -> Member | None:
    """The member (or, for ``backup:<key id>``, the admin these backup credentials act as)."""
    if not 0 < len(user_id) <= 255:
        return None
    try:
        if user_id.startswith(BACKUP_USER_PREFIX):
            credential = BackupCredential.get(user_id[len(BACKUP_USER_PREFIX) :], consistent_read=True)
            return backup_member(credential) if credential.org_id == org_id else None
        return Member.get(org_id, user_id, consistent_read=True)
    except (Member.DoesNotExist, BackupCredential.DoesNotExist):
        return None


def end_own_session(*, caller: Caller, session_id: str) -> None:
    """``DELETE /me/sessions/{id}``: end one of one's own sessions (the current one too)."""
    if not _SESSION_ID.fullmatch(session_id):
        raise SessionNotFound("No such session.")
    try:
        with transaction() as write:
            write.delete(
                Item.SESSION,
                Session(session_id),
                condition=Session.session_id.exists()
                & (Session.org_id == caller.session.org_id)
                & (Session.user_id == caller.session.user_id),
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=caller.session.org_id,
                    actor=caller.actor,
                    action="session.ended",
                    target=session_id,
                    user_id=caller.session.user_id,
                    client=caller.client,
                ),
            )
    except ConditionsFailed:
        raise SessionNotFound("No such session.") from None


def end_sessions(sessions: Iterable[Session]) -> int:
    """Delete sessions, up to 100 per transaction; returns how many.

    Transactions rather than BatchWriteItem: the API's role deletes items only through them.
    """
    ending = list(sessions)
    for start in range(0, len(ending), 100):
        with transaction() as write:
            for session in ending[start : start + 100]:
                write.delete(Item.SESSION, session)
    return len(ending)


def _is_member(*, org_id: str, user_id: str) -> bool:
    """Whether the organization has this member (or, for ``backup:<key id>``, these backup credentials)."""
    if not 0 < len(user_id) <= 255:
        return False
    try:
        if user_id.startswith(BACKUP_USER_PREFIX):
            credential = BackupCredential.get(user_id[len(BACKUP_USER_PREFIX) :], consistent_read=True)
            return credential.org_id == org_id
        Member.get(org_id, user_id, consistent_read=True, attributes_to_get=["user_id"])
        return True
    except (Member.DoesNotExist, BackupCredential.DoesNotExist):
        return False


# Sessions ended per transaction, next to the audit event that records them and (in the first)
# the member's and the caller's session's new sign-out generation: 100 items at most.
_SESSIONS_PER_TRANSACTION = 97


def end_member_sessions(*, caller: Caller, user_id: str) -> int:
    """``DELETE /org/members/{user_id}/sessions``: an admin ends every session of a member.

    The admin's own current session is spared when they end their own. Sessions end in
    transactions with the audit event recording them, so none ends unrecorded.
    """
    if not _is_member(org_id=caller.session.org_id, user_id=user_id):
        raise MemberNotFound("No such member.")
    return _end_sessions_but_callers(caller=caller, user_id=user_id)


def end_other_sessions(*, caller: Caller) -> int:
    """``DELETE /me/sessions``: "sign out all other sessions": every session of the caller's but
    the one making the request, audited as an admin's ending of a member's sessions is."""
    return _end_sessions_but_callers(caller=caller, user_id=caller.session.user_id)


def _end_sessions_but_callers(*, caller: Caller, user_id: str) -> int:
    """Every session of the member but the caller's ends at once, by a new sign-out generation
    (so that a session the index does not list yet ends too); the listed ones are deleted."""
    org_id = caller.session.org_id
    ending = [s for s in sessions_of(org_id=org_id, user_id=user_id) if s.session_id != caller.session.session_id]
    chunks = [ending[i : i + _SESSIONS_PER_TRANSACTION] for i in range(0, len(ending), _SESSIONS_PER_TRANSACTION)]
    for number, chunk in enumerate(chunks or [[]]):
        try:
            with transaction() as write:
                if number == 0:
                    _next_sign_out_generation(write, caller=caller, org_id=org_id, user_id=user_id)
                for session in chunk:
                    write.delete(Item.SESSION, session)
                write.save(
                    Item.AUDIT,
                    audit.event(
                        org_id=org_id,
                        actor=caller.actor,
                        action="member.sessions_ended",
                        target=user_id,
                        user_id=user_id,
                        client=caller.client,
                        details={"sessions_ended": len(chunk)},
                    ),
                )
        except ConditionsFailed as refused:
            if Item.SESSION in refused.labels:
                raise InvalidToken("The session does not exist or has ended.") from None
            raise MemberNotFound("No such member.") from None  # offboarded meanwhile
    return len(ending)


def _next_sign_out_generation(write: LabelledWrite, *, caller: Caller, org_id: str, user_id: str) -> None:
    """Move the member (or backup credentials) to the next sign-out generation, and the caller's
    own session with them when it is theirs, so that it alone goes on working.

    The member's generation is added to rather than set, so that no read is needed; should two
    ends meet, the caller's session lands one behind and ends too, which fails safe.
    """
    if user_id.startswith(BACKUP_USER_PREFIX):
        write.update(
            Item.BACKUP_CREDENTIAL,
            BackupCredential(user_id[len(BACKUP_USER_PREFIX) :]),
            actions=[BackupCredential.sign_out_generation.add(1)],
            condition=BackupCredential.org_id == org_id,
        )
    else:
        write.update(
            Item.MEMBER,
            Member(org_id, user_id),
            actions=[Member.sign_out_generation.add(1)],
            condition=Member.user_id.exists(),
        )
    if user_id == caller.session.user_id:
        write.update(
            Item.SESSION,
            Session(caller.session.session_id),
            actions=[Session.sign_out_generation.set((caller.member.sign_out_generation or 0) + 1)],
            condition=Session.token_hash == caller.token_hash,
        )
