"""A member's security keys as the WebAuthn ceremonies see them: the credentials a ceremony's
options list, the user handle a key is bound to, and the options a client receives."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.base.models import Member, SecurityKey

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
