"""A member's security keys as the WebAuthn ceremonies see them: the credentials a ceremony's
options list, the user handle a key is bound to, and the options a client receives."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.base.models import CredentialClaim, Member, SecurityKey

if TYPE_CHECKING:
    from chalicelib.ceremony.ceremonies import KnownCredential


@dataclass(frozen=True)
class CeremonyOptions:
    """What a client needs to run a ceremony: the challenge's ID and the W3C options JSON."""

    challenge_id: str
    public_key: dict[str, Any]


def user_handle_for(*, org_id: str, user_id: str) -> bytes:
    """WebAuthn's user.id: stable per member and free of personal data (§14.6.1)."""
    return hashlib.sha256(b"keyward-user\x00" + org_id.encode() + b"\x00" + user_id.encode()).digest()


def keys_of(*, org_id: str, user_id: str) -> list[SecurityKey]:
    """A member's keys, oldest first, read with strong consistency."""
    keys = SecurityKey.by_member.query(org_id, SecurityKey.user_id == user_id, consistent_read=True)
    return sorted(keys, key=lambda key: key.created_at)


def with_use(key: SecurityKey, claim: CredentialClaim | None) -> SecurityKey:
    """The key with its signature counter, last use and backup state as its claim holds them,
    once a check has written them there (:class:`CredentialClaim`); as registered otherwise."""
    if (
        claim is not None
        and claim.sign_count is not None
        and (claim.org_id, claim.user_id) == (key.org_id, key.user_id)
    ):
        key.sign_count, key.last_used_at, key.backed_up = claim.sign_count, claim.last_used_at, claim.backed_up
    return key


def keys_in_use(keys: list[SecurityKey]) -> list[SecurityKey]:
    """These keys with their use (:func:`with_use`), their claims read in one batch: for what a
    person sees of keys (the last use, the backup state), which no ceremony needs."""
    if not keys:
        return keys
    claims = {
        claim.key_id: claim for claim in CredentialClaim.batch_get([key.key_id for key in keys], consistent_read=True)
    }
    return [with_use(key, claims.get(key.key_id)) for key in keys]


def stored_key(*, org_id: str, key_id: str) -> SecurityKey | None:
    """One key with its use, read with its claim in one round trip; None when there is none."""
    from pynamodb.exceptions import DoesNotExist, TransactGetError
    from pynamodb.transactions import TransactGet

    from chalicelib.base.models import connection
    from chalicelib.base.storage import TRANSACTION_CANCELED, response_code

    for attempt in range(2):
        try:
            with TransactGet(connection=connection()) as reads:
                key_future = reads.get(SecurityKey, org_id, key_id)
                claim_future = reads.get(CredentialClaim, key_id)
            break
        except TransactGetError as error:
            # Cancelled while a check of the key writes its claim: that write takes milliseconds.
            if attempt or response_code(error) != TRANSACTION_CANCELED:
                raise
    try:
        key = key_future.get()
    except DoesNotExist:
        return None
    try:
        claim = claim_future.get()
    except DoesNotExist:
        claim = None
    return with_use(key, claim)


def known_credentials(member: Member) -> list[KnownCredential]:
    """The member's credentials for a ceremony's options: from the member item, which every
    request reads anyway; only a member whose keys predate that list costs a query."""
    from chalicelib.ceremony import ceremonies

    if member.credentials is None:
        keys = keys_of(org_id=member.org_id, user_id=member.user_id) if member.key_count > 0 else []
        return [ceremonies.KnownCredential(credential_id=key.credential_id, transports=key.transports) for key in keys]
    return [
        ceremonies.KnownCredential(
            credential_id=_from_base64url(entry["id"]), transports=list(entry.get("transports") or [])
        )
        for entry in member.credentials.as_dict().values()
    ]


def credential_entry(key: SecurityKey) -> dict[str, Any]:
    """A key as the member item lists it among their credentials (``Member.credentials``)."""
    return {
        "id": base64.urlsafe_b64encode(key.credential_id).decode().rstrip("="),
        "transports": list(key.transports or []),
    }


def _from_base64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
