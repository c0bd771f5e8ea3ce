"""The organization's login rate: sessions beyond it in one second are refused with 429
``OrganizationRateLimited`` and ``Retry-After``, write nothing, and leave other organizations'
logins alone; the next second admits again; the operator's per-organization rate beats the
deployment's default, and 0 is no limit."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import botocore.endpoint
import pytest

from chalicelib.access import login_rate
from chalicelib.base import clock
from chalicelib.base.config import load, settings
from chalicelib.base.errors import ConfigurationError
from chalicelib.base.models import Member, Organization, Throttle
from tests.support.audit_log import logged_events
from tests.support.sessions import org_sessions
from tests.support.transaction_conflicts import cancelled_by_conflict, intercept, written_tables

LIMITED = (429, "OrganizationRateLimited")


@pytest.fixture
def second(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], datetime]:
    """Moves keyward's clock to a moment within one second; ``second(n)`` is n seconds later, the
    same fraction in. Ten seconds ahead of the setup's logins, whose counters it never meets."""
    start = clock.now().replace(microsecond=500_000) + timedelta(seconds=10)

    def at(offset: int = 0) -> datetime:
        moment = start + timedelta(seconds=offset)
        monkeypatch.setattr(clock, "now", lambda: moment)
        return moment

    return at


@pytest.fixture
def default_rate(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    def set_default(rate: int) -> None:
        monkeypatch.setattr(login_rate, "settings", lambda: dataclasses.replace(settings(), org_login_rate=rate))

    return set_default


def _sessions(org_id: str) -> int:
    return sum(1 for _ in org_sessions(org_id))


def _logins(org_id: str) -> int:
    return sum(1 for event in logged_events(org_id) if event.action == "login")


def _counters(org_id: str, moment: datetime) -> dict[str, int]:
    """The organization's login counters of ``moment``'s second."""
    return {
        item.subject: int(item.logins)
        for item in Throttle.scan(consistent_read=True)
        if item.subject.startswith(f"logins#{org_id}#{int(moment.timestamp())}#")
    }


def _set_up(api, *orgs: str, users: tuple[str, ...] = ("setup",)) -> None:
    """Each organization exists, with members whose first login is behind them."""
    for org in orgs:
        for user in users:
            api.login(org=org, user=user)


def test_logins_beyond_the_rate_in_one_second_are_refused_and_write_nothing(api, second):
    _set_up(api, "acme", "globex", users=("bob", "carol", "dave", "erin"))
    login_rate.set_limit(org_id="acme", rate=2)
    login_rate.set_limit(org_id="globex", rate=2)
    sessions_before, logins_before = _sessions("acme"), _logins("acme")
    dave_before = [e.event_key for e in logged_events("acme") if e.user_id == "dave"]

    moment = second(0)
    assert api.login_reply(org="acme", user="bob").status == 200
    assert api.login_reply(org="acme", user="carol").status == 200
    refused = api.login_reply(org="acme", user="dave")

    assert (refused.status, refused.code) == LIMITED
    assert refused.headers.get("Retry-After") == "1"
    assert "acme" in refused.body["Message"]
    assert _sessions("acme") == sessions_before + 2
    assert _logins("acme") == logins_before + 2
    assert [e.event_key for e in logged_events("acme") if e.user_id == "dave"] == dave_before
    # One shard under a rate of 2, holding the two logins that passed.
    assert _counters("acme", moment) == {f"logins#acme#{int(moment.timestamp())}#0": 2}
    counter = Throttle.get(f"logins#acme#{int(moment.timestamp())}#0", consistent_read=True)
    assert moment < counter.ttl <= moment + timedelta(minutes=2)

    # Another organization's logins in the same second pass.
    assert api.login_reply(org="globex", user="bob").status == 200
    assert api.login_reply(org="globex", user="carol").status == 200

    # The next second admits again.
    second(1)
    assert api.login_reply(org="acme", user="dave").status == 200


def test_a_first_login_beyond_the_rate_creates_no_member_and_counts_no_one(api, second):
    _set_up(api, "acme", users=("bob",))
    login_rate.set_limit(org_id="acme", rate=1)
    org_before = Organization.get("acme", consistent_read=True).serialize()
    members_before = int(Organization.get("acme", consistent_read=True).members_total)

    moment = second(0)
    assert api.login_reply(org="acme", user="bob").status == 200
    refused = api.login_reply(org="acme", user="newcomer")

    assert (refused.status, refused.code) == LIMITED
    assert Member.count("acme", Member.user_id == "newcomer", consistent_read=True) == 0
    assert Organization.get("acme", consistent_read=True).serialize() == org_before
    assert _counters("acme", moment) == {f"logins#acme#{int(moment.timestamp())}#0": 1}

    # The next second, the first login creates the member and counts its login once.
    later = second(1)
    assert api.login_reply(org="acme", user="newcomer").status == 200
    assert Member.count("acme", Member.user_id == "newcomer", consistent_read=True) == 1
    assert Organization.get("acme", consistent_read=True).members_total == members_before + 1
    assert _counters("acme", later) == {f"logins#acme#{int(later.timestamp())}#0": 1}


def test_the_deployments_default_applies_where_the_organization_sets_none(api, second, default_rate):
    _set_up(api, "acme")
    default_rate(1)
    second(0)
    assert api.login_reply(org="acme", user="bob").status == 200
    assert (api.login_reply(org="acme", user="carol").status, api.login_reply(org="acme").code) == (429, LIMITED[1])


def test_the_organizations_rate_beats_the_default(api, second, default_rate):
    _set_up(api, "acme")
    default_rate(1)
    login_rate.set_limit(org_id="acme", rate=3)
    second(0)
    assert [api.login_reply(org="acme", user=f"user{n}").status for n in range(4)] == [200, 200, 200, 429]

    # Back to the default: the override is gone from the organization item.
    login_rate.set_limit(org_id="acme", rate=None)
    assert Organization.get("acme", consistent_read=True).login_rate is None
    second(1)
    assert [api.login_reply(org="acme", user=f"user{n}").status for n in range(2)] == [200, 429]


def test_a_rate_of_zero_is_no_limit_and_counts_nothing(api, second, default_rate):
    _set_up(api, "acme", "globex")
    default_rate(1)
    login_rate.set_limit(org_id="acme", rate=0)
    moment = second(0)
    assert [api.login_reply(org="acme", user=f"user{n}").status for n in range(5)] == [200] * 5
    assert _counters("acme", moment) == {}

    default_rate(0)
    assert [api.login_reply(org="globex", user=f"user{n}").status for n in range(5)] == [200] * 5
    assert _counters("globex", moment) == {}


def test_a_high_rate_spreads_a_seconds_logins_over_shards(api, second, monkeypatch):
    """Under a rate of 4 with 2 logins a shard: 2 shards of 2 each; the fifth login finds its
    shard full (the shards are drawn in turn here, at random in service)."""
    _set_up(api, "acme")
    monkeypatch.setattr(login_rate, "LOGINS_PER_SHARD", 2)
    draws = iter([0, 1, 0, 1, 0])
    monkeypatch.setattr(login_rate.secrets, "randbelow", lambda shards: (next(draws), shards)[0])
    login_rate.set_limit(org_id="acme", rate=4)
    moment = second(0)
    assert [api.login_reply(org="acme", user=f"user{n}").status for n in range(5)] == [200] * 4 + [429]
    at = int(moment.timestamp())
    assert _counters("acme", moment) == {f"logins#acme#{at}#0": 2, f"logins#acme#{at}#1": 2}


def test_the_deployments_rate_is_200_unless_set_and_may_be_0():
    assert load({}).org_login_rate == 200
    assert load({"KEYWARD_ORG_LOGIN_RATE": "0"}).org_login_rate == 0
    assert load({"KEYWARD_ORG_LOGIN_RATE": "5000"}).org_login_rate == 5000
    with pytest.raises(ConfigurationError, match="KEYWARD_ORG_LOGIN_RATE must be 0 or more"):
        load({"KEYWARD_ORG_LOGIN_RATE": "-1"})
    with pytest.raises(ConfigurationError, match="must be an integer"):
        load({"KEYWARD_ORG_LOGIN_RATE": "fast"})
    # The other settings stay positive.
    with pytest.raises(ConfigurationError, match="must be positive"):
        load({"KEYWARD_REAUTH_WINDOW_SECONDS": "0"})


def test_shards_keep_every_counter_far_below_a_partitions_write_units():
    """At issue 26's 10,000 sign-ins a second: 400 shards of 25 logins, 50 write units each
    (a transactional write costs 2) of the 1,000 a partition takes."""
    shards = login_rate.shards_for(10_000)
    assert shards == 400
    assert 10_000 / shards * 2 <= 100
    assert login_rate.shards_for(1) == 1 and login_rate.shards_for(25) == 1 and login_rate.shards_for(26) == 2


def test_backup_credentials_logins_count_too(api, admin, second):
    created = api.call("POST", "/org/backup-credentials", token=admin.token).body
    login_rate.set_limit(org_id="acme", rate=1)
    second(0)
    body = {"key_id": created["key_id"], "secret": created["secret"]}
    assert api.call("POST", "/auth/backup-login", body=body).status == 200
    sessions_before = _sessions("acme")
    refused = api.call("POST", "/auth/backup-login", body=body)
    assert (refused.status, refused.code) == LIMITED
    assert refused.headers.get("Retry-After") == "1"
    assert _sessions("acme") == sessions_before
    used = [e for e in logged_events("acme") if e.action == "backup_login.succeeded"]
    assert len(used) == 1


def test_an_mfa_check_is_not_a_login(api, second):
    """Only session starts count: the MFA check of a session that passed is not refused."""
    from tests.support.authenticator import SoftwareAuthenticator

    bob = api.login(org="acme", user="bob")
    key = SoftwareAuthenticator()
    assert api.add_key(bob, key).status == 201
    login_rate.set_limit(org_id="acme", rate=1)
    second(0)
    signed_in = api.mfa_login(org="acme", user="bob", authenticator=key)
    assert signed_in.state == "active"
    assert (api.login_reply(org="acme", user="carol").status, api.login_reply(org="acme").code) == (429, LIMITED[1])


def test_a_returning_members_login_is_still_two_round_trips_with_the_count_in_its_transaction(api, second, monkeypatch):
    _set_up(api, "acme", users=("bob",))
    second(0)
    sent: list[tuple[str, list[str]]] = []
    real_send = botocore.endpoint.Endpoint._send

    def recording(endpoint: Any, request: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else target).rpartition(".")[2]
        items = json.loads(request.body).get("TransactItems", [])
        sent.append((operation, [next(iter(item.values()))["TableName"] for item in items]))
        return real_send(endpoint, request)

    monkeypatch.setattr(botocore.endpoint.Endpoint, "_send", recording)
    assert api.login_reply(org="acme", user="bob").status == 200
    assert [operation for operation, _ in sent] == ["TransactGetItems", "TransactWriteItems"]
    assert Throttle.Meta.table_name in sent[1][1]


# --- two logins' transactions meeting on one counter -------------------------------------------------


class _ConflictOnCounter:
    """Cancels the next ``times`` transactions that write a login counter, with the reason DynamoDB
    gives when two transactions meet on an item (moto runs one request at a time and never does)."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.sent = 0
        self._lock = threading.Lock()

    def send(self, request: Any, real: Callable[[Any], Any]) -> Any:
        tables = written_tables(request)
        if tables is None or Throttle.Meta.table_name not in tables:
            return real(request)
        with self._lock:
            self.sent += 1
            if self.times == 0:
                return real(request)
            self.times -= 1
        return cancelled_by_conflict(request, tables=tables, on=Throttle.Meta.table_name)


def _conflicts(monkeypatch: pytest.MonkeyPatch, times: int) -> _ConflictOnCounter:
    injector = _ConflictOnCounter(times)
    intercept(monkeypatch, injector.send)
    return injector


def test_a_login_that_meets_others_on_its_counter_tries_fresh_shards(api, second, monkeypatch):
    _set_up(api, "acme")
    second(0)
    injector = _conflicts(monkeypatch, times=2)
    assert api.login_reply(org="acme", user="bob").status == 200
    assert injector.sent == 3
    assert sum(1 for s in org_sessions("acme") if s.user_id == "bob") == 1


def test_a_login_that_meets_others_on_three_shards_starts_uncounted(api, second, monkeypatch):
    # Contention is no reason to refuse a person: the counter shards were busy, not full.
    _set_up(api, "acme")
    sessions_before, logins_before = _sessions("acme"), _logins("acme")
    moment = second(0)
    injector = _conflicts(monkeypatch, times=3)
    assert api.login_reply(org="acme", user="setup").status == 200
    assert injector.sent == 3
    assert (_sessions("acme"), _logins("acme")) == (sessions_before + 1, logins_before + 1)
    assert _counters("acme", moment) == {}


def test_the_openid_providers_session_from_a_hint_counts_and_leaves_the_request_pending(api, idp, second):
    from chalicelib.base.models import Authorization
    from tests.support.authenticator import SoftwareAuthenticator
    from tests.support.oidc import authorization_request, register_client, relying_party

    bob = api.login(org="acme", user="bob")
    assert api.add_key(bob, SoftwareAuthenticator()).status == 201
    client_id, secret = register_client()
    session = relying_party(api, client_id=client_id, secret=secret)
    request_id, _ = authorization_request(api, session, "v" * 64, id_token_hint=idp.mint(org="acme", user="bob"))
    login_rate.set_limit(org_id="acme", rate=1)
    second(0)
    assert api.login_reply(org="acme", user="carol").status == 200

    refused = api.call("POST", f"/oidc/authorize/{request_id}/session")
    assert (refused.status, refused.code) == LIMITED
    assert refused.headers.get("Retry-After") == "1"
    assert Authorization.get(f"request#{request_id}", consistent_read=True).used_at is None

    second(1)
    started = api.call("POST", f"/oidc/authorize/{request_id}/session")
    assert started.status == 200 and started.body["state"] == "mfa_required"
