"""Enrolment passes: the organization's enrolment policy, issuing, listing and revoking passes,
and a first key registered only with a pass under ``pass_required`` — through Chalice's test client.

The same rules are played as attacks over HTTP against the running local stack in
``test_enrollment_passes_http.py``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.base import clock
from chalicelib.base.models import (
    EnrollmentPass,
    Member,
    Organization,
    SecurityKey,
    Throttle,
)
from chalicelib.keys import enrollment_passes
from tests.support.authenticator import SoftwareAuthenticator

CODE = re.compile(r"[A-HJKMNP-TV-Z2-9]{5}(-[A-HJKMNP-TV-Z2-9]{5}){3}")


def _passes_path(user: str = "bob") -> str:
    return f"/org/members/{user}/enrollment-passes"


def _issue(api, admin, user: str = "bob", **body: Any) -> dict[str, Any]:
    reply = api.call("POST", _passes_path(user), token=admin.token, body=body)
    assert reply.status == 201, reply.body
    return reply.body


def _require_passes(api, admin) -> dict[str, Any]:
    reply = api.call("PUT", "/org/mfa", token=admin.token, body={"enrollment": "pass_required"})
    assert reply.status == 200, reply.body
    return reply.body


def _register(api, member, *, code: object = None, authenticator: SoftwareAuthenticator | None = None):
    authenticator = authenticator or SoftwareAuthenticator()
    options = api.registration_options(member)
    assert options.status == 200, options.body
    body: dict[str, Any] = {
        "challenge_id": options.body["challenge_id"],
        "name": "First key",
        "credential": authenticator.register(options.body["publicKey"]),
    }
    if code is not None:
        body["enrollment_code"] = code
    reply = api.call("POST", "/me/mfa/keys", token=member.token, body=body)
    if reply.status == 201:
        member.authenticators.append(authenticator)
    return reply


def _events(api, admin, action: str) -> list[dict[str, Any]]:
    reply = api.call("GET", f"/org/audit?action={action}", token=admin.token)
    assert reply.status == 200, reply.body
    return reply.body["events"]


# --- the policy -----------------------------------------------------------------------------------


def test_the_policy_is_open_by_default_and_changes_alone_audited(api, admin):
    assert api.call("GET", "/org/mfa", token=admin.token).body["enrollment"] == "open"
    changed = _require_passes(api, admin)
    assert changed["enrollment"] == "pass_required" and changed["enforced"] is False
    assert Organization.get("acme").enrollment == "pass_required"
    assert api.call("GET", "/org/mfa", token=admin.token).body["enrollment"] == "pass_required"
    # Repeating it changes nothing and logs nothing more.
    _require_passes(api, admin)
    assert [e["details"] for e in _events(api, admin, "enrollment.changed")] == [{"enrollment": "pass_required"}]


def test_the_policy_and_enforcement_change_together(api, admin):
    reply = api.call(
        "PUT",
        "/org/mfa",
        token=admin.token,
        body={"enforced": True, "without_backup_credentials": True, "enrollment": "pass_required"},
    )
    assert reply.status == 200, reply.body
    assert (reply.body["enforced"], reply.body["enrollment"]) == (True, "pass_required")
    assert Organization.get("acme").enrollment == "pass_required"
    assert [e["details"] for e in _events(api, admin, "enrollment.changed")] == [{"enrollment": "pass_required"}]
    assert len(_events(api, admin, "enforcement.enabled")) == 1
    back = api.call("PUT", "/org/mfa", token=admin.token, body={"enrollment": "open"})
    assert (back.body["enforced"], back.body["enrollment"]) == (True, "open")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"enrollment": "closed"},
        {"enrollment": None},
        {"enrollment": True},
        {"enforced": "yes", "enrollment": "pass_required"},
        {"enrollment": "open", "x": 1},
    ],
)
def test_a_bad_policy_change_is_refused_and_changes_nothing(api, admin, body):
    reply = api.call("PUT", "/org/mfa", token=admin.token, body=body)
    assert (reply.status, reply.code) == (400, "MalformedRequest")
    assert Organization.get("acme").enrollment is None
    assert _events(api, admin, "enrollment.changed") == []


def test_a_refused_enforcement_leaves_the_policy_as_it_was(api):
    carol = api.login(user="carol", admin=True)  # an admin without a key cannot enforce
    reply = api.call(
        "PUT",
        "/org/mfa",
        token=carol.token,
        body={"enforced": True, "without_backup_credentials": True, "enrollment": "pass_required"},
    )
    assert (reply.status, reply.code) == (409, "SecurityKeyRequired")
    assert Organization.get("acme").enrollment is None


def test_members_cannot_change_the_policy_or_touch_passes(api, admin):
    bob = api.login(user="bob")
    assert api.call("PUT", "/org/mfa", token=bob.token, body={"enrollment": "open"}).code == "AdminRequired"
    assert api.call("POST", _passes_path("bob"), token=bob.token, body={}).code == "AdminRequired"
    assert api.call("GET", _passes_path("bob"), token=bob.token).code == "AdminRequired"
    assert list(EnrollmentPass.scan()) == []


def test_an_unknown_stored_policy_counts_as_pass_required(api, admin):
    # An operator's typo in the table must not open enrolment.
    Organization("acme").update(actions=[Organization.enrollment.set("PASS-REQUIRED")])
    assert api.call("GET", "/org/mfa", token=admin.token).body["enrollment"] == "pass_required"
    bob = api.login(user="bob")
    assert _register(api, bob).code == "EnrollmentPassRequired"


# --- issuing, listing, revoking -----------------------------------------------------------------


def test_a_pass_is_shown_once_and_stored_only_hashed(api, admin):
    api.login(user="bob")
    before = clock.now()
    issued = _issue(api, admin, lifetime_minutes=30)
    assert set(issued) == {"id", "code", "expires_at"}
    assert CODE.fullmatch(issued["code"]), issued["code"]
    stored = EnrollmentPass.get("acme", issued["id"])
    assert stored.user_id == "bob" and stored.created_by == "alice"
    assert timedelta(minutes=29) < stored.expires_at - before <= timedelta(minutes=30, seconds=5)
    raw = EnrollmentPass._get_connection().get_item("acme", issued["id"], consistent_read=True)["Item"]
    everything = repr(raw)
    for form in (issued["code"], issued["code"].replace("-", ""), issued["code"].lower()):
        assert form not in everything
    assert (
        stored.code_hash
        == hashlib.sha256(b"keyward-enrollment-pass\x00" + issued["code"].replace("-", "").encode()).hexdigest()
    )

    listed = api.call("GET", _passes_path(), token=admin.token).body["enrollment_passes"]
    assert [(p["id"], p["state"]) for p in listed] == [(issued["id"], "active")]
    assert "code" not in listed[0] and issued["code"] not in repr(listed)
    [event] = _events(api, admin, "enrollment_pass.issued")
    assert (event["target"], event["user_id"], event["details"]["lifetime_minutes"]) == (issued["id"], "bob", 30)
    assert issued["code"] not in repr(_events(api, admin, ""))


@pytest.mark.parametrize("body", [None, {}])
def test_the_default_lifetime_is_an_hour_and_an_empty_body_is_fine(api, admin, body):
    api.login(user="bob")
    reply = api.call("POST", _passes_path(), token=admin.token, body=body)
    assert reply.status == 201, reply.body
    stored = EnrollmentPass.get("acme", reply.body["id"])
    assert stored.expires_at - stored.created_at == timedelta(minutes=60)


@pytest.mark.parametrize("lifetime", [9, 43201, 0, -5, 60.5, "60", True, None])
def test_a_lifetime_out_of_range_is_refused(api, admin, lifetime):
    # null too: the documented schema's lifetime is an integer; leaving it out is how to take the default.
    api.login(user="bob")
    reply = api.call("POST", _passes_path(), token=admin.token, body={"lifetime_minutes": lifetime})
    assert (reply.status, reply.code) == (400, "MalformedRequest")
    assert list(EnrollmentPass.scan()) == []


@pytest.mark.parametrize("lifetime", [10, 43200])
def test_the_lifetime_bounds_are_accepted(api, admin, lifetime):
    api.login(user="bob")
    assert api.call("POST", _passes_path(), token=admin.token, body={"lifetime_minutes": lifetime}).status == 201


def test_no_pass_for_someone_who_is_not_a_member_here(api, admin):
    api.login(org="other", user="mallory")
    for user in ("nobody", "mallory", "x" * 256):
        reply = api.call("POST", _passes_path(user), token=admin.token, body={})
        assert (reply.status, reply.code) == (404, "MemberNotFound"), user
        assert api.call("GET", _passes_path(user), token=admin.token).code == "MemberNotFound"
    assert list(EnrollmentPass.scan()) == []


def test_a_revoked_pass_is_listed_as_revoked_and_cannot_be_used(api, admin):
    bob = api.login(user="bob")
    _require_passes(api, admin)
    issued = _issue(api, admin)
    path = f"{_passes_path()}/{issued['id']}"
    assert api.call("DELETE", path, token=admin.token).status == 204
    assert api.call("DELETE", path, token=admin.token).status == 204  # again: nothing changes
    assert len(_events(api, admin, "enrollment_pass.revoked")) == 1
    [listed] = api.call("GET", _passes_path(), token=admin.token).body["enrollment_passes"]
    assert listed["state"] == "revoked" and listed["revoked_at"]
    reply = _register(api, bob, code=issued["code"])
    assert (reply.status, reply.code) == (403, "InvalidEnrollmentPass")
    assert Member.get("acme", "bob").key_count == 0


def test_revoking_checks_the_member_and_the_pass(api, admin):
    api.login(user="bob")
    api.login(user="carol")
    issued = _issue(api, admin)
    for path in (
        f"{_passes_path('carol')}/{issued['id']}",
        f"{_passes_path()}/ep_{'A' * 22}",
        f"{_passes_path()}/not-a-pass",
    ):
        reply = api.call("DELETE", path, token=admin.token)
        assert (reply.status, reply.code) == (404, "EnrollmentPassNotFound"), path
    assert EnrollmentPass.get("acme", issued["id"]).revoked_at is None


def test_an_admin_of_another_organization_cannot_see_or_revoke_a_pass(api, admin):
    api.login(user="bob")
    issued = _issue(api, admin)
    eve = api.login(org="evil", user="eve", admin=True)
    api.login(org="evil", user="bob")  # a member of the same name over there
    assert api.call("GET", _passes_path(), token=eve.token).body["enrollment_passes"] == []
    reply = api.call("DELETE", f"{_passes_path()}/{issued['id']}", token=eve.token)
    assert (reply.status, reply.code) == (404, "EnrollmentPassNotFound")
    assert EnrollmentPass.get("acme", issued["id"]).revoked_at is None


# --- registering under pass_required ----------------------------------------------------------


def test_open_enrolment_needs_no_code(api, admin):
    bob = api.login(user="bob")
    options = api.registration_options(bob)
    assert options.body["enrollment_code_required"] is False
    assert _register(api, bob).status == 201


def test_a_first_key_needs_a_pass_and_uses_it_up(api, admin):
    bob = api.login(user="bob")
    assert api.call("GET", "/me", token=bob.token).body["mfa"]["enrollment_code_required"] is False
    _require_passes(api, admin)
    # Told before any registration starts, so that a client asks for the code up front.
    assert api.call("GET", "/me", token=bob.token).body["mfa"]["enrollment_code_required"] is True
    assert api.registration_options(bob).body["enrollment_code_required"] is True
    reply = _register(api, bob)
    assert (reply.status, reply.code) == (403, "EnrollmentPassRequired")

    issued = _issue(api, admin)
    reply = _register(api, bob, code=issued["code"].lower().replace("-", " "))
    assert reply.status == 201, reply.body
    stored = EnrollmentPass.get("acme", issued["id"])
    assert stored.used_at is not None and stored.used_key_id == reply.body["key"]["id"]
    [used] = _events(api, admin, "enrollment_pass.used")
    assert (used["target"], used["user_id"], used["details"]) == (
        issued["id"],
        "bob",
        {"key_id": reply.body["key"]["id"]},
    )
    assert api.call("GET", _passes_path(), token=admin.token).body["enrollment_passes"][0]["state"] == "used"

    # A second key needs no pass; the used code is not looked at.
    assert api.call("GET", "/me", token=bob.token).body["mfa"]["enrollment_code_required"] is False
    assert api.registration_options(bob).body["enrollment_code_required"] is False
    assert _register(api, bob).status == 201
    assert _register(api, bob, code=issued["code"]).status == 201
    # Revoking a used pass is refused.
    reply = api.call("DELETE", f"{_passes_path()}/{issued['id']}", token=admin.token)
    assert (reply.status, reply.code) == (409, "EnrollmentPassUsed")


def test_a_used_pass_cannot_enrol_again(api, admin):
    bob = api.login(user="bob")
    _require_passes(api, admin)
    issued = _issue(api, admin)
    assert _register(api, bob, code=issued["code"]).status == 201
    assert api.call("DELETE", "/me/mfa", token=bob.token).status == 204
    reply = _register(api, bob, code=issued["code"])
    assert (reply.status, reply.code) == (403, "InvalidEnrollmentPass")
    assert Member.get("acme", "bob").key_count == 0
    assert [e["details"] for e in _events(api, admin, "enrollment_pass.refused")] == [{"reason": "used"}]


def test_an_expired_pass_is_refused(api, admin):
    bob = api.login(user="bob")
    _require_passes(api, admin)
    issued = _issue(api, admin)
    EnrollmentPass("acme", issued["id"]).update(
        actions=[EnrollmentPass.expires_at.set(clock.now() - timedelta(seconds=1))]
    )
    reply = _register(api, bob, code=issued["code"])
    assert (reply.status, reply.code) == (403, "InvalidEnrollmentPass")
    assert [key for key in SecurityKey.query("acme") if key.user_id == "bob"] == []
    assert api.call("GET", _passes_path(), token=admin.token).body["enrollment_passes"][0]["state"] == "expired"


def test_someone_elses_pass_is_refused_and_stays_usable(api, admin):
    bob, carol = api.login(user="bob"), api.login(user="carol")
    _require_passes(api, admin)
    for_carol = _issue(api, admin, user="carol")
    reply = _register(api, bob, code=for_carol["code"])
    assert (reply.status, reply.code) == (403, "InvalidEnrollmentPass")
    assert EnrollmentPass.get("acme", for_carol["id"]).used_at is None
    assert _register(api, carol, code=for_carol["code"]).status == 201


def test_a_pass_of_another_organization_is_refused(api, admin):
    _require_passes(api, admin)
    bob = api.login(user="bob")
    eve = api.login(org="evil", user="eve", admin=True)
    api.login(org="evil", user="bob")
    theirs = api.call("POST", _passes_path("bob"), token=eve.token, body={})
    assert theirs.status == 201, theirs.body
    reply = _register(api, bob, code=theirs.body["code"])
    assert (reply.status, reply.code) == (403, "InvalidEnrollmentPass")


@pytest.mark.parametrize("code", [42, ["x"], "x" * 65])
def test_a_malformed_code_is_refused_before_the_challenge_is_used(api, admin, code):
    bob = api.login(user="bob")
    _require_passes(api, admin)
    options = api.registration_options(bob)
    body = {
        "challenge_id": options.body["challenge_id"],
        "name": "K",
        "credential": SoftwareAuthenticator().register(options.body["publicKey"]),
        "enrollment_code": code,
    }
    reply = api.call("POST", "/me/mfa/keys", token=bob.token, body=body)
    assert (reply.status, reply.code) == (400, "MalformedRequest")
    # The challenge is still there: a pass now lets the same ceremony through.
    body["enrollment_code"] = _issue(api, admin)["code"]
    assert api.call("POST", "/me/mfa/keys", token=bob.token, body=body).status == 201


def test_five_wrong_codes_throttle_the_member_even_with_the_right_one(api, admin):
    bob = api.login(user="bob")
    _require_passes(api, admin)
    issued = _issue(api, admin)
    for _ in range(5):
        reply = _register(api, bob, code="AAAAA-AAAAA-AAAAA-AAAAA")
        assert (reply.status, reply.code) == (403, "InvalidEnrollmentPass")
    reply = _register(api, bob, code=issued["code"])
    assert (reply.status, reply.code) == (429, "TooManyAttempts")
    assert EnrollmentPass.get("acme", issued["id"]).used_at is None
    assert len(_events(api, admin, "enrollment_pass.refused")) == 5
    # Another member is not affected.
    carol = api.login(user="carol")
    assert _register(api, carol, code=_issue(api, admin, user="carol")["code"]).status == 201
    # Once the window has passed, the right code works.
    throttle = Throttle.get("enrollment-pass#" + hashlib.sha256(b"acme\x00bob").hexdigest())
    assert throttle.failures == 5
    throttle.update(actions=[Throttle.window_start.set(clock.now() - timedelta(minutes=16))])
    assert _register(api, bob, code=issued["code"]).status == 201


def test_right_codes_do_not_count_towards_the_limit(api, admin):
    _require_passes(api, admin)
    bob = api.login(user="bob")
    for _ in range(6):
        assert _register(api, bob, code=_issue(api, admin)["code"]).status == 201
        assert api.call("DELETE", "/me/mfa", token=bob.token).status == 204


def test_a_member_who_lost_every_key_gets_back_in_with_a_pass(api, admin):
    # Under enforcement and pass_required, bob loses his only key.
    bob = api.login(user="bob")
    _require_passes(api, admin)
    first = _issue(api, admin)
    assert _register(api, bob, code=first["code"]).status == 201
    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    [lost] = [key.key_id for key in SecurityKey.query("acme") if key.user_id == "bob"]
    # The lost key is his last: it stays under enforcement, whoever deletes it.
    assert api.call("DELETE", f"/org/members/bob/mfa/keys/{lost}", token=admin.token).code == "LastKeyRequired"
    # The admin offboards him: he starts over at his next login, and registers a new key with a pass.
    assert api.call("DELETE", "/org/members/bob", token=admin.token).status == 204
    bob = api.login(user="bob")
    assert bob.state == "registration_required"
    assert _register(api, bob).code == "EnrollmentPassRequired"
    reply = _register(api, bob, code=_issue(api, admin)["code"])
    assert reply.status == 201, reply.body
    assert reply.body["session"]["state"] == "active"


def test_a_race_between_deleting_the_last_key_and_adding_one_is_not_a_way_around_the_pass(api, admin, monkeypatch):
    """bob adds a second key while his only one is deleted: the registration read one key,
    the write must still find one, or it needs a pass."""
    bob = api.login(user="bob")
    assert _register(api, bob).status == 201  # still open
    _require_passes(api, admin)
    [only] = [key.key_id for key in SecurityKey.query("acme") if key.user_id == "bob"]

    real_admit = enrollment_passes.admit

    def admit_then_lose_the_key(**kwargs):
        gate = real_admit(**kwargs)
        assert api.call("DELETE", f"/org/members/bob/mfa/keys/{only}", token=admin.token).status == 204
        return gate

    monkeypatch.setattr(enrollment_passes, "admit", admit_then_lose_the_key)
    reply = _register(api, bob)
    assert (reply.status, reply.code) == (409, "ConcurrentChange")
    assert Member.get("acme", "bob").key_count == 0
    monkeypatch.undo()
    # Deleting the key ended the session that proved it; bob signs in again, without a key.
    assert api.call("GET", "/me", token=bob.token).status == 401
    bob = api.login(user="bob")
    assert _register(api, bob).code == "EnrollmentPassRequired"


def test_a_race_with_the_policy_changing_is_not_a_way_around_the_pass(api, admin, monkeypatch):
    bob = api.login(user="bob")
    real_admit = enrollment_passes.admit

    def admit_then_close(**kwargs):
        gate = real_admit(**kwargs)
        _require_passes(api, admin)
        return gate

    monkeypatch.setattr(enrollment_passes, "admit", admit_then_close)
    reply = _register(api, bob)
    assert (reply.status, reply.code) == (403, "EnrollmentPassRequired")
    assert Member.get("acme", "bob").key_count == 0


def test_a_pass_revoked_during_the_ceremony_is_refused(api, admin, monkeypatch):
    bob = api.login(user="bob")
    _require_passes(api, admin)
    issued = _issue(api, admin)
    real_admit = enrollment_passes.admit

    def admit_then_revoke(**kwargs):
        gate = real_admit(**kwargs)
        assert api.call("DELETE", f"{_passes_path()}/{issued['id']}", token=admin.token).status == 204
        return gate

    monkeypatch.setattr(enrollment_passes, "admit", admit_then_revoke)
    reply = _register(api, bob, code=issued["code"])
    assert (reply.status, reply.code) == (403, "InvalidEnrollmentPass")
    assert Member.get("acme", "bob").key_count == 0
    assert _events(api, admin, "enrollment_pass.used") == []
