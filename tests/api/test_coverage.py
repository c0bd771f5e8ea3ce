"""Coverage counters: members and members holding a key, kept on the organization by the same
transactions that create members and change key counts, and each member's bucket."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from chalicelib.access import sessions
from chalicelib.base.models import Member, Organization
from chalicelib.counters import coverage
from chalicelib.keys import management, registration
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import hold_keys_in_table
from tests.support.transaction_conflicts import cancelled_by_conflict, intercept, written_tables


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
    # A member with keys registers another only within the step-up window of a proof of one.
    hold_keys_in_table(bob, count=20)
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


# Per side: members registering their first key, and members deleting their only one, all at once.
RACERS = 50


class _ConflictOnFirstAttempt:
    """Cancels each thread's first transaction that writes an organization item, with the reason
    DynamoDB gives when two transactions meet on an item (``TransactionConflict``), on the wire.

    moto runs one request at a time and so never cancels for a conflict; DynamoDB does, whenever
    writers of one organization meet. Every contender of the race runs on a thread of its own, so
    every registration and deletion meets one conflict and has to be sent again.
    """

    def __init__(self) -> None:
        self._thread = threading.local()
        self.armed = False
        self.cancelled = 0
        self._lock = threading.Lock()

    def send(self, request: Any, real: Callable[[Any], Any]) -> Any:
        tables = written_tables(request)
        if tables is None or not self.armed or Organization.Meta.table_name not in tables:
            return real(request)
        if getattr(self._thread, "met", False):
            return real(request)
        self._thread.met = True
        with self._lock:
            self.cancelled += 1
        return cancelled_by_conflict(request, tables=tables, on=Organization.Meta.table_name)


@pytest.fixture
def conflicts(monkeypatch: pytest.MonkeyPatch) -> _ConflictOnFirstAttempt:
    injector = _ConflictOnFirstAttempt()
    intercept(monkeypatch, injector.send)
    return injector


def test_fifty_parallel_first_keys_and_fifty_deletions_are_all_counted(api, conflicts):
    """Registrations and deletions racing on one organization item, each meeting a transaction
    conflict there: no update is lost and no conflict reaches a member."""
    holders = [api.login(user=f"holder{n}") for n in range(RACERS)]
    for holder in holders:
        assert api.add_key(holder).status == 201
    newcomers = [api.login(user=f"newcomer{n}") for n in range(RACERS)]
    assert _counters() == (2 * RACERS, RACERS)

    def register(member) -> object:
        authenticator = SoftwareAuthenticator()
        options = api.registration_options(member).body
        credential = authenticator.register(options["publicKey"])
        submission = registration.parse_submission(
            challenge_id=options["challenge_id"], name="First", credential=credential
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

    contenders = [register(member) for member in newcomers] + [delete(member) for member in holders]
    # Every contender on a thread of its own, released together: each one registers or deletes
    # on the same organization item.
    barrier = threading.Barrier(len(contenders))

    def run(contender) -> object:
        barrier.wait(timeout=30)
        try:
            return contender()
        except Exception as error:  # the outcome under test
            return error

    conflicts.armed = True
    with ThreadPoolExecutor(max_workers=len(contenders)) as pool:
        outcomes = list(pool.map(run, contenders))
    conflicts.armed = False
    assert conflicts.cancelled == len(contenders)

    failed = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert not failed, [f"{error!r}, caused by {getattr(error, 'cause', None)!r}" for error in failed]
    assert _counters() == (2 * RACERS, RACERS)
    holding = {member.user_id for member in Member.query("acme", consistent_read=True) if member.key_count > 0}
    assert holding == {f"newcomer{n}" for n in range(RACERS)}
    # The counters agree with a recount of the members, which sets them from the table.
    assert coverage.recount(org_id="acme") == coverage.Counters(members_total=2 * RACERS, members_with_key=RACERS)
    assert _counters() == (2 * RACERS, RACERS)
