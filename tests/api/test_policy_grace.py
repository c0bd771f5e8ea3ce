"""A policy change's grace period: keys a stricter policy stops counting keep counting — for the MFA
check, step-up and compliance — until the period ends, and from then on do not, decided when each
request is made (no job runs at the end), with a controlled clock (``chalicelib.base.clock.now``)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from chalicelib.base import clock
from chalicelib.base.models import Organization
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import KeywardClient, Member

DEVICE_BOUND = {"device_bound_only": True}
ENFORCE_KNOWINGLY = {"enforced": True, "without_backup_credentials": True}


class Clock:
    """keyward's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = clock.now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def time(monkeypatch: pytest.MonkeyPatch) -> Clock:
    controlled = Clock()
    monkeypatch.setattr(clock, "now", controlled)
    return controlled


def _synced() -> SoftwareAuthenticator:
    return SoftwareAuthenticator(backup_eligible=True, backed_up=True)


def _enforcing_org(api: KeywardClient) -> tuple[SoftwareAuthenticator, SoftwareAuthenticator]:
    """Alice (admin, a device-bound key) and Bob (a synced passkey), under enforcement."""
    alice_key, bob_key = SoftwareAuthenticator(), _synced()
    alice = api.login(user="alice", admin=True)
    assert api.add_key(alice, alice_key, name="Alice's key").status == 201
    bob = api.login(user="bob")
    assert api.add_key(bob, bob_key, name="Bob's passkey").status == 201
    alice = api.mfa_login(org="acme", user="alice", authenticator=alice_key, admin=True)
    assert api.call("PUT", "/org/mfa", token=alice.token, body=ENFORCE_KNOWINGLY).status == 200
    return alice_key, bob_key


def _admin(api: KeywardClient, key: SoftwareAuthenticator, time: Clock) -> Member:
    """Alice signed in, a moment after the keys were registered (the test's clock stands still)."""
    time.advance(timedelta(seconds=1))
    return api.mfa_login(org="acme", user="alice", authenticator=key, admin=True)


def _step_up(api: KeywardClient, member: Member, authenticator: SoftwareAuthenticator) -> tuple[int, str | None]:
    options = api.call("POST", "/auth/reauth/options", token=member.token)
    assert options.status == 200, options.body
    reply = api.call(
        "POST",
        "/auth/reauth/verify",
        token=member.token,
        body={
            "challenge_id": options.body["challenge_id"],
            "credential": authenticator.authenticate(options.body["publicKey"]),
        },
    )
    return reply.status, reply.code


def test_a_key_a_stricter_policy_stops_counting_counts_until_the_grace_period_ends(api, stream, time):
    alice_key, bob_key = _enforcing_org(api)
    alice = _admin(api, alice_key, time)
    due = clock.iso(time.now + timedelta(hours=24))

    preview = api.call(
        "PUT", "/org/mfa/policy?dry_run=true", token=alice.token, body={**DEVICE_BOUND, "grace_period_hours": 24}
    ).body["impact"]
    assert (preview["grace_until"], preview["members_spared"], preview["members_noncompliant"]) == (due, 1, 1)
    assert preview["affected"][0]["keys"][0]["counts_until"] == due
    reply = api.call("PUT", "/org/mfa/policy", token=alice.token, body={**DEVICE_BOUND, "grace_period_hours": 24})
    assert reply.status == 200, reply.body
    assert (reply.body["policy"]["grace_until"], reply.body["policy"]["applies_to"]) == (due, "all_keys")
    assert reply.body["policy"]["earlier"]["device_bound_only"] is False
    [event] = [e for e in logged_events("acme") if e.action == "policy.changed"]
    assert (event.details["grace_period_hours"], event.details["grace_until"]) == (24, due)

    # During the period Bob's passkey passes the MFA check and step-up, and counts.
    bob = api.mfa_login(org="acme", user="bob", authenticator=bob_key)
    assert bob.state == "active"
    assert _step_up(api, bob, bob_key) == (200, None)
    told = api.call("GET", "/me", token=bob.token).body["key_policy"]
    assert told["keys_spared"] == {
        "until": due,
        "keeps_a_key": False,
        "keys": [
            {
                "id": told["keys_spared"]["keys"][0]["id"],
                "name": "Bob's passkey",
                "shortfalls": ["SyncedCredentialNotAllowed"],
            }
        ],
    }
    [key] = api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"]
    assert (key["policy_compliant"], key["counts_until"]) == (False, due)
    # The admin's list of the keys that fall short has it, with when it stops counting.
    [short] = api.call("GET", "/org/mfa/keys?compliant=false", token=alice.token).body["keys"]
    assert (short["id"], short["policy_compliant"], short["counts_until"]) == (key["id"], False, due)
    assert api.call("GET", "/me", token=alice.token).body["key_policy"]["keys_spared"] is None
    assert stream.drain()
    figures = api.call("GET", "/org/mfa", token=alice.token).body
    assert figures["members_compliant"] == 2
    # Counted apart by the recount, Bob is still told.
    assert api.call("GET", "/me", token=bob.token).body["key_policy"]["keys_spared"]["until"] == due

    # From the end on, the new policy applies fully: nothing ran in between.
    time.advance(timedelta(hours=24))
    assert not stream.drain()
    alice = _admin(api, alice_key, time)
    assert api.call("GET", "/org/mfa", token=alice.token).body["members_compliant"] == 1
    bob = api.mfa_login(org="acme", user="bob", authenticator=bob_key)
    assert bob.state == "registration_required"
    told = api.call("GET", "/me", token=bob.token).body["key_policy"]
    assert told["keys_spared"] is None
    assert told["keys_to_replace"][0]["shortfalls"] == ["SyncedCredentialNotAllowed"]


def test_a_session_verified_during_the_period_lapses_at_its_end(api, time):
    alice_key, bob_key = _enforcing_org(api)
    alice = _admin(api, alice_key, time)
    assert (
        api.call("PUT", "/org/mfa/policy", token=alice.token, body={**DEVICE_BOUND, "grace_period_hours": 1}).status
        == 200
    )
    bob = api.mfa_login(org="acme", user="bob", authenticator=bob_key)
    [key] = api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"]

    time.advance(timedelta(minutes=59))
    renamed = api.call("PATCH", f"/me/mfa/keys/{key['id']}", token=bob.token, body={"name": "Still mine"})
    assert renamed.status == 200, renamed.body

    time.advance(timedelta(minutes=1))
    refused = api.call("PATCH", f"/me/mfa/keys/{key['id']}", token=bob.token, body={"name": "Too late"})
    assert (refused.status, refused.code) == (403, "ReauthenticationRequired")
    assert _step_up(api, bob, bob_key) == (403, "AuthenticatorNotAllowed")
    assert api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"][0]["name"] == "Still mine"


def test_a_member_who_holds_a_complying_key_too_keeps_counting_after_the_period(api, stream, time):
    alice_key = SoftwareAuthenticator()
    alice = api.login(user="alice", admin=True)
    assert api.add_key(alice, alice_key).status == 201
    assert api.add_key(alice, _synced(), name="Alice's passkey").status == 201
    alice = _admin(api, alice_key, time)
    reply = api.call("PUT", "/org/mfa/policy", token=alice.token, body={**DEVICE_BOUND, "grace_period_hours": 2})
    assert reply.body["impact"]["members_spared"] == 0  # another key of hers counts
    assert stream.drain()
    assert api.call("GET", "/org/mfa", token=alice.token).body["members_compliant"] == 1
    time.advance(timedelta(hours=3))
    alice = _admin(api, alice_key, time)
    assert api.call("GET", "/org/mfa", token=alice.token).body["members_compliant"] == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({**DEVICE_BOUND, "grace_period_hours": -1}, 400, "InvalidGracePeriod"),
        ({**DEVICE_BOUND, "grace_period_hours": 721}, 400, "InvalidGracePeriod"),
        ({**DEVICE_BOUND, "grace_period_hours": "24"}, 400, "InvalidGracePeriod"),
        ({**DEVICE_BOUND, "grace_period_hours": 1.5}, 400, "InvalidGracePeriod"),
        ({**DEVICE_BOUND, "grace_period_hours": True}, 400, "InvalidGracePeriod"),
        (
            {**DEVICE_BOUND, "grace_period_hours": 24, "applies_to": "new_registrations"},
            409,
            "GracePeriodNotApplicable",
        ),
        ({"grace_period_hours": 24}, 409, "GracePeriodNotApplicable"),
        ({"user_verification": "required", "grace_period_hours": 24}, 409, "GracePeriodNotApplicable"),
    ],
)
@pytest.mark.parametrize("dry_run", ["true", "false"])
def test_a_grace_period_out_of_bounds_or_without_a_stricter_policy_is_refused(api, time, body, status, code, dry_run):
    alice_key = SoftwareAuthenticator()
    alice = api.login(user="alice", admin=True)
    assert api.add_key(alice, alice_key).status == 201
    alice = _admin(api, alice_key, time)

    reply = api.call("PUT", f"/org/mfa/policy?dry_run={dry_run}", token=alice.token, body=body)

    assert (reply.status, reply.code) == (status, code), reply.body
    org = Organization.get("acme", consistent_read=True)
    assert (org.authenticator_policy, org.compliance_version) == (None, None)
    assert not [e for e in logged_events("acme") if e.action == "policy.changed"]


def test_a_policy_only_loosening_a_rule_takes_no_grace_period(api, time):
    alice_key = SoftwareAuthenticator()
    alice = api.login(user="alice", admin=True)
    assert api.add_key(alice, alice_key).status == 201
    alice = _admin(api, alice_key, time)
    assert api.call("PUT", "/org/mfa/policy", token=alice.token, body=DEVICE_BOUND).status == 200
    version = Organization.get("acme", consistent_read=True).authenticator_policy["version"]

    reply = api.call("PUT", "/org/mfa/policy", token=alice.token, body={"grace_period_hours": 24})

    assert (reply.status, reply.code) == (409, "GracePeriodNotApplicable")
    assert Organization.get("acme", consistent_read=True).authenticator_policy["version"] == version


def test_a_grace_period_that_ended_keeps_no_earlier_policy_in_the_next_change(api, time):
    alice_key = SoftwareAuthenticator()
    alice = api.login(user="alice", admin=True)
    assert api.add_key(alice, alice_key).status == 201
    alice = _admin(api, alice_key, time)
    denied = [str(uuid.UUID(int=n)) for n in range(1, 8)]
    # Each change denies one more model with a day's grace, after the last period ended: the
    # organization item keeps only the policy the running period needs.
    for number in range(1, len(denied) + 1):
        body = {"denied_aaguids": denied[:number], "grace_period_hours": 24}
        reply = api.call("PUT", "/org/mfa/policy", token=alice.token, body=body)
        assert reply.status == 200, reply.body
        time.advance(timedelta(hours=25))
        alice = _admin(api, alice_key, time)
    stored = Organization.get("acme", consistent_read=True).authenticator_policy.as_dict()
    assert stored["earlier"]["denied_aaguids"] == denied[:-1]
    assert "earlier" not in stored["earlier"]
