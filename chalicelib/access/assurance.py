"""Assurance: what a session may do, decided in one place.

A session's *standing* follows from what it proved and from the member's and the organization's
state now, all of which :func:`chalicelib.access.sessions.resolve` read with the session in one round
trip. :data:`RULE` says, for every standing and every action, whether the action is allowed,
allowed only within the step-up window, or refused and why; :func:`require` is the only place
that decides. docs/security.md prints the same table, and a test holds the two together.

The rule the table writes down: once a member holds a key, a session may do more than read and
step up only if it proved possession, in that session, of a key the member still holds and the
organization accepts now. Registering a key records that key as the session's proof, so deleting
it — by anyone — ends the session or drops it back to "must prove"; and a keyless member's
step-up window counts from their IdP login alone, whatever keys came and went since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING

from chalicelib.access.actions import Action
from chalicelib.access.sessions import holds_key
from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.context import SessionState
from chalicelib.base.errors import (
    AdminRequired,
    AlreadyEnrolled,
    MfaRequired,
    NotForBackupSessions,
    ReauthenticationRequired,
    Refusal,
    RegistrationRequired,
    SecurityKeyRequired,
    WrongSessionState,
)

if TYPE_CHECKING:
    from pynamodb.expressions.update import Action as UpdateAction

    from chalicelib.base.context import Caller
    from chalicelib.base.models import Organization, SecurityKey, Session


class Standing(str, Enum):
    """What a session has proved, judged against the member's and organization's state now."""

    MFA_REQUIRED = "mfa_required"
    """The member holds a key; the session signed in with the IdP and owes the MFA check."""
    REGISTRATION_REQUIRED = "registration_required"
    """The organization enforces MFA and the member holds no key: register one first."""
    REPLACING_KEY = "replacing_key"
    """Under enforcement, the session proved a key of the member's that the authenticator
    policy no longer accepts: register one it does first."""
    WAITING_OVERTAKEN = "waiting_overtaken"
    """The session waited to register, but the member holds a key now that it never proved."""
    KEYLESS = "keyless"
    """Active, and the member holds no key (an organization that does not enforce MFA, or a
    grace period): only as safe as the IdP password."""
    PROOF_LAPSED = "proof_lapsed"
    """Active, the member holds a key, but the session proved none the member still holds and
    the organization accepts now (the key was deleted, or the policy changed): read and step up."""
    VERIFIED = "verified"
    """The session proved a key the member holds and the organization accepts."""
    BACKUP = "backup"
    """Signed in with the organization's backup credentials."""


# Actions only an organization's admins may take (sessions of backup credentials are admins).
ADMIN_ACTIONS = frozenset({Action.READ_ORG, Action.CHANGE_ORG, Action.CREATE_BACKUP_CREDENTIALS})


class Permit(str, Enum):
    ALLOWED = "yes"
    IN_WINDOW = "within the step-up window"


@dataclass(frozen=True)
class Refuse:
    """A refusal in the table: the reason code and what the caller should do."""

    refusal: type[Refusal]
    message: str

    def __str__(self) -> str:
        return self.refusal.__name__


Cell = Permit | Refuse

_MFA_FIRST = Refuse(MfaRequired, "Complete the security key check first (POST /auth/mfa/options).")
_REGISTER_FIRST = Refuse(RegistrationRequired, "The organization enforces MFA: register a security key first.")
_REGISTER_COMPLIANT = Refuse(
    RegistrationRequired, "The organization no longer accepts your security keys: register one it accepts first."
)
_SIGN_IN_AGAIN = Refuse(
    AlreadyEnrolled, "You hold a security key already: sign in again and pass the security key check."
)
_NOT_WAITING = Refuse(WrongSessionState, "This session is not waiting for the security key check.")
_PROVE_A_KEY = Refuse(
    ReauthenticationRequired,
    "This session has not proved a security key you still hold and the "
    "organization accepts: step up with POST /auth/reauth/options.",
)
_NO_KEY_TO_STEP_UP = Refuse(SecurityKeyRequired, "You hold no security key to step up with; sign in again.")
_BACKUP_HOLDS_NO_KEYS = Refuse(
    NotForBackupSessions, "Sessions opened with backup credentials cannot hold security keys."
)
_BACKUP_CANNOT_STEP_UP = Refuse(
    NotForBackupSessions, "A session opened with backup credentials has no security key to step up with; sign in again."
)
_BACKUP_CANNOT_CREATE = Refuse(
    NotForBackupSessions, "A session opened with backup credentials cannot create more of them."
)
_YES, _WINDOW = Permit.ALLOWED, Permit.IN_WINDOW


def _only(allowed: dict[Action, Cell], otherwise: Refuse) -> dict[Action, Cell]:
    return {action: allowed.get(action, otherwise) for action in Action}


RULE: dict[Standing, dict[Action, Cell]] = {
    Standing.MFA_REQUIRED: _only({Action.READ_ACCOUNT: _YES, Action.MFA_CHECK: _YES}, _MFA_FIRST),
    Standing.REGISTRATION_REQUIRED: _only(
        {Action.READ_ACCOUNT: _YES, Action.REGISTER_FIRST_KEY: _WINDOW}, _REGISTER_FIRST
    ),
    Standing.REPLACING_KEY: _only({Action.READ_ACCOUNT: _YES, Action.REGISTER_KEY: _WINDOW}, _REGISTER_COMPLIANT),
    Standing.WAITING_OVERTAKEN: _only({Action.READ_ACCOUNT: _YES}, _SIGN_IN_AGAIN),
    Standing.KEYLESS: {
        Action.READ_ACCOUNT: _YES,
        Action.MFA_CHECK: _NOT_WAITING,
        Action.READ: _YES,
        Action.STEP_UP: _NO_KEY_TO_STEP_UP,
        Action.RENAME_KEY: _YES,
        Action.END_SESSION: _YES,
        Action.REGISTER_FIRST_KEY: _WINDOW,
        Action.REGISTER_KEY: _WINDOW,
        Action.DELETE_KEY: _WINDOW,
        Action.DISABLE_MFA: _WINDOW,
        Action.READ_ORG: _YES,
        Action.CHANGE_ORG: _WINDOW,
        Action.CREATE_BACKUP_CREDENTIALS: _WINDOW,
    },
    Standing.PROOF_LAPSED: _only(
        {
            Action.READ_ACCOUNT: _YES,
            Action.MFA_CHECK: _NOT_WAITING,
            Action.READ: _YES,
            Action.STEP_UP: _YES,
            Action.READ_ORG: _YES,
        },
        _PROVE_A_KEY,
    ),
    Standing.VERIFIED: {
        Action.READ_ACCOUNT: _YES,
        Action.MFA_CHECK: _NOT_WAITING,
        Action.READ: _YES,
        Action.STEP_UP: _YES,
        Action.RENAME_KEY: _YES,
        Action.END_SESSION: _YES,
        Action.REGISTER_FIRST_KEY: _WINDOW,
        Action.REGISTER_KEY: _WINDOW,
        Action.DELETE_KEY: _WINDOW,
        Action.DISABLE_MFA: _WINDOW,
        Action.READ_ORG: _YES,
        Action.CHANGE_ORG: _WINDOW,
        Action.CREATE_BACKUP_CREDENTIALS: _WINDOW,
    },
    Standing.BACKUP: {
        Action.READ_ACCOUNT: _YES,
        Action.MFA_CHECK: _NOT_WAITING,
        Action.READ: _YES,
        Action.STEP_UP: _BACKUP_CANNOT_STEP_UP,
        Action.RENAME_KEY: _YES,
        Action.END_SESSION: _YES,
        Action.REGISTER_FIRST_KEY: _BACKUP_HOLDS_NO_KEYS,
        Action.REGISTER_KEY: _BACKUP_HOLDS_NO_KEYS,
        Action.DELETE_KEY: _WINDOW,
        Action.DISABLE_MFA: _WINDOW,
        Action.READ_ORG: _YES,
        Action.CHANGE_ORG: _WINDOW,
        Action.CREATE_BACKUP_CREDENTIALS: _BACKUP_CANNOT_CREATE,
    },
}


def accepts(org: Organization, key: SecurityKey) -> bool:
    """Whether the organization accepts this key as a second factor now: any key of its members
    while it does not enforce MFA; under enforcement, only a key its authenticator policy accepts."""
    from chalicelib.ceremony import authenticator_policy

    return not org.mfa_enforced or authenticator_policy.is_compliant(authenticator_policy.of(org), key)


def policy_version(org: Organization) -> int:
    """The version of the policy (and model statuses) keys are judged under: a proof made under
    another version no longer says whether the organization accepts the key."""
    return int(org.compliance_version or 0)


@dataclass(frozen=True)
class Proof:
    """A session's proof of possession of one of the member's keys (an MFA check, a step-up, a
    registration): the key, when, and the policy version under which the key counted (None:
    it did not count) — until when, where it counted only by the policy's grace period. Written
    with the ceremony's own transaction."""

    key_id: str
    at: datetime
    counts_under: int | None
    counts_until: datetime | None = None

    def actions(self) -> list[UpdateAction]:
        from chalicelib.base.models import Session

        counts_under = (
            Session.verified_key_counts_under.set(self.counts_under)
            if self.counts_under is not None
            else Session.verified_key_counts_under.remove()
        )
        counts_until = (
            Session.verified_key_counts_until.set(self.counts_until)
            if self.counts_until is not None
            else Session.verified_key_counts_until.remove()
        )
        return [
            Session.verified_key_id.set(self.key_id),
            Session.key_checked_at.set(self.at),
            counts_under,
            counts_until,
        ]

    def apply_to(self, session: Session) -> None:
        """Show the committed proof on the session as the request read it."""
        session.verified_key_id, session.key_checked_at = self.key_id, self.at
        session.verified_key_counts_under = self.counts_under
        session.verified_key_counts_until = self.counts_until


def proof(*, org: Organization, key: SecurityKey, at: datetime) -> Proof:
    from chalicelib.ceremony import authenticator_policy

    judged = authenticator_policy.verdict(authenticator_policy.of(org), authenticator_policy.KeyFacts.of(key))
    if not judged.counts(at):
        return Proof(key_id=key.key_id, at=at, counts_under=None)
    return Proof(key_id=key.key_id, at=at, counts_under=policy_version(org), counts_until=judged.spared_until)


def _proof_accepted(session: Session, org: Organization) -> bool:
    """Whether the session's proof still shows a key the organization accepts: proved under the
    policy version in force and, where the key counted only by the grace period, before its end
    (decided from the session and the clock, so that the period's end needs no job)."""
    if not org.mfa_enforced:
        return True
    until = session.verified_key_counts_until
    return session.verified_key_counts_under == policy_version(org) and (until is None or clock.now() < until)


def standing_of(caller: Caller) -> Standing:
    """The caller's standing, from the items the request read with its session."""
    if caller.is_backup:
        return Standing.BACKUP
    session, member = caller.session, caller.member
    state = caller.state
    if state is SessionState.MFA_REQUIRED:
        return Standing.MFA_REQUIRED
    if member.key_count == 0:
        return Standing.REGISTRATION_REQUIRED if state is SessionState.REGISTRATION_REQUIRED else Standing.KEYLESS
    held = holds_key(member, session.verified_key_id)
    if state is SessionState.REGISTRATION_REQUIRED:
        return Standing.REPLACING_KEY if held else Standing.WAITING_OVERTAKEN
    return Standing.VERIFIED if held and _proof_accepted(session, caller.org) else Standing.PROOF_LAPSED


def window_opened(caller: Caller, standing: Standing | None = None) -> datetime | None:
    """When the caller's step-up window opened: its last proof of a key the member holds, or its
    IdP login for a member without keys and for backup credentials; None when it has none."""
    standing = standing or standing_of(caller)
    if standing in (Standing.VERIFIED, Standing.REPLACING_KEY):
        return caller.session.key_checked_at
    if standing in (Standing.KEYLESS, Standing.REGISTRATION_REQUIRED, Standing.BACKUP):
        return caller.session.created_at
    return None


def window_ends(caller: Caller) -> datetime | None:
    """Until when actions that need the step-up window are allowed (None: not now)."""
    opened = window_opened(caller)
    return None if opened is None else opened + timedelta(seconds=settings().reauth_window_seconds)


def require(caller: Caller, action: Action) -> None:
    """Allow ``action`` to the caller, or raise the refusal the rule gives.

    Raises:
        MfaRequired, RegistrationRequired, AlreadyEnrolled, WrongSessionState: the session must
            first pass the check its state asks for.
        ReauthenticationRequired: the action needs a security-key check (or, without keys, a
            login) within the step-up window, or the session's proof lapsed.
        AdminRequired: the action is an admin's.
        SecurityKeyRequired, NotForBackupSessions: the session has nothing to step up with, or
            backup credentials cannot do this.
    """
    standing = standing_of(caller)
    if action is Action.REGISTER_KEY and caller.member.key_count == 0:
        action = Action.REGISTER_FIRST_KEY
    cell = RULE[standing][action]
    if isinstance(cell, Refuse):
        raise cell.refusal(cell.message)
    if action in ADMIN_ACTIONS and not caller.is_admin:
        raise AdminRequired("Only the organization's admins may do this.")
    if cell is Permit.IN_WINDOW:
        ends = window_ends(caller)
        if ends is not None and clock.now() < ends:
            return
        if standing in (Standing.KEYLESS, Standing.REGISTRATION_REQUIRED, Standing.BACKUP):
            raise ReauthenticationRequired("This action needs a recent sign-in: sign in again.")
        raise ReauthenticationRequired(
            "This action needs a recent security key check: step up with POST /auth/reauth/options."
        )
