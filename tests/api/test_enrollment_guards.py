"""The enrolment passes' guards, each made to matter: whose pass it is, with fixed member IDs just
below and just above the real one (so that an equality weakened to ``<=`` or ``>=`` fails a test
instead of passing by the chance of random IDs); the member ID's length; the expiry instant, at the
check, in the listing, and between the check and the registration's transaction; the housekeeping
TTL; the listing's order; an explicitly stored ``open`` policy, and a policy value keyward does not
know, which fails closed; a pass's code changed between the check and the transaction; the key limit
under ``pass_required``; the code's length; setting the policy in force; a pass moved to another
member meanwhile; which refusals are the gate's own; a member whose keys went meanwhile; and a
pass of a member offboarded (and signed in again) while it was issued, checked or used."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.access import sessions
from chalicelib.base import clock
from chalicelib.base.errors import MemberNotFound
from chalicelib.base.models import (
    EnrollmentPass,
    Member,
    Organization,
    SecurityKey,
)
from chalicelib.keys import enrollment_passes
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import hold_keys_in_table
from tests.support.meanwhile import after_verification

AROUND = ["user-a", "user-z"]  # below and above user-m


def _issue(api, admin, user: str, **body) -> dict:
    reply = api.call("POST", f"/org/members/{user}/enrollment-passes", token=admin.token, body=body)
    assert reply.status == 201, reply.body
    return reply.body


def _first_key(api, member, options, **fields):
    return api.call(
        "POST",
        "/me/mfa/keys",
        token=member.token,
        body={
            "challenge_id": options["challenge_id"],
            "name": "First key",
            "credential": SoftwareAuthenticator().register(options["publicKey"]),
            **fields,
        },
    )


def test_a_members_passes_are_listed_without_those_of_members_whose_ids_sort_around_theirs(api, admin):
    for user in ["user-a", "user-m", "user-z"]:
        api.login(user=user)
    mine = _issue(api, admin, "user-m")
    for other in AROUND:
        _issue(api, admin, other)

    listed = api.call("GET", "/org/members/user-m/enrollment-passes", token=admin.token)

    assert listed.status == 200
    assert [listed_pass["id"] for listed_pass in listed.body["enrollment_passes"]] == [mine["id"]]


@pytest.mark.parametrize("path_user", AROUND)
def test_a_pass_is_revoked_only_under_its_own_members_path(api, admin, path_user):
    for user in ["user-m", path_user]:
        api.login(user=user)
    issued = _issue(api, admin, "user-m")

    reply = api.call("DELETE", f"/org/members/{path_user}/enrollment-passes/{issued['id']}", token=admin.token)

    assert (reply.status, reply.code) == (404, "EnrollmentPassNotFound")
    assert EnrollmentPass.get("acme", issued["id"], consistent_read=True).revoked_at is None


# --- boundaries: the member ID's length, the pass's expiry instant and its housekeeping -----------


@pytest.mark.parametrize(("length", "status"), [(1, 200), (255, 200), (256, 404)])
def test_a_member_id_may_be_255_characters_and_no_more(api, admin, length, status):
    user = "u" * length
    if length <= 255:
        api.login(user=user)
    else:  # no ID token names such a member; an operator's item does
        Member("acme", user, name="Long", email="long@acme.example", key_count=0, created_at=clock.now()).save()

    reply = api.call("GET", f"/org/members/{user}/enrollment-passes", token=admin.token)

    assert reply.status == status, reply.body


def test_an_empty_member_id_is_no_member(api, admin):
    caller = sessions.resolve(authorization=f"Bearer {admin.token}")
    with pytest.raises(MemberNotFound):
        enrollment_passes.list_passes(caller=caller, user_id="")


def test_a_pass_is_kept_30_days_after_it_expires(api, admin):
    api.login(user="bob")
    issued = _issue(api, admin, "bob")

    stored = EnrollmentPass.get("acme", issued["id"], consistent_read=True)

    assert stored.ttl == (stored.expires_at + timedelta(days=30)).replace(microsecond=0)  # TTL is in whole seconds


@pytest.mark.parametrize(("offset", "state"), [(timedelta(microseconds=-1), "active"), (timedelta(0), "expired")])
def test_a_pass_is_listed_as_expired_from_the_instant_it_expires(api, admin, monkeypatch, offset, state):
    api.login(user="bob")
    issued = _issue(api, admin, "bob", lifetime_minutes=10)  # expires well within the idle timeout
    expires_at = EnrollmentPass.get("acme", issued["id"], consistent_read=True).expires_at
    monkeypatch.setattr(clock, "now", lambda: expires_at + offset)

    listed = api.call("GET", "/org/members/bob/enrollment-passes", token=admin.token)

    assert listed.status == 200, listed.body
    assert [listed_pass["state"] for listed_pass in listed.body["enrollment_passes"]] == [state]


@pytest.mark.parametrize(
    ("checked_before", "after_expiry"),
    [(False, 0), (True, 0), (True, 1)],
    ids=["at-the-check", "at-expiry-meanwhile", "a-second-after-meanwhile"],
)
def test_a_pass_is_refused_at_the_instant_it_expires(api, admin, monkeypatch, checked_before, after_expiry):
    """At the check, or between the check and the registration's transaction: both the check and
    the transaction's condition hold the boundary."""
    reply = api.call("PUT", "/org/mfa", token=admin.token, body={"enrollment": "pass_required"})
    assert reply.status == 200, reply.body
    bob = api.login(user="bob")
    issued = _issue(api, admin, "bob", lifetime_minutes=10)  # expires well within the idle timeout
    expires_at = EnrollmentPass.get("acme", issued["id"], consistent_read=True).expires_at
    now = {"at": expires_at - timedelta(seconds=1)}
    monkeypatch.setattr(clock, "now", lambda: now["at"])
    options = api.registration_options(bob).body
    if not checked_before:
        now["at"] = expires_at
    after_verification(
        monkeypatch, lambda: now.update(at=expires_at + timedelta(seconds=after_expiry)), ceremony="verify_registration"
    )

    refused = _first_key(api, bob, options, enrollment_code=issued["code"])

    assert (refused.status, refused.code) == (403, "InvalidEnrollmentPass")
    assert EnrollmentPass.get("acme", issued["id"], consistent_read=True).used_at is None
    assert {key.user_id for key in SecurityKey.scan()} == {"alice"}


def test_a_members_passes_are_listed_newest_first(api, admin, monkeypatch):
    api.login(user="bob")
    start = clock.now()
    monkeypatch.setattr(clock, "now", lambda: start)
    older = _issue(api, admin, "bob")
    monkeypatch.setattr(clock, "now", lambda: start + timedelta(minutes=1))
    newer = _issue(api, admin, "bob")

    listed = api.call("GET", "/org/members/bob/enrollment-passes", token=admin.token).body["enrollment_passes"]

    assert [listed_pass["id"] for listed_pass in listed] == [newer["id"], older["id"]]


def test_a_policy_set_back_to_open_lets_a_first_key_in_without_a_code(api, admin):
    for policy in ("pass_required", "open"):
        assert api.call("PUT", "/org/mfa", token=admin.token, body={"enrollment": policy}).status == 200
    bob = api.login(user="bob")

    reply = api.add_key(bob, SoftwareAuthenticator())

    assert reply.status == 201, reply.body


@pytest.mark.parametrize("typo", ["closed", "required"])  # sorting before and after "open"
@pytest.mark.parametrize("when", ["before", "meanwhile"])
def test_a_policy_value_keyward_does_not_know_requires_a_pass(api, admin, monkeypatch, typo, when):
    """An operator's typo in the table fails closed, whether it is there when the registration is
    read or lands between the check and the registration's transaction."""
    bob = api.login(user="bob")

    def set_typo() -> None:
        Organization("acme").update(actions=[Organization.enrollment.set(typo)])

    if when == "before":
        set_typo()
        assert api.call("GET", "/org/mfa", token=admin.token).body["enrollment"] == "pass_required"
    options = api.registration_options(bob).body
    assert options["enrollment_code_required"] is (when == "before")
    if when == "meanwhile":
        after_verification(monkeypatch, set_typo, ceremony="verify_registration")

    refused = _first_key(api, bob, options)

    assert (refused.status, refused.code) == (403, "EnrollmentPassRequired")
    assert {key.user_id for key in SecurityKey.scan()} == {"alice"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("code_hash", "0" * 64),
        ("code_hash", "f" * 64),  # its code
        ("user_id", "user-a"),
        ("user_id", "user-z"),  # its member, on both sides of user-m
    ],
)
def test_a_pass_changed_meanwhile_is_not_used(api, admin, monkeypatch, field, value):
    """An operator's edit of the pass between the check and the registration's transaction."""
    assert api.call("PUT", "/org/mfa", token=admin.token, body={"enrollment": "pass_required"}).status == 200
    member = api.login(user="user-m")
    issued = _issue(api, admin, "user-m")
    options = api.registration_options(member).body
    after_verification(
        monkeypatch,
        lambda: EnrollmentPass("acme", issued["id"]).update(actions=[getattr(EnrollmentPass, field).set(value)]),
        ceremony="verify_registration",
    )

    refused = _first_key(api, member, options, enrollment_code=issued["code"])

    assert (refused.status, refused.code) == (403, "InvalidEnrollmentPass")
    assert EnrollmentPass.get("acme", issued["id"], consistent_read=True).used_at is None
    assert {key.user_id for key in SecurityKey.scan()} == {"alice"}


def test_under_pass_required_a_member_holding_keys_still_meets_the_key_limit(api, admin):
    """A member who holds keys needs no pass; the gate's own condition must not loosen the
    registration's (at most twenty keys)."""
    assert api.call("PUT", "/org/mfa", token=admin.token, body={"enrollment": "pass_required"}).status == 200
    bob = api.login(user="bob")
    hold_keys_in_table(bob, count=20)

    reply = api.add_key(bob)

    assert (reply.status, reply.code) == (409, "TooManyKeys")
    assert {key.user_id for key in SecurityKey.scan()} == {"alice"}


@pytest.mark.parametrize(("length", "code"), [(64, "InvalidEnrollmentPass"), (65, "MalformedRequest")])
def test_an_enrolment_code_may_be_64_characters_and_no_more(api, admin, length, code):
    assert api.call("PUT", "/org/mfa", token=admin.token, body={"enrollment": "pass_required"}).status == 200
    bob = api.login(user="bob")

    refused = _first_key(api, bob, api.registration_options(bob).body, enrollment_code="A" * length)

    assert refused.code == code


def test_setting_open_where_no_policy_is_stored_changes_and_logs_nothing(api, admin):
    assert Organization.get("acme", consistent_read=True).enrollment is None

    assert api.call("PUT", "/org/mfa", token=admin.token, body={"enrollment": "open"}).status == 200

    assert Organization.get("acme", consistent_read=True).enrollment is None
    assert [e for e in logged_events("acme") if e.action == "enrollment.changed"] == []


def test_under_open_enrolment_a_credential_claimed_meanwhile_is_named_as_such(api, admin, monkeypatch):
    """Only the gate's own conditions become the gate's refusals."""
    from chalicelib.base.models import CredentialClaim
    from chalicelib.ceremony import ceremonies

    bob = api.login(user="bob")
    options = api.registration_options(bob).body
    key = SoftwareAuthenticator()
    credential = key.register(options["publicKey"])
    key_id = ceremonies.key_id_for(key.credential_id)
    after_verification(
        monkeypatch,
        lambda: CredentialClaim(key_id, org_id="acme", user_id="carol").save(),
        ceremony="verify_registration",
    )

    refused = api.call(
        "POST",
        "/me/mfa/keys",
        token=bob.token,
        body={"challenge_id": options["challenge_id"], "name": "First key", "credential": credential},
    )

    assert (refused.status, refused.code) == (409, "KeyAlreadyRegistered")


@pytest.mark.parametrize("attempts", [None, 1], ids=["with-retries", "retries-run-out"])
def test_under_pass_required_a_member_whose_keys_went_meanwhile_registers_nothing_without_a_pass(
    api, admin, monkeypatch, attempts
):
    """bob held a key when his second registration was read, so it needed no pass; his keys were
    deleted meanwhile: the key would now be a first key, and is refused."""
    from chalicelib.counters import coverage

    assert api.call("PUT", "/org/mfa", token=admin.token, body={"enrollment": "pass_required"}).status == 200
    bob = api.login(user="bob")
    hold_keys_in_table(bob, count=1)
    if attempts is not None:
        monkeypatch.setattr(coverage, "MAX_ATTEMPTS", attempts)
    options = api.registration_options(bob).body
    assert options["enrollment_code_required"] is False
    after_verification(
        monkeypatch,
        lambda: Member("acme", "bob").update(actions=[Member.key_count.set(0)]),
        ceremony="verify_registration",
    )

    refused = _first_key(api, bob, options)

    assert (refused.status, refused.code) == (409, "ConcurrentChange")
    assert {key.user_id for key in SecurityKey.scan()} == {"alice"}


# --- offboarding voids every pass of the member, whenever it was issued ----------------------------


def _offboard_with_a_pass_issued_after_its_read(api, admin, monkeypatch, user: str = "bob") -> dict:
    """Offboard ``user`` while another admin request issues them a pass: after offboarding read
    the member's passes and before its transaction deletes what it read. Returns the pass."""
    read_passes = enrollment_passes.passes_of
    issuing_admin = sessions.resolve(authorization=f"Bearer {admin.token}")
    issued: dict = {}

    def read_then_issue(**arguments):
        found = read_passes(**arguments)
        if not issued:
            made = enrollment_passes.issue(caller=issuing_admin, user_id=user, lifetime_minutes=60)
            issued.update(id=made.enrollment_pass.pass_id, code=made.code)
        return found

    monkeypatch.setattr(enrollment_passes, "passes_of", read_then_issue)
    assert api.call("DELETE", f"/org/members/{user}", token=admin.token).status == 204
    monkeypatch.setattr(enrollment_passes, "passes_of", read_passes)
    assert issued, "offboarding read no passes"
    return issued


def test_a_pass_issued_while_its_member_is_offboarded_cannot_enrol_them_when_they_return(api, admin, monkeypatch):
    assert api.call("PUT", "/org/mfa", token=admin.token, body={"enrollment": "pass_required"}).status == 200
    api.login(user="bob")
    stray = _offboard_with_a_pass_issued_after_its_read(api, admin, monkeypatch)

    # The IdP signs bob in again: a new member of the same ID, who holds no pass.
    bob = api.login(user="bob")
    options = api.registration_options(bob).body
    refused = _first_key(api, bob, options, enrollment_code=stray["code"])

    assert (refused.status, refused.code) == (403, "InvalidEnrollmentPass")
    assert {key.user_id for key in SecurityKey.scan()} == {"alice"}
    assert Member.get("acme", "bob", consistent_read=True).key_count == 0
    listed = api.call("GET", "/org/members/bob/enrollment-passes", token=admin.token).body["enrollment_passes"]
    assert listed == []
    # A pass issued to bob as he is now lets the same ceremony through.
    assert _first_key(api, bob, options, enrollment_code=_issue(api, admin, "bob")["code"]).status == 201


@pytest.mark.parametrize("stored_before_creation_times", [False, True], ids=["member", "legacy-member"])
def test_a_pass_is_not_used_by_a_member_re_created_between_the_check_and_the_transaction(
    api, admin, monkeypatch, stored_before_creation_times
):
    """The member item becomes another member of the same ID (offboarded and signed in again)
    after the code was checked against the member the request read; the session and the pass
    are left in place, so only the registration's condition on the member can refuse. For a
    member item from before members recorded ``created_at``, that condition is that the item
    still has none, which a re-created member does."""
    assert api.call("PUT", "/org/mfa", token=admin.token, body={"enrollment": "pass_required"}).status == 200
    bob = api.login(user="bob")
    if stored_before_creation_times:
        Member("acme", "bob").update(actions=[Member.created_at.remove()])
    issued = _issue(api, admin, "bob")
    options = api.registration_options(bob).body
    after_verification(
        monkeypatch,
        lambda: Member("acme", "bob").update(actions=[Member.created_at.set(clock.now())]),
        ceremony="verify_registration",
    )

    refused = _first_key(api, bob, options, enrollment_code=issued["code"])

    assert (refused.status, refused.code) == (401, "InvalidToken")
    assert EnrollmentPass.get("acme", issued["id"], consistent_read=True).used_at is None
    assert {key.user_id for key in SecurityKey.scan()} == {"alice"}


def test_no_pass_is_issued_to_a_member_re_created_after_issuing_read_them(api, admin, monkeypatch):
    """Offboarded and signed in again between the issuing's read of the member and its
    transaction: the pass would be the earlier member's, so none is issued."""
    api.login(user="bob")
    read_member = enrollment_passes._member

    def read_then_recreate(**arguments):
        found = read_member(**arguments)
        Member("acme", "bob").update(actions=[Member.created_at.set(clock.now())])
        return found

    monkeypatch.setattr(enrollment_passes, "_member", read_then_recreate)
    reply = api.call("POST", "/org/members/bob/enrollment-passes", token=admin.token, body={})

    assert (reply.status, reply.code) == (404, "MemberNotFound")
    assert list(EnrollmentPass.scan()) == []


@pytest.mark.parametrize(
    ("issued_after_member", "status"),
    [
        (timedelta(milliseconds=-1), 403),
        (timedelta(0), 201),
        (timedelta(milliseconds=1), 201),
    ],
)
def test_a_pass_that_never_recorded_its_member_is_of_the_member_created_before_it(
    api, admin, issued_after_member, status
):
    """Passes issued before they recorded their member: one issued before the member was created
    was an earlier member's."""
    assert api.call("PUT", "/org/mfa", token=admin.token, body={"enrollment": "pass_required"}).status == 200
    bob = api.login(user="bob")
    issued = _issue(api, admin, "bob")
    joined = Member.get("acme", "bob", consistent_read=True).created_at
    EnrollmentPass("acme", issued["id"]).update(
        actions=[EnrollmentPass.member_created_at.remove(), EnrollmentPass.created_at.set(joined + issued_after_member)]
    )

    reply = _first_key(api, bob, api.registration_options(bob).body, enrollment_code=issued["code"])

    assert reply.status == status, reply.body
    listed = api.call("GET", "/org/members/bob/enrollment-passes", token=admin.token).body["enrollment_passes"]
    assert [listed_pass["id"] for listed_pass in listed] == ([] if status == 403 else [issued["id"]])
