"""Who may register a first security key: anyone signed in (``open``), or only a member holding an
admin's enrolment pass (``pass_required``).

Under ``pass_required`` an IdP password alone no longer enrols a key: the member's first key
needs a code an admin issued to that member. A pass is bound to one member of one organization,
expires (10 minutes to 30 days), is used once, and its code is stored only as a hash. It is bound
to the member as created (their ``created_at``): offboarding voids every pass of theirs, also one
issued while the offboarding ran, so a user the IdP signs in again after being offboarded — a new
member of the same ID — holds none of them. The pass is
used up in the same transaction that stores the key, so two registrations racing with one code
store one key. Wrong codes are throttled per member: after 5 in 15 minutes, 429.

It is also how a member who lost every key gets back in: an admin deletes the lost key and
issues a pass.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from pynamodb.expressions.condition import Condition

from chalicelib.base import audit, clock, throttles
from chalicelib.base.config import settings
from chalicelib.base.context import Caller
from chalicelib.base.errors import (
    ConcurrentChange,
    EnrollmentPassNotFound,
    EnrollmentPassRequired,
    EnrollmentPassUsed,
    InvalidEnrollmentPass,
    MalformedRequest,
    MemberNotFound,
)
from chalicelib.base.models import EnrollmentPass, Member, Organization
from chalicelib.base.storage import ConditionsFailed, Item, LabelledWrite, transaction

MIN_LIFETIME_MINUTES = 10
MAX_LIFETIME_MINUTES = 30 * 24 * 60
DEFAULT_LIFETIME_MINUTES = 60
# How long a used, revoked or expired pass stays listed before DynamoDB's TTL may remove it.
_KEPT_AFTER_EXPIRY = timedelta(days=30)

# Codes are typed by people: no 0/O, 1/I/L or U. 20 characters of these 30 carry 98 random bits.
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
_CODE_GROUPS, _CODE_GROUP_LENGTH = 4, 5
_MAX_CODE_LENGTH = 64
_PASS_ID = re.compile(r"ep_[A-Za-z0-9_-]{22}")


class Policy(str, Enum):
    OPEN = "open"
    PASS_REQUIRED = "pass_required"


class PassState(str, Enum):
    ACTIVE = "active"
    USED = "used"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class IssuedPass:
    """A new pass together with the only copy of its code."""

    enrollment_pass: EnrollmentPass
    code: str


# --- the organization's policy ------------------------------------------------------------------


def policy_of(org: Organization) -> Policy:
    """The organization's policy. Anything but absent or ``open`` (an operator's typo in the
    table, say) counts as ``pass_required``: the rule fails closed."""
    if org.enrollment is None or org.enrollment == Policy.OPEN.value:
        return Policy.OPEN
    return Policy.PASS_REQUIRED


def check_policy(value: object) -> Policy:
    """The ``enrollment`` field of ``PUT /org/mfa``."""
    if not isinstance(value, str) or value not in {policy.value for policy in Policy}:
        raise MalformedRequest('\'enrollment\' must be "open" or "pass_required".')
    return Policy(value)


@dataclass(frozen=True)
class PolicyChange:
    """A change of the policy, made with ``PUT /org/mfa``'s enforcement change or alone (audited)."""

    caller: Caller
    policy: Policy

    def actions(self) -> list[Any]:
        return [Organization.enrollment.set(self.policy.value)]

    def add_to(self, write: LabelledWrite) -> None:
        org_id = self.caller.org.org_id
        write.save(
            Item.AUDIT,
            audit.event(
                org_id=org_id,
                actor=self.caller.actor,
                action="enrollment.changed",
                target=org_id,
                client=self.caller.client,
                details={"enrollment": self.policy.value},
            ),
        )

    def applied(self, org: Organization) -> None:
        org.enrollment = self.policy.value

    def commit(self) -> None:
        with transaction() as write:
            write.update(
                Item.ORG,
                Organization(self.caller.org.org_id),
                actions=self.actions(),
                condition=Organization.org_id.exists(),
            )
            self.add_to(write)


def policy_change(*, caller: Caller, policy: Policy | None) -> PolicyChange | None:
    """The change ``PUT /org/mfa {"enrollment": ...}`` asks for; None when it asks for none or
    for the policy in force (which changes nothing and logs nothing)."""
    if (
        policy is None
        or (caller.org.enrollment == policy.value)
        or (caller.org.enrollment is None and policy is Policy.OPEN)
    ):
        return None
    return PolicyChange(caller=caller, policy=policy)


# --- passes, for admins ---------------------------------------------------------------------------


def check_lifetime(value: object) -> int:
    """``lifetime_minutes``, where a request gives it: a whole number of minutes from 10 to 43200
    (30 days). null is none, and refused: a request that wants the default leaves the field out."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not MIN_LIFETIME_MINUTES <= value <= MAX_LIFETIME_MINUTES
    ):
        raise MalformedRequest(
            f"'lifetime_minutes' must be a whole number from {MIN_LIFETIME_MINUTES} to {MAX_LIFETIME_MINUTES}."
        )
    return value


def _check_member_id(user_id: str) -> str:
    if not 0 < len(user_id) <= 255:  # longer cannot be an ID token's sub; DynamoDB would refuse it as a key
        raise MemberNotFound("No such member.")
    return user_id


def _new_code() -> str:
    groups = ("".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_GROUP_LENGTH)) for _ in range(_CODE_GROUPS))
    return "-".join(groups)


def _normalized(code: str) -> str:
    """People may type a code in lower case, without its dashes or with spaces."""
    return re.sub(r"[\s-]", "", code).upper()


def _hash(code: str) -> str:
    # A fast hash is enough: a code carries 98 random bits, and guesses are throttled.
    return hashlib.sha256(b"keyward-enrollment-pass\x00" + _normalized(code).encode()).hexdigest()


def issue(*, caller: Caller, user_id: str, lifetime_minutes: int) -> IssuedPass:
    """``POST /org/members/{user_id}/enrollment-passes``: a pass for one member of the caller's
    organization; the code is returned once and stored only as a hash.

    Raises:
        MemberNotFound: the organization has no such member (checked in the same transaction).
    """
    org_id = caller.org.org_id
    user_id = _check_member_id(user_id)
    member = _member(org_id=org_id, user_id=user_id)
    code = _new_code()
    issued_at = clock.now()
    expires_at = issued_at + timedelta(minutes=lifetime_minutes)
    enrollment_pass = EnrollmentPass(
        org_id,
        "ep_" + secrets.token_urlsafe(16),
        user_id=user_id,
        code_hash=_hash(code),
        created_at=issued_at,
        created_by=caller.actor.name,
        expires_at=expires_at,
        ttl=expires_at + _KEPT_AFTER_EXPIRY,
        member_created_at=member.created_at,
    )
    try:
        with transaction() as write:
            # Still the member read: one offboarded (and perhaps re-created) meanwhile gets no pass.
            write.condition_check(Item.MEMBER, Member, org_id, user_id, condition=_same_member(member))
            write.save(Item.ENROLLMENT_PASS, enrollment_pass, condition=EnrollmentPass.pass_id.does_not_exist())
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=org_id,
                    actor=caller.actor,
                    action="enrollment_pass.issued",
                    target=enrollment_pass.pass_id,
                    user_id=user_id,
                    client=caller.client,
                    details={"lifetime_minutes": lifetime_minutes, "expires_at": clock.iso(expires_at)},
                ),
            )
    except ConditionsFailed as refused:
        if Item.MEMBER in refused.labels:
            raise MemberNotFound("No such member.") from None
        raise ConcurrentChange("Issuing the pass collided with another; try again.") from None
    return IssuedPass(enrollment_pass=enrollment_pass, code=code)


def _member(*, org_id: str, user_id: str) -> Member:
    try:
        return Member.get(org_id, user_id, consistent_read=True, attributes_to_get=["user_id", "created_at"])
    except Member.DoesNotExist:
        raise MemberNotFound("No such member.") from None


def _same_member(member: Member) -> Condition:
    """The member item is still ``member``: not offboarded, nor re-created under the same ID."""
    if member.created_at is None:  # stored before members recorded their creation
        return Member.user_id.exists() & Member.created_at.does_not_exist()
    return Member.created_at == member.created_at


def of_member(enrollment_pass: EnrollmentPass, member: Member) -> bool:
    """Whether the pass was issued to ``member``, not to an earlier member of the same user ID
    whom an offboarding removed. A pass from before passes recorded their member was issued to
    whoever was the member then: to this one if issued after they were created."""
    if enrollment_pass.member_created_at is not None:
        return enrollment_pass.member_created_at == member.created_at
    return member.created_at is None or enrollment_pass.created_at >= member.created_at


def passes_of(*, org_id: str, user_id: str) -> list[EnrollmentPass]:
    """Every pass issued to the user ID, newest first, read with strong consistency: also those
    of an earlier member of that ID (see :func:`of_member`), which offboarding deletes."""
    found = EnrollmentPass.by_member.query(org_id, EnrollmentPass.user_id == user_id, consistent_read=True)
    return sorted(found, key=lambda enrollment_pass: enrollment_pass.created_at, reverse=True)


def list_passes(*, caller: Caller, user_id: str) -> list[EnrollmentPass]:
    """``GET /org/members/{user_id}/enrollment-passes``.

    Raises:
        MemberNotFound: the organization has no such member.
    """
    org_id = caller.org.org_id
    member = _member(org_id=org_id, user_id=_check_member_id(user_id))
    return [p for p in passes_of(org_id=org_id, user_id=member.user_id) if of_member(p, member)]


def revoke(*, caller: Caller, user_id: str, pass_id: str) -> None:
    """``DELETE /org/members/{user_id}/enrollment-passes/{id}``: the pass can no longer be used.

    Revoking a revoked pass changes nothing.

    Raises:
        EnrollmentPassNotFound: no such pass of this member in the caller's organization.
        EnrollmentPassUsed: the pass was used (delete the key it let in instead).
    """
    org_id = caller.org.org_id
    user_id = _check_member_id(user_id)
    if not _PASS_ID.fullmatch(pass_id):
        raise EnrollmentPassNotFound("No such enrolment pass for this member.")
    try:
        with transaction() as write:
            write.update(
                Item.ENROLLMENT_PASS,
                EnrollmentPass(org_id, pass_id),
                actions=[EnrollmentPass.revoked_at.set(clock.now()), EnrollmentPass.revoked_by.set(caller.actor.name)],
                condition=EnrollmentPass.pass_id.exists()
                & (EnrollmentPass.user_id == user_id)
                & EnrollmentPass.used_at.does_not_exist()
                & EnrollmentPass.revoked_at.does_not_exist(),
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=org_id,
                    actor=caller.actor,
                    action="enrollment_pass.revoked",
                    target=pass_id,
                    user_id=user_id,
                    client=caller.client,
                ),
            )
    except ConditionsFailed:
        _explain_refused_revocation(org_id=org_id, user_id=user_id, pass_id=pass_id)


def _explain_refused_revocation(*, org_id: str, user_id: str, pass_id: str) -> None:
    try:
        found = EnrollmentPass.get(org_id, pass_id, consistent_read=True)
    except EnrollmentPass.DoesNotExist:
        raise EnrollmentPassNotFound("No such enrolment pass for this member.") from None
    if found.user_id != user_id:
        raise EnrollmentPassNotFound("No such enrolment pass for this member.")
    if found.used_at is not None:
        raise EnrollmentPassUsed("This pass was used; delete the security key it let in instead.")
    # Revoked already: nothing to do.


def state_of(enrollment_pass: EnrollmentPass) -> PassState:
    if enrollment_pass.used_at is not None:
        return PassState.USED
    if enrollment_pass.revoked_at is not None:
        return PassState.REVOKED
    if enrollment_pass.expires_at <= clock.now():
        return PassState.EXPIRED
    return PassState.ACTIVE


def describe(enrollment_pass: EnrollmentPass) -> dict[str, Any]:
    """A pass as the API lists it: never its code."""
    return {
        "id": enrollment_pass.pass_id,
        "state": state_of(enrollment_pass).value,
        "created_at": clock.iso(enrollment_pass.created_at),
        "created_by": enrollment_pass.created_by,
        "expires_at": clock.iso(enrollment_pass.expires_at),
        "used_at": clock.iso(enrollment_pass.used_at),
        "revoked_at": clock.iso(enrollment_pass.revoked_at),
    }


# --- registering a key ------------------------------------------------------------------------


def code_required(*, caller: Caller) -> bool:
    """Whether the caller's next key registration needs an enrolment code (for the options)."""
    return policy_of(caller.org) is Policy.PASS_REQUIRED and caller.member.key_count == 0


@dataclass
class FirstKeyGate:
    """What one key registration adds to its transaction so that the enrolment policy still holds
    when it commits: the member still holds a key, the organization is still open, or the pass
    is used up — whichever the registration relied on."""

    caller: Caller
    # The member's key count was above zero when the request was read.
    relies_on_keys: bool = False
    # The organization was open to first keys when the request was read.
    relies_on_open: bool = False
    enrollment_pass: EnrollmentPass | None = None
    code_hash: str | None = None

    def member_condition(self, condition: Condition) -> Condition:
        """The registration's condition on the member, with this gate's own added."""
        if self.relies_on_keys:
            return condition & (Member.key_count > 0)
        if self.enrollment_pass is not None:
            # The member the pass was issued to, not one re-created under the ID meanwhile.
            return condition & _same_member(self.caller.member)
        return condition

    def org_condition(self) -> Condition | None:
        """The condition on the organization item the registration relied on (that it is still
        open to first keys), for the one operation of the transaction on that item (see
        ``coverage.change_key_count``)."""
        if self.relies_on_open:
            return Organization.enrollment.does_not_exist() | (Organization.enrollment == Policy.OPEN.value)
        return None

    def add_to(self, write: LabelledWrite, *, key_id: str) -> None:
        """Add the use of the pass (audited) to the transaction, when the registration uses one."""
        session = self.caller.session
        if self.enrollment_pass is not None:
            now = clock.now()
            write.update(
                Item.ENROLLMENT_PASS,
                EnrollmentPass(session.org_id, self.enrollment_pass.pass_id),
                actions=[EnrollmentPass.used_at.set(now), EnrollmentPass.used_key_id.set(key_id)],
                condition=EnrollmentPass.pass_id.exists()
                & (EnrollmentPass.user_id == session.user_id)
                & (EnrollmentPass.code_hash == self.code_hash)
                & EnrollmentPass.used_at.does_not_exist()
                & EnrollmentPass.revoked_at.does_not_exist()
                & (EnrollmentPass.expires_at > now),
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=session.org_id,
                    actor=self.caller.actor,
                    action="enrollment_pass.used",
                    target=self.enrollment_pass.pass_id,
                    user_id=session.user_id,
                    client=self.caller.client,
                    details={"key_id": key_id},
                ),
            )

    def explain(self, refused: ConditionsFailed) -> None:
        """Raise this gate's refusal if one of its conditions cancelled the registration. A refused
        condition on the member is the registration's to name: a member who no longer holds a key
        is told their keys changed meanwhile, as for any other change of their keys."""
        if Item.ENROLLMENT_PASS in refused.labels:
            raise InvalidEnrollmentPass("The enrolment pass was used, revoked or expired meanwhile.")
        # The open policy is a condition on the organization's counters (see org_condition); a
        # refusal there for a moved compliance version was named before this (coverage.retrying).
        if self.relies_on_open and Item.ORG_COUNTERS in refused.labels:
            raise EnrollmentPassRequired(
                "The organization now requires an enrolment pass from an admin for a first security key."
            )


def admit(*, caller: Caller, code: object) -> FirstKeyGate:
    """Decide, before the registration's challenge is used, whether the policy lets it proceed.

    A code is looked at only when it is needed: for a member's first key under ``pass_required``.
    Each such check takes one of the member's failure slots first and gives it back when the code
    is right, and a refused code is audited.

    Raises:
        MalformedRequest: ``enrollment_code`` is not a string of at most 64 characters.
        EnrollmentPassRequired: a first key under ``pass_required``, without a code.
        InvalidEnrollmentPass: a code that is not one of the member's usable passes.
        TooManyAttempts: too many wrong codes for this member lately.
    """
    if code is not None and (not isinstance(code, str) or len(code) > _MAX_CODE_LENGTH):
        raise MalformedRequest(f"'enrollment_code' must be a string of at most {_MAX_CODE_LENGTH} characters.")
    if caller.member.key_count > 0:
        return FirstKeyGate(caller=caller, relies_on_keys=True)
    if policy_of(caller.org) is Policy.OPEN:
        return FirstKeyGate(caller=caller, relies_on_open=True)
    if not code:
        raise EnrollmentPassRequired(
            "The organization requires an enrolment pass from an admin for your first security key."
        )
    return _check_code(caller=caller, code=code)


def _check_code(*, caller: Caller, code: str) -> FirstKeyGate:
    config = settings()
    org_id, user_id = caller.session.org_id, caller.session.user_id
    subject = "enrollment-pass#" + hashlib.sha256(f"{org_id}\x00{user_id}".encode()).hexdigest()
    window = throttles.reserve_attempt(
        subject=subject,
        max_failures=config.enrollment_pass_max_failures,
        window_seconds=config.enrollment_pass_window_seconds,
        refusal="Too many wrong enrolment codes; try again later.",
    )
    presented = _hash(code)
    # An earlier member's pass is as unknown as any other code: it was never this member's.
    matching = [
        p
        for p in passes_of(org_id=org_id, user_id=user_id)
        if hmac.compare_digest(p.code_hash, presented) and of_member(p, caller.member)
    ]
    usable = [p for p in matching if state_of(p) is PassState.ACTIVE]
    if not usable:
        reason = state_of(matching[0]).value if matching else "unknown"
        audit.record(
            org_id=org_id,
            actor=caller.actor,
            action="enrollment_pass.refused",
            target=matching[0].pass_id if matching else None,
            user_id=user_id,
            client=caller.client,
            details={"reason": reason},
        )
        raise InvalidEnrollmentPass("The enrolment code is wrong, used, revoked or expired.")
    throttles.release_attempt(subject=subject, window=window)
    return FirstKeyGate(caller=caller, enrollment_pass=usable[0], code_hash=presented)
