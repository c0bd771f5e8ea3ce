"""Enforcing MFA: the PUT, the request-time rule, and the stream function that ends sessions in bulk."""

from __future__ import annotations

import logging

import boto3
import pytest

from app import end_sessions_on_enforcement
from chalicelib.base.config import settings
from chalicelib.base.models import Organization
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.sessions import org_sessions


def _session_ids(org="acme") -> set[str]:
    return {s.session_id for s in org_sessions(org)}


def _session_id(member) -> str:
    return member.token.split(".")[3]


def _enforce(api, admin, enforced=True):
    """Enforce (knowingly, in an organization without backup credentials) or relax."""
    body = {"enforced": True, "without_backup_credentials": True} if enforced else {"enforced": False}
    return api.call("PUT", "/org/mfa", token=admin.token, body=body)


def test_enforcing_records_who_when_and_from_which_session(api, admin):
    reply = _enforce(api, admin)

    assert reply.status == 200, reply.body
    assert reply.body["enforced"] is True
    assert reply.body["enforced_by"] == "alice"
    assert reply.body["enforced_at"].endswith("Z")
    assert reply.body["invalidation"]["state"] == "running"
    org = Organization.get("acme")
    assert org.enforcing_session_id == _session_id(admin)
    assert org.enforcement_generation == 1


def test_an_admin_without_a_key_cannot_enforce(api):
    alice = api.login(user="alice", admin=True)
    reply = _enforce(api, alice)
    assert (reply.status, reply.code) == (409, "SecurityKeyRequired")
    assert Organization.get("acme").mfa_enforced is False


def test_a_refused_enforcement_leaves_the_stream_to_the_next_accepted_one(api, stream):
    """A cancelled transaction writes no stream record, and the stream goes on after it."""
    keyless = api.login(org="other", user="carol", admin=True)
    alice, bob = api.login(user="alice", admin=True), api.login(user="bob")
    assert api.add_key(alice, SoftwareAuthenticator()).status == 201
    stream.drain()

    assert _enforce(api, keyless).code == "SecurityKeyRequired"
    assert stream.drain() == 0
    assert _enforce(api, alice).status == 200
    stream.drain()

    assert _session_id(bob) not in _session_ids()
    assert Organization.get("acme").invalidation.state == "done"


def test_members_cannot_read_or_change_the_setting(api, admin):
    bob = api.login(user="bob")
    for method, body in (("GET", None), ("PUT", {"enforced": True, "without_backup_credentials": True})):
        reply = api.call(method, "/org/mfa", token=bob.token, body=body)
        assert (reply.status, reply.code) == (403, "AdminRequired")
    assert Organization.get("acme").mfa_enforced is False


@pytest.mark.parametrize(
    "body",
    [
        {"enforced": "yes"},
        {"enforced": 1},
        {},
        {"enforced": True, "without_backup_credentials": True, "enforced_by": "x"},
    ],
)
def test_a_malformed_setting_is_refused(api, admin, body):
    reply = api.call("PUT", "/org/mfa", token=admin.token, body=body)
    assert (reply.status, reply.code) == (400, "MalformedRequest")
    assert Organization.get("acme").mfa_enforced is False


def test_from_the_moment_it_returns_other_sessions_are_refused_and_the_callers_goes_on(api, admin):
    bob, alices_laptop = api.login(user="bob"), api.login(user="alice", admin=True)
    assert _enforce(api, admin).status == 200

    for member in (bob, alices_laptop):
        reply = api.call("GET", "/me", token=member.token)
        assert (reply.status, reply.code) == (401, "SessionEndedByEnforcement")
    assert api.call("GET", "/org/mfa", token=admin.token).status == 200


def test_the_stream_function_deletes_the_ended_sessions_sparing_the_enforcing_one(api, admin, stream):
    others = [api.login(user=f"user{i}") for i in range(30)]
    assert len(_session_ids()) > len(others)

    _enforce(api, admin)
    stream.drain()

    assert _session_ids() == {_session_id(admin)}
    status = api.call("GET", "/org/mfa", token=admin.token).body["invalidation"]
    # alice's first session, in which she registered her key, ended too.
    assert status["state"] == "done"
    assert status["sessions_ended"] == len(others) + 1
    assert status["finished_at"] is not None
    assert all(api.call("GET", "/me", token=m.token).status == 401 for m in others[:3])


def test_sessions_started_after_the_enforcement_survive_the_clean_up(api, admin, stream):
    api.login(user="bob")
    _enforce(api, admin)
    carol = api.login(user="carol")
    assert carol.state == "registration_required"
    stream.drain()
    assert api.call("GET", "/me", token=carol.token).status == 200


def test_relaxing_ends_no_session_and_enforcing_again_is_a_new_enforcement(api, admin, stream):
    _enforce(api, admin)
    stream.drain()
    bob = api.login(user="bob")

    relaxed = _enforce(api, admin, enforced=False)
    assert relaxed.status == 200
    assert relaxed.body["enforced"] is False
    stream.drain()
    assert api.call("GET", "/me", token=bob.token).status == 200
    assert api.login(user="carol").state == "active"

    again = _enforce(api, admin)
    assert again.body["enforced"] is True
    assert Organization.get("acme").enforcement_generation == 2
    assert api.call("GET", "/me", token=bob.token).code == "SessionEndedByEnforcement"
    stream.drain()
    assert _session_ids() == {_session_id(admin)}


def test_enforcing_twice_is_one_enforcement(api, admin, stream):
    _enforce(api, admin)
    bob = api.login(user="bob")
    assert _enforce(api, admin).status == 200
    assert Organization.get("acme").enforcement_generation == 1
    assert api.call("GET", "/me", token=bob.token).status == 200


def test_an_operator_enforcing_in_the_console_ends_every_session(api, admin, stream):
    bob = api.login(user="bob")
    Organization("acme").update(actions=[Organization.mfa_enforced.set(True)])  # outside the API

    assert api.call("GET", "/me", token=bob.token).code == "SessionEndedByEnforcement"
    stream.drain()

    assert _session_ids() == set()
    org = Organization.get("acme")
    assert (org.enforced_by, org.enforcement_generation, org.invalidation.state) == ("operator", 1, "done")
    alice = api.mfa_login(org="acme", user="alice", authenticator=admin.authenticators[0], admin=True)
    shown = api.call("GET", "/org/mfa", token=alice.token).body
    assert (shown["enforced"], shown["enforced_by"]) == (True, "operator")


def _operator_sets_flag(value: dict, org: str = "acme") -> None:
    """An operator editing the organization's item in the AWS console: only the flag changes."""
    boto3.client("dynamodb", endpoint_url=settings().dynamodb_endpoint, region_name=settings().region).update_item(
        TableName=settings().tables.orgs,
        Key={"org_id": {"S": org}},
        UpdateExpression="SET mfa_enforced = :flag",
        ExpressionAttributeValues={":flag": value},
    )


class _Plenty:
    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def test_an_operators_re_flip_after_an_api_enforcement_is_an_enforcement_too(api, admin, stream):
    assert _enforce(api, admin).status == 200
    stream.drain()
    _operator_sets_flag({"BOOL": False})
    stream.drain()
    bob = api.login(user="bob")
    assert bob.state == "active"  # keyless, and the organization no longer enforces MFA

    _operator_sets_flag({"BOOL": True})
    # At once, before the stream function has run: bob's session started without enforcement.
    assert api.call("GET", "/me", token=bob.token).code == "SessionEndedByEnforcement"
    stream.drain()

    assert _session_ids() == set()  # no enforcing session to spare: alice's ended too
    org = Organization.get("acme", consistent_read=True)
    assert (org.enforced_by, org.enforcement_generation) == ("operator", 2)
    assert (org.invalidation.generation, org.invalidation.state, org.invalidation.sessions_ended) == (2, "done", 2)
    again = api.login(user="bob")
    assert again.state == "registration_required"


def test_a_session_started_under_enforcement_survives_until_a_re_flip_is_recorded(api, admin, stream):
    """A session that started while MFA was enforced, across an operator's off and on, ends
    once the stream function records the switch on."""
    assert _enforce(api, admin).status == 200
    stream.drain()
    carol = api.login(user="carol")
    assert carol.state == "registration_required"
    _operator_sets_flag({"BOOL": False})
    _operator_sets_flag({"BOOL": True})
    stream.drain()
    assert api.call("GET", "/me", token=carol.token).code in ("SessionEndedByEnforcement", "InvalidToken")
    assert _session_id(carol) not in _session_ids()


def test_a_redelivered_re_flip_is_recorded_once(api, admin, stream):
    _operator_sets_flag({"BOOL": True})
    flip = {
        "dynamodb": {
            "SequenceNumber": "1",
            "OldImage": {
                "org_id": {"S": "acme"},
                "mfa_enforced": {"BOOL": False},
                "enforcement_generation": {"N": "0"},
            },
            "NewImage": {"org_id": {"S": "acme"}, "mfa_enforced": {"BOOL": True}, "enforcement_generation": {"N": "0"}},
        }
    }
    for _ in range(2):
        assert end_sessions_on_enforcement({"Records": [flip]}, _Plenty()) == {"batchItemFailures": []}
    assert Organization.get("acme", consistent_read=True).enforcement_generation == 1


def test_a_flag_of_the_wrong_type_fails_its_record_and_reads_as_enforced(api, admin, caplog):
    bob = api.login(user="bob")
    assert bob.state == "active"
    _operator_sets_flag({"S": "true"})
    typo = {
        "dynamodb": {
            "SequenceNumber": "42",
            "OldImage": {"org_id": {"S": "acme"}, "mfa_enforced": {"BOOL": False}},
            "NewImage": {"org_id": {"S": "acme"}, "mfa_enforced": {"S": "true"}},
        }
    }

    with caplog.at_level(logging.ERROR, logger="keyward"):
        reply = end_sessions_on_enforcement({"Records": [typo]}, _Plenty())

    # Failed, so Lambda retries it and then sends it to the dead-letter queue; and logged.
    assert reply == {"batchItemFailures": [{"itemIdentifier": "42"}]}
    [logged] = [record for record in caplog.records if "42" in record.getMessage()]
    assert logged.levelno == logging.ERROR and "mfa_enforced was set to {'S': 'true'}" in str(logged.exc_info[1])
    # Requests go on, reading the flag as enforced: no 500.
    assert api.call("GET", "/me", token=bob.token).code == "SessionEndedByEnforcement"
    assert api.login(user="bob").state == "registration_required"
    # alice's session started without enforcement too; she signs in again, through MFA.
    assert api.call("GET", "/org/mfa", token=admin.token).code == "SessionEndedByEnforcement"
    alice = api.mfa_login(org="acme", user="alice", authenticator=admin.authenticators[0], admin=True)
    shown = api.call("GET", "/org/mfa", token=alice.token)
    assert (shown.status, shown.body["enforced"]) == (200, True)
    # The flag changing from one malformed value to another is no enforcement either.
    assert Organization.get("acme", consistent_read=True).enforcement_generation == 0


def test_repairing_a_flag_of_the_wrong_type_to_true_is_an_enforcement(api, admin, stream):
    _operator_sets_flag({"S": "true"})
    stream._deliver = lambda records: None  # the malformed record's retries are not this test's
    stream.drain()
    del stream._deliver
    bob_before = api.login(user="bob")

    _operator_sets_flag({"BOOL": True})
    stream.drain()

    org = Organization.get("acme", consistent_read=True)
    assert (org.enforcement_generation, org.enforced_by, org.invalidation.state) == (1, "operator", "done")
    assert _session_id(bob_before) not in _session_ids()


def test_an_admin_repairs_a_flag_of_the_wrong_type_by_relaxing(api, admin):
    _operator_sets_flag({"S": "yes"})
    alice = api.mfa_login(org="acme", user="alice", authenticator=admin.authenticators[0], admin=True)
    relaxed = _enforce(api, alice, enforced=False)
    assert (relaxed.status, relaxed.body["enforced"]) == (200, False), relaxed.body
    assert Organization.get("acme", consistent_read=True).mfa_enforced is False
    assert api.login(user="bob").state == "active"


def test_other_changes_of_the_org_do_not_trigger_a_clean_up(api, admin, stream):
    api.login(user="bob")
    Organization("acme").update(actions=[Organization.enforced_by.set("nobody")])
    stream.drain()
    assert len(_session_ids()) == 3


def test_after_enforcement_members_without_a_key_must_register_and_key_holders_pass_mfa(api, admin):
    bob = api.login(user="bob")
    bobs_key = SoftwareAuthenticator()
    api.add_key(bob, bobs_key)
    _enforce(api, admin)

    assert api.login(user="carol").state == "registration_required"
    assert api.login(user="bob").state == "mfa_required"


# --- PUT /org/mfa decides on the organization read with the session --------------------------------


@pytest.mark.parametrize("enforced_before", [False, True], ids=["enforce", "relax"])
def test_a_change_another_admin_made_after_the_session_was_read_is_refused_and_changes_nothing(api, enforced_before):
    """The answer is built from the organization the session's read brought: the write's own
    conditions must refuse it when the setting moved since, not a second read."""
    from chalicelib.access import sessions
    from chalicelib.base.errors import ConcurrentChange
    from chalicelib.org import enforcement
    from tests.support.keyward_client import enforce_in_table

    key = SoftwareAuthenticator()
    first = api.login(user="alice", admin=True)
    assert api.add_key(first, key).status == 201
    alice = api.mfa_login(org="acme", user="alice", authenticator=key, admin=True)
    if enforced_before:
        assert (
            api.call(
                "PUT", "/org/mfa", token=alice.token, body={"enforced": True, "without_backup_credentials": True}
            ).status
            == 200
        )
    stale = sessions.resolve(authorization=f"Bearer {alice.token}")
    # Meanwhile another admin made the change this one is about to make (and, to relax, undid it).
    if enforced_before:
        Organization("acme").update(actions=[Organization.mfa_enforced.set(False)])
    else:
        enforce_in_table("acme")
    moved = Organization.get("acme", consistent_read=True)

    with pytest.raises(ConcurrentChange):
        enforcement.set_enforced(caller=stale, enforced=not enforced_before, without_backup_credentials=True)

    after = Organization.get("acme", consistent_read=True)
    assert (after.mfa_enforced, after.enforcement_generation) == (moved.mfa_enforced, moved.enforcement_generation)


# --- backup credentials: the way back in, asked for before enforcing -----------------------------


def _enforcement_events(api, admin):
    reply = api.call("GET", "/org/audit?action=enforcement.enabled", token=admin.token)
    assert reply.status == 200, reply.body
    return reply.body["events"]


def test_enforcing_without_backup_credentials_is_refused_and_changes_nothing(api, admin, stream):
    bob = api.login(user="bob")
    stream.drain()

    reply = api.call("PUT", "/org/mfa", token=admin.token, body={"enforced": True, "enrollment": "pass_required"})

    assert (reply.status, reply.code) == (409, "BackupCredentialsMissing")
    org = Organization.get("acme", consistent_read=True)
    assert (org.mfa_enforced, org.enforcement_generation, org.enrollment) == (False, 0, None)
    assert stream.drain() == 0
    assert _session_id(bob) in _session_ids()
    assert api.call("GET", "/me", token=bob.token).status == 200
    assert _enforcement_events(api, admin) == []


def test_enforcing_knowingly_without_backup_credentials_is_recorded_in_the_audit_log(api, admin, stream):
    bob = api.login(user="bob")

    reply = api.call(
        "PUT",
        "/org/mfa",
        token=admin.token,
        body={"enforced": True, "grace_period_hours": 24, "without_backup_credentials": True},
    )

    assert reply.status == 200, reply.body
    assert (reply.body["enforced"], reply.body["grace_period_hours"]) == (True, 24)
    assert Organization.get("acme", consistent_read=True).mfa_enforced is True
    [event] = _enforcement_events(api, admin)
    assert event["details"]["without_backup_credentials"] is True
    assert api.call("GET", "/me", token=bob.token).code == "SessionEndedByEnforcement"


def test_an_organization_with_backup_credentials_enforces_without_saying_more(api, admin):
    assert api.call("POST", "/org/backup-credentials", token=admin.token).status == 201

    reply = api.call("PUT", "/org/mfa", token=admin.token, body={"enforced": True})

    assert (reply.status, reply.body["enforced"]) == (200, True)
    [event] = _enforcement_events(api, admin)
    assert "without_backup_credentials" not in event["details"]


def test_deleting_the_last_backup_credentials_brings_the_refusal_back(api, admin):
    created = api.call("POST", "/org/backup-credentials", token=admin.token).body
    assert api.call("DELETE", f"/org/backup-credentials/{created['key_id']}", token=admin.token).status == 204

    reply = api.call("PUT", "/org/mfa", token=admin.token, body={"enforced": True})

    assert (reply.status, reply.code) == (409, "BackupCredentialsMissing")
    assert Organization.get("acme", consistent_read=True).mfa_enforced is False


def test_backup_credentials_deleted_after_the_session_was_read_cannot_slip_through(api, admin):
    """The session's read saw backup credentials; the write's condition sees they are gone."""
    from chalicelib.access import sessions
    from chalicelib.base.errors import ConcurrentChange
    from chalicelib.org import enforcement

    created = api.call("POST", "/org/backup-credentials", token=admin.token).body
    stale = sessions.resolve(authorization=f"Bearer {admin.token}")
    assert api.call("DELETE", f"/org/backup-credentials/{created['key_id']}", token=admin.token).status == 204

    with pytest.raises(ConcurrentChange):
        enforcement.set_enforced(caller=stale, enforced=True)

    assert Organization.get("acme", consistent_read=True).mfa_enforced is False
    assert _enforcement_events(api, admin) == []
    # Asked again, the refusal names the reason.
    assert api.call("PUT", "/org/mfa", token=admin.token, body={"enforced": True}).code == "BackupCredentialsMissing"


def test_an_admin_without_a_key_hears_of_the_key_first(api):
    alice = api.login(user="alice", admin=True)
    reply = api.call("PUT", "/org/mfa", token=alice.token, body={"enforced": True})
    assert (reply.status, reply.code) == (409, "SecurityKeyRequired")


@pytest.mark.parametrize(
    "body",
    [
        {"enforced": True, "without_backup_credentials": "yes"},
        {"enforced": True, "without_backup_credentials": None},
        {"enforced": False, "without_backup_credentials": True},
        {"enrollment": "open", "without_backup_credentials": True},
    ],
)
def test_a_malformed_acknowledgement_is_refused(api, admin, body):
    reply = api.call("PUT", "/org/mfa", token=admin.token, body=body)
    assert (reply.status, reply.code) == (400, "MalformedRequest")
    assert Organization.get("acme", consistent_read=True).mfa_enforced is False
