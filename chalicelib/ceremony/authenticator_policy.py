"""An organization's authenticator policy: which authenticators count as its members' security keys.

The policy lives on the organization item, so every request that reads the organization has it.
It decides at three moments, always by the rules in :func:`shortfalls` and the two checks below:

- registering a key: user verification, attestation verified against the FIDO Metadata Service
  (``chalicelib.ceremony.metadata``), models the metadata reports compromised, AAGUID allow and deny
  lists, and device-bound keys only;
- every security-key check: user verification;
- keys registered before a change: a key that falls short is shown as not compliant, does not
  count towards compliance, and under enforcement its holder must register a compliant key.

A change may apply to new registrations only: the saved policy then keeps the one it replaced
(``earlier``) and its own start (``applies_from``), and a key registered before that start is
judged by the earlier policy. The key's registration time is on the key, which every check reads
anyway, so judging this way reads no more items than judging by one policy.

A change applied to all keys may give a grace period instead: the saved policy keeps the one it
replaced (``earlier``), its own start (``grace_from``) and the period's end (``grace_until``). A key
registered before the start that counted then under the earlier policy but falls short of the new
one is *spared*: it keeps counting until the end, and from then on it does not — decided by
:func:`verdict` at the moment of each check, so that no job has to run when the period ends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from chalicelib.base import clock
from chalicelib.base.errors import (
    AttestationRequired,
    AttestationUntrusted,
    AuthenticatorNotAllowed,
    GracePeriodNotApplicable,
    InvalidGracePeriod,
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
# How many earlier policies a policy may keep for the keys registered under them: each change
# applied to new registrations only keeps one more, and the organization item must stay small.
MAX_EARLIER = 5
# The longest grace period for keys a change stops counting, in hours: that of an enforcement.
MAX_GRACE_HOURS = 720


class UserVerification(str, Enum):
    DISCOURAGED = "discouraged"
    PREFERRED = "preferred"
    REQUIRED = "required"


class Attestation(str, Enum):
    NONE = "none"
    REQUIRED = "required"


class AppliesTo(str, Enum):
    """Which keys a saved policy judges."""

    ALL_KEYS = "all_keys"
    NEW_REGISTRATIONS = "new_registrations"


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
    # Set where the policy applies to new registrations only: keys registered before
    # ``applies_from`` are judged by ``earlier``, the policy in force until then.
    applies_from: datetime | None = None
    earlier: AuthenticatorPolicy | None = None
    # Set where a change applied to all keys gave a grace period: keys registered before
    # ``grace_from`` that counted then under ``earlier`` keep counting until ``grace_until``.
    grace_from: datetime | None = None
    grace_until: datetime | None = None

    def in_grace(self, at: datetime) -> bool:
        """Whether the policy's grace period is running at ``at``."""
        return self.grace_until is not None and at < self.grace_until

    @property
    def applies_to(self) -> AppliesTo:
        return AppliesTo.ALL_KEYS if self.applies_from is None else AppliesTo.NEW_REGISTRATIONS

    def eras(self) -> int:
        """How many policies this one holds, itself included."""
        return 1 + (self.earlier.eras() if self.earlier is not None else 0)

    def governing(self, registered_at: datetime | None) -> AuthenticatorPolicy:
        """The policy that judges a key registered at ``registered_at`` (None: being registered now)."""
        policy = self
        while (
            policy.earlier is not None
            and policy.applies_from is not None
            and registered_at is not None
            and registered_at < policy.applies_from
        ):
            policy = policy.earlier
        return policy

    def stored(self) -> dict[str, Any]:
        """The policy as the organization item holds it."""
        document: dict[str, Any] = {**self.as_dict(), "version": self.version}
        if self.applies_from is not None and self.earlier is not None:
            document["applies_from"] = self.applies_from.isoformat()
            document["earlier"] = self.earlier.stored()
        if self.grace_from is not None and self.grace_until is not None and self.earlier is not None:
            document["grace_from"] = self.grace_from.isoformat()
            document["grace_until"] = self.grace_until.isoformat()
            document["earlier"] = self.earlier.stored()
        return document

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
    registered_at: datetime | None = None  # None: being registered now

    @classmethod
    def of(cls, key: SecurityKey) -> KeyFacts:
        return cls(
            aaguid=key.aaguid,
            backup_eligible=bool(key.backup_eligible),
            attested=bool(key.attested),
            model_status=key.model_status,
            registered_at=key.created_at,
        )


def of(org: Organization) -> AuthenticatorPolicy:
    """The organization's policy as stored (the default when it never set one)."""
    stored = org.authenticator_policy.as_dict() if org.authenticator_policy is not None else None
    if not stored:
        return AuthenticatorPolicy()
    return _from_stored(stored)


def _from_stored(stored: dict[str, Any]) -> AuthenticatorPolicy:
    kept = ("applies_from", "earlier", "grace_from", "grace_until")
    rules = {name: value for name, value in stored.items() if name not in kept}
    policy = replace(parse(rules), version=int(stored.get("version", 0)))
    if not isinstance(stored.get("earlier"), dict):
        return policy
    if stored.get("applies_from"):
        return replace(
            policy, applies_from=datetime.fromisoformat(stored["applies_from"]), earlier=_from_stored(stored["earlier"])
        )
    if stored.get("grace_from") and stored.get("grace_until"):
        return replace(
            policy,
            grace_from=datetime.fromisoformat(stored["grace_from"]),
            grace_until=datetime.fromisoformat(stored["grace_until"]),
            earlier=_from_stored(stored["earlier"]),
        )
    return policy


def applies_to(value: object) -> AppliesTo:
    """Which keys a change applies to, as a request names it.

    Raises:
        InvalidPolicy: not one of the two.
    """
    try:
        return AppliesTo(value)
    except ValueError:
        raise InvalidPolicy("'applies_to' must be 'all_keys' or 'new_registrations'.") from None


def grace_hours(value: object) -> int:
    """A grace period for keys a change stops counting, as a request names it.

    Raises:
        InvalidGracePeriod: not a whole number of hours from 0 to :data:`MAX_GRACE_HOURS`.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_GRACE_HOURS:
        raise InvalidGracePeriod(f"'grace_period_hours' must be a whole number from 0 to {MAX_GRACE_HOURS}.")
    return value


def stops_counting_keys(*, before: AuthenticatorPolicy, new: AuthenticatorPolicy) -> bool:
    """Whether ``new`` tightens a rule judged on stored keys, so that some key ``before`` counts
    could stop counting (user verification is checked at each use, not judged on a key)."""
    return (
        (new.attestation is Attestation.REQUIRED and before.attestation is not Attestation.REQUIRED)
        or (new.device_bound_only and not before.device_bound_only)
        or bool(new.denied_aaguids - before.denied_aaguids)
        or bool(new.allowed_aaguids and (not before.allowed_aaguids or before.allowed_aaguids - new.allowed_aaguids))
    )


def successor(
    *, before: AuthenticatorPolicy, new: AuthenticatorPolicy, mode: AppliesTo, at: datetime, grace_hours: int = 0
) -> AuthenticatorPolicy:
    """The policy to save when ``new`` replaces ``before`` for the keys ``mode`` names, sparing
    for ``grace_hours`` the keys it stops counting.

    Raises:
        InvalidPolicy: applied to new registrations only once too often in a row.
        GracePeriodNotApplicable: a grace period with a policy for new registrations only, or
            with one that stops counting no key ``before`` counts.
    """
    if grace_hours and mode is AppliesTo.NEW_REGISTRATIONS:
        raise GracePeriodNotApplicable(
            "A policy for new registrations only stops counting no key: it needs no grace period."
        )
    if grace_hours and not stops_counting_keys(before=before, new=new):
        raise GracePeriodNotApplicable(
            "This policy is not stricter than the one in force about stored keys: "
            "no key stops counting, so there is nothing to give a grace period for."
        )
    if mode is AppliesTo.ALL_KEYS and not grace_hours:
        return new
    if before.grace_until is not None and not before.in_grace(at):
        # A grace period that ended spares no key any more: the policy it kept is not needed.
        before = replace(before, earlier=None, grace_from=None, grace_until=None)
    if before.eras() >= MAX_EARLIER:
        raise InvalidPolicy(
            f"The policy already keeps {MAX_EARLIER - 1} earlier policies for older keys: "
            "apply this one to all keys without a grace period, or choose one that older keys meet."
        )
    if grace_hours:
        return replace(new, grace_from=at, grace_until=at + timedelta(hours=grace_hours), earlier=before)
    return replace(new, applies_from=at, earlier=before)


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


@dataclass(frozen=True)
class Verdict:
    """How the policy judges a key: the rules it falls short of and, for a key the policy's grace
    period spares, until when it counts all the same."""

    shortfalls: list[str]
    spared_until: datetime | None = None

    @property
    def compliant(self) -> bool:
        """Meets the policy's rules, grace period or not."""
        return not self.shortfalls

    @property
    def spared(self) -> bool:
        """Falls short, but the grace period spares it (for as long as it runs)."""
        return bool(self.shortfalls) and self.spared_until is not None

    def counts(self, at: datetime) -> bool:
        """Whether the key counts at ``at``: it complies, or the grace period spares it then."""
        return not self.shortfalls or (self.spared_until is not None and at < self.spared_until)


def verdict(policy: AuthenticatorPolicy, key: KeyFacts) -> Verdict:
    """The rule of which keys count: a key counts when it meets the policy that judges it (by
    :func:`shortfalls`), or while the policy's grace period runs, when it was registered before
    the change and counted then under the policy the change replaced."""
    short = shortfalls(policy, key)
    if (
        short
        and policy.earlier is not None
        and policy.grace_from is not None
        and policy.grace_until is not None
        and key.registered_at is not None
        and key.registered_at < policy.grace_from
        and verdict(policy.earlier, key).counts(policy.grace_from)
    ):
        return Verdict(shortfalls=short, spared_until=policy.grace_until)
    return Verdict(shortfalls=short)


def shortfalls(policy: AuthenticatorPolicy, key: KeyFacts) -> list[str]:
    """Why a key does not count under the policy, as reason codes; empty when it does. A key
    registered before a policy applied to new registrations only is judged by the earlier one."""
    policy = policy.governing(key.registered_at)
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
    """Whether the key counts now (:func:`verdict`)."""
    return verdict(policy, KeyFacts.of(key)).counts(clock.now())


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


def check_assertion(policy: AuthenticatorPolicy, *, registered_at: datetime, user_verified: bool) -> None:
    """Refuse a security-key check without user verification where the policy that judges the
    key (registered at ``registered_at``) requires it."""
    if policy.governing(registered_at).user_verification is UserVerification.REQUIRED and not user_verified:
        raise UserVerificationRequired(
            "The organization requires user verification (a PIN or biometric) on security keys."
        )


def describe(policy: AuthenticatorPolicy) -> dict[str, Any]:
    described = {**policy.as_dict(), "applies_to": policy.applies_to.value}
    if policy.applies_from is not None and policy.earlier is not None:
        described["applies_from"] = clock.iso(policy.applies_from)
        described["earlier"] = describe(policy.earlier)
    if policy.grace_until is not None and policy.earlier is not None and policy.in_grace(clock.now()):
        described["grace_from"] = clock.iso(policy.grace_from)
        described["grace_until"] = clock.iso(policy.grace_until)
        described["earlier"] = describe(policy.earlier)
    return described


def describe_accepted(policy: AuthenticatorPolicy) -> dict[str, Any]:
    """What a key registered now must be, as its holder is told: the rules of the policy in force,
    without the earlier policies that judge older keys."""
    return policy.as_dict()
