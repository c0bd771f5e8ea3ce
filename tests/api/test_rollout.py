"""Rolling enforcement out to a large organization: the grace period, the preview, members by
coverage, offboarding, the reason a deleted session's token still gives, and organizations bound
to their IdP (through Chalice's test client; the attacks run over HTTP in test_rollout_http.py)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from chalicelib.access import lifecycle, tenancy
from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.models import (
    CredentialClaim,
    EnrollmentPass,
    Member,
    Organization,
    SecurityKey,
    Session,
)
from devstack.idp import DevIdentityProvider
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import store_key
from tests.support.sessions import org_sessions


def _admin(api, org: str = "acme", user: str = "alice"):
    first = api.login(org=org, user=user, admin=True)
    assert api.add_key(first, SoftwareAuthenticator()).status == 201
    return api.mfa_login(org=org, user=user, authenticator=first.authenticators[0], admin=True)


def _enforce(api, admin, **body):
    reply = api.call(
        "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True, **body}
    )
    assert reply.status == 200, reply.body
    return reply.body


def _back_date_enforcement(org_id: str, *, hours: float) -> None:
    org = Organization.get(org_id, consistent_read=True)
    org.update(actions=[Organization.enforced_at.set(org.enforced_at - timedelta(hours=hours))])


# --- grace period -----------------------------------------------------------------------------


def test_during_the_grace_period_a_keyless_member_works_and_sees_the_deadline(api):
    alice = _admin(api)
    status = _enforce(api, alice, grace_period_hours=48)
    assert status["grace_period_hours"] == 48
    due = status["registration_due_at"]
    assert due is not None

    bob = api.login(user="bob")
    assert bob.state == "active"
    me = api.call("GET", "/me", token=bob.token).body
    assert me["session"]["state"] == "active" and me["mfa"]["registration_due_at"] == due
    assert api.call("GET", "/me/sessions", token=bob.token).status == 200
    # A member holding a key has no deadline.
    assert api.call("GET", "/me", token=alice.token).body["mfa"]["registration_due_at"] is None


def test_a_backup_session_has_no_registration_deadline_and_works_past_it(api):
    alice = _admin(api)
    created = api.call("POST", "/org/backup-credentials", token=alice.token).body
    _enforce(api, alice, grace_period_hours=1)
    signed_in = api.call("POST", "/auth/backup-login", body={"key_id": created["key_id"], "secret": created["secret"]})
    assert signed_in.status == 200, signed_in.body
    token = signed_in.body["token"]

    during = api.call("GET", "/me", token=token)
    assert during.status == 200 and during.body["mfa"]["registration_due_at"] is None
    _back_date_enforcement("acme", hours=2)
    after = api.call("GET", "/me", token=token)
    assert after.status == 200 and after.body["session"]["state"] == "active"
    assert after.body["mfa"]["registration_due_at"] is None


def test_after_the_deadline_the_next_request_needs_registration(api):
    alice = _admin(api)
    _enforce(api, alice, grace_period_hours=1)
    bob = api.login(user="bob")
    assert bob.state == "active"
    _back_date_enforcement("acme", hours=2)

    refused = api.call("GET", "/me/sessions", token=bob.token)
    assert (refused.status, refused.code) == (403, "RegistrationRequired")
    assert Session.get(lifecycle_session_id(bob.token)).state == "registration_required"
    assert api.login(user="bob").state == "registration_required"
    # Registering a key lets the same session work again.
    reply = api.add_key(bob)
    assert reply.status == 201 and reply.body["session"]["state"] == "active"
    assert api.call("GET", "/me/sessions", token=bob.token).status == 200


def test_shortening_the_period_applies_to_everyone_at_once(api):
    alice = _admin(api)
    _enforce(api, alice, grace_period_hours=720)
    bob = api.login(user="bob")
    _back_date_enforcement("acme", hours=5)
    assert api.call("GET", "/me/sessions", token=bob.token).status == 200
    status = _enforce(api, alice, grace_period_hours=2)
    assert status["grace_period_hours"] == 2 and status["enforced"] is True
    assert api.call("GET", "/me/sessions", token=bob.token).code == "RegistrationRequired"
    actions = [event.action for event in logged_events("acme")]
    assert "enforcement.grace_period_changed" in actions


def test_no_grace_period_is_todays_behaviour(api):
    alice = _admin(api)
    status = _enforce(api, alice)
    assert (status["grace_period_hours"], status["registration_due_at"]) == (0, None)
    assert api.login(user="bob").state == "registration_required"


@pytest.mark.parametrize("hours", [-1, 721, 1.5, "24", True, None])
def test_a_bad_grace_period_is_refused_and_changes_nothing(api, hours):
    alice = _admin(api)
    reply = api.call(
        "PUT",
        "/org/mfa",
        token=alice.token,
        body={"enforced": True, "without_backup_credentials": True, "grace_period_hours": hours},
    )
    assert (reply.status, reply.code) == (400, "MalformedRequest")
    assert Organization.get("acme", consistent_read=True).mfa_enforced is False


def test_a_grace_period_without_enforcing_is_refused(api):
    alice = _admin(api)
    reply = api.call("PUT", "/org/mfa", token=alice.token, body={"enforced": False, "grace_period_hours": 5})
    assert (reply.status, reply.code) == (400, "MalformedRequest")


def test_the_grace_period_alone_changes_the_enforcement_in_force(api):
    alice = _admin(api)
    enforced = _enforce(api, alice, grace_period_hours=48)
    reply = api.call("PUT", "/org/mfa", token=alice.token, body={"grace_period_hours": 0})
    assert reply.status == 200, reply.body
    body = reply.body
    assert (body["enforced"], body["grace_period_hours"], body["registration_due_at"]) == (True, 0, None)
    assert body["enforced_at"] == enforced["enforced_at"]  # the same enforcement, not a new one
    assert api.login(user="bob").state == "registration_required"
    actions = [event.action for event in logged_events("acme")]
    assert actions.count("enforcement.enabled") == 1 and "enforcement.grace_period_changed" in actions


def test_the_grace_period_alone_never_enforces(api):
    alice = _admin(api)
    # Another admin turned enforcement off after this admin's page showed a grace period to change.
    _enforce(api, alice, grace_period_hours=48)
    assert api.call("PUT", "/org/mfa", token=alice.token, body={"enforced": False}).status == 200

    def setting() -> tuple[object, ...]:
        org = Organization.get("acme", consistent_read=True)
        return org.mfa_enforced, org.enforced_at, org.grace_period_hours, org.enrollment

    before = setting()
    for body in ({"grace_period_hours": 24}, {"grace_period_hours": 24, "enrollment": "pass_required"}):
        reply = api.call("PUT", "/org/mfa", token=alice.token, body=body)
        assert (reply.status, reply.code) == (409, "MfaNotEnforced"), reply.body
    assert setting() == before and before[0] is False
    assert api.login(user="bob").state == "active"


def lifecycle_session_id(token: str) -> str:
    return token.split(".")[3]


# --- preview and members by coverage ----------------------------------------------------------


def test_the_preview_shows_who_enforcing_would_affect_and_changes_nothing(api):
    alice = _admin(api)
    for user in ("bob", "carol"):
        api.login(user=user)
    dave = api.login(user="dave")
    assert api.add_key(dave).status == 201
    before = Organization.get("acme", consistent_read=True).attribute_values

    preview = api.call("GET", "/org/mfa/preview", token=alice.token)
    assert preview.status == 200, preview.body
    body = preview.body
    assert (body["members_total"], body["members_with_key"], body["members_without_key"]) == (4, 2, 2)
    assert [member["id"] for member in body["members_without_key_first_page"]] == ["bob", "carol"]
    assert body["enforced"] is False and body["sessions_ending_estimate"] == 3
    assert Organization.get("acme", consistent_read=True).attribute_values == before
    bob = api.login(user="bob")
    assert api.call("GET", "/org/mfa/preview", token=bob.token).code == "AdminRequired"


def test_members_filtered_by_how_many_keys_they_hold(api):
    alice = _admin(api)
    api.login(user="bob")
    carol = api.login(user="carol")
    for _ in range(2):
        assert api.add_key(carol).status == 201

    def listed(mfa: str, **extra: str) -> list[str]:
        reply = api.call("GET", f"/org/members?mfa={mfa}", token=alice.token)
        assert reply.status == 200, reply.body
        return [member["id"] for member in reply.body["members"]]

    assert listed("none") == ["bob"]
    assert listed("one") == ["alice"]
    assert listed("many") == ["carol"]
    assert api.call("GET", "/org/members?mfa=some", token=alice.token).code == "MalformedRequest"


def test_members_by_coverage_page_through_the_index(api):
    alice = _admin(api)
    for n in range(5):
        api.login(user=f"member{n}")
    seen: list[str] = []
    cursor = ""
    while True:
        reply = api.call("GET", f"/org/members?mfa=none&limit=2{cursor}", token=alice.token)
        assert reply.status == 200 and len(reply.body["members"]) <= 2
        seen += [member["id"] for member in reply.body["members"]]
        if reply.body["next"] is None:
            break
        cursor = f"&next={reply.body['next']}"
    assert seen == [f"member{n}" for n in range(5)]


# --- offboarding ------------------------------------------------------------------------------


def test_offboarding_removes_the_member_and_everything_of_theirs(api):
    alice = _admin(api)
    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    assert api.add_key(bob).status == 201
    others = [api.login(user="bob") for _ in range(3)]
    key_ids = {key.key_id for key in SecurityKey.query("acme", consistent_read=True) if key.user_id == "bob"}

    assert api.call("DELETE", "/org/members/bob", token=alice.token).status == 204

    with pytest.raises(Member.DoesNotExist):
        Member.get("acme", "bob", consistent_read=True)
    assert not [key for key in SecurityKey.query("acme", consistent_read=True) if key.user_id == "bob"]
    assert not [claim for claim in CredentialClaim.scan(consistent_read=True) if claim.key_id in key_ids]
    assert not [session for session in org_sessions("acme") if session.user_id == "bob"]
    for member in [bob, *others]:
        assert api.call("GET", "/me", token=member.token).status == 401
    org = Organization.get("acme", consistent_read=True)
    assert (org.members_total, org.members_with_key) == (1, 1)
    [event] = [e for e in logged_events("acme") if e.action == "member.offboarded"]
    assert event.target == "bob" and event.details["keys_deleted"] == 2


def test_an_offboarded_member_starts_over_and_old_tokens_stay_dead(api):
    alice = _admin(api)
    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    old_session = Session.get(lifecycle_session_id(bob.token))
    assert api.call("DELETE", "/org/members/bob", token=alice.token).status == 204
    # Even if an old session item survived the clean-up, it must not come back with the member.
    old_session.save()

    again = api.login(user="bob")
    assert again.state == "active"
    assert api.call("GET", "/me", token=again.token).body["mfa"]["key_count"] == 0
    assert api.call("GET", "/me", token=bob.token).code == "InvalidToken"
    org = Organization.get("acme", consistent_read=True)
    assert (org.members_total, org.members_with_key) == (2, 1)


def test_offboarding_an_unknown_member_or_as_a_member_is_refused(api):
    alice = _admin(api)
    bob = api.login(user="bob")
    assert api.call("DELETE", "/org/members/nobody", token=alice.token).code == "MemberNotFound"
    assert api.call("DELETE", "/org/members/alice", token=bob.token).code == "AdminRequired"
    assert Member.get("acme", "alice", consistent_read=True).key_count == 1


def test_an_admin_cannot_offboard_herself_and_nothing_changes(api):
    alice = _admin(api)
    [key_id] = [key.key_id for key in SecurityKey.query("acme", consistent_read=True) if key.user_id == "alice"]
    before = Organization.get("acme", consistent_read=True)

    reply = api.call("DELETE", "/org/members/alice", token=alice.token)

    assert (reply.status, reply.code) == (403, "CannotOffboardYourself"), reply.body
    assert Member.get("acme", "alice", consistent_read=True).key_count == 1
    assert SecurityKey.get("acme", key_id, consistent_read=True).user_id == "alice"
    assert CredentialClaim.get(key_id, consistent_read=True).user_id == "alice"
    assert api.call("GET", "/me", token=alice.token).status == 200
    after = Organization.get("acme", consistent_read=True)
    assert (after.members_total, after.members_with_key) == (before.members_total, before.members_with_key) == (1, 1)
    assert not [e for e in logged_events("acme") if e.action == "member.offboarded"]


def test_offboarding_ends_many_sessions(api):
    alice = _admin(api)
    api.login(user="bob")
    started = clock.now()
    for _ in range(150):
        Session.of_member(
            lifecycle.new_session_id(started),
            org_id="acme",
            token_hash="x",
            state="active",
            user_id="bob",
            created_at=started,
            expires_at=started + timedelta(hours=1),
            ttl=started + timedelta(hours=2),
        ).save()
    assert api.call("DELETE", "/org/members/bob", token=alice.token).status == 204
    assert not [session for session in org_sessions("acme") if session.user_id == "bob"]


def test_offboarding_a_member_with_many_keys_deletes_every_pass_issued_to_them(api):
    """45 keys (the most docs/configuration.md allows) with their claims, the member, the
    counters and the audit event leave room for few passes in the offboarding's transaction:
    the rest go right after it. A pass outliving its member would let whoever signs in next under
    that ID enrol."""
    alice = _admin(api)
    api.login(user="bob")
    for number in range(45):
        store_key("acme", "bob", f"k{number:02d}")
    Member("acme", "bob").update(actions=[Member.key_count.set(45)])
    for _ in range(12):
        assert api.call("POST", "/org/members/bob/enrollment-passes", token=alice.token, body={}).status == 201

    assert api.call("DELETE", "/org/members/bob", token=alice.token).status == 204

    assert not list(EnrollmentPass.by_member.query("acme", EnrollmentPass.user_id == "bob", consistent_read=True))
    assert not [key for key in SecurityKey.query("acme", consistent_read=True) if key.user_id == "bob"]
    api.login(user="bob")  # starts over, as a new member
    assert api.call("GET", "/org/members/bob/enrollment-passes", token=alice.token).body["enrollment_passes"] == []


# --- the enforcement reason survives clean-up -------------------------------------------------


def test_a_deleted_sessions_token_still_says_it_was_ended_by_enforcement(api, stream):
    alice = _admin(api)
    bob = api.login(user="bob")
    _enforce(api, alice)
    stream.drain()
    with pytest.raises(Session.DoesNotExist):
        Session.get(lifecycle_session_id(bob.token), consistent_read=True)
    assert api.call("GET", "/me", token=bob.token).code == "SessionEndedByEnforcement"
    # Still after MFA is relaxed again.
    assert api.call("PUT", "/org/mfa", token=alice.token, body={"enforced": False}).status == 200
    assert api.call("GET", "/me", token=bob.token).code == "SessionEndedByEnforcement"
    # A session ended otherwise, after the enforcement, is just gone.
    later = api.login(user="bob")
    assert api.call("POST", "/auth/logout", token=later.token).status == 204
    assert api.call("GET", "/me", token=later.token).code == "InvalidToken"


def test_session_ids_carry_their_creation_time():
    started = clock.now()
    session_id = lifecycle.new_session_id(started)
    assert len(session_id) == 22
    assert abs((lifecycle.started_at(session_id) - started).total_seconds()) < 0.002


# --- organizations bound to their IdP ---------------------------------------------------------

OTHER_ISSUER = "https://idp.other.example"


@pytest.fixture
def two_idps(monkeypatch):
    """The deployment's IdP serves acme; a second IdP serves globex (configuration binds both)."""
    other = DevIdentityProvider.ephemeral()
    config = settings()
    first = dataclasses.replace(config.identity_providers[0], organizations=frozenset({"acme"}))
    second = dataclasses.replace(
        first, issuer=OTHER_ISSUER, jwks_json=other.jwks_json(), organizations=frozenset({"globex"})
    )
    monkeypatch.setattr(tenancy, "settings", lambda: dataclasses.replace(config, identity_providers=(first, second)))
    return other


def test_each_idp_signs_in_to_its_own_organizations_only(api, idp, two_idps):
    assert api.login(org="acme", user="bob").state == "active"
    globex = two_idps.mint(org="globex", user="gina", admin=True, issuer=OTHER_ISSUER)
    assert api.call("POST", "/auth/login", body={"id_token": globex}).status == 200
    # The other IdP naming acme, and acme's IdP naming globex, are refused.
    for token in (
        two_idps.mint(org="acme", user="bob", admin=True, issuer=OTHER_ISSUER),
        idp.mint(org="globex", user="gina", admin=True),
    ):
        reply = api.call("POST", "/auth/login", body={"id_token": token})
        assert (reply.status, reply.code) == (401, "WrongIdentityProvider")
    assert [m.user_id for m in Member.query("globex", consistent_read=True)] == ["gina"]


def test_an_organization_is_bound_to_the_issuer_of_its_first_login(api, monkeypatch):
    other = DevIdentityProvider.ephemeral()
    config = settings()
    second = dataclasses.replace(config.identity_providers[0], issuer=OTHER_ISSUER, jwks_json=other.jwks_json())
    monkeypatch.setattr(
        tenancy,
        "settings",
        lambda: dataclasses.replace(config, identity_providers=(config.identity_providers[0], second)),
    )
    assert api.login(org="initech", user="peter").state == "active"
    assert Organization.get("initech").issuer == config.identity_providers[0].issuer
    reply = api.call(
        "POST", "/auth/login", body={"id_token": other.mint(org="initech", user="peter", issuer=OTHER_ISSUER)}
    )
    assert (reply.status, reply.code) == (401, "WrongIdentityProvider")


def test_with_operator_creation_an_unknown_organization_is_refused_until_created(api, monkeypatch):
    config = settings()
    monkeypatch.setattr(tenancy, "settings", lambda: dataclasses.replace(config, org_creation="operator"))
    reply = api.login_reply(org="newco", user="nina")
    assert (reply.status, reply.code) == (401, "UnknownOrganization")
    with pytest.raises(Organization.DoesNotExist):
        Organization.get("newco", consistent_read=True)
    from keyward.__main__ import main

    assert main(["org", "create", "newco"]) == 0
    assert main(["org", "create", "newco"]) == 1
    assert api.login(org="newco", user="nina").state == "active"
    assert Organization.get("newco", consistent_read=True).members_total == 1
