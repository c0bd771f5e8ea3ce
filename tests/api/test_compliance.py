"""Compliance counted in O(1) under an authenticator policy: each member's figure of compliant
keys and the organization's members_compliant counter, moved by key transactions under the
organization's compliance version, and recounted by the stream function after a policy change."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.access import sessions
from chalicelib.background import recount
from chalicelib.base.errors import AuthenticatorNotAllowed, ConcurrentChange
from chalicelib.base.models import Member, Organization
from chalicelib.ceremony import authenticator_policy
from chalicelib.counters import compliance
from chalicelib.keys import management, registration
from chalicelib.org import policy_change
from tests.support.authenticator import SoftwareAuthenticator

DENIED = "0b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"


def _denied_key() -> SoftwareAuthenticator:
    return SoftwareAuthenticator(aaguid=uuid.UUID(DENIED).bytes)


def _admin(api, org: str = "acme"):
    first = api.login(org=org, user="alice", admin=True)
    assert api.add_key(first, SoftwareAuthenticator()).status == 201
    return api.mfa_login(org=org, user="alice", authenticator=first.authenticators[0], admin=True)


def _deny(api, admin, *aaguids: str) -> None:
    reply = api.call("PUT", "/org/mfa/policy", token=admin.token, body={"denied_aaguids": list(aaguids)})
    assert reply.status == 200, reply.body


def _shown(api, admin) -> tuple[int | None, str]:
    body = api.call("GET", "/org/mfa", token=admin.token).body
    return body["members_compliant"], body["compliance"]["state"]


def _counted_over_the_keys(org_id: str = "acme") -> int:
    """What the counter must say, counted the slow way."""
    org = Organization.get(org_id, consistent_read=True)
    found = policy_change.impact(org_id=org_id, policy=authenticator_policy.of(org))
    return found.members_with_keys - found.members_noncompliant


def _compliant_in_list(api, admin) -> dict[str, bool | None]:
    return {m["id"]: m["compliant"] for m in api.call("GET", "/org/members", token=admin.token).body["members"]}


def test_a_policy_change_is_recounted_before_a_figure_is_shown(api, stream):
    alice = _admin(api)
    bob = api.login(user="bob")
    assert api.add_key(bob, _denied_key(), name="Refused").status == 201
    carol = api.login(user="carol")
    assert api.add_key(carol, SoftwareAuthenticator()).status == 201
    assert _shown(api, alice) == (3, "done")

    _deny(api, alice, DENIED)
    assert _shown(api, alice) == (None, "recounting")
    # The members list does not guess either: bob and carol are being recounted.
    assert _compliant_in_list(api, alice) == {"alice": None, "bob": None, "carol": None}
    assert stream.drain()
    assert _shown(api, alice) == (2, "done") == (_counted_over_the_keys(), "done")
    assert _compliant_in_list(api, alice) == {"alice": True, "bob": False, "carol": True}
    # ?mfa= still filters by how many keys a member holds, whether they comply or not.
    one = api.call("GET", "/org/members?mfa=one", token=alice.token).body["members"]
    assert sorted(m["id"] for m in one) == ["alice", "bob", "carol"]

    # bob registers a key the policy accepts: he counts, from the transaction itself.
    assert api.add_key(bob, SoftwareAuthenticator(), name="Accepted").status == 201
    assert _shown(api, alice) == (3, "done")
    assert _compliant_in_list(api, alice)["bob"] is True
    # Deleting his refused key changes nothing; deleting the accepted one does.
    listed = {k["name"]: k["id"] for k in api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"]}
    assert api.call("DELETE", f"/me/mfa/keys/{listed['Refused']}", token=bob.token).status == 204
    assert _shown(api, alice) == (3, "done")
    assert api.call("DELETE", f"/me/mfa/keys/{listed['Accepted']}", token=bob.token).status == 204
    assert _shown(api, alice) == (2, "done") == (_counted_over_the_keys(), "done")
    # A member with no key counts nowhere, under any version.
    assert _compliant_in_list(api, alice)["bob"] is False


def test_disabling_mfa_an_admin_deletion_and_offboarding_move_the_counter(api, stream):
    alice = _admin(api)
    members = {}
    for user in ("bob", "carol", "dave"):
        members[user] = api.login(user=user)
        assert api.add_key(members[user], SoftwareAuthenticator()).status == 201
        assert api.add_key(members[user], _denied_key(), name="Denied").status == 201
    _deny(api, alice, DENIED)
    assert stream.drain()
    assert _shown(api, alice) == (4, "done")

    assert api.call("DELETE", "/me/mfa", token=members["bob"].token).status == 204
    assert _shown(api, alice) == (3, "done")
    [accepted] = [
        k
        for k in api.call("GET", "/org/mfa/keys?user_id=carol", token=alice.token).body["keys"]
        if k["policy_compliant"]
    ]
    assert api.call("DELETE", f"/org/members/carol/mfa/keys/{accepted['id']}", token=alice.token).status == 204
    assert _shown(api, alice) == (2, "done")
    assert api.call("DELETE", "/org/members/dave", token=alice.token).status == 204
    assert _shown(api, alice) == (1, "done") == (_counted_over_the_keys(), "done")


def test_a_key_change_read_under_the_old_policy_is_refused_and_counts_nothing(api, stream):
    alice = _admin(api)
    bob = api.login(user="bob")
    _deny(api, alice, DENIED)
    assert stream.drain()
    # bob's request reads the organization (its policy and compliance version) with his session...
    options = api.registration_options(bob).body
    submission = registration.parse_submission(
        challenge_id=options["challenge_id"],
        name="Late",
        credential=SoftwareAuthenticator().register(options["publicKey"]),
    )
    caller = sessions.resolve(authorization=f"Bearer {bob.token}", also=registration.submission_reads(submission))
    # ... and the policy changes before his transaction runs.
    _deny(api, alice)
    with pytest.raises(ConcurrentChange):
        registration.register(caller=caller, submission=submission)
    assert Member.get("acme", "bob", consistent_read=True).key_count == 0
    assert stream.drain()
    assert _shown(api, alice) == (1, "done") == (_counted_over_the_keys(), "done")


def test_the_recount_resumes_across_invocations(api, stream):
    alice = _admin(api)
    for n in range(7):
        member = api.login(user=f"m{n}")
        assert api.add_key(member, _denied_key() if n % 2 else SoftwareAuthenticator()).status == 201
    _deny(api, alice, DENIED)

    class OnePage:
        """An invocation with time for one page of members."""

        def __init__(self) -> None:
            self.asked = 0

        def seconds_left(self) -> float:
            self.asked += 1
            return 900.0 if self.asked == 1 else 0.0

    original = recount.PAGE_SIZE
    recount.PAGE_SIZE = 3
    try:
        recount.continue_recount(org_id="acme", deadline=OnePage())
        progress = Organization.get("acme", consistent_read=True).compliance_recount
        assert (progress.state, progress.handoffs, progress.cursor) == ("recounting", 1, "m1")
        assert _shown(api, alice) == (None, "recounting")
        # The handoff's stream record starts the next invocations, until the last page.
        assert stream.drain()
    finally:
        recount.PAGE_SIZE = original
    assert _shown(api, alice) == (5, "done") == (_counted_over_the_keys(), "done")


def test_parallel_registrations_and_deletions_during_a_policy_change_are_counted_right(api, stream):
    alice = _admin(api)
    holders = [api.login(user=f"holder{n}") for n in range(8)]
    for n, holder in enumerate(holders):
        assert api.add_key(holder, _denied_key() if n % 2 else SoftwareAuthenticator()).status == 201
    newcomers = [api.login(user=f"newcomer{n}") for n in range(8)]
    _deny(api, alice, DENIED)
    assert stream.drain()

    def register(n: int, member) -> object:
        authenticator = _denied_key() if n % 2 else SoftwareAuthenticator()
        options = api.registration_options(member).body
        submission = registration.parse_submission(
            challenge_id=options["challenge_id"], name="First", credential=authenticator.register(options["publicKey"])
        )
        return lambda: registration.register(
            caller=sessions.resolve(
                authorization=f"Bearer {member.token}", also=registration.submission_reads(submission)
            ),
            submission=submission,
        )

    def delete(member) -> object:
        [key] = api.call("GET", "/me/mfa/keys", token=member.token).body["keys"]
        return lambda: management.delete(
            caller=sessions.resolve(authorization=f"Bearer {member.token}"), key_id=key["id"]
        )

    def change_policy() -> object:
        # Lifting the deny list: every key complies afterwards.
        return policy_change.change(
            caller=sessions.resolve(authorization=f"Bearer {alice.token}"),
            document={"denied_aaguids": []},
            dry_run=False,
        )

    contenders = [register(n, member) for n, member in enumerate(newcomers)] + [delete(m) for m in holders]
    contenders.insert(len(contenders) // 2, change_policy)
    parallel = 8
    barrier = threading.Barrier(parallel)

    def run(contender) -> object:
        try:
            barrier.wait(timeout=0.5)
        except threading.BrokenBarrierError:
            pass
        try:
            return contender()
        except Exception as error:  # the outcome under test
            return error

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        outcomes = list(pool.map(run, contenders))
    # Deletions do not depend on the policy: they are counted again under the new one. Only a
    # registration checked against the old policy may be refused, as a concurrent change (or, a
    # refused model under the deny list, as not allowed).
    assert not any(isinstance(outcome, Exception) for outcome in outcomes[len(newcomers) :]), outcomes
    refused = [outcome for outcome in outcomes[: len(newcomers)] if isinstance(outcome, Exception)]
    assert all(isinstance(outcome, (ConcurrentChange, AuthenticatorNotAllowed)) for outcome in refused), refused
    assert stream.drain()
    assert _shown(api, alice) == (_counted_over_the_keys(), "done")
    org = Organization.get("acme", consistent_read=True)
    held = sum(1 for m in Member.query("acme", consistent_read=True) if m.key_count > 0)
    assert org.members_with_key == held


def test_a_model_turning_compromised_starts_a_recount(api, stream, monkeypatch):
    alice = _admin(api)
    bob = api.login(user="bob")
    assert api.add_key(bob, SoftwareAuthenticator()).status == 201
    _deny(api, alice, DENIED)
    assert stream.drain()
    version = Organization.get("acme", consistent_read=True).compliance_version
    # Where the policy reads model statuses (attestation required), a status change recounts.
    reply = api.call("PUT", "/org/mfa/policy", token=alice.token, body={"attestation": "required"})
    assert reply.status == 200, reply.body
    assert stream.drain()
    assert _shown(api, alice) == (0, "done") == (_counted_over_the_keys(), "done")
    from chalicelib.background import metadata_refresh

    metadata_refresh._recount_compliance({"acme"})
    assert Organization.get("acme", consistent_read=True).compliance_version == version + 2
    assert _shown(api, alice) == (None, "recounting")
    assert stream.drain()
    assert _shown(api, alice) == (0, "done")


def test_an_organization_that_never_changed_its_policy_keeps_no_figures(api):
    alice = _admin(api)
    bob = api.login(user="bob")
    assert api.add_key(bob, SoftwareAuthenticator()).status == 201
    assert _shown(api, alice) == (2, "done")
    assert Member.get("acme", "bob", consistent_read=True).compliance_version is None
    # A policy saved before figures were kept: nothing to show until an operator's recount.
    Organization("acme").update(
        actions=[Organization.authenticator_policy.set({"denied_aaguids": [DENIED], "version": 1})]
    )
    assert _shown(api, alice) == (None, "uncounted")
    assert compliance.restart(org_id="acme") == 1
    assert _shown(api, alice) == (None, "recounting")


def test_a_policy_an_operator_edits_in_the_table_is_recounted(api, stream):
    alice = _admin(api)
    bob = api.login(user="bob")
    assert api.add_key(bob, _denied_key()).status == 201
    _deny(api, alice, "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")  # another model: both keys count
    assert stream.drain()
    assert _shown(api, alice) == (2, "done")
    # An operator adds bob's model to the deny list directly in DynamoDB: no version moves...
    Organization("acme").update(actions=[Organization.authenticator_policy["denied_aaguids"].set([DENIED])])
    # ... so the stream function, seeing the policy change, starts the recount itself.
    assert stream.drain()
    assert _shown(api, alice) == (1, "done") == (_counted_over_the_keys(), "done")


def test_the_operators_recount_counts_a_policy_saved_before_figures_were_kept(api, stream, capsys):
    from keyward.__main__ import main

    alice = _admin(api)
    bob = api.login(user="bob")
    assert api.add_key(bob, _denied_key()).status == 201
    Organization("acme").update(
        actions=[Organization.authenticator_policy.set({"denied_aaguids": [DENIED], "version": 1})]
    )
    assert _shown(api, alice) == (None, "uncounted")
    assert main(["org", "recount", "acme"]) == 0
    assert "compliance recount started" in capsys.readouterr().out
    assert stream.drain()
    assert _shown(api, alice) == (1, "done") == (_counted_over_the_keys(), "done")
    # Run again once counted, it starts nothing.
    assert main(["org", "recount", "acme"]) == 0
    assert "compliance recount started" not in capsys.readouterr().out
