"""A key's use (signature counter, last use, backup state) as stored: on its credential claim once
a check has written it there, on the key as registered before (chalicelib/ceremony/credentials.py)."""

from __future__ import annotations

from chalicelib.base.models import CredentialClaim, SecurityKey


def stored_keys() -> list[SecurityKey]:
    """Every stored key, with its use as keyward reads it."""
    claims = {claim.key_id: claim for claim in CredentialClaim.scan(consistent_read=True)}
    return [_with_use(key, claims.get(key.key_id)) for key in SecurityKey.scan(consistent_read=True)]


def stored_key(org_id: str, key_id: str) -> SecurityKey:
    """One stored key, with its use as keyward reads it."""
    key = SecurityKey.get(org_id, key_id, consistent_read=True)
    try:
        claim: CredentialClaim | None = CredentialClaim.get(key_id, consistent_read=True)
    except CredentialClaim.DoesNotExist:
        claim = None
    return _with_use(key, claim)


def set_sign_count(key_id: str, count: int) -> None:
    """Store the key's signature counter as checks of it would have left it."""
    CredentialClaim(key_id).update(actions=[CredentialClaim.sign_count.set(count)])


def _with_use(key: SecurityKey, claim: CredentialClaim | None) -> SecurityKey:
    # Read straight from the items, not through keyward's own reading of them.
    if claim is not None and claim.sign_count is not None:
        key.sign_count, key.last_used_at, key.backed_up = claim.sign_count, claim.last_used_at, claim.backed_up
    return key
