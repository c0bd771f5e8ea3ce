"""What a session may do, hunted by a model: Hypothesis plays a member, an attacker holding the
member's IdP password, and an admin against the HTTP API (Chalice's test client on moto, with
``chalicelib.base.clock.now`` under the test's control), and a small reference model predicts every
answer from the rule below.

The rule (docs/security.md): once a member holds a key, a session may do more than read and
step up only if it proved possession, in that session, of a key the member still holds and the
organization accepts (under enforcement: one its authenticator policy accepts). Registering a key
is such a proof; deleting that key, by anyone, ends the session or sends it back to proving one.
Sensitive actions need the step-up window: from the session's last proof with a key still held,
or from the login for keyless members and backup sessions (a registration never extends a keyless
member's window). A member's first key ends every other session of theirs that has not proved a
key they hold; deleting a key ends the member's other sessions verified with it; enforcing ends
every other session of the organization; offboarding ends all of the member's.

Where the rule leaves the service a choice (ending a session whose proof key was deleted, or
sending it back to proving a key), the model accepts either and follows what the service did.

The invariants after every step:

- an attacker's session never changes anything (registers, deletes, disables, renames) while the
  member holds a key the attacker never possessed, and never keeps working once the model says it
  ended (``Bypass``);
- every session the model says has ended answers 401;
- the keys, each member's ``key_count`` and the organization's counters (members, members with a
  key, members with a compliant key) agree with a recount from the tables.

Before the rule's rewrite (registering any key counted as a key check for good), the machine finds
both known bypasses. Hypothesis's shrunk example of the first — a throwaway key makes a stolen
session outlive the member's enrolment (found with the other disagreements, which the rewrite
also removes, skipped; the invariant checks between the steps left out)::

    state = AssuranceModel()
    state.admin_enrols()
    state.register_key(model='A', pick=0, with_pass=False)
    state.login(who='member')
    state.reads(pick=0)
    state.login(who='member')
    state.login(who='member')
    state.logout(pick=3)
    state.login(who='attacker')
    state.register_key(model='A', pick=0, with_pass=False)
    state.reads(pick=0)
    state.delete_own_key(key=0, pick=0)
    state.login(who='member')
    state.login(who='member')
    state.register_key(model='A', pick=0, with_pass=False)
    # SurvivedOwnDeletion: attacker#5 (carol's session, held by the attacker): GET /me answered
    # 200, although the model says it ended (carol's first key, registered by carol#7); it had
    # deleted a key it registered itself

And of the second — a key an admin deletes leaves the session that registered it alive (the
shrinker stopped here, making slow progress)::

    state = AssuranceModel()
    state.admin_enrols()
    state.reads(pick=0)
    state.login(who='admin')
    state.reads(pick=0)
    state.reads(pick=0)
    state.mfa_verify(key=0, pick=0)
    state.step_up(key=0, pick=0)
    state.register_key(model='A', pick=0, with_pass=False)
    state.reads(pick=1)
    state.step_up(key=2, pick=0)
    state.login(who='attacker')
    state.step_up(key=0, pick=0)
    state.reads(pick=0)
    state.reads(pick=2)
    state.step_up(key=0, pick=3)
    state.reads(pick=0)
    state.register_key(model='A', pick=1, with_pass=False)
    state.step_up(key=1, pick=0)
    state.register_key(model='A', pick=0, with_pass=True)
    state.reads(pick=0)
    state.login(who='attacker')
    state.admin_deletes_key(key=0, pick=0)
    state.login(who='attacker')
    state.reads(pick=0)
    state.login(who='member')
    state.register_key(model='B', pick=0, with_pass=False)
    # SurvivedAdminDeletion: attacker#3 (carol's session, held by the attacker): GET /me answered
    # 200, although the model says it ended (carol's first key, registered by carol#6); an admin
    # had deleted a key it registered

The cores of both, played against the same machine::

    state.admin_enrols()
    state.login(who='attacker')
    state.register_key(pick=0, model='A', with_pass=False)
    state.delete_own_key(pick=0, key=0)        # SurvivedOwnDeletion, once carol enrols:
    state.login(who='member')
    state.register_key(pick=0, model='A', with_pass=False)

    state.admin_enrols()
    state.admin_changes(pick=0, setting="enforce with an hour's grace")
    state.login(who='attacker')
    state.register_key(pick=0, model='A', with_pass=False)
    state.admin_deletes_key(pick=0, key=0)     # SurvivedAdminDeletion, once carol enrols:
    state.login(who='member')
    state.register_key(pick=0, model='A', with_pass=False)

``make explore`` runs many more examples, randomized, and prints which rules ran and how they
were answered (docs/testing.md).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from chalicelib.background import recount
from chalicelib.base import clock
from chalicelib.base.config import settings as keyward_settings
from chalicelib.base.models import Member as MemberItem
from chalicelib.base.models import Organization, SecurityKey
from chalicelib.org import enforcement
from devstack.tables import truncate_tables
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import KeywardClient, Reply
from tests.support.process_stack import forget_stream_records, prepared

ORG, MEMBER, ADMIN = "acme", "carol", "alice"
WINDOW = timedelta(seconds=900)
IDLE = timedelta(seconds=3600)
LIFETIME = timedelta(hours=12)
SEEN_RESOLUTION = timedelta(minutes=5)
# Authenticator models by AAGUID: the member and the attacker use A or B (which a policy may
# deny); the admin's key is of model C, which no policy here denies.
MODELS = {name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"keyward-model-{name}")) for name in "ABC"}
# A 401 that says the session itself is over, as opposed to a refused ceremony.
SESSION_ENDED = frozenset(
    {"InvalidToken", "SessionExpired", "SessionEndedByEnforcement", "SessionEndedByNewKey", "SessionIdle"}
)
ENDED = (401, "ended")
# What a session that has not proved a key its member holds (and the organization accepts) may be
# told when it tries more than reading and stepping up: the rule names no single code.
UNPROVEN = frozenset(
    {
        (403, "ReauthenticationRequired"),
        (403, "MfaRequired"),
        (403, "AuthenticatorNotAllowed"),
        (403, "RegistrationRequired"),
        (409, "AlreadyEnrolled"),
    }
)

EXPLORE = int(os.environ.get("KEYWARD_MODEL_EXAMPLES", "0"))


class ModelMismatch(AssertionError):
    """The service answered something the model of the rule does not allow."""


class Bypass(AssertionError):
    """An attacker's session did more than the rule allows: the security property is broken."""


class SurvivedOwnDeletion(Bypass):
    """...after the attacker deleted the key their session had registered."""


class SurvivedAdminDeletion(Bypass):
    """...after an admin deleted the key the attacker's session had registered."""


class Clock:
    """keyward's clock, moved by the machine only: a tick per step, and the clock rule."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@dataclass(eq=False)
class Key:
    key_id: str
    label: str
    user: str
    possessor: str  # "member", "attacker" or "admin": who holds the authenticator
    model: str
    authenticator: SoftwareAuthenticator


@dataclass(eq=False)
class Session:
    label: str
    user: str
    holder: str  # "member", "attacker" or "admin"
    token: str
    state: str
    created: datetime
    last_seen: datetime
    backup_key: str | None = None
    # The keys this session proved possession of (MFA, step-up, registration), and when last.
    proofs: dict[str, datetime] = field(default_factory=dict)
    # The policy version each proof was made under: under enforcement, a proof from before a policy
    # change no longer says whether the organization accepts the key (docs/security.md).
    proof_versions: dict[str, int] = field(default_factory=dict)
    # The key it passed MFA with or registered to become active: deleting it ends the session.
    verified: str | None = None
    ended: str | None = None  # why the model knows the session is over
    # A proof key was deleted: the session may have ended, or may have to prove a key again.
    maybe_ended: bool = False
    proof_doubt: bool = False
    lost_by: list[str] = field(default_factory=list)  # who deleted this session's proof keys
    probed: bool = False

    def __repr__(self) -> str:
        return self.label


class RecountDeadline:
    """The stream function's time left, as far as a recount run here is concerned: plenty."""

    def seconds_left(self) -> float:
        return 900.0


HOLDERS = st.sampled_from(["member", "attacker", "admin"])
# Which live session acts: mostly the newest (0), sometimes an older one.
PICK = st.integers(0, 7).map(lambda n: max(n - 4, 0))


class AssuranceModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        truncate_tables()
        forget_stream_records()
        self.clock = Clock()
        self._real_now = clock.now
        clock.now = self.clock
        from chalice.test import Client

        from app import app

        self._client = Client(app)
        self.api = KeywardClient(client=self._client, idp=prepared().idp)
        self.keys: dict[str, Key] = {}
        self.all_sessions: list[Session] = []
        self.member_exists = False
        self.enforced = False
        self.enforced_at: datetime | None = None
        self.grace_hours = 0
        self.enrollment = "open"
        self.denied: frozenset[str] = frozenset()
        # A policy change's grace period: the keys it spares (they counted before the change, and
        # fall short of it) count until it ends.
        self.spared: set[str] = set()
        self.spared_until: datetime | None = None
        self.policy_version = 0  # moved on by every policy change that changes the policy
        self.passes: list[str] = []
        self.backups: dict[str, str] = {}
        self.counter = 0
        self.changed = True  # keys, members or the policy changed since the tables were recounted

    def teardown(self) -> None:
        clock.now = self._real_now

    # --- the model ------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.clock.now

    def tick(self) -> None:
        self.clock.now += timedelta(seconds=1)

    def held(self, user: str) -> list[Key]:
        return [key for key in self.keys.values() if key.user == user]

    def member_holds_foreign_key(self) -> bool:
        """The member holds a key the attacker never possessed."""
        return any(key.possessor == "member" for key in self.held(MEMBER))

    def counts(self, key_id: str, model: str) -> bool:
        """Whether a key counts under the policy now: its model is not denied, or the policy's
        grace period spares it still."""
        spared = key_id in self.spared and self.spared_until is not None and self.now < self.spared_until
        return model not in self.denied or spared

    def accepted(self, key: Key) -> bool:
        return not self.enforced or self.counts(key.key_id, key.model)

    def proof_counts(self, session: Session, key: Key) -> bool:
        """Whether the session's proof of ``key`` counts now: a key the organization accepts,
        proved under the policy of now where it enforces MFA."""
        return self.accepted(key) and (
            not self.enforced or session.proof_versions.get(key.key_id) == self.policy_version
        )

    def deferred(self) -> bool:
        return bool(
            self.enforced
            and self.grace_hours
            and self.enforced_at is not None
            and self.now < self.enforced_at + timedelta(hours=self.grace_hours)
        )

    def keyless(self, session: Session) -> bool:
        return session.backup_key is not None or not self.held(session.user)

    def standing(self, session: Session) -> set[str]:
        """What the session proved among the keys its member holds now: "accepted" (a key the
        organization accepts), "held" (only keys it does not accept) or "none"; more than one
        when a deleted proof key leaves the service a choice."""
        proved = [
            self.keys[key_id]
            for key_id in session.proofs
            if key_id in self.keys and self.keys[key_id].user == session.user
        ]
        found = "accepted" if any(self.proof_counts(session, k) for k in proved) else "held" if proved else "none"
        return {found, "none"} if session.proof_doubt else {found}

    def in_window(self, session: Session, standing: str) -> bool:
        if self.keyless(session):
            return self.now < session.created + WINDOW
        if standing == "none":
            return False
        times = [
            at
            for key_id, at in session.proofs.items()
            if key_id in self.keys and self.keys[key_id].user == session.user
        ]
        return self.now < max(times) + WINDOW

    def settle(self, session: Session) -> None:
        """What time alone does to a session: expiry and idleness."""
        if session.ended is None:
            if self.now >= session.created + LIFETIME:
                self.end(session, "expired")
            elif self.now - session.last_seen >= IDLE:
                self.end(session, "idle")

    def end(self, session: Session, why: str) -> None:
        if session.ended is None:
            session.ended = why
            session.maybe_ended = False

    def gate(self, session: Session, states: Iterable[str]) -> set[tuple[int, str | None]] | None:
        """The refusals before the handler runs (session over, wrong state); None when it runs."""
        self.settle(session)
        if session.ended is not None:
            return {ENDED}
        # Past the grace period's deadline, a keyless member's active session must register: the
        # service records it at the session's next request.
        if (
            session.state == "active"
            and self.enforced
            and session.backup_key is None
            and not self.held(session.user)
            and not self.deferred()
        ):
            session.state = "registration_required"
        if session.state in states:
            return None
        return {
            (
                403,
                {"mfa_required": "MfaRequired", "registration_required": "RegistrationRequired"}.get(
                    session.state, "WrongSessionState"
                ),
            )
        }

    def sensitive(
        self, session: Session, *, registering: bool = False
    ) -> dict[str, set[tuple[int, str | None]] | None]:
        """For each standing the session may have, the refusal of a sensitive action (None: allowed)."""
        found: dict[str, set[tuple[int, str | None]] | None] = {}
        for standing in self.standing(session):
            if self.keyless(session) or standing == "accepted":
                found[standing] = None if self.in_window(session, standing) else {(403, "ReauthenticationRequired")}
            elif standing == "held" and registering and session.state == "registration_required":
                # Passed MFA with a key the policy no longer accepts: registering a compliant one is
                # the way on (the documented flow), unless the rewrite forbids even that.
                refusal = None if self.in_window(session, standing) else {(403, "ReauthenticationRequired")}
                found[standing] = refusal
                found["refused"] = set(UNPROVEN)
            else:
                found[standing] = set(UNPROVEN)
        return found

    # --- talking to the service -------------------------------------------------------------------

    def call(self, session: Session | None, method: str, path: str, body: Any = None) -> Reply:
        return self.api.call(method, path, token=session.token if session else None, body=body)

    def judge(
        self, session: Session, reply: Reply, expected: set[tuple[int, str | None]], *, what: str, changes: bool = False
    ) -> tuple[int, str | None]:
        """Check an answer to a session's request against the model; returns it as (status, code)."""
        code = reply.code if reply.status >= 400 else None
        outcome = ENDED if reply.status == 401 and code in SESSION_ENDED else (reply.status, code)
        event(f"{what} by {session.holder}: {outcome[0]} {outcome[1] or ''}".rstrip())
        if outcome == ENDED:
            if session.ended is not None or session.maybe_ended or ENDED in expected:
                self.end(session, f"observed {reply.code}")
                return outcome
            raise ModelMismatch(
                f"{what}: {session} answered {reply.status} {reply.code} ({reply.body}); "
                f"the model expected {sorted(expected, key=str)}"
            )
        if session.ended is not None:
            self.outlived(session, f"{what} answered {reply.status} {reply.code or ''}")
        session.maybe_ended = False
        if self.now - session.last_seen >= SEEN_RESOLUTION:
            session.last_seen = self.now
        if outcome not in expected:
            raise ModelMismatch(
                f"{what}: {session} answered {reply.status} {reply.code} ({reply.body}); "
                f"the model expected {sorted(expected, key=str)}"
            )
        if changes and reply.status < 300:
            self.changed = True
        if changes and reply.status < 300 and session.holder == "attacker" and self.member_holds_foreign_key():
            self.bypass(session, f"{what} answered {reply.status} while {MEMBER} holds a key the attacker never had")
        return outcome

    def outlived(self, session: Session, what: str) -> None:
        if session.holder == "attacker" and self.member_holds_foreign_key():
            self.bypass(session, f"{what}, although the model says it ended ({session.ended})")
        raise ModelMismatch(f"{session}: {what}, although the model says it ended ({session.ended})")

    def bypass(self, session: Session, what: str) -> None:
        story = f"{session} ({MEMBER}'s session, held by the attacker): {what}"
        if "admin" in session.lost_by:
            raise SurvivedAdminDeletion(story + "; an admin had deleted a key it registered")
        if "self" in session.lost_by:
            raise SurvivedOwnDeletion(story + "; it had deleted a key it registered itself")
        raise Bypass(story)

    def resolve_doubt(self, session: Session, outcome: tuple[int, str | None], expected_if_proved: set) -> None:
        """A session whose proof key was deleted showed which way the service went."""
        if not session.proof_doubt or outcome == ENDED:
            return
        if outcome in expected_if_proved:
            session.proof_doubt = False
        elif outcome in UNPROVEN:
            session.proofs.clear()
            session.proof_doubt = False

    def new_session(self, *, user: str, holder: str, reply: Reply, backup_key: str | None = None) -> Session:
        self.counter += 1
        name = {"member": MEMBER, "attacker": "attacker", "admin": ADMIN if backup_key is None else "backup"}[holder]
        session = Session(
            label=f"{name}#{self.counter}",
            user=user,
            holder=holder,
            token=reply.body["token"],
            state=reply.body["state"],
            created=self.now,
            last_seen=self.now,
            backup_key=backup_key,
        )
        self.all_sessions.append(session)
        return session

    def remove_keys(self, removed: list[Key], *, by: Session | None) -> None:
        """Keys deleted: the sessions that proved them lose that proof; the sessions verified with
        them (other than the deleting one) end."""
        who = "admin" if by is None or by.user != removed[0].user else "self"
        ids = {key.key_id for key in removed}
        for key in removed:
            del self.keys[key.key_id]
        for session in self.all_sessions:
            if session.ended is not None or session.user != removed[0].user:
                continue
            if session.verified in ids and session is not by:
                self.end(session, "its verified key was deleted")
            elif ids & set(session.proofs):
                for key_id in ids:
                    session.proofs.pop(key_id, None)
                session.maybe_ended = True
                session.proof_doubt = True
                session.lost_by.append(who)

    def register_ceremony(
        self, session: Session, model: str, code: str | None
    ) -> tuple[Reply, Reply | None, SoftwareAuthenticator]:
        authenticator = SoftwareAuthenticator(aaguid=uuid.UUID(MODELS[model]).bytes)
        options = self.call(session, "POST", "/me/mfa/keys/options")
        if options.status != 200:
            return options, None, authenticator
        body = {
            "challenge_id": options.body["challenge_id"],
            "name": f"{session.holder} {model}",
            "credential": authenticator.register(options.body["publicKey"]),
        }
        if code is not None:
            body["enrollment_code"] = code
        return options, self.call(session, "POST", "/me/mfa/keys", body), authenticator

    def expected_registration(self, session: Session, model: str, code: str | None) -> tuple[set, set, bool]:
        """What the options and the registration answer; and whether it is the member's first key."""
        gate = self.gate(session, ("active", "registration_required"))
        if gate is not None:
            return gate, set(), False
        first = not self.held(session.user)
        options: set[tuple[int, str | None]] = set()
        register: set[tuple[int, str | None]] = set()
        for standing, refusal in self.sensitive(session, registering=True).items():
            if refusal is not None:
                options |= refusal
                continue
            if session.backup_key is not None:
                options.add((403, "NotForBackupSessions"))
                continue
            if session.state == "registration_required" and not first and standing == "none":
                options.add((409, "AlreadyEnrolled"))
                continue
            options.add((200, None))
            if first and self.enrollment == "pass_required" and code is None:
                register.add((403, "EnrollmentPassRequired"))
            elif model in self.denied:
                register.add((403, "AuthenticatorNotAllowed"))
            elif len(self.held(session.user)) >= keyward_settings().max_keys_per_member:
                register.add((409, "TooManyKeys"))
            else:
                register.add((201, None))
        return options, register, first

    # --- the rules --------------------------------------------------------------------------------

    def candidates(self, kind: str) -> list[Session]:
        """The sessions the model counts live that a rule of this kind can use, newest first:
        ``any``; ``admin`` (the admin's or a backup session, active: attempts in the other states
        only meet the state check); ``mfa`` (waiting for the MFA check,
        its holder possessing a key the member holds); ``step-up`` (active, likewise); ``keys``
        (the member holds keys). Whoever holds the session acts: member, attacker or admin."""

        def usable(session: Session) -> bool:
            own = [k for k in self.held(session.user) if k.possessor == session.holder]
            return {
                "any": True,
                "admin": session.user != MEMBER and session.state == "active",
                "mfa": session.state == "mfa_required" and bool(own),
                "step-up": session.state == "active" and bool(own),
                "keys": session.backup_key is None and bool(self.held(session.user)),
            }[kind]

        return [s for s in reversed(self.all_sessions) if s.ended is None and usable(s)]

    def session_of(self, pick: int, kind: str = "any") -> Session | None:
        found = self.candidates(kind)
        return found[pick % len(found)] if found else None

    @initialize()
    def admin_enrols(self) -> None:
        """The organization starts with its admin, who holds a key of their own (model C)."""
        reply = self.api.login_reply(org=ORG, user=ADMIN, admin=True)
        assert reply.status == 200, reply.body
        admin = self.new_session(user=ADMIN, holder="admin", reply=reply)
        options, registered, authenticator = self.register_ceremony(admin, "C", None)
        assert registered is not None and registered.status == 201, (options.body, registered and registered.body)
        self.keys[registered.body["key"]["id"]] = Key(
            registered.body["key"]["id"], "C#admin", ADMIN, "admin", "C", authenticator
        )
        admin.proofs[registered.body["key"]["id"]] = self.now
        admin.proof_versions[registered.body["key"]["id"]] = self.policy_version

    @rule(who=HOLDERS)
    def login(self, who: str) -> None:
        """An IdP login: the member or the attacker with the member's password, or the admin."""
        self.tick()
        user = ADMIN if who == "admin" else MEMBER
        reply = self.api.login_reply(org=ORG, user=user, admin=who == "admin")
        assert reply.status == 200, reply.body
        if user == MEMBER and not self.member_exists:
            self.member_exists = self.changed = True
        state = (
            "mfa_required"
            if self.held(user)
            else "registration_required"
            if self.enforced and not self.deferred()
            else "active"
        )
        event(f"login by {who}: {reply.body['state']}")
        if reply.body["state"] != state:
            raise ModelMismatch(f"a login of {user} by the {who} is {reply.body['state']}; the model expected {state}")
        self.new_session(user=user, holder=who, reply=reply)

    @precondition(lambda self: self.candidates("mfa"))
    @rule(pick=PICK, key=st.integers(0, 2))
    def mfa_verify(self, pick: int, key: int) -> None:
        """The MFA check, with a key the session's holder possesses."""
        session = self.session_of(pick, "mfa")
        if session is None:
            return
        self.tick()
        own = [k for k in self.held(session.user) if k.possessor == session.holder]
        gate = self.gate(session, ("mfa_required",))
        reply = self.call(session, "POST", "/auth/mfa/options")
        outcome = self.judge(session, reply, gate or {(200, None)}, what="MFA options")
        if outcome != (200, None) or not own:
            return
        chosen = own[key % len(own)]
        if self.enforced and not self.accepted(chosen):
            expected = (
                {(403, "AuthenticatorNotAllowed")}
                if any(self.accepted(k) for k in self.held(session.user))
                else {(200, None)}
            )
        else:
            expected = {(200, None)}
        reply = self.call(
            session,
            "POST",
            "/auth/mfa/verify",
            {
                "challenge_id": reply.body["challenge_id"],
                "credential": chosen.authenticator.authenticate(reply.body["publicKey"]),
            },
        )
        if self.judge(session, reply, expected, what="MFA verify") == (200, None):
            session.token, session.state = reply.body["token"], reply.body["state"]
            predicted = "active" if self.accepted(chosen) else "registration_required"
            if session.state != predicted:
                raise ModelMismatch(f"{session} passed MFA into {session.state}; the model expected {predicted}")
            session.verified = chosen.key_id
            session.proofs[chosen.key_id] = self.now
            session.proof_versions[chosen.key_id] = self.policy_version
            session.proof_doubt = False

    @precondition(lambda self: self.candidates("step-up"))
    @rule(pick=PICK, key=st.integers(0, 2))
    def step_up(self, pick: int, key: int) -> None:
        """A step-up with a key the session's holder possesses."""
        session = self.session_of(pick, "step-up")
        if session is None:
            return
        self.tick()
        gate = self.gate(session, ("active",))
        if gate is None:
            gate = (
                {(403, "NotForBackupSessions")}
                if session.backup_key is not None
                else {(409, "SecurityKeyRequired")}
                if not self.held(session.user)
                else None
            )
        reply = self.call(session, "POST", "/auth/reauth/options")
        outcome = self.judge(session, reply, gate or {(200, None)}, what="step-up options")
        own = [k for k in self.held(session.user) if k.possessor == session.holder]
        if outcome != (200, None) or not own:
            return
        chosen = own[key % len(own)]
        expected = {(403, "AuthenticatorNotAllowed")} if not self.accepted(chosen) else {(200, None)}
        reply = self.call(
            session,
            "POST",
            "/auth/reauth/verify",
            {
                "challenge_id": reply.body["challenge_id"],
                "credential": chosen.authenticator.authenticate(reply.body["publicKey"]),
            },
        )
        if self.judge(session, reply, expected, what="step-up") == (200, None):
            session.proofs[chosen.key_id] = self.now
            session.proof_versions[chosen.key_id] = self.policy_version
            session.proof_doubt = False

    @precondition(lambda self: self.candidates("any"))
    @rule(pick=PICK, model=st.sampled_from(["A", "B"]), with_pass=st.booleans())
    def register_key(self, pick: int, model: str, with_pass: bool) -> None:
        """A new key of the session's holder, with the member's enrolment pass where one is asked for."""
        session = self.session_of(pick)
        if session is None:
            return
        self.tick()
        code = (
            self.passes[0]
            if with_pass and session.holder == "member" and self.passes and not self.held(session.user)
            else None
        )
        expected_options, expected_register, first = self.expected_registration(session, model, code)
        doubt = session.proof_doubt
        options, registered, authenticator = self.register_ceremony(session, model, code)
        outcome = self.judge(session, options, expected_options, what="registration options", changes=True)
        if registered is None:
            if doubt:
                self.resolve_doubt(session, outcome, {(200, None)})
            return
        outcome = self.judge(session, registered, expected_register, what="registration", changes=True)
        if doubt:
            self.resolve_doubt(session, (200, None), {(200, None)})
        if outcome != (201, None):
            return
        key_id = registered.body["key"]["id"]
        self.keys[key_id] = Key(
            key_id, f"{model}#{session.holder}{len(self.keys)}", session.user, session.holder, model, authenticator
        )
        if first and code is not None and self.enrollment == "pass_required":
            self.passes.remove(code)  # a code that is not needed is not looked at
        if first:
            for other in self.all_sessions:
                if other is not session and other.user == session.user:
                    self.end(other, f"{session.user}'s first key, registered by {session}")
        session.proofs[key_id] = self.now
        session.proof_versions[key_id] = self.policy_version
        if session.state == "registration_required":
            session.state = "active"
            session.token = registered.body["token"]
            session.verified = session.verified or key_id
        if registered.body["session"]["state"] != session.state:
            raise ModelMismatch(
                f"{session} is {registered.body['session']['state']} after registering; "
                f"the model expected {session.state}"
            )

    def _key_of(self, user: str, key: int) -> Key | None:
        held = self.held(user)
        return held[key % len(held)] if held else None

    def _sensitive_change(
        self, session: Session, states: Iterable[str], outcome_when_allowed: set, *, admin: bool = False
    ) -> set[tuple[int, str | None]]:
        gate = self.gate(session, states)
        if gate is not None:
            return gate
        if admin and session.user != ADMIN and session.backup_key is None:
            return {(403, "AdminRequired")}
        expected: set[tuple[int, str | None]] = set()
        for refusal in self.sensitive(session).values():
            expected |= outcome_when_allowed if refusal is None else refusal
        return expected

    def change(
        self,
        session: Session,
        method: str,
        path: str,
        body: Any,
        allowed: set,
        *,
        what: str,
        admin: bool = False,
        states: Iterable[str] = ("active",),
    ) -> tuple[tuple[int, str | None], Reply]:
        """A sensitive request: the model's expectation, the answer judged, the proof doubt resolved."""
        doubt = session.proof_doubt
        expected = self._sensitive_change(session, states, allowed, admin=admin)
        reply = self.call(session, method, path, body)
        outcome = self.judge(session, reply, expected, what=what, changes=True)
        if doubt:
            self.resolve_doubt(session, outcome, allowed)
        return outcome, reply

    @precondition(lambda self: self.candidates("keys"))
    @rule(pick=PICK, key=st.integers(0, 3))
    def delete_own_key(self, pick: int, key: int) -> None:
        """``DELETE /me/mfa/keys/{id}``: one of the session's member's keys (any, by its ID)."""
        session = self.session_of(pick, "keys")
        target = self._key_of(session.user, key) if session is not None else None
        if session is None or target is None or session.backup_key is not None:
            return
        self.tick()
        last = self.enforced and len(self.held(session.user)) == 1
        allowed = {(409, "LastKeyRequired")} if last else {(204, None)}
        outcome, _ = self.change(
            session, "DELETE", f"/me/mfa/keys/{target.key_id}", None, allowed, what="delete own key"
        )
        if outcome == (204, None):
            self.remove_keys([target], by=session)

    @precondition(lambda self: self.candidates("keys"))
    @rule(pick=PICK)
    def disable_mfa(self, pick: int) -> None:
        """``DELETE /me/mfa``: every key of the session's member."""
        session = self.session_of(pick, "keys")
        if session is None or session.backup_key is not None:
            return
        self.tick()
        allowed = {(409, "LastKeyRequired")} if self.enforced else {(204, None)}
        outcome, _ = self.change(session, "DELETE", "/me/mfa", None, allowed, what="disable MFA")
        if outcome == (204, None) and self.held(session.user):
            self.remove_keys(self.held(session.user), by=session)

    @precondition(lambda self: self.candidates("admin") and self.held(MEMBER))
    @rule(pick=PICK, key=st.integers(0, 3))
    def admin_deletes_key(self, pick: int, key: int) -> None:
        """``DELETE /org/members/carol/mfa/keys/{id}`` by an admin's session (or a backup session)."""
        session = self.session_of(pick, "admin")
        target = self._key_of(MEMBER, key)
        if session is None or target is None:
            return
        self.tick()
        # The member's own last-key rule: under enforcement, their last key stays.
        last = self.enforced and len(self.held(MEMBER)) == 1
        outcome, _ = self.change(
            session,
            "DELETE",
            f"/org/members/{MEMBER}/mfa/keys/{target.key_id}",
            None,
            {(409, "LastKeyRequired")} if last else {(204, None)},
            what="admin deletes a key",
            admin=True,
        )
        if outcome == (204, None):
            self.remove_keys([target], by=None)

    @precondition(lambda self: self.candidates("admin"))
    @rule(
        pick=PICK,
        setting=st.sampled_from(
            [
                "enforce",
                "enforce with an hour's grace",
                "relax",
                "enrolment open",
                "enrolment by pass",
                "deny model A",
                "deny model B",
                "deny no model",
                "deny model A for an hour",
                "deny model B for an hour",
                "issue a pass",
                "offboard carol",
                "create backup credentials",
                "delete backup credentials",
            ]
        ),
    )
    def admin_changes(self, pick: int, setting: str) -> None:
        """An admin change of the organization, by an admin's session (or a backup session)."""
        session = self.session_of(pick, "admin")
        if session is None:
            return
        self.tick()
        if setting.startswith("enforce"):
            self._enforce(session, 1 if "grace" in setting else None)
        elif setting == "relax":
            outcome, _ = self.change(
                session, "PUT", "/org/mfa", {"enforced": False}, {(200, None)}, what=setting, admin=True
            )
            if outcome == (200, None):
                self.enforced, self.enforced_at, self.grace_hours = False, None, 0
        elif setting.startswith("enrolment"):
            policy = "open" if setting.endswith("open") else "pass_required"
            outcome, _ = self.change(
                session, "PUT", "/org/mfa", {"enrollment": policy}, {(200, None)}, what=setting, admin=True
            )
            if outcome == (200, None):
                self.enrollment = policy
        elif setting.endswith("for an hour"):
            self._deny_with_grace(session, setting)
        elif setting.startswith("deny"):
            denied = frozenset({"deny model A": "A", "deny model B": "B"}.get(setting, ""))
            outcome, _ = self.change(
                session,
                "PUT",
                "/org/mfa/policy",
                {"denied_aaguids": [MODELS[m] for m in sorted(denied)]},
                {(200, None)},
                what=setting,
                admin=True,
            )
            if outcome == (200, None):
                # The same rules again change nothing, unless they end a grace period's sparing.
                if denied != self.denied or self.spared_until is not None:
                    self.policy_version += 1
                self.denied = denied
                self.spared, self.spared_until = set(), None
                # What the stream function does next: count compliance under the new policy.
                recount.continue_recount(org_id=ORG, deadline=RecountDeadline())
        elif setting == "issue a pass":
            allowed = {(201, None)} if self.member_exists else {(404, "MemberNotFound")}
            outcome, reply = self.change(
                session,
                "POST",
                f"/org/members/{MEMBER}/enrollment-passes",
                {"lifetime_minutes": 43200},
                allowed,
                what=setting,
                admin=True,
            )
            if outcome == (201, None):
                self.passes.append(reply.body["code"])
        elif setting == "offboard carol":
            self._offboard(session)
        elif setting == "create backup credentials":
            allowed = {(403, "NotForBackupSessions")} if session.backup_key is not None else {(201, None)}
            outcome, reply = self.change(
                session, "POST", "/org/backup-credentials", None, allowed, what=setting, admin=True
            )
            if outcome == (201, None):
                self.backups[reply.body["key_id"]] = reply.body["secret"]
        elif self.backups:
            key_id = sorted(self.backups)[0]
            outcome, _ = self.change(
                session, "DELETE", f"/org/backup-credentials/{key_id}", None, {(204, None)}, what=setting, admin=True
            )
            if outcome == (204, None):
                del self.backups[key_id]
                for other in self.all_sessions:
                    if other.backup_key == key_id:
                        self.end(other, "its backup credentials were deleted")

    def _enforce(self, session: Session, grace: int | None) -> None:
        if self.enforced:
            allowed = {(200, None)}
        elif session.backup_key is not None or not self.held(session.user):
            allowed = {(409, "SecurityKeyRequired")}
        else:
            allowed = {(200, None)}
        body: dict[str, Any] = {"enforced": True, "without_backup_credentials": True}
        if grace is not None:
            body["grace_period_hours"] = grace
        outcome, _ = self.change(session, "PUT", "/org/mfa", body, allowed, what="enforce", admin=True)
        if outcome != (200, None):
            return
        if not self.enforced:
            self.enforced, self.enforced_at, self.grace_hours = True, self.now, grace or 0
            for other in self.all_sessions:
                if other is not session:
                    self.end(other, f"enforcement by {session}")
        elif grace is not None:
            self.grace_hours = grace

    def _offboard(self, session: Session) -> None:
        allowed = {(204, None)} if self.member_exists else {(404, "MemberNotFound")}
        outcome, _ = self.change(
            session, "DELETE", f"/org/members/{MEMBER}", None, allowed, what="offboard", admin=True
        )
        if outcome == (204, None):
            for key in self.held(MEMBER):
                del self.keys[key.key_id]
            self.passes.clear()
            self.member_exists = False
            for other in self.all_sessions:
                if other.user == MEMBER:
                    self.end(other, "offboarded")

    @precondition(lambda self: self.backups)
    @rule(which=st.integers(0, 3))
    def backup_login(self, which: int) -> None:
        self.tick()
        key_id = sorted(self.backups)[which % len(self.backups)]
        reply = self.api.call("POST", "/auth/backup-login", body={"key_id": key_id, "secret": self.backups[key_id]})
        event(f"backup login: {reply.status}")
        if (reply.status, reply.body.get("state")) != (200, "active"):
            raise ModelMismatch(f"a backup login answered {reply.status} {reply.body}")
        self.new_session(user=f"backup:{key_id}", holder="admin", reply=reply, backup_key=key_id)

    @precondition(lambda self: self.candidates("any"))
    @rule(pick=PICK)
    def logout(self, pick: int) -> None:
        session = self.session_of(pick)
        if session is None:
            return
        self.tick()
        expected = self.gate(session, ("active", "mfa_required", "registration_required")) or {(204, None)}
        reply = self.call(session, "POST", "/auth/logout")
        if self.judge(session, reply, expected, what="logout") == (204, None):
            self.end(session, "logged out")

    @precondition(lambda self: self.candidates("any"))
    @rule(pick=PICK)
    def reads(self, pick: int) -> None:
        """``GET /me`` (every state may) shows the model's state and key count; an admin's
        ``GET /org/mfa`` and ``GET /org/members`` show the figures the model counts."""
        session = self.session_of(pick)
        if session is None:
            return
        self.tick()
        expected = self.gate(session, ("active", "mfa_required", "registration_required")) or {(200, None)}
        reply = self.call(session, "GET", "/me")
        if self.judge(session, reply, expected, what="read /me") != (200, None):
            return
        shown = (reply.body["session"]["state"], reply.body["mfa"]["key_count"])
        predicted = (session.state, 0 if session.backup_key else len(self.held(session.user)))
        if shown != predicted:
            raise ModelMismatch(f"{session}: GET /me shows (state, key_count) {shown}; the model expected {predicted}")
        if session.user == MEMBER or session.state != "active":
            return
        reply = self.call(session, "GET", "/org/mfa")
        if self.judge(session, reply, {(200, None)}, what="read /org/mfa") != (200, None):
            return
        body = reply.body
        shown_org = (
            body["enforced"],
            body["grace_period_hours"],
            body["enrollment"],
            body["members_total"],
            body["members_compliant"],
            body["compliance"]["state"],
        )
        predicted_org = (
            self.enforced,
            self.grace_hours if self.enforced else 0,
            self.enrollment,
            1 + self.member_exists,
            self.members_compliant(),
            "done",
        )
        if shown_org != predicted_org:
            raise ModelMismatch(f"GET /org/mfa shows {shown_org}; the model counts {predicted_org}")
        members = self.call(session, "GET", "/org/members").body["members"]
        counted = {m["id"]: m["key_count"] for m in members}
        if counted != self.key_counts():
            raise ModelMismatch(f"GET /org/members shows key counts {counted}; the model counts {self.key_counts()}")

    @rule(by=st.sampled_from([timedelta(minutes=2), timedelta(minutes=16), timedelta(minutes=61)]))
    def time_passes(self, by: timedelta) -> None:
        """Past the step-up window (16 minutes), the grace period of an hour, or the idle timeout."""
        if self.spared_until is not None and self.now < self.spared_until <= self.now + by:
            self.changed = True  # the grace period ends: the figures leave the spared members out
        self.clock.now += by
        for session in self.all_sessions:
            self.settle(session)

    # --- the invariants ---------------------------------------------------------------------------

    def _deny_with_grace(self, session: Session, setting: str) -> None:
        """Deny a model, sparing for an hour the keys of it that count now: refused where the model
        is denied already (the policy would stop counting no key)."""
        denied = frozenset(setting.split()[2])
        stricter = bool(denied - self.denied)
        outcome, _ = self.change(
            session,
            "PUT",
            "/org/mfa/policy",
            {"denied_aaguids": [MODELS[m] for m in sorted(denied)], "grace_period_hours": 1},
            {(200, None)} if stricter else {(409, "GracePeriodNotApplicable")},
            what=setting,
            admin=True,
        )
        if outcome != (200, None):
            return
        self.policy_version += 1
        self.spared = {
            key.key_id for key in self.keys.values() if key.model in denied and self.counts(key.key_id, key.model)
        }
        self.spared_until = self.now + timedelta(hours=1)
        self.denied = denied
        recount.continue_recount(org_id=ORG, deadline=RecountDeadline())

    def members_compliant(self) -> int:
        users = [ADMIN] + ([MEMBER] if self.member_exists else [])
        return sum(1 for user in users if any(self.counts(key.key_id, key.model) for key in self.held(user)))

    def key_counts(self) -> dict[str, int]:
        users = [ADMIN] + ([MEMBER] if self.member_exists else [])
        return {user: len(self.held(user)) for user in users}

    @invariant()
    def ended_sessions_are_refused(self) -> None:
        """Every session the model says has ended answers 401 (asked once, with ``GET /me``)."""
        for session in self.all_sessions:
            if session.ended is None or session.probed:
                continue
            session.probed = True
            reply = self.call(session, "GET", "/me")
            if not (reply.status == 401 and reply.code in SESSION_ENDED):
                event(f"ended session still works: {session.holder}")
                self.outlived(session, f"GET /me answered {reply.status} {reply.code or ''}")

    @invariant()
    def tables_agree(self) -> None:
        """The keys, each member's key count and the organization's counters, recounted from the tables."""
        if not self.changed:
            return  # nothing a recount could differ on since the last one
        self.changed = False
        items = list(SecurityKey.query(ORG, consistent_read=True))
        stored = {key.key_id: key.user_id for key in items}
        modelled = {key.key_id: key.user for key in self.keys.values()}
        if stored != modelled:
            raise ModelMismatch(f"the tables hold keys {stored}; the model {modelled}")
        members = {m.user_id: m for m in MemberItem.query(ORG, consistent_read=True)}
        recounted = {user: sum(1 for owner in stored.values() if owner == user) for user in members}
        if {user: int(m.key_count or 0) for user, m in members.items()} != recounted:
            raise ModelMismatch(f"key_count on the members disagrees with their keys: {recounted}")
        if set(members) != set(self.key_counts()):
            raise ModelMismatch(f"the tables hold members {sorted(members)}; the model {sorted(self.key_counts())}")
        status = enforcement.status(org=Organization.get(ORG, consistent_read=True))
        figures = (status.members_total, status.members_compliant, status.compliance_state)
        model_of = {aaguid: model for model, aaguid in MODELS.items()}
        compliant = len({key.user_id for key in items if self.counts(key.key_id, model_of.get(key.aaguid, ""))})
        if figures != (len(members), compliant, "done"):
            raise ModelMismatch(
                f"GET /org/mfa's figures {figures}; recounted from the tables {(len(members), compliant, 'done')}"
            )


# In the suite: a fixed, derandomized run of about a minute that stops at the first failure
# unshrunk (shrinking replays hundreds of requests per attempt); ``make explore``: randomized,
# every distinct failure shrunk. No example database: nothing is written into the work tree.
AssuranceModel.TestCase.settings = settings(
    max_examples=EXPLORE or 25,
    stateful_step_count=30,
    derandomize=not EXPLORE,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink] if EXPLORE else [Phase.explicit, Phase.generate],
    report_multiple_bugs=bool(EXPLORE),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

TestAssuranceModel = AssuranceModel.TestCase
