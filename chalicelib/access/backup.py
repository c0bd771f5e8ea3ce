"""Backup credentials: an admin's break-glass login that bypasses the IdP and MFA, for a lost
security key or an IdP that is down. Audited and rate limited.

The secret (256 random bits) is shown once and stored only as an scrypt hash. Failed attempts
are counted per key ID *and source address*: someone who learns a key ID can lock out only their
own address, never the admin who holds the secret. A login attempt reserves one of its failure
slots *before* the secret is checked and gives it back on success, so parallel guesses from one
source cannot exceed the limit; unknown key IDs are limited and hashed the same way, so neither
the answer nor its timing tells whether a key ID exists.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
from dataclasses import dataclass

from chalicelib.access import sessions
from chalicelib.access.sessions import IssuedSession
from chalicelib.base import audit, clock, metrics, throttles
from chalicelib.base.audit import Client
from chalicelib.base.config import settings
from chalicelib.base.context import Caller, SessionState
from chalicelib.base.errors import (
    BackupCredentialsNotFound,
    InvalidBackupCredentials,
    MalformedRequest,
    NotForBackupSessions,
)
from chalicelib.base.models import BackupCredential, Organization
from chalicelib.base.storage import ConditionsFailed, Item, transaction

log = logging.getLogger("keyward.backup")

# scrypt at n=2**14, r=8: 16 MiB and some tens of milliseconds per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_KEY_ID = re.compile(r"bk_[A-Za-z0-9_-]{22}")
_MAX_SECRET_LENGTH = 256
# Hashed when the key ID is unknown, so that a miss costs what a wrong secret costs.
_DECOY_SALT = secrets.token_bytes(16)


@dataclass(frozen=True)
class IssuedBackupCredentials:
    """New backup credentials with the only copy of their secret."""

    credential: BackupCredential
    secret: str


@dataclass(frozen=True)
class BackupSignIn:
    issued: IssuedSession
    org: Organization
    credential: BackupCredential


def _hash(secret: str, *, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n * p, dklen=32)


def create(*, caller: Caller) -> IssuedBackupCredentials:
    """``POST /org/backup-credentials``: new backup credentials for the caller's organization."""
    if caller.is_backup:
        raise NotForBackupSessions("A session opened with backup credentials cannot create more of them.")
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    org_id = caller.session.org_id
    credential = BackupCredential(
        "bk_" + secrets.token_urlsafe(16),
        org_id=org_id,
        created_by=caller.session.user_id,
        created_at=clock.now(),
        secret_hash=_hash(secret, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P),
        salt=salt,
        scrypt_n=SCRYPT_N,
        scrypt_r=SCRYPT_R,
        scrypt_p=SCRYPT_P,
    )
    with transaction() as write:
        write.save(Item.BACKUP_CREDENTIAL, credential, condition=BackupCredential.key_id.does_not_exist())
        write.update(
            Item.ORG,
            Organization(org_id),
            actions=[Organization.backup_key_ids.add({credential.key_id})],
            condition=Organization.org_id.exists(),
        )
        write.save(
            Item.AUDIT,
            audit.event(
                org_id=org_id,
                actor=caller.actor,
                action="backup_credentials.created",
                target=credential.key_id,
                client=caller.client,
            ),
        )
    return IssuedBackupCredentials(credential=credential, secret=secret)


def list_credentials(*, org_id: str) -> list[BackupCredential]:
    """``GET /org/backup-credentials``: the organization's backup credentials, oldest first."""
    org = Organization.get(org_id, consistent_read=True)
    key_ids = sorted(org.backup_key_ids or [])
    found = (
        [c for c in BackupCredential.batch_get(key_ids, consistent_read=True) if c.org_id == org_id] if key_ids else []
    )
    return sorted(found, key=lambda credential: credential.created_at)


def delete(*, caller: Caller, key_id: str) -> None:
    """``DELETE /org/backup-credentials/{key_id}``: any admin of the organization; sessions opened
    with them end with them (their session reads the credentials on every request)."""
    org_id = caller.session.org_id
    if not _KEY_ID.fullmatch(key_id):
        raise BackupCredentialsNotFound("No such backup credentials.")
    try:
        with transaction() as write:
            write.delete(Item.BACKUP_CREDENTIAL, BackupCredential(key_id), condition=BackupCredential.org_id == org_id)
            write.update(Item.ORG, Organization(org_id), actions=[Organization.backup_key_ids.delete({key_id})])
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=org_id,
                    actor=caller.actor,
                    action="backup_credentials.deleted",
                    target=key_id,
                    client=caller.client,
                ),
            )
    except ConditionsFailed:
        raise BackupCredentialsNotFound("No such backup credentials.") from None


def sign_in(*, key_id: object, secret: object, client: Client) -> BackupSignIn:
    """``POST /auth/backup-login``: an ``active`` admin session, bypassing the IdP and MFA.

    Raises:
        MalformedRequest: the fields are missing or of the wrong type.
        TooManyAttempts: the key ID has used up its failed attempts from the client's source
            address for the current window.
        InvalidBackupCredentials: wrong key ID or secret (the same answer for both).
    """
    if not isinstance(key_id, str) or not isinstance(secret, str) or not key_id or not secret:
        raise MalformedRequest("'key_id' and 'secret' are required strings.")
    if len(key_id) > 64 or len(secret) > _MAX_SECRET_LENGTH:
        raise MalformedRequest("'key_id' or 'secret' is too long.")
    subject = f"backup-login#{key_id}#{attempt_source(client.source_ip)}"
    config = settings()
    window = throttles.reserve_attempt(
        subject=subject,
        max_failures=config.backup_login_max_failures,
        window_seconds=config.backup_login_window_seconds,
        refusal="Too many failed attempts with these backup credentials from this address; try again later.",
    )

    credential = _credential_or_none(key_id)
    if credential is None:
        _hash(secret, salt=_DECOY_SALT, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
        log.info("backup login with an unknown key ID")
        raise InvalidBackupCredentials("The backup credentials are not valid.")
    expected = credential.secret_hash
    presented = _hash(
        secret, salt=credential.salt, n=int(credential.scrypt_n), r=int(credential.scrypt_r), p=int(credential.scrypt_p)
    )
    if not hmac.compare_digest(expected, presented):
        audit.record(
            org_id=credential.org_id,
            actor=audit.backup_actor(key_id),
            action="backup_login.failed",
            target=key_id,
            client=client,
        )
        raise InvalidBackupCredentials("The backup credentials are not valid.")

    throttles.release_attempt(subject=subject, window=window)
    org = Organization.get(credential.org_id, consistent_read=True)
    member = sessions.backup_member(credential)
    used = audit.event(
        org_id=org.org_id,
        actor=audit.backup_actor(key_id),
        action="backup_login.succeeded",
        target=key_id,
        client=client,
        spread_over=org,
    )
    try:
        issued = sessions.start(
            org=org,
            member=member,
            client=client,
            audit_event=used,
            state=SessionState.ACTIVE,
            also=lambda write: write.update(
                Item.BACKUP_CREDENTIAL,
                BackupCredential(key_id),
                actions=[BackupCredential.last_used_at.set(clock.now())],
                condition=BackupCredential.key_id.exists(),
            ),
        )
    except ConditionsFailed:
        raise InvalidBackupCredentials("The backup credentials are not valid.") from None  # deleted meanwhile
    metrics.count("Logins", by=("Method", "backup"), org=org.org_id)
    return BackupSignIn(issued=issued, org=org, credential=credential)


def attempt_source(source_ip: str | None) -> str:
    """The source whose failed attempts count together: an IPv4 address, or an IPv6 /64.

    An IPv6 client picks addresses within its /64 at will, so the /64 is one source. Requests
    without a usable address (none comes through API Gateway) share one source.
    """
    try:
        address = ipaddress.ip_address(source_ip or "")
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _credential_or_none(key_id: str) -> BackupCredential | None:
    if not _KEY_ID.fullmatch(key_id):
        return None
    try:
        return BackupCredential.get(key_id, consistent_read=True)
    except BackupCredential.DoesNotExist:
        return None


def describe(credential: BackupCredential) -> dict[str, object]:
    return {
        "key_id": credential.key_id,
        "created_at": clock.iso(credential.created_at),
        "created_by": credential.created_by,
        "last_used_at": clock.iso(credential.last_used_at),
    }
