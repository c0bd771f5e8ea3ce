"""Coverage counters: members and members holding a key, kept on the organization by the same
transactions that create members and change key counts, and each member's bucket."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from chalicelib import clock, coverage, keys, sessions
from chalicelib.models import Member, Organization, Session
from tests.authenticator import SoftwareAuthenticator


def _counters(org_id: str = "acme") -> tuple[int, int]:
    org = Organization.get(org_id, consistent_read=True)
    return int(org.members_total or 0), int(org.members_with_key or 0)


def _bucket(user_id: str, org_id: str = "acme") -> str | None:
    return Member.get(org_id, user_id, consistent_read=True).coverage


def test_first_login_counts_the_member_once(api):
    api.login(user="bob")
    api.login(user="bob")
    api.login(user="carol")
    assert _counters() == (2, 0)
    assert _bucket("bob") == "acme#none"


def test_only_the_first_key_and_the_last_key_move_the_counter(api):
    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    assert _counters() == (1, 1) and _bucket("bob") == "acme#one"
    assert api.add_key(bob).status == 201
    assert _counters() == (1, 1) and _bucket("bob") == "acme#many"
    [first, second] = [key["id"] for key in api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"]]
    assert api.call("DELETE", f"/me/mfa/keys/{first}", token=bob.token).status == 204
    assert _counters() == (1, 1) and _bucket("bob") == "acme#one"
    assert api.call("DELETE", f"/me/mfa/keys/{second}", token=bob.token).status == 204
    assert _counters() == (1, 0) and _bucket("bob") == "acme#none"


def test_disabling_mfa_and_an_admin_deleting_the_last_key_count_down(api):
    alice = api.login(user="alice", admin=True)
    bob = api.login(user="bob")
    for _ in range(3):
        assert api.add_key(bob).status == 201
    assert api.call("DELETE", "/me/mfa", token=bob.token).status == 204
    assert _counters() == (2, 0) and _bucket("bob") == "acme#none"
    assert api.add_key(bob).status == 201
    [key] = api.call("GET", "/org/mfa/keys?user_id=bob", token=alice.token).body["keys"]
    assert api.call("DELETE", f"/org/members/bob/mfa/keys/{key['id']}", token=alice.token).status == 204
    assert _counters() == (2, 0)


def test_org_mfa_reads_the_counters_not_the_members(api):
    alice = api.login(user="alice", admin=True)
    api.login(user="bob")
    status = api.call("GET", "/org/mfa", token=alice.token).body
    assert (status["members_total"], status["members_compliant"]) == (2, 0)
    # What the counters say is what the page shows: it does not count members itself.
    Organization("acme").update(actions=[Organization.members_total.set(1000), Organization.members_with_key.set(7)])
    status = api.call("GET", "/org/mfa", token=alice.token).body
    assert (status["members_total"], status["members_compliant"]) == (1000, 7)


def test_a_failed_registration_moves_nothing(api):
    bob = api.login(user="bob")
    Member("acme", "bob").update(actions=[Member.key_count.set(20)])
    # A member with keys registers another only within the step-up window of a key check.
    Session("acme", bob.token.split(".")[3]).update(actions=[Session.key_checked_at.set(clock.now())])
    assert api.add_key(bob).code == "TooManyKeys"
    assert _counters() == (1, 0)


def test_recount_repairs_an_organization_from_before_the_counters(api):
    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    api.login(user="carol")
    # As an organization created before the counters and buckets existed.
    Organization("acme").update(actions=[Organization.members_total.remove(), Organization.members_with_key.remove()])
    Member("acme", "bob").update(actions=[Member.coverage.remove()])
    counted = coverage.recount(org_id="acme")
    assert (counted.members_total, counted.members_with_key) == (2, 1)
    assert _counters() == (2, 1) and _bucket("bob") == "acme#one"


def test_fifty_parallel_first_keys_and_deletions_are_all_counted(api):
    """Registrations and deletions racing on one organization item: no update is lost and no
    conflict reaches a member."""
    holders = [api.login(user=f"holder{n}") for n in range(25)]
    for holder in holders:
        assert api.add_key(holder).status == 201
    newcomers = [api.login(user=f"newcomer{n}") for n in range(25)]
    assert _counters() == (50, 25)

    def register(member) -> object:
        authenticator = SoftwareAuthenticator()
        options = api.registration_options(member).body
        credential = authenticator.register(options["publicKey"])
        submission = keys.parse_submission(challenge_id=options["challenge_id"], name="First", credential=credential)
        return lambda: keys.register(
            caller=sessions.resolve(authorization=f"Bearer {member.token}", also=keys.submission_reads(submission)),
            submission=submission,
        )

    def delete(member) -> object:
        [key] = api.call("GET", "/me/mfa/keys", token=member.token).body["keys"]
        return lambda: keys.delete(caller=sessions.resolve(authorization=f"Bearer {member.token}"), key_id=key["id"])

    contenders = [register(member) for member in newcomers] + [delete(member) for member in holders]
    contenders = [c for pair in zip(contenders[:25], contenders[25:]) for c in pair]  # interleaved
    # As many threads as the test's DynamoDB answers in time on a small machine; every one of
    # them registers or deletes on the same organization item.
    parallel = 10
    barrier = threading.Barrier(parallel)

    def run(contender) -> object:
        try:
            barrier.wait(timeout=0.5)  # the first wave starts together
        except threading.BrokenBarrierError:
            pass
        try:
            return contender()
        except Exception as error:  # the outcome under test
            return error

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        outcomes = list(pool.map(run, contenders))

    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)], outcomes
    assert _counters() == (50, 25)
    holding = {member.user_id for member in Member.query("acme", consistent_read=True) if member.key_count > 0}
    assert holding == {f"newcomer{n}" for n in range(25)}
