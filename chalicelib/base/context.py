"""The shapes domain modules hand each other, so that none needs another's module for a type: a
request's caller (its session, organization and member), what else it read with them, how long an
invocation may still run, and a setting change written in another change's transaction.

Nothing here decides anything; the rules live in their domains (``access.sessions`` resolves a
caller, ``access.assurance`` decides what it may do).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from pynamodb.models import Model

from chalicelib.base.audit import BACKUP_USER_PREFIX, Actor, Client, actor_of
from chalicelib.base.models import Member, Organization, Session
from chalicelib.base.storage import LabelledWrite


class SessionState(str, Enum):
    ACTIVE = "active"
    MFA_REQUIRED = "mfa_required"
    REGISTRATION_REQUIRED = "registration_required"


@dataclass(frozen=True)
class AlsoRead:
    """An item a request names (a challenge, a security key), read in the same round trip as
    its session: a ceremony step then needs one read and one write, nothing more."""

    label: str
    model: type[Model]
    hash_key: Any
    range_key: Any = None


# Given the organization and user a token names, what else to read with the session.
AlsoReads = Callable[[str, str], Sequence[AlsoRead]]


@dataclass
class Caller:
    """An authenticated request: its session, the organization and the member behind it, and
    whatever else the request asked to read with them (None where no such item exists)."""

    session: Session
    org: Organization
    member: Member
    token_hash: str
    client: Client = Client()
    read: Mapping[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> SessionState:
        return SessionState(self.session.state)

    @property
    def is_admin(self) -> bool:
        return bool(self.member.admin)

    @property
    def is_backup(self) -> bool:
        """Signed in with backup credentials rather than as a member."""
        return self.session.user_id.startswith(BACKUP_USER_PREFIX)

    @property
    def actor(self) -> Actor:
        """Who this caller is in the audit log: a member, or the backup credentials they used."""
        return actor_of(self.session.user_id)


class AlongChange(Protocol):
    """Another organization setting changed by the same ``PUT /org/mfa`` (the enrolment policy):
    written in the enforcement's transaction, so that a refused enforcement changes neither."""

    def actions(self) -> list[Any]:
        """Update actions on the organization item."""

    def add_to(self, write: LabelledWrite) -> None:
        """Its other writes (its audit event)."""

    def applied(self, org: Organization) -> None:
        """Show the change on the organization as read."""

    def commit(self) -> None:
        """Make the change on its own, when enforcement stays as it is."""


class Deadline(Protocol):
    """How much longer this invocation may run (a Lambda context provides it)."""

    def seconds_left(self) -> float: ...
