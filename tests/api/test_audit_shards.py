"""The audit log spread over shards within a day: sign-ins spread their events over the
organization's shards, and the log, its filters, its pages and its export read them back merged in
time order, across shards and days, with no duplicate and no gap."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.base import audit, audit_shards, clock
from chalicelib.base.models import AuditEvent, Organization
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator

HOUR = audit_shards.HOUR_FORMAT


def _shards(org_id: str, counts: dict[str, int]) -> None:
    Organization(org_id).update(actions=[Organization.audit_shards.set(counts)])


def _backdate(org_id: str, days: int) -> None:
    Organization(org_id).update(actions=[Organization.created_at.set(clock.now() - timedelta(days=days))])


def _event_at(org_id: str, at: datetime, shard: int, *, action: str = "login", user_id: str = "bob") -> str:
    """An event stored at ``at`` on ``shard`` of its day, as a sign-in spreading it would; its key."""
    key = f"{at.strftime(audit.KEY_TIME_FORMAT)}#{random.getrandbits(32):08x}"
    AuditEvent(
        audit_shards.shard_key(org_id, audit_shards.day_of(at), shard),
        key,
        org_id=org_id,
        at=at,
        actor=user_id,
        action=action,
        user_id=user_id,
        ttl=at + timedelta(days=30),
    ).save()
    return key


def _spread_log(org_id: str, *, days: int = 3, shards: int = 4, per_day: int = 9) -> list[tuple[str, str, str]]:
    """Events over the last ``days`` days, each day's on random shards of ``shards``, of two
    actions and three members; returns (key, action, user) of each, oldest first."""
    start_hour = (clock.now() - timedelta(days=days)).strftime(HOUR)
    _shards(org_id, {start_hour: shards})
    _backdate(org_id, days + 1)
    made = []
    rng = random.Random(26)
    today = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        for number in range(per_day):
            at = day + timedelta(minutes=1 + number * 7, microseconds=rng.randrange(1000))
            if at > clock.now():
                at = clock.now() - timedelta(seconds=per_day - number)
            action = "login" if number % 3 else "mfa.failed"
            user = ("bob", "carol", "dave")[number % 3 if number % 2 else (number + 1) % 3]
            made.append((_event_at(org_id, at, rng.randrange(shards), action=action, user_id=user), action, user))
    return sorted(made)


def _pages(api, member, path: str, **query: str) -> tuple[list[dict], int]:
    found, cursor, pages = [], None, 0
    for _ in range(200):
        params = {**query, **({"next": cursor} if cursor else {})}
        reply = api.call("GET", path + "?" + "&".join(f"{k}={v}" for k, v in params.items()), token=member.token)
        assert reply.status == 200, reply.body
        pages += 1
        if "limit" in query:
            assert len(reply.body["events"]) <= int(query["limit"])
        found += reply.body["events"]
        cursor = reply.body["next"]
        if cursor is None:
            return found, pages
    raise AssertionError("the cursor never ran out")


def _lines(reply) -> list[dict]:
    """An NDJSON answer's events (the test client parses an answer of one line as JSON)."""
    if isinstance(reply.body, dict):
        return [reply.body]
    return [json.loads(line) for line in (reply.body or "").splitlines()]


# --- where events are written ----------------------------------------------------------------------


def test_the_sign_ins_of_an_organization_with_shards_spread_over_them_and_only_them(api):
    api.login(user="alice", admin=True)
    _shards("acme", {"2000-01-01T00": 4})
    for number in range(24):
        api.login(user=f"m{number}")
    logins = [e for e in logged_events("acme") if e.action == "login" and e.user_id != "alice"]
    used = {e.shard_key for e in logins}
    day = audit_shards.day_of(clock.now())
    assert used <= {audit_shards.shard_key("acme", day, shard) for shard in range(4)}
    assert len(used) > 1, "24 sign-ins over 4 shards all landed on one"
    assert all(e.org_id == "acme" for e in logins)


def test_an_organization_without_shards_keeps_one_key_a_day_and_admin_acts_go_to_shard_0(api):
    alice = api.login(user="alice", admin=True)
    assert api.call("PUT", "/org/mfa", token=alice.token, body={"enforced": False}).status in (200, 204)
    day = audit_shards.day_of(clock.now())
    assert {e.shard_key for e in logged_events("acme")} == {audit_shards.shard_key("acme", day, 0)}


def test_mfa_checks_and_their_refusals_spread_too(api):
    bob = api.login(user="bob")
    key = SoftwareAuthenticator()
    assert api.add_key(bob, key).status == 201
    _shards("acme", {"2000-01-01T00": 8})
    for _ in range(6):
        bob = api.mfa_login(org="acme", user="bob", authenticator=key)
    checks = [e for e in logged_events("acme") if e.action in ("login", "mfa.succeeded")]
    assert len([e for e in checks if e.action == "mfa.succeeded"]) == 6
    assert len({e.shard_key for e in checks[-12:]}) > 1


# --- the rule of counts ----------------------------------------------------------------------------


def test_a_day_is_read_over_the_largest_count_in_force_during_it():
    org = Organization("acme", created_at=clock.now())
    org.audit_shards = {"2026-03-01T00": 2, "2026-03-02T15": 8, "2026-03-04T06": 3}
    day = datetime(2026, 3, 2, tzinfo=UTC).date()
    assert audit_shards.count_at(org, datetime(2026, 2, 28, tzinfo=UTC)) == 1
    assert audit_shards.count_at(org, datetime(2026, 3, 2, 14, 59, tzinfo=UTC)) == 2
    assert audit_shards.count_at(org, datetime(2026, 3, 2, 15, tzinfo=UTC)) == 8
    assert audit_shards.count_for_day(org, day) == 8
    assert audit_shards.count_for_day(org, day - timedelta(days=1)) == 2
    assert audit_shards.count_for_day(org, day + timedelta(days=1)) == 8
    # Decreasing: the day of the change is still read over the larger count it began with.
    assert audit_shards.count_for_day(org, datetime(2026, 3, 4, tzinfo=UTC).date()) == 8
    assert audit_shards.count_for_day(org, datetime(2026, 3, 5, tzinfo=UTC).date()) == 3


def test_a_change_takes_effect_from_a_full_hour_at_least_five_minutes_away_and_drops_what_no_event_needs():
    now = datetime(2026, 3, 2, 14, 57, tzinfo=UTC)
    assert audit_shards.effective_from(now) == datetime(2026, 3, 2, 16, tzinfo=UTC)
    assert audit_shards.effective_from(now.replace(minute=10)) == datetime(2026, 3, 2, 15, tzinfo=UTC)
    org = Organization("acme", created_at=now)
    org.audit_shards = {"2025-01-01T00": 2, "2025-06-01T00": 4, "2026-03-01T00": 6}
    counts = audit_shards.changed(org=org, shards=16, now=now, retention=timedelta(days=200))
    # 2025-06 is still in force at the oldest kept event (2025-08-14); 2025-01 was superseded before it.
    assert counts == {"2025-06-01T00": 4, "2026-03-01T00": 6, "2026-03-02T16": 16}


def test_an_operator_sets_an_organizations_shard_count_from_the_next_hour(api, capsys):
    from keyward.__main__ import main

    api.login(user="bob")
    capsys.readouterr()
    assert main(["org", "audit-shards", "acme", "16"]) == 0
    [(hour, count)] = audit_shards.counts(Organization.get("acme", consistent_read=True)).items()
    assert (hour, count) == (audit_shards.effective_from(clock.now()).strftime(HOUR), 16)
    assert "acme: audit events spread over 16 shard(s) from " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("org", "given", "status", "says"),
    [
        ("acme", "0", 2, "not a shard count: '0'"),
        ("acme", "101", 2, "not a shard count: '101'"),
        ("acme", "eight", 2, "not a shard count: 'eight'"),
        ("nosuch", "4", 1, "no organization 'nosuch'"),
        ("bad org!", "4", 2, "not a usable organization ID"),
    ],
)
def test_a_bad_shard_count_or_organization_is_one_line_and_an_exit_status(api, capsys, org, given, status, says):
    from keyward.__main__ import main

    api.login(user="bob")
    capsys.readouterr()
    assert main(["org", "audit-shards", org, given]) == status
    error = capsys.readouterr().err
    assert says in error and "Traceback" not in error and error.count("\n") == 1
    assert Organization.get("acme", consistent_read=True).audit_shards is None


def test_signing_in_and_checking_a_key_leave_the_organization_item_as_it_was(api):
    bob = api.login(user="bob")
    key = SoftwareAuthenticator()
    assert api.add_key(bob, key).status == 201
    _shards("acme", {"2000-01-01T00": 4})
    before = Organization.get("acme", consistent_read=True).serialize()
    bob = api.mfa_login(org="acme", user="bob", authenticator=key)
    options = api.call("POST", "/auth/reauth/options", token=bob.token)
    assert options.status == 200, options.body
    verified = api.call(
        "POST",
        "/auth/reauth/verify",
        token=bob.token,
        body={"challenge_id": options.body["challenge_id"], "credential": key.authenticate(options.body["publicKey"])},
    )
    assert verified.status == 200, verified.body
    assert Organization.get("acme", consistent_read=True).serialize() == before


# --- reading it back -------------------------------------------------------------------------------


def test_the_log_merges_shards_and_days_newest_first_and_pages_through_them_without_duplicates_or_gaps(api):
    alice = api.login(user="alice", admin=True)
    made = _spread_log("acme")
    assert len({audit_shards.shard_key("acme", audit_shards.day_of_key(k), 0)[:-2] for k, _, _ in made}) >= 2
    whole, _ = _pages(api, alice, "/org/audit", limit="500")
    for limit in ("1", "4", "7"):
        paged, pages = _pages(api, alice, "/org/audit", limit=limit)
        assert paged == whole, limit
        assert pages >= len(whole) // int(limit)
    ours = [e for e in whole if e["actor"] != "alice"]
    assert [e["action"] for e in ours] == [action for _, action, _ in reversed(made)]
    assert [e["at"] for e in whole] == sorted((e["at"] for e in whole), reverse=True)


@pytest.mark.parametrize(
    ("query", "wanted"),
    [
        ({"action": "mfa.failed"}, lambda action, user: action == "mfa.failed"),
        ({"user_id": "carol"}, lambda action, user: user == "carol"),
        ({"actor": "dave", "action": "login"}, lambda action, user: user == "dave" and action == "login"),
    ],
)
def test_filters_page_through_a_sharded_log(api, query, wanted):
    alice = api.login(user="alice", admin=True)
    made = _spread_log("acme", per_day=12)
    expected = [(action, user) for _, action, user in reversed(made) if wanted(action, user)]
    assert expected
    for limit in ("1", "2", "5"):
        paged, _ = _pages(api, alice, "/org/audit", limit=limit, **query)
        assert [(e["action"], e["user_id"]) for e in paged] == expected, limit


def test_a_time_range_over_shards_and_days_reads_only_that_range(api):
    alice = api.login(user="alice", admin=True)
    made = _spread_log("acme", days=4)
    times = sorted(datetime.strptime(key[:26] + "+0000", audit.KEY_TIME_FORMAT[:-1] + "%z") for key, _, _ in made)
    since, until = times[5], times[-6]
    found, _ = _pages(api, alice, "/org/audit", limit="3", since=clock.iso(since) or "", until=clock.iso(until) or "")
    shown = [e for e in found if e["actor"] != "alice"]
    expected = [t for t in times if since.replace(microsecond=0) <= t < until.replace(microsecond=0)]
    assert len(shown) == len(expected)


def test_the_export_reads_the_sharded_log_oldest_first_through_its_cursor(api, monkeypatch):
    monkeypatch.setattr(audit, "EXPORT_PAGE", 4)
    alice = api.login(user="alice", admin=True)
    made = _spread_log("acme")
    listed, _ = _pages(api, alice, "/org/audit", limit="500")
    exported, cursor, answers = [], None, 0
    while True:
        path = "/org/audit/export?format=ndjson" + (f"&next={cursor}" if cursor else "")
        reply = api.call("GET", path, token=alice.token)
        assert reply.status == 200
        answers += 1
        exported += _lines(reply)
        cursor = {name.lower(): value for name, value in reply.headers.items()}.get("keyward-next-cursor")
        if not cursor:
            break
    assert exported == list(reversed(listed))
    assert answers >= len(made) // 4
    monkeypatch.setattr(audit, "EXPORT_PAGE", 500)
    csv = api.call("GET", "/org/audit/export?format=csv&action=mfa.failed", token=alice.token)
    rows = str(csv.body).split("\r\n")
    assert rows[0].startswith("at,actor") and len([r for r in rows[1:] if r]) == sum(
        1 for _, action, _ in made if action == "mfa.failed"
    )


def test_the_log_is_not_read_before_the_organization_existed_nor_past_the_retention(api, monkeypatch):
    alice = api.login(user="alice", admin=True)
    calls: list[str] = []
    real = AuditEvent.query

    def counted(hash_key, *args, **kwargs):
        calls.append(hash_key)
        return real(hash_key, *args, **kwargs)

    monkeypatch.setattr(AuditEvent, "query", counted)
    assert api.call("GET", "/org/audit", token=alice.token).status == 200
    assert len(calls) <= 2  # today's shard, and tomorrow's near midnight
    calls.clear()
    Organization("acme").update(actions=[Organization.created_at.set(clock.now() - timedelta(days=5000))])
    assert api.call("GET", "/org/audit", token=alice.token).status == 200
    from chalicelib.base.config import settings

    assert len(calls) <= settings().audit_retention_days + 2


def test_a_cursor_that_is_no_event_key_is_refused(api):
    import base64

    alice = api.login(user="alice", admin=True)
    forged = base64.urlsafe_b64encode(json.dumps({"after": "not-a-key"}).encode()).decode().rstrip("=")
    for path in ("/org/audit", "/org/audit/export"):
        reply = api.call("GET", f"{path}?next={forged}", token=alice.token)
        assert (reply.status, reply.code) == (400, "InvalidCursor"), path


def test_a_cursor_before_the_start_of_the_range_lists_nothing_more(api):
    alice = api.login(user="alice", admin=True)
    made = _spread_log("acme", days=2, per_day=4)
    first = api.call("GET", "/org/audit?limit=2", token=alice.token)
    since = clock.iso(clock.now() + timedelta(minutes=1))  # later than every event, the cursor too
    later = api.call("GET", f"/org/audit?limit=2&since={since}&next={first.body['next']}", token=alice.token)
    assert made and (later.status, later.body) == (200, {"events": [], "next": None})


def test_repeated_failed_checks_spread_over_shards_are_counted_together_for_the_mail(api, audit_stream, sent_mail):
    from chalicelib.delivery import notifications

    key = SoftwareAuthenticator()
    bob = api.login(user="bob")
    assert api.add_key(bob, key).status == 201
    _shards("acme", {"2000-01-01T00": 8})
    bob = api.login(user="bob")
    failures = notifications.REPEATED_FAILURES * 2
    for _ in range(failures):
        options = api.mfa_options(bob).body
        phished = key.authenticate(options["publicKey"], origin="https://keyward.evil.example")
        assert api.mfa_verify(bob, options["challenge_id"], phished).status == 401
    audit_stream.drain()

    failed = [e for e in logged_events("acme") if e.action == "mfa.failed"]
    assert len(failed) == failures and len({e.shard_key for e in failed}) > 1
    subject = "Repeated failed security key checks on your account"
    mailed = [m for m in sent_mail if any("bob@acme.example" in d for d in m.destinations) and subject in m.raw_data]
    assert len(mailed) == 2


def test_a_count_another_operator_set_meanwhile_is_kept(api, monkeypatch):
    """A count written between the command's read and its write (another operator's, in force
    since an hour ago: it may have placed events) is not overwritten by what was read."""
    api.login(user="bob")
    now = clock.now()
    theirs = (now - timedelta(hours=1)).strftime(HOUR)
    read = Organization.get
    reads = []

    def read_then_another_operator_writes(*args, **kwargs):
        org = read(*args, **kwargs)
        reads.append(org)
        if len(reads) == 1:
            _shards("acme", {theirs: 32})
        return org

    monkeypatch.setattr(Organization, "get", read_then_another_operator_writes)

    audit_shards.set_count(org_id="acme", shards=8, now=now, retention=timedelta(days=30))

    counts = audit_shards.counts(read("acme", consistent_read=True))
    assert counts == {theirs: 32, audit_shards.effective_from(now).strftime(HOUR): 8}
