"""The last-key rule's guards in management.delete, an admin's org_keys.delete_by_admin and
management.disable_mfa, tested against a stale caller: the caller was resolved (organization and
member read) before the table changed — an admin enforced MFA, or another request deleted or
added a key — and the rule must still hold, because
it is a condition of the write, not a decision on what was read. Then what the member item's
credential list gives a ceremony, the sessions a deleted key ends, a delete that meets a moved
authenticator policy at every attempt, the refusal a waiting session meets when its member got a
key meanwhile, and members stored before session generations and credential lists; a first key
that is no longer the first, whose key it is (fixed member IDs on both sides), the member ID's
length, the policy's shortfall list across the pages it reads, a session whose state changed
meanwhile; key names, credential IDs of every length, what the audit records of an activation, and a
waiting session whose member's keys went meanwhile; the key a first key's activation records, the
registration options, the shortfall list's page size, and a member ID that names no one; a maximum
lowered below what a member holds, and renaming a key that is not there."""

from __future__ import annotations

import base64

import pytest

from chalicelib.access import sessions
from chalicelib.base.errors import ConcurrentChange, LastKeyRequired
from chalicelib.base.models import Member, Organization, SecurityKey, Session
from chalicelib.keys import management, org_keys
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import enforce_in_table, hold_keys_in_table, store_key
from tests.support.meanwhile import after_verification


def _member_with_keys(api, count: int):
    bob = api.login(user="bob")
    for number in range(count):
        assert api.add_key(bob, SoftwareAuthenticator(), name=f"Key {number}").status == 201
    bob = api.mfa_login(org="acme", user="bob", authenticator=bob.authenticators[0])
    return bob


def _caller(member):
    return sessions.resolve(authorization=f"Bearer {member.token}")


def _key_ids() -> set[str]:
    return {key.key_id for key in SecurityKey.scan()}


def _key_count() -> int:
    return Member.get("acme", "bob", consistent_read=True).key_count


def _register_with_change_meanwhile(api, monkeypatch, member, change):
    """Register a key for ``member``, with ``change`` made to the table between the ceremony's
    verification and the registration's transaction, as another request would."""
    options = api.registration_options(member).body
    after_verification(monkeypatch, change, ceremony="verify_registration")
    return api.call(
        "POST",
        "/me/mfa/keys",
        token=member.token,
        body={
            "challenge_id": options["challenge_id"],
            "name": "Late",
            "credential": SoftwareAuthenticator().register(options["publicKey"]),
        },
    )


def test_deleting_the_last_key_is_refused_when_mfa_was_enforced_after_the_caller_was_read(api):
    bob = _member_with_keys(api, 1)
    stale = _caller(bob)
    assert not stale.org.mfa_enforced
    enforce_in_table("acme", enforcing_session_id=bob.token.split(".")[3])
    [key_id] = _key_ids()

    with pytest.raises(LastKeyRequired):
        management.delete(caller=stale, key_id=key_id)

    assert _key_ids() == {key_id} and _key_count() == 1


def test_deleting_a_second_to_last_key_under_enforcement_is_allowed(api):
    bob = _member_with_keys(api, 2)
    enforce_in_table("acme", enforcing_session_id=bob.token.split(".")[3])
    caller = _caller(bob)
    first, second = sorted(_key_ids())

    management.delete(caller=caller, key_id=first)

    assert _key_ids() == {second} and _key_count() == 1


def test_the_last_key_is_kept_when_another_delete_took_the_other_one_meanwhile(api):
    # Under enforcement, two keys; this caller was read then; another request deleted one since.
    bob = _member_with_keys(api, 2)
    enforce_in_table("acme", enforcing_session_id=bob.token.split(".")[3])
    stale = _caller(bob)
    first, second = sorted(_key_ids())
    management.delete(caller=_caller(bob), key_id=first)

    with pytest.raises(LastKeyRequired):
        management.delete(caller=stale, key_id=second)

    assert _key_ids() == {second} and _key_count() == 1


def test_an_admins_delete_of_a_members_last_key_is_kept_when_another_took_the_other_one_meanwhile(api):
    # Under enforcement, bob holds two keys; this admin was read then; another admin deleted one since.
    bob = _member_with_keys(api, 2)
    enforce_in_table("acme", enforcing_session_id=bob.token.split(".")[3])
    admin = api.login(user="alice", admin=True)
    stale = _caller(admin)
    first, second = sorted(_key_ids())
    org_keys.delete_by_admin(caller=_caller(admin), user_id="bob", key_id=first)

    with pytest.raises(LastKeyRequired):
        org_keys.delete_by_admin(caller=stale, user_id="bob", key_id=second)

    assert _key_ids() == {second} and _key_count() == 1


def test_an_admins_delete_of_a_members_last_key_is_refused_when_mfa_was_enforced_after_the_caller_was_read(api):
    bob = _member_with_keys(api, 1)
    admin = api.login(user="alice", admin=True)
    stale = _caller(admin)
    [only] = _key_ids()
    # Enforced, but the admin's caller read the organization before: only the write's condition can see it.
    Organization("acme").update(actions=[Organization.mfa_enforced.set(True)])
    assert stale.org.mfa_enforced is False and bob

    with pytest.raises(LastKeyRequired):
        org_keys.delete_by_admin(caller=stale, user_id="bob", key_id=only)

    assert _key_ids() == {only} and _key_count() == 1


def test_disabling_mfa_is_refused_when_mfa_was_enforced_after_the_caller_was_read(api):
    bob = _member_with_keys(api, 2)
    stale = _caller(bob)
    before = _key_ids()
    # Enforced, but the caller read the organization before: only the write's condition can see it.
    Organization("acme").update(actions=[Organization.mfa_enforced.set(True)])
    stale.org.mfa_enforced = False

    with pytest.raises(LastKeyRequired):
        management.disable_mfa(caller=stale)

    assert _key_ids() == before and _key_count() == 2


def test_disabling_mfa_fails_whole_when_a_key_was_added_meanwhile(api, monkeypatch):
    bob = _member_with_keys(api, 1)
    caller = _caller(bob)
    read_keys = management.keys_of

    def keys_then_one_more(**arguments):
        found = read_keys(**arguments)
        monkeypatch.setattr(management, "keys_of", read_keys)  # once: the registration reads keys too
        assert api.add_key(bob, SoftwareAuthenticator(), name="Added meanwhile").status == 201
        return found

    monkeypatch.setattr(management, "keys_of", keys_then_one_more)

    with pytest.raises(ConcurrentChange):
        management.disable_mfa(caller=caller)

    assert len(_key_ids()) == 2 and _key_count() == 2


def test_disabling_mfa_without_enforcement_deletes_every_key(api):
    bob = _member_with_keys(api, 2)

    management.disable_mfa(caller=_caller(bob))

    assert _key_ids() == set() and _key_count() == 0


# --- what the member item's credential list gives a ceremony -------------------------------------


def test_the_mfa_options_name_each_key_with_the_transports_it_registered_with(api):
    bob = api.login(user="bob")
    assert api.add_key(bob, SoftwareAuthenticator(transports=["nfc", "usb"])).status == 201
    waiting = api.login(user="bob")

    options = api.mfa_options(waiting)

    assert options.status == 200, options.body
    [allowed] = options.body["publicKey"]["allowCredentials"]
    assert allowed["transports"] == ["nfc", "usb"]
    [listed] = api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"]
    assert listed["transports"] == ["nfc", "usb"]


# --- the sessions a deleted key ends -------------------------------------------------------------


def test_deleting_a_key_ends_the_other_sessions_verified_with_it_and_spares_the_callers(api):
    bob = _member_with_keys(api, 1)
    other = api.mfa_login(org="acme", user="bob", authenticator=bob.authenticators[0])
    [key_id] = _key_ids()

    assert api.call("DELETE", f"/me/mfa/keys/{key_id}", token=bob.token).status == 204

    assert api.call("GET", "/me", token=other.token).code == "InvalidToken"
    assert api.call("GET", "/me", token=bob.token).status == 200


# --- a policy that keeps moving ------------------------------------------------------------------


def test_a_key_delete_that_meets_a_moved_policy_at_every_attempt_is_refused_and_deletes_nothing(api, monkeypatch):
    from chalicelib.counters import coverage

    bob = _member_with_keys(api, 2)
    first, second = sorted(_key_ids())
    monkeypatch.setattr(coverage, "MAX_ATTEMPTS", 3)
    remove_key_under = management._remove_key_under

    def policy_moved_first(**arguments):
        Organization("acme").update(actions=[Organization.compliance_version.add(1)])
        return remove_key_under(**arguments)

    monkeypatch.setattr(management, "_remove_key_under", policy_moved_first)

    reply = api.call("DELETE", f"/me/mfa/keys/{first}", token=bob.token)

    assert (reply.status, reply.code) == (409, "ConcurrentChange")
    assert _key_ids() == {first, second} and _key_count() == 2


def test_a_key_delete_whose_policy_settles_at_the_last_attempt_is_done(api, monkeypatch):
    from chalicelib.counters import coverage

    bob = _member_with_keys(api, 2)
    first, second = sorted(_key_ids())
    monkeypatch.setattr(coverage, "MAX_ATTEMPTS", 3)
    remove_key_under = management._remove_key_under
    attempts = []

    def policy_moved_but_at_the_last(**arguments):
        attempts.append(1)
        if len(attempts) < 3:
            Organization("acme").update(actions=[Organization.compliance_version.add(1)])
        return remove_key_under(**arguments)

    monkeypatch.setattr(management, "_remove_key_under", policy_moved_but_at_the_last)

    reply = api.call("DELETE", f"/me/mfa/keys/{first}", token=bob.token)

    assert reply.status == 204, reply.body
    assert (len(attempts), _key_ids(), _key_count()) == (3, {second}, 1)


# --- naming a refusal once the retries have run out ----------------------------------------------


@pytest.mark.parametrize("waiting", [True, False], ids=["registration-required", "active"])
def test_a_session_whose_member_got_a_key_meanwhile_is_told_why_once_the_retries_run_out(api, monkeypatch, waiting):
    from chalicelib.counters import coverage

    if waiting:
        api.login(user="alice", admin=True)
        enforce_in_table("acme")
    bob = api.login(user="bob")
    assert bob.state == ("registration_required" if waiting else "active")
    monkeypatch.setattr(coverage, "MAX_ATTEMPTS", 1)
    # Another session of bob's registered his first key: one key, stored after this request read him.
    reply = _register_with_change_meanwhile(
        api, monkeypatch, bob, lambda: Member("acme", "bob").update(actions=[Member.key_count.set(1)])
    )

    assert (reply.status, reply.code) == (409, "AlreadyEnrolled" if waiting else "ConcurrentChange")
    assert _key_ids() == set()


# --- members stored before keyward kept what it keeps now ----------------------------------------


def test_a_member_stored_before_session_generations_registers_a_first_key(api):
    bob = api.login(user="bob")
    Member("acme", "bob").update(actions=[Member.session_generation.remove()])

    assert api.add_key(bob).status == 201

    assert Member.get("acme", "bob", consistent_read=True).session_generation == 1


def test_a_member_stored_before_credential_lists_keeps_every_key_in_the_list_a_second_key_starts(api):
    bob = _member_with_keys(api, 1)
    [first] = _key_ids()
    Member("acme", "bob").update(actions=[Member.credentials.remove()])

    assert api.add_key(bob, SoftwareAuthenticator()).status == 201

    listed = Member.get("acme", "bob", consistent_read=True).credentials.as_dict()
    assert set(listed) == _key_ids() and first in listed and len(listed) == 2


# --- a first key that is no longer the first -----------------------------------------------------


@pytest.mark.parametrize("waiting", [True, False], ids=["registration-required", "active"])
def test_a_first_key_whose_member_got_a_key_meanwhile_is_not_stored(api, monkeypatch, waiting):
    """Another session registered the member's first key between this request's read and its
    transaction: what this registration decided for a first key (the session generation, a waiting
    session's activation, the enrolment gate) no longer holds."""
    if waiting:
        api.login(user="alice", admin=True)
        enforce_in_table("acme")
    bob = api.login(user="bob")
    reply = _register_with_change_meanwhile(
        api, monkeypatch, bob, lambda: Member("acme", "bob").update(actions=[Member.key_count.set(1)])
    )

    assert (reply.status, reply.code) == (409, "AlreadyEnrolled" if waiting else "ConcurrentChange")
    assert _key_ids() == set()


def test_a_waiting_session_whose_member_moved_to_a_new_generation_meanwhile_is_told_to_try_again(api, monkeypatch):
    """A first key was registered and deleted by another session meanwhile: no key now, but the
    registration's condition on the session generation no longer holds."""
    api.login(user="alice", admin=True)
    enforce_in_table("acme")
    bob = api.login(user="bob")
    reply = _register_with_change_meanwhile(
        api, monkeypatch, bob, lambda: Member("acme", "bob").update(actions=[Member.session_generation.add(1)])
    )

    assert (reply.status, reply.code) == (409, "ConcurrentChange")
    assert _key_ids() == set()


# --- whose key: fixed member IDs on both sides ---------------------------------------------------


@pytest.mark.parametrize("owner", ["user-a", "user-z"])  # sorting before and after user-m
def test_a_member_cannot_rename_another_members_key_whatever_the_order_of_their_ids(api, owner):
    theirs = api.login(user=owner)
    assert api.add_key(theirs, name="Theirs").status == 201
    [key_id] = _key_ids()
    mine = api.login(user="user-m")

    reply = api.call("PATCH", f"/me/mfa/keys/{key_id}", token=mine.token, body={"name": "Mine now"})

    assert (reply.status, reply.code) == (404, "KeyNotFound")
    assert SecurityKey.get("acme", key_id, consistent_read=True).name == "Theirs"


@pytest.mark.parametrize("owner", ["user-a", "user-z"])  # sorting before and after the admin, user-m
def test_an_admin_deletes_the_key_of_a_member_stored_before_credential_lists(api, owner):
    member = api.login(user=owner)
    assert api.add_key(member).status == 201
    [key_id] = _key_ids()
    Member("acme", owner).update(actions=[Member.credentials.remove()])
    admin = api.login(user="user-m", admin=True)
    assert api.add_key(admin).status == 201  # the admin's own item lists credentials

    assert api.call("DELETE", f"/org/members/{owner}/mfa/keys/{key_id}", token=admin.token).status == 204

    assert key_id not in _key_ids() and Member.get("acme", owner, consistent_read=True).key_count == 0


@pytest.mark.parametrize(("length", "status"), [(1, 204), (255, 204), (256, 404)])
def test_an_admin_deletes_keys_of_members_whose_ids_are_up_to_255_characters(api, length, status):
    from chalicelib.base import clock

    user_id = "u" * length
    Member("acme", user_id, name="Long", email="long@acme.example", key_count=1, created_at=clock.now()).save()
    store_key("acme", user_id, "k" * 22)
    admin = api.login(user="admin", admin=True)

    reply = api.call("DELETE", f"/org/members/{user_id}/mfa/keys/{'k' * 22}", token=admin.token)

    assert reply.status == status, reply.body


# --- the policy's shortfall list, across pages ---------------------------------------------------


def test_keys_short_of_the_policy_are_listed_once_each_across_the_pages_read(api):
    from chalicelib.ceremony.authenticator_policy import (
        Attestation,
        AuthenticatorPolicy,
    )

    api.login(user="bob")
    short = {"k099", "k100"}  # the last key of the first page read, and the first of the next
    for number in range(150):
        key_id = f"k{number:03d}"
        store_key("acme", "bob", key_id, attested=key_id not in short)

    page = org_keys.list_org_keys(
        org_id="acme", limit=100, after=None, noncompliant_under=AuthenticatorPolicy(attestation=Attestation.REQUIRED)
    )

    assert [key.key_id for key in page.items] == ["k099", "k100"] and page.next is None


def test_a_registration_whose_session_changed_state_meanwhile_stores_nothing(api, monkeypatch):
    """The registration is conditional on the session as it was read (an operator's edit here)."""
    bob = api.login(user="bob")
    assert bob.state == "active"

    reply = _register_with_change_meanwhile(
        api,
        monkeypatch,
        bob,
        lambda: Session(bob.token.split(".")[3]).update(actions=[Session.state.set("mfa_required")]),
    )

    assert (reply.status, reply.code) == (409, "ConcurrentChange")
    assert _key_ids() == set()


# --- names, credential IDs and what the audit records --------------------------------------------


@pytest.mark.parametrize(("name", "status"), [("A", 201), ("A" * 64, 201), ("A" * 65, 400), ("  ", 400)])
def test_a_key_name_is_1_to_64_characters(api, name, status):
    bob = api.login(user="bob")

    assert api.add_key(bob, name=name).status == status


@pytest.mark.parametrize("listed", [True, False], ids=["credential-list", "member-stored-before-lists"])
def test_the_mfa_options_name_credential_ids_of_every_length(api, listed):
    """Credential IDs are kept unpadded base64url on the member item; each length must come back."""
    lengths = [16, 17, 18, 22, 25, 26, 32, 64]  # unpadded lengths of every remainder mod 4 and mod 5
    bob = api.login(user="bob")
    for length in lengths:
        assert api.add_key(bob, SoftwareAuthenticator(credential_id=bytes([length]) * length)).status == 201
    if not listed:
        Member("acme", "bob").update(actions=[Member.credentials.remove()])

    options = api.mfa_options(api.login(user="bob"))

    assert options.status == 200, options.body
    allowed = {credential["id"] for credential in options.body["publicKey"]["allowCredentials"]}
    assert allowed == {base64.urlsafe_b64encode(bytes([length]) * length).decode().rstrip("=") for length in lengths}


def test_the_audit_says_which_registration_activated_its_session(api):

    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    api.login(user="alice", admin=True)
    enforce_in_table("acme")
    carol = api.login(user="carol")
    assert carol.state == "registration_required"
    assert api.add_key(carol).status == 201

    details = {e.user_id: e.details.as_dict() for e in logged_events("acme") if e.action == "key.registered"}
    assert "session_activated" not in details["bob"]
    assert details["carol"]["session_activated"] is True


def test_a_waiting_session_that_passed_the_key_check_and_whose_keys_went_meanwhile_is_told_to_try_again(
    api, monkeypatch
):
    """A session waiting to register because the policy no longer accepts the key it passed MFA
    with; the member's keys are deleted meanwhile: the count crossed zero, which the request did
    not see."""
    from chalicelib.base import clock

    _member_with_keys(api, 1)
    enforce_in_table("acme", enforcing_session_id="someone-elses")
    waiting = api.login(user="bob")
    [held] = _key_ids()
    Session(waiting.token.split(".")[3]).update(
        actions=[
            Session.state.set("registration_required"),
            Session.verified_key_id.set(held),
            Session.key_checked_at.set(clock.now()),
        ]
    )
    waiting.state = "registration_required"

    reply = _register_with_change_meanwhile(
        api, monkeypatch, waiting, lambda: Member("acme", "bob").update(actions=[Member.key_count.set(0)])
    )

    assert (reply.status, reply.code) == (409, "ConcurrentChange")
    assert len(_key_ids()) == 1 and _key_count() == 0


def test_a_waiting_session_activated_by_its_first_key_is_verified_with_that_key(api):
    """Deleting the key that activated a session must end it, as for a session that passed MFA."""
    api.login(user="alice", admin=True)
    enforce_in_table("acme")
    bob = api.login(user="bob")
    assert bob.state == "registration_required"

    reply = api.add_key(bob)

    assert reply.status == 201, reply.body
    assert Session.get(bob.token.split(".")[3], consistent_read=True).verified_key_id == reply.body["key"]["id"]


# --- the registration options ---------------------------------------------------------------------


def test_the_registration_options_ask_for_attestation_only_when_the_policy_requires_it(api):
    alice = api.login(user="alice", admin=True)
    assert api.registration_options(alice).body["publicKey"]["attestation"] == "none"
    key = SoftwareAuthenticator()
    assert api.add_key(alice, key).status == 201
    alice = api.mfa_login(org="acme", user="alice", authenticator=key, admin=True)

    assert api.call("PUT", "/org/mfa/policy", token=alice.token, body={"attestation": "required"}).status == 200

    assert api.registration_options(alice).body["publicKey"]["attestation"] == "direct"


def test_the_registration_options_show_a_member_without_a_name_by_their_email(api):
    bob = api.login(user="bob")
    Member("acme", "bob").update(actions=[Member.name.set("")])

    user = api.registration_options(bob).body["publicKey"]["user"]

    assert (user["name"], user["displayName"]) == ("bob@acme.example", "bob@acme.example")


# --- the policy's shortfall list, a page at a time -----------------------------------------------


def test_the_shortfall_list_returns_at_most_the_page_asked_for(api):
    from chalicelib.base import pagination
    from chalicelib.ceremony.authenticator_policy import (
        Attestation,
        AuthenticatorPolicy,
    )

    api.login(user="bob")
    for key_id in ("k1", "k2", "k3"):
        store_key("acme", "bob", key_id)
    policy = AuthenticatorPolicy(attestation=Attestation.REQUIRED)

    first = org_keys.list_org_keys(org_id="acme", limit=1, after=None, noncompliant_under=policy)
    second = org_keys.list_org_keys(
        org_id="acme", limit=2, after=pagination.decode(first.next), noncompliant_under=policy
    )

    assert [key.key_id for key in first.items] == ["k1"] and first.next is not None
    assert [key.key_id for key in second.items] == ["k2", "k3"]


def test_an_admin_deleting_a_key_of_no_member_at_all_finds_no_key(api):
    from chalicelib.base.errors import KeyNotFound

    admin = api.login(user="admin", admin=True)
    with pytest.raises(KeyNotFound):
        org_keys.delete_by_admin(
            caller=sessions.resolve(authorization=f"Bearer {admin.token}"), user_id="", key_id="k" * 22
        )


# --- a maximum lowered below what a member holds, and a key that is not there --------------------


def test_a_member_holding_more_keys_than_a_lowered_maximum_cannot_add_one(api):
    """An operator lowered ``KEYWARD_MAX_KEYS_PER_MEMBER`` below what bob already holds: the
    registration's condition is "fewer than the maximum", not "not exactly the maximum"."""
    from chalicelib.base.config import settings

    bob = api.login(user="bob")
    hold_keys_in_table(bob, count=settings().max_keys_per_member + 3)

    reply = api.add_key(bob)

    assert (reply.status, reply.code) == (409, "TooManyKeys")
    assert _key_ids() == set()


def test_renaming_a_key_that_does_not_exist_is_404_and_stores_nothing(api):
    bob = _member_with_keys(api, 1)

    reply = api.call("PATCH", f"/me/mfa/keys/{'k' * 22}", token=bob.token, body={"name": "Ghost"})

    assert (reply.status, reply.code) == (404, "KeyNotFound")
    assert [key.name for key in SecurityKey.scan()] == ["Key 0"]


# --- how many sessions fit in the transaction that deletes keys ----------------------------------


def _sessions_verified_with(key_id: str, count: int) -> None:
    from datetime import timedelta

    from chalicelib.base import clock

    now = clock.now()
    with Session.batch_write() as batch:
        for number in range(count):
            batch.save(
                Session.of_member(
                    f"s{number:04d}",
                    org_id="acme",
                    token_hash="x",
                    state="active",
                    user_id="bob",
                    verified_key_id=key_id,
                    created_at=now,
                    expires_at=now + timedelta(hours=1),
                    ttl=now + timedelta(days=1),
                )
            )


def test_disabling_mfa_with_the_most_keys_ends_every_session_verified_with_them(api):
    """20 keys and their claims, the member, the organization and the audit event are 43 items of
    the transaction's 100: the sessions it ends with them must fit in the rest."""
    from chalicelib.base.config import settings

    most = settings().max_keys_per_member
    bob = _member_with_keys(api, 1)
    [first] = _key_ids()
    for number in range(most - 1):
        store_key("acme", "bob", f"k{number:02d}")
    Member("acme", "bob").update(actions=[Member.key_count.set(most)])
    _sessions_verified_with(first, 70)

    reply = api.call("DELETE", "/me/mfa", token=bob.token)

    assert reply.status == 204, reply.body
    assert _key_ids() == set() and _key_count() == 0
    left = {
        session.session_id: session.verified_key_id for session in sessions.sessions_of(org_id="acme", user_id="bob")
    }
    assert left[bob.token.split(".")[3]] == first  # the caller's, spared
    assert [session_id for session_id, key_id in left.items() if key_id == first] == [bob.token.split(".")[3]]
