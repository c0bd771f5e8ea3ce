"""An organization's authenticator policy: which authenticators count as its members' security keys.

The policy lives on the organization item, so every request that reads the organization has it.
It decides at three moments, always by the rules in :func:`shortfalls` and the two checks below:

- registering a key: user verification, attestation verified against the FIDO Metadata Service
  (``chalicelib.ceremony.metadata``), models the metadata reports compromised, AAGUID allow and deny
  lists, and device-bound keys only;
- every security-key check: user verification;
- keys registered before a change: a key that falls short is shown as not compliant, does not
  count towards compliance, and under enforcement its holder must register a compliant key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from chalicelib.base.errors import (
    AttestationRequired,
    AttestationUntrusted,
    AuthenticatorNotAllowed,
    InvalidPolicy,
    SyncedCredentialNotAllowed,
    UserVerificationRequired,
)
from chalicelib.base.models import Organization, SecurityKey

# Statuses under which a model's keys stop counting where attestation is required (see
# chalicelib.ceremony.metadata, which records them on keys).
COMPROMISED_STATUSES = frozenset(
    {
        "REVOKED",
        "USER_VERIFICATION_BYPASS",
        "ATTESTATION_KEY_COMPROMISE",
        "USER_KEY_REMOTE_COMPROMISE",
        "USER_KEY_PHYSICAL_COMPROMISE",
    }
)
MAX_AAGUIDS = 100


class UserVerification(str, Enum):
    DISCOURAGED = "discouraged"
    PREFERRED = "preferred"
    REQUIRED = "required"


class Attestation(str, Enum):
    NONE = "none"
    REQUIRED = "required"


@dataclass(frozen=True)
class AuthenticatorPolicy:
    """What an organization accepts; the defaults accept any security key, as keyward always did."""

    user_verification: UserVerification = UserVerification.DISCOURAGED
    attestation: Attestation = Attestation.NONE
    allowed_aaguids: frozenset[str] = field(default_factory=frozenset)
    denied_aaguids: frozenset[str] = field(default_factory=frozenset)
    device_bound_only: bool = False
    # Bumped by every change, so that two admins' changes cannot silently overwrite each other.
    version: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_verification": self.user_verification.value,
            "attestation": self.attestation.value,
            "allowed_aaguids": sorted(self.allowed_aaguids),
            "denied_aaguids": sorted(self.denied_aaguids),
            "device_bound_only": self.device_bound_only,
        }


@dataclass(frozen=True)
class KeyFacts:
    """What the policy looks at in a key, stored or being registered."""

    aaguid: str
    backup_eligible: bool
    attested: bool
    model_status: str | None

    @classmethod
    def of(cls, key: SecurityKey) -> KeyFacts:
        return cls(
            aaguid=key.aaguid,
            backup_eligible=bool(key.backup_eligible),
            attested=bool(key.attested),
            model_status=key.model_status,
        )


def of(org: Organization) -> AuthenticatorPolicy:
    """The organization's policy as stored (the default when it never set one)."""
    stored = org.authenticator_policy.as_dict() if org.authenticator_policy is not None else None
    if not stored:
        return AuthenticatorPolicy()
    return replace(parse(stored), version=int(stored.get("version", 0)))


def parse(document: object) -> AuthenticatorPolicy:
    """A policy from a request body: every field optional, unknown fields and values refused.

    Raises:
        InvalidPolicy: what was wrong, for the admin to fix.
    """
    if not isinstance(document, dict):
        raise InvalidPolicy("The policy must be a JSON object.")
    unknown = set(document) - {
        "user_verification",
        "attestation",
        "allowed_aaguids",
        "denied_aaguids",
        "device_bound_only",
        "version",
    }
    if unknown:
        raise InvalidPolicy(f"Unknown policy fields: {', '.join(sorted(unknown))}.")
    try:
        user_verification = UserVerification(document.get("user_verification", UserVerification.DISCOURAGED.value))
    except ValueError:
        raise InvalidPolicy("'user_verification' must be 'discouraged', 'preferred' or 'required'.") from None
    try:
        attestation = Attestation(document.get("attestation", Attestation.NONE.value))
    except ValueError:
        raise InvalidPolicy("'attestation' must be 'none' or 'required'.") from None
    device_bound_only = document.get("device_bound_only", False)
    if not isinstance(device_bound_only, bool):
        raise InvalidPolicy("'device_bound_only' must be true or false.")
    allowed = _aaguids(document.get("allowed_aaguids", []), name="allowed_aaguids")
    denied = _aaguids(document.get("denied_aaguids", []), name="denied_aaguids")
    if allowed & denied:
        raise InvalidPolicy(f"AAGUIDs both allowed and denied: {', '.join(sorted(allowed & denied))}.")
    return AuthenticatorPolicy(
        user_verification=user_verification,
        attestation=attestation,
        allowed_aaguids=allowed,
        denied_aaguids=denied,
        device_bound_only=device_bound_only,
    )


def _aaguids(value: object, *, name: str) -> frozenset[str]:
    if not isinstance(value, list) or len(value) > MAX_AAGUIDS:
        raise InvalidPolicy(f"'{name}' must be a list of at most {MAX_AAGUIDS} AAGUIDs.")
    found = set()
    for item in value:
        try:
            if not isinstance(item, str) or len(item) > 64:
                raise ValueError
            found.add(str(uuid.UUID(item)))
        except ValueError:
            raise InvalidPolicy(f"'{name}' holds {str(item)[:64]!r}, which is not an AAGUID (a UUID).") from None
    return frozenset(found)


# --- the rules ------------------------------------------------------------------------------------


def shortfalls(policy: AuthenticatorPolicy, key: KeyFacts) -> list[str]:
    """Why a key does not count under the policy, as reason codes; empty when it does."""
    found = []
    if policy.allowed_aaguids and key.aaguid not in policy.allowed_aaguids:
        found.append(AuthenticatorNotAllowed.__name__)
    if key.aaguid in policy.denied_aaguids:
        found.append(AuthenticatorNotAllowed.__name__)
    if policy.device_bound_only and key.backup_eligible:
        found.append(SyncedCredentialNotAllowed.__name__)
    if policy.attestation is Attestation.REQUIRED:
        if not key.attested:
            found.append(AttestationRequired.__name__)
        elif key.model_status in COMPROMISED_STATUSES:
            found.append(AuthenticatorNotAllowed.__name__)
    return list(dict.fromkeys(found))


def is_compliant(policy: AuthenticatorPolicy, key: SecurityKey) -> bool:
    return not shortfalls(policy, KeyFacts.of(key))


def check_registration(
    policy: AuthenticatorPolicy,
    *,
    key: KeyFacts,
    user_verified: bool,
    certified: bool,
    model: str | None,
) -> None:
    """Refuse a new key the policy does not accept, with the most useful reason first.

    Raises:
        UserVerificationRequired, AttestationRequired, AttestationUntrusted,
        AuthenticatorNotAllowed, SyncedCredentialNotAllowed.
    """
    if policy.user_verification is UserVerification.REQUIRED and not user_verified:
        raise UserVerificationRequired(
            "The organization requires user verification (a PIN or biometric) on security keys."
        )
    if policy.attestation is Attestation.REQUIRED:
        if not certified:
            raise AttestationRequired(
                "The organization accepts only security keys that attest their model; "
                "this one sent no attestation certificate."
            )
        if not key.attested:
            raise AttestationUntrusted(
                "The security key's attestation does not verify up to a root "
                "the FIDO Metadata Service lists for its model."
            )
        if key.model_status in COMPROMISED_STATUSES:
            raise AuthenticatorNotAllowed(
                f"The FIDO Alliance reports this model ({model or key.aaguid}) as {key.model_status}."
            )
    if (policy.allowed_aaguids and key.aaguid not in policy.allowed_aaguids) or key.aaguid in policy.denied_aaguids:
        raise AuthenticatorNotAllowed(
            f"The organization does not accept this security key model ({model or key.aaguid})."
        )
    if policy.device_bound_only and key.backup_eligible:
        raise SyncedCredentialNotAllowed(
            "The organization accepts only device-bound security keys, not synced passkeys."
        )


def check_assertion(policy: AuthenticatorPolicy, *, user_verified: bool) -> None:
    """Refuse a security-key check without user verification where the policy requires it."""
    if policy.user_verification is UserVerification.REQUIRED and not user_verified:
        raise UserVerificationRequired(
            "The organization requires user verification (a PIN or biometric) on security keys."
        )


def describe(policy: AuthenticatorPolicy) -> dict[str, Any]:
    return policy.as_dict()
