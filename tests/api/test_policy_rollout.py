"""Rolling out an authenticator policy: the dry run names whom it affects, a change may apply to
new registrations only, and a member whose keys stopped counting learns which rule each fails."""

from __future__ import annotations

import pytest

from chalicelib.base.models import Organization
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator

DEVICE_BOUND = {"device_bound_only": True}

# The tests' organizations hold no backup credentials: enforcing says it knows.
ENFORCE_KNOWINGLY = {"enforced": True, "without_backup_credentials": True}


def _admin_with(api, authenticator: SoftwareAuthenticator):
    first = api.login(user="alice", admin=True)
    assert api.add_key(first, authenticator, name="Alice's passkey").status == 201
    return api.mfa_login(org="acme", user="alice", authenticator=authenticator, admin=True)


def _member_with(api, user: str, *authenticators: SoftwareAuthenticator):
    member = api.login(user=user)
    for number, authenticator in enumerate(authenticators):
        assert api.add_key(member, authenticator, name=f"{user} key {number}").status == 201
    return member


def _synced() -> SoftwareAuthenticator:
    return SoftwareAuthenticator(backup_eligible=True, backed_up=True)


def _dry_run(api, admin, body, query=""):
    reply = api.call("PUT", f"/org/mfa/policy?dry_run=true{query}", token=admin.token, body=body)
    assert reply.status == 200, reply.body
    return reply.body["impact"]


def test_the_dry_run_names_the_affected_members_their_failing_keys_and_the_caller(api):
    admin = _admin_with(api, _synced())
    _member_with(api, "bob", _synced())
    _member_with(api, "carol", SoftwareAuthenticator())
    _member_with(api, "dave", _synced(), SoftwareAuthenticator())

    impact = _dry_run(api, admin, DEVICE_BOUND)

    assert (impact["keys_total"], impact["keys_noncompliant"]) == (5, 3)
    assert (impact["members_with_keys"], impact["members_noncompliant"], impact["members_affected"]) == (4, 2, 3)
    assert impact["includes_you"] is True
    assert impact["affected_next"] is None
    assert [(m["user_id"], m["name"], m["keeps_a_key"]) for m in impact["affected"]] == [
        ("alice", "Alice", False),
        ("bob", "Bob", False),
        ("dave", "Dave", True),
    ]
    assert impact["affected"][0]["keys"][0]["name"] == "Alice's passkey"
    assert impact["affected"][0]["keys"][0]["shortfalls"] == ["SyncedCredentialNotAllowed"]
    assert [k["name"] for k in impact["affected"][2]["keys"]] == ["dave key 0"]
    assert Organization.get("acme", consistent_read=True).authenticator_policy is None


def test_the_dry_run_pages_the_affected_members_with_a_cursor(api):
    admin = _admin_with(api, SoftwareAuthenticator())
    for user in ("bob", "carol", "dave"):
        _member_with(api, user, _synced())

    first = _dry_run(api, admin, DEVICE_BOUND, "&limit=2")
    assert [m["user_id"] for m in first["affected"]] == ["bob", "carol"]
    assert first["includes_you"] is False
    assert first["members_noncompliant"] == 3  # the counts are the whole organization's, on every page
    second = _dry_run(api, admin, DEVICE_BOUND, f"&limit=2&next={first['affected_next']}")
    assert [m["user_id"] for m in second["affected"]] == ["dave"]
    assert second["affected_next"] is None

    refused = api.call("PUT", "/org/mfa/policy?dry_run=true&next=nonsense", token=admin.token, body=DEVICE_BOUND)
    assert (refused.status, refused.code) == (400, "InvalidCursor")


def test_applied_to_new_registrations_old_keys_keep_counting_and_new_ones_must_comply(api, stream):
    passkey = _synced()
    admin = _admin_with(api, passkey)
    assert api.call("PUT", "/org/mfa", token=admin.token, body=ENFORCE_KNOWINGLY).status == 200
    admin = api.mfa_login(org="acme", user="alice", authenticator=passkey, admin=True)

    preview = _dry_run(api, admin, {**DEVICE_BOUND, "applies_to": "new_registrations"})
    assert (preview["keys_noncompliant"], preview["affected"], preview["includes_you"]) == (0, [], False)
    reply = api.call(
        "PUT", "/org/mfa/policy", token=admin.token, body={**DEVICE_BOUND, "applies_to": "new_registrations"}
    )
    assert reply.status == 200, reply.body
    assert reply.body["saved"] is True
    assert reply.body["policy"]["applies_to"] == "new_registrations"
    assert reply.body["policy"]["earlier"]["device_bound_only"] is False
    assert reply.body["impact"]["keys_noncompliant"] == 0

    # Her synced passkey, registered before, still passes the MFA check and still counts.
    admin = api.mfa_login(org="acme", user="alice", authenticator=passkey, admin=True)
    assert admin.state == "active"
    [key] = api.call("GET", "/me/mfa/keys", token=admin.token).body["keys"]
    assert (key["policy_compliant"], key["policy_shortfalls"]) == (True, [])
    assert stream.drain()
    assert api.call("GET", "/org/mfa", token=admin.token).body["members_compliant"] == 1

    # A synced passkey registered from now on is refused; a device-bound key is accepted.
    bob = api.login(user="bob")
    assert api.add_key(bob, _synced()).code == "SyncedCredentialNotAllowed"
    assert api.add_key(bob, SoftwareAuthenticator()).status == 201

    [event] = [e for e in logged_events("acme") if e.action == "policy.changed"]
    assert event.details["applies_to"] == "new_registrations"
    assert event.details["after"]["device_bound_only"] is True


def test_applied_to_all_keys_an_old_key_stops_counting_as_before(api):
    passkey = _synced()
    admin = _admin_with(api, passkey)
    reply = api.call("PUT", "/org/mfa/policy", token=admin.token, body={**DEVICE_BOUND, "applies_to": "all_keys"})
    assert reply.status == 200 and reply.body["policy"]["applies_to"] == "all_keys"
    assert "earlier" not in reply.body["policy"]
    assert reply.body["impact"]["includes_you"] is True
    [event] = [e for e in logged_events("acme") if e.action == "policy.changed"]
    assert event.details["applies_to"] == "all_keys"
    admin = api.mfa_login(org="acme", user="alice", authenticator=passkey, admin=True)
    [key] = api.call("GET", "/me/mfa/keys", token=admin.token).body["keys"]
    assert (key["policy_compliant"], key["policy_shortfalls"]) == (False, ["SyncedCredentialNotAllowed"])


def test_applying_the_same_rules_to_all_keys_ends_what_older_keys_were_spared(api):
    admin = _admin_with(api, SoftwareAuthenticator())
    bob = _member_with(api, "bob", _synced())
    body = {**DEVICE_BOUND, "applies_to": "new_registrations"}
    assert api.call("PUT", "/org/mfa/policy", token=admin.token, body=body).status == 200
    assert api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"][0]["policy_compliant"] is True
    again = api.call("PUT", "/org/mfa/policy", token=admin.token, body=body)
    assert again.body["saved"] is False  # the same rules for new keys only change nothing
    assert api.call("PUT", "/org/mfa/policy", token=admin.token, body=DEVICE_BOUND).body["saved"] is True
    assert api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"][0]["policy_compliant"] is False


def test_a_member_whose_keys_stopped_counting_is_told_which_rule_each_fails_and_what_counts(api):
    admin = _admin_with(api, SoftwareAuthenticator())
    passkey = _synced()
    _member_with(api, "bob", passkey)
    assert api.call("PUT", "/org/mfa", token=admin.token, body=ENFORCE_KNOWINGLY).status == 200
    admin = api.mfa_login(org="acme", user="alice", authenticator=admin.authenticators[0], admin=True)
    assert api.call("PUT", "/org/mfa/policy", token=admin.token, body=DEVICE_BOUND).status == 200

    bob = api.mfa_login(org="acme", user="bob", authenticator=passkey)
    assert bob.state == "registration_required"
    told = api.call("GET", "/me", token=bob.token).body["key_policy"]
    assert told["keys_to_replace"] == [
        {"id": told["keys_to_replace"][0]["id"], "name": "bob key 0", "shortfalls": ["SyncedCredentialNotAllowed"]}
    ]
    assert told["accepted"]["device_bound_only"] is True
    # A member whose keys count is not told to replace any.
    assert api.call("GET", "/me", token=admin.token).body["key_policy"]["keys_to_replace"] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**DEVICE_BOUND, "applies_to": "tomorrow"}, "'applies_to'"),
        ({**DEVICE_BOUND, "applies_to": None}, "'applies_to'"),
    ],
)
def test_a_mode_keyward_does_not_offer_is_refused(api, body, message):
    admin = _admin_with(api, SoftwareAuthenticator())
    reply = api.call("PUT", "/org/mfa/policy", token=admin.token, body=body)
    assert (reply.status, reply.code) == (400, "InvalidPolicy"), reply.body
    assert message in reply.body["Message"]
    assert Organization.get("acme", consistent_read=True).authenticator_policy is None


def test_new_registrations_only_keeps_a_bounded_number_of_earlier_policies(api):
    admin = _admin_with(api, SoftwareAuthenticator())
    rules = [{"user_verification": value} for value in ("preferred", "discouraged")] * 3
    replies = [
        api.call("PUT", "/org/mfa/policy", token=admin.token, body={**body, "applies_to": "new_registrations"})
        for body in rules
    ]
    assert [r.status for r in replies[:4]] == [200] * 4
    assert (replies[4].status, replies[4].code) == (400, "InvalidPolicy")
    assert api.call("PUT", "/org/mfa/policy", token=admin.token, body={"user_verification": "preferred"}).status == 200
