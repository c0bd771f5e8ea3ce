"""The assurance rule's guards, each made to matter on both sides: how each standing is derived
(backup credentials, the session's state, a member with no key or one, the proved key held or
not, the organization enforcing MFA or not, the proof's policy version equal to the
organization's or one below or above it), the step-up window's end a microsecond either side for
each standing's start, the admin check, a member's first key asked for as "register a key", every
refusal's code and message, whether the organization accepts a key, what a proof writes, and
whether a member holds a key — from the credential list, or read for a member whose keys predate
it (including another member's key of that ID) — and which sessions a member's first key ends.

Sessions are real: a login over the API, its items then set as the case needs, and
``sessions.resolve`` of its token, as every request does, before ``assurance.require``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.access import assurance, sessions
from chalicelib.access.actions import Action
from chalicelib.access.assurance import Standing
from chalicelib.base import clock
from chalicelib.base.errors import (
    AdminRequired,
    AlreadyEnrolled,
    MfaRequired,
    NotForBackupSessions,
    ReauthenticationRequired,
    Refusal,
    RegistrationRequired,
    SecurityKeyRequired,
    SessionEndedByNewKey,
    WrongSessionState,
)
from chalicelib.base.models import Member as StoredMember
from chalicelib.base.models import Organization, SecurityKey, Session
from tests.support.keyward_client import (
    KeywardClient,
    Member,
    enforce_in_table,
    hold_keys_in_table,
    store_key,
)

ORG = "acme"
WINDOW = timedelta(seconds=900)
MICROSECOND = timedelta(microseconds=1)
# Refused by the policy below: a key that does not attest its model.
ATTESTATION_REQUIRED = {"attestation": "required", "version": 1}


# --- sessions as the cases need them ------------------------------------------------------------


def _session_id(member: Member) -> str:
    return member.token.split(".")[3]


def _set_session(member: Member, **values) -> None:
    actions = [
        getattr(Session, name).set(value) if value is not None else getattr(Session, name).remove()
        for name, value in values.items()
    ]
    Session(_session_id(member)).update(actions=actions)


def _set_member(member: Member, **values) -> None:
    actions = [
        getattr(StoredMember, name).set(value) if value is not None else getattr(StoredMember, name).remove()
        for name, value in values.items()
    ]
    StoredMember(member.org, member.user).update(actions=actions)


def _set_org(**values) -> None:
    actions = [
        getattr(Organization, name).set(value) if value is not None else getattr(Organization, name).remove()
        for name, value in values.items()
    ]
    Organization(ORG).update(actions=actions)


def _caller(member: Member) -> sessions.Caller:
    return sessions.resolve(authorization=f"Bearer {member.token}")


def _keyless(api: KeywardClient, *, user: str = "bob", admin: bool = False) -> Member:
    member = api.login(org=ORG, user=user, admin=admin)
    assert member.state == "active"
    return member


def _holder(api: KeywardClient, *, user: str = "bob", admin: bool = False, count: int = 1) -> tuple[Member, str]:
    """A member holding ``count`` keys whose active session has just proved one of them."""
    member = api.login(org=ORG, user=user, admin=admin)
    proven = hold_keys_in_table(member, count=count)
    _set_session(member, state="active")
    return member, proven


def _enforcing(api: KeywardClient) -> None:
    """The organization enforces MFA from now on; sessions started after this stay."""
    api.login(org=ORG, user="alice", admin=True)  # the organization exists
    enforce_in_table(ORG)


def _standing(member: Member) -> Standing:
    return assurance.standing_of(_caller(member))


def _refusal(member: Member, action: Action) -> Refusal:
    with pytest.raises(Refusal) as refused:
        assurance.require(_caller(member), action)
    return refused.value


def _at(monkeypatch, instant) -> None:
    monkeypatch.setattr(clock, "now", lambda: instant)


# --- each standing's derivation -----------------------------------------------------------------


def test_a_backup_credentials_session_stands_as_backup(api):
    admin, _ = _holder(api, user="alice", admin=True)
    created = api.call("POST", "/org/backup-credentials", token=admin.token)
    assert created.status == 201, created.body
    reply = api.call(
        "POST", "/auth/backup-login", body={"key_id": created.body["key_id"], "secret": created.body["secret"]}
    )
    assert reply.status == 200, reply.body
    backup = Member(org=ORG, user="backup", token=reply.body["token"], state=reply.body["state"])

    assert _standing(backup) is Standing.BACKUP
    assert _standing(admin) is Standing.VERIFIED  # a member is never taken for backup credentials


@pytest.mark.parametrize("key_count", [0, 1])
def test_a_session_that_owes_the_mfa_check_owes_it_whatever_the_member_holds(api, key_count):
    bob, _ = _holder(api)
    _set_member(bob, key_count=key_count)
    _set_session(bob, state="mfa_required")

    assert _standing(bob) is Standing.MFA_REQUIRED


def test_a_keyless_members_session_is_keyless_when_active_and_waits_to_register_when_asked_to(api):
    active = _keyless(api)
    waiting = _keyless(api)
    _set_session(waiting, state="registration_required")

    assert _standing(active) is Standing.KEYLESS
    assert _standing(waiting) is Standing.REGISTRATION_REQUIRED


def test_a_keyless_member_with_a_stale_proof_and_credential_list_is_still_keyless(api):
    """key_count 0 decides: a proof of a key since deleted, even one still listed, proves nothing."""
    bob, _ = _holder(api)
    _set_member(bob, key_count=0)

    assert _standing(bob) is Standing.KEYLESS


@pytest.mark.parametrize("count", [1, 2])
def test_an_active_session_that_proved_a_held_key_is_verified(api, count):
    bob, _ = _holder(api, count=count)

    assert _standing(bob) is Standing.VERIFIED


@pytest.mark.parametrize("proof", ["none", "another key", "a deleted key"])
def test_an_active_session_that_proved_no_key_the_member_holds_has_lapsed(api, proof):
    bob, _ = _holder(api, count=1)
    _set_session(
        bob, verified_key_id={"none": None, "another key": "x" * 22, "a deleted key": "held" + "0" * 17 + "1"}[proof]
    )

    assert _standing(bob) is Standing.PROOF_LAPSED


@pytest.mark.parametrize("count", [1, 2])
def test_a_waiting_session_that_proved_a_held_key_is_replacing_it(api, count):
    bob, _ = _holder(api, count=count)
    _set_session(bob, state="registration_required")

    assert _standing(bob) is Standing.REPLACING_KEY


def test_a_waiting_session_that_proved_no_held_key_is_overtaken(api):
    bob, _ = _holder(api)
    _set_session(bob, state="registration_required", verified_key_id=None)

    assert _standing(bob) is Standing.WAITING_OVERTAKEN


def test_without_enforcement_a_proof_counts_whatever_policy_version_it_was_made_under(api):
    bob, _ = _holder(api)
    _set_org(compliance_version=5)
    for counts_under in (None, 4, 5, 6):
        _set_session(bob, verified_key_counts_under=counts_under)
        assert _standing(bob) is Standing.VERIFIED, counts_under


@pytest.mark.parametrize(
    "counts_under, standing",
    [
        (None, Standing.PROOF_LAPSED),
        (4, Standing.PROOF_LAPSED),
        (5, Standing.VERIFIED),
        (6, Standing.PROOF_LAPSED),
    ],
)
def test_under_enforcement_a_proof_counts_only_under_the_organizations_policy_version(api, counts_under, standing):
    _enforcing(api)
    bob, _ = _holder(api)
    _set_org(compliance_version=5)
    _set_session(bob, verified_key_counts_under=counts_under)

    assert _standing(bob) is standing


def test_a_proof_counts_under_a_policy_version_equal_in_value_however_large(api):
    """Versions are compared by value: two reads of 1000 are equal numbers, not the same object."""
    _enforcing(api)
    bob, _ = _holder(api)
    _set_org(compliance_version=1000)
    _set_session(bob, verified_key_counts_under=1000)

    assert _standing(bob) is Standing.VERIFIED


@pytest.mark.parametrize(
    "counts_under, standing",
    [
        (None, Standing.PROOF_LAPSED),
        (-1, Standing.PROOF_LAPSED),
        (0, Standing.VERIFIED),
        (1, Standing.PROOF_LAPSED),
    ],
)
def test_an_organization_that_never_changed_its_policy_is_at_version_0(api, counts_under, standing):
    _enforcing(api)
    bob, _ = _holder(api)
    assert Organization.get(ORG, consistent_read=True).compliance_version is None
    _set_session(bob, verified_key_counts_under=counts_under)

    assert _standing(bob) is standing


@pytest.mark.parametrize(
    "counts_under, standing",
    [
        (None, Standing.WAITING_OVERTAKEN),
        (4, Standing.REPLACING_KEY),
        (5, Standing.REPLACING_KEY),
    ],
)
def test_a_waiting_session_replaces_a_held_key_whatever_version_it_counted_under(api, counts_under, standing):
    """Only a held key decides: a key the policy no longer accepts is what the session replaces."""
    _enforcing(api)
    bob, _ = _holder(api)
    _set_org(compliance_version=5)
    _set_session(
        bob,
        state="registration_required",
        verified_key_counts_under=counts_under,
        **({"verified_key_id": None} if counts_under is None else {}),
    )

    assert _standing(bob) is standing


# --- the step-up window -------------------------------------------------------------------------


def _window_action(standing: Standing) -> Action:
    return Action.DELETE_KEY if standing is Standing.BACKUP else Action.REGISTER_KEY


def _allowed_at(monkeypatch, member: Member, instant, action: Action) -> bool:
    _at(monkeypatch, instant)
    try:
        assurance.require(_caller(member), action)
    except ReauthenticationRequired:
        return False
    return True


def _proved_later(api, *, state: str = "active") -> tuple[Member, object, object]:
    """A key holder's session whose proof came ten minutes after its login."""
    bob, _ = _holder(api)
    created = Session.get(_session_id(bob), consistent_read=True).created_at
    checked = created + timedelta(minutes=10)
    _set_session(bob, state=state, key_checked_at=checked, last_seen_at=checked)
    return bob, created, checked


@pytest.mark.parametrize(
    "state, standing", [("active", Standing.VERIFIED), ("registration_required", Standing.REPLACING_KEY)]
)
def test_a_proved_keys_window_ends_exactly_a_window_after_the_proof_not_the_login(api, monkeypatch, state, standing):
    bob, created, checked = _proved_later(api, state=state)
    assert _standing(bob) is standing
    caller = _caller(bob)
    assert assurance.window_opened(caller) == checked
    assert assurance.window_ends(caller) == checked + WINDOW

    assert _allowed_at(monkeypatch, bob, checked + WINDOW - MICROSECOND, Action.REGISTER_KEY)
    assert not _allowed_at(monkeypatch, bob, checked + WINDOW, Action.REGISTER_KEY)
    assert not _allowed_at(monkeypatch, bob, checked + WINDOW + MICROSECOND, Action.REGISTER_KEY)
    # Not from the login: the window is open a minute past the login's window end.
    assert _allowed_at(monkeypatch, bob, created + WINDOW + timedelta(minutes=1), Action.REGISTER_KEY)


@pytest.mark.parametrize("standing", [Standing.KEYLESS, Standing.REGISTRATION_REQUIRED])
def test_a_keyless_members_window_ends_exactly_a_window_after_the_login_whatever_keys_came_and_went(
    api, monkeypatch, standing
):
    bob, _ = _holder(api)
    created = Session.get(_session_id(bob), consistent_read=True).created_at
    # A key proved ten minutes in and deleted since: it opens no window.
    _set_session(
        bob,
        key_checked_at=created + timedelta(minutes=10),
        state="registration_required" if standing is Standing.REGISTRATION_REQUIRED else "active",
    )
    _set_member(bob, key_count=0)
    assert _standing(bob) is standing
    assert assurance.window_opened(_caller(bob)) == created

    assert _allowed_at(monkeypatch, bob, created + WINDOW - MICROSECOND, Action.REGISTER_KEY)
    assert not _allowed_at(monkeypatch, bob, created + WINDOW, Action.REGISTER_KEY)
    assert not _allowed_at(monkeypatch, bob, created + WINDOW + MICROSECOND, Action.REGISTER_KEY)


def test_a_backup_sessions_window_ends_exactly_a_window_after_its_login(api, monkeypatch):
    admin, _ = _holder(api, user="alice", admin=True)
    created = api.call("POST", "/org/backup-credentials", token=admin.token).body
    reply = api.call("POST", "/auth/backup-login", body={"key_id": created["key_id"], "secret": created["secret"]})
    backup = Member(org=ORG, user="backup", token=reply.body["token"], state=reply.body["state"])
    login = Session.get(_session_id(backup), consistent_read=True).created_at
    assert assurance.window_opened(_caller(backup)) == login

    assert _allowed_at(monkeypatch, backup, login + WINDOW - MICROSECOND, Action.DELETE_KEY)
    assert not _allowed_at(monkeypatch, backup, login + WINDOW, Action.DELETE_KEY)
    assert not _allowed_at(monkeypatch, backup, login + WINDOW + MICROSECOND, Action.DELETE_KEY)


@pytest.mark.parametrize(
    "state, key_count, verified",
    [
        ("mfa_required", 1, True),
        ("registration_required", 1, False),
        ("active", 1, False),
    ],
    ids=["mfa_required", "waiting_overtaken", "proof_lapsed"],
)
def test_a_session_without_a_held_proof_or_a_keyless_login_has_no_window(api, state, key_count, verified):
    bob, _ = _holder(api)
    _set_session(bob, state=state, **({} if verified else {"verified_key_id": None}))
    caller = _caller(bob)

    assert assurance.window_opened(caller) is None
    assert assurance.window_ends(caller) is None


@pytest.mark.parametrize("state", ["active", "registration_required"])
def test_a_held_proof_without_a_recorded_time_opens_no_window(api, state):
    """A proof of a held key with no key_checked_at (a session from before keyward recorded it)."""
    bob, _ = _holder(api)
    _set_session(bob, state=state, key_checked_at=None)

    refused = _refusal(bob, Action.REGISTER_KEY)

    assert type(refused) is ReauthenticationRequired
    assert assurance.window_ends(_caller(bob)) is None


def test_window_opened_judges_the_standing_it_is_given_or_the_callers_own(api):
    bob, checked = _holder(api)
    caller = _caller(bob)
    created = caller.session.created_at

    assert assurance.window_opened(caller) == caller.session.key_checked_at
    assert assurance.window_opened(caller, Standing.KEYLESS) == created
    assert assurance.window_opened(caller, Standing.PROOF_LAPSED) is None


def test_past_the_window_only_the_window_is_refused_and_the_message_says_how_to_reopen_it(api, monkeypatch):
    holder, _ = _holder(api, user="bob")
    keyless = _keyless(api, user="carol")
    _at(monkeypatch, clock.now() + WINDOW + timedelta(seconds=1))

    for member, message in (
        (holder, "This action needs a recent security key check: step up with POST /auth/reauth/options."),
        (keyless, "This action needs a recent sign-in: sign in again."),
    ):
        refused = _refusal(member, Action.REGISTER_KEY)
        assert (type(refused), str(refused)) == (ReauthenticationRequired, message)
        # What is allowed outright stays allowed past the window.
        assurance.require(_caller(member), Action.READ)
        assurance.require(_caller(member), Action.READ_ACCOUNT)
        assurance.require(_caller(member), Action.RENAME_KEY)


def test_a_waiting_sessions_past_window_refusal_tells_it_to_sign_in_again(api, monkeypatch):
    waiting = _keyless(api)
    _set_session(waiting, state="registration_required")
    _at(monkeypatch, clock.now() + WINDOW + timedelta(seconds=1))

    refused = _refusal(waiting, Action.REGISTER_FIRST_KEY)

    assert (type(refused), str(refused)) == (
        ReauthenticationRequired,
        "This action needs a recent sign-in: sign in again.",
    )
    assurance.require(_caller(waiting), Action.READ_ACCOUNT)


def test_a_replacing_sessions_past_window_refusal_tells_it_to_step_up(api, monkeypatch):
    bob, _ = _holder(api)
    _set_session(bob, state="registration_required")
    _at(monkeypatch, clock.now() + WINDOW + timedelta(seconds=1))

    refused = _refusal(bob, Action.REGISTER_KEY)

    assert (type(refused), str(refused)) == (
        ReauthenticationRequired,
        "This action needs a recent security key check: step up with POST /auth/reauth/options.",
    )


# --- "register a key" for a member without one ---------------------------------------------------


def test_a_waiting_keyless_session_registering_a_key_registers_its_first(api):
    waiting = _keyless(api)
    _set_session(waiting, state="registration_required")

    assurance.require(_caller(waiting), Action.REGISTER_KEY)
    assurance.require(_caller(waiting), Action.REGISTER_FIRST_KEY)


@pytest.mark.parametrize("count", [1, 2])
def test_a_replacing_session_registers_another_key_never_a_first(api, count):
    bob, _ = _holder(api, count=count)
    _set_session(bob, state="registration_required")

    assurance.require(_caller(bob), Action.REGISTER_KEY)
    refused = _refusal(bob, Action.REGISTER_FIRST_KEY)
    assert (type(refused), str(refused)) == (
        RegistrationRequired,
        "The organization no longer accepts your security keys: register one it accepts first.",
    )


def test_only_registering_is_taken_for_registering_a_first_key(api, monkeypatch):
    """A waiting keyless session's other actions keep their own cells, past the window too."""
    waiting = _keyless(api)
    _set_session(waiting, state="registration_required")
    _at(monkeypatch, clock.now() + WINDOW + timedelta(seconds=1))

    assurance.require(_caller(waiting), Action.READ_ACCOUNT)
    refused = _refusal(waiting, Action.READ)
    assert (type(refused), str(refused)) == (
        RegistrationRequired,
        "The organization enforces MFA: register a security key first.",
    )


# --- the admin check ----------------------------------------------------------------------------


@pytest.mark.parametrize("action", [Action.READ_ORG, Action.CHANGE_ORG, Action.CREATE_BACKUP_CREDENTIALS])
def test_only_admins_take_the_admins_actions(api, action):
    admin, _ = _holder(api, user="alice", admin=True)
    bob, _ = _holder(api, user="bob")

    assurance.require(_caller(admin), action)
    refused = _refusal(bob, action)
    assert (type(refused), str(refused)) == (AdminRequired, "Only the organization's admins may do this.")


@pytest.mark.parametrize(
    "action", [Action.READ, Action.RENAME_KEY, Action.REGISTER_KEY, Action.DELETE_KEY, Action.DISABLE_MFA]
)
def test_members_take_every_other_action_without_being_admins(api, action):
    bob, _ = _holder(api, user="bob")

    assurance.require(_caller(bob), action)


def test_the_rules_refusal_comes_before_the_admin_check_and_the_admin_check_before_the_window(api, monkeypatch):
    bob, _ = _holder(api)
    _set_session(bob, state="mfa_required")
    assert type(_refusal(bob, Action.READ_ORG)) is MfaRequired

    carol, _ = _holder(api, user="carol")
    _at(monkeypatch, clock.now() + WINDOW + timedelta(seconds=1))
    assert type(_refusal(carol, Action.CHANGE_ORG)) is AdminRequired


# --- every refusal: its code and its message ----------------------------------------------------


def _backup(api: KeywardClient) -> Member:
    admin, _ = _holder(api, user="alice", admin=True)
    created = api.call("POST", "/org/backup-credentials", token=admin.token).body
    reply = api.call("POST", "/auth/backup-login", body={"key_id": created["key_id"], "secret": created["secret"]})
    return Member(org=ORG, user="backup", token=reply.body["token"], state=reply.body["state"])


def _in_standing(api: KeywardClient, standing: Standing) -> Member:
    if standing is Standing.BACKUP:
        return _backup(api)
    if standing is Standing.KEYLESS:
        return _keyless(api)
    if standing is Standing.REGISTRATION_REQUIRED:
        member = _keyless(api)
        _set_session(member, state="registration_required")
        return member
    member, _ = _holder(api)
    if standing is Standing.MFA_REQUIRED:
        _set_session(member, state="mfa_required")
    elif standing is Standing.REPLACING_KEY:
        _set_session(member, state="registration_required")
    elif standing is Standing.WAITING_OVERTAKEN:
        _set_session(member, state="registration_required", verified_key_id=None)
    elif standing is Standing.PROOF_LAPSED:
        _set_session(member, verified_key_id=None)
    return member


REFUSALS = [
    (
        Standing.MFA_REQUIRED,
        Action.READ,
        MfaRequired,
        "Complete the security key check first (POST /auth/mfa/options).",
    ),
    (
        Standing.REGISTRATION_REQUIRED,
        Action.STEP_UP,
        RegistrationRequired,
        "The organization enforces MFA: register a security key first.",
    ),
    (
        Standing.REPLACING_KEY,
        Action.READ,
        RegistrationRequired,
        "The organization no longer accepts your security keys: register one it accepts first.",
    ),
    (
        Standing.WAITING_OVERTAKEN,
        Action.REGISTER_KEY,
        AlreadyEnrolled,
        "You hold a security key already: sign in again and pass the security key check.",
    ),
    (Standing.KEYLESS, Action.MFA_CHECK, WrongSessionState, "This session is not waiting for the security key check."),
    (Standing.VERIFIED, Action.MFA_CHECK, WrongSessionState, "This session is not waiting for the security key check."),
    (
        Standing.PROOF_LAPSED,
        Action.MFA_CHECK,
        WrongSessionState,
        "This session is not waiting for the security key check.",
    ),
    (Standing.BACKUP, Action.MFA_CHECK, WrongSessionState, "This session is not waiting for the security key check."),
    (
        Standing.PROOF_LAPSED,
        Action.RENAME_KEY,
        ReauthenticationRequired,
        "This session has not proved a security key you still hold and the organization accepts: "
        "step up with POST /auth/reauth/options.",
    ),
    (Standing.KEYLESS, Action.STEP_UP, SecurityKeyRequired, "You hold no security key to step up with; sign in again."),
    (
        Standing.BACKUP,
        Action.REGISTER_KEY,
        NotForBackupSessions,
        "Sessions opened with backup credentials cannot hold security keys.",
    ),
    (
        Standing.BACKUP,
        Action.STEP_UP,
        NotForBackupSessions,
        "A session opened with backup credentials has no security key to step up with; sign in again.",
    ),
    (
        Standing.BACKUP,
        Action.CREATE_BACKUP_CREDENTIALS,
        NotForBackupSessions,
        "A session opened with backup credentials cannot create more of them.",
    ),
]


@pytest.mark.parametrize(
    "standing", sorted({standing for standing, _, _, _ in REFUSALS}), ids=lambda standing: standing.value
)
def test_each_refusal_has_its_code_and_message(api, standing):
    member = _in_standing(api, standing)
    assert _standing(member) is standing

    for _, action, refusal, message in [row for row in REFUSALS if row[0] is standing]:
        refused = _refusal(member, action)
        assert (type(refused), str(refused)) == (refusal, message), action


# --- whether the organization accepts a key, and what a proof records ---------------------------


def _org_with_keys() -> tuple[Organization, SecurityKey, SecurityKey]:
    Organization(ORG, created_at=clock.now()).save()
    store_key(ORG, "bob", "attested" + "0" * 14, attested=True)
    store_key(ORG, "bob", "plain" + "0" * 17, attested=False)
    org = Organization.get(ORG, consistent_read=True)
    org.authenticator_policy = ATTESTATION_REQUIRED
    return (
        org,
        SecurityKey.get(ORG, "attested" + "0" * 14, consistent_read=True),
        SecurityKey.get(ORG, "plain" + "0" * 17, consistent_read=True),
    )


def test_without_enforcement_the_organization_accepts_any_key_and_under_it_only_a_compliant_one():
    org, compliant, refused = _org_with_keys()

    org.mfa_enforced = False
    assert (assurance.accepts(org, compliant), assurance.accepts(org, refused)) == (True, True)
    org.mfa_enforced = True
    assert (assurance.accepts(org, compliant), assurance.accepts(org, refused)) == (True, False)


@pytest.mark.parametrize("enforced", [False, True])
@pytest.mark.parametrize("version", [None, 0, 7])
def test_a_proof_counts_under_the_policy_version_only_for_a_key_the_policy_accepts(enforced, version):
    org, compliant, refused = _org_with_keys()
    org.mfa_enforced, org.compliance_version = enforced, version
    at = clock.now()

    assert assurance.proof(org=org, key=compliant, at=at) == assurance.Proof(
        key_id=compliant.key_id, at=at, counts_under=version or 0
    )
    assert assurance.proof(org=org, key=refused, at=at) == assurance.Proof(
        key_id=refused.key_id, at=at, counts_under=None
    )


@pytest.mark.parametrize("counts_under", [None, 0, 3])
def test_a_proof_writes_its_key_its_time_and_its_version_or_removes_a_stale_version(api, counts_under):
    bob = _keyless(api)
    _set_session(bob, verified_key_id="old" + "0" * 19, verified_key_counts_under=9)
    at = clock.now() + timedelta(seconds=5)
    proved = assurance.Proof(key_id="new" + "0" * 19, at=at, counts_under=counts_under)

    Session(_session_id(bob)).update(actions=proved.actions())

    stored = Session.get(_session_id(bob), consistent_read=True)
    assert (stored.verified_key_id, stored.key_checked_at, stored.verified_key_counts_under) == (
        "new" + "0" * 19,
        at,
        counts_under,
    )
    shown = Session.get(_session_id(bob), consistent_read=True)
    proved.apply_to(shown)
    assert (shown.verified_key_id, shown.key_checked_at, shown.verified_key_counts_under) == (
        "new" + "0" * 19,
        at,
        counts_under,
    )


# --- whether the member holds the proved key ----------------------------------------------------


def test_a_member_holds_a_key_their_credential_list_names_and_no_other(api):
    bob, proven = _holder(api, count=2)
    member = _caller(bob).member

    assert sessions.holds_key(member, proven) is True
    assert sessions.holds_key(member, "held" + "0" * 17 + "1") is True
    assert sessions.holds_key(member, "held" + "0" * 17 + "2") is False
    assert sessions.holds_key(member, None) is False


def test_a_member_without_keys_holds_none_even_one_a_stale_list_names(api):
    bob, proven = _holder(api)
    _set_member(bob, key_count=0)

    assert sessions.holds_key(_caller(bob).member, proven) is False


@pytest.mark.parametrize(
    "owner, held",
    [("bob", True), ("alice", False), ("carol", False), (None, False)],
    ids=["own-key", "key-of-a-member-below", "key-of-a-member-above", "no-such-key"],
)
def test_a_member_whose_keys_predate_the_credential_list_holds_the_keys_stored_as_theirs(api, owner, held):
    """The fallback read: a key item of that ID is the member's only if it names them."""
    bob = _keyless(api)
    key_id = "legacy" + "0" * 16
    if owner is not None:
        store_key(ORG, owner, key_id)
    _set_member(bob, key_count=1, credentials=None)
    _set_session(bob, verified_key_id=key_id, key_checked_at=clock.now())
    member = _caller(bob).member
    assert member.credentials is None

    assert sessions.holds_key(member, key_id) is held
    assert _standing(bob) is (Standing.VERIFIED if held else Standing.PROOF_LAPSED)


def test_a_member_whose_keys_predate_the_list_holds_no_key_without_a_proof_and_none_when_keyless(api):
    bob = _keyless(api)
    store_key(ORG, "bob", "legacy" + "0" * 16)
    _set_member(bob, key_count=1, credentials=None)

    assert sessions.holds_key(_caller(bob).member, None) is False
    _set_member(bob, key_count=0)
    assert sessions.holds_key(_caller(bob).member, "legacy" + "0" * 16) is False


# --- which sessions a member's first key ends ---------------------------------------------------


@pytest.mark.parametrize(
    "session_generation, held, ended",
    [
        (0, False, True),
        (0, True, False),
        (1, False, False),
        (1, True, False),
        (2, False, False),
    ],
    ids=["before-proved-none", "before-holds-its-key", "same-proved-none", "same-holds-its-key", "after-proved-none"],
)
def test_a_first_key_ends_only_the_sessions_from_before_it_that_prove_no_key_the_member_holds(
    api, session_generation, held, ended
):
    bob, proven = _holder(api)
    _set_member(bob, session_generation=1)
    _set_session(bob, member_generation=session_generation, verified_key_id=proven if held else "gone" + "0" * 18)
    caller_session = Session.get(_session_id(bob), consistent_read=True)
    member = StoredMember.get(ORG, "bob", consistent_read=True)

    assert sessions.ended_by_new_key(session=caller_session, member=member) is ended
    if ended:
        with pytest.raises(SessionEndedByNewKey):
            _caller(bob)
    else:
        assert _standing(bob) is (Standing.VERIFIED if held else Standing.PROOF_LAPSED)
