"""``python -m keyward migrate audit``: a deployment's events move from the table of before events
were spread (one partition key an organization) to the sharded one — every event, once, resumable
after an interruption — and the outbox delivers none of the copies again, while events still
arriving on the old table's stream are delivered as before."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest

from chalicelib.base import audit, audit_shards, clock
from chalicelib.base.models import AuditEvent, Delivery, LegacyAuditEvent
from keyward import audit_migration
from keyward.__main__ import main
from tests.support.audit_log import logged_events


def _old_event(org_id: str, *, days_ago: float, action: str = "key.registered", expired: bool = False) -> str:
    """An event as the old layout stored it; its key."""
    at = clock.now() - timedelta(days=days_ago)
    key = f"{at.strftime(audit.KEY_TIME_FORMAT)}#{random.getrandbits(32):08x}"
    LegacyAuditEvent(
        org_id,
        key,
        at=at,
        actor="bob",
        actor_kind="member",
        action=action,
        target="K1",
        user_id="bob",
        source_ip="192.0.2.1",
        details={"name": "Blue"},
        ttl=clock.now() - timedelta(seconds=1) if expired else at + timedelta(days=400),
    ).save()
    return key


def _old_log(count: int = 23) -> dict[str, list[str]]:
    made: dict[str, list[str]] = {"acme": [], "globex": []}
    for number in range(count):
        org = "acme" if number % 3 else "globex"
        made[org].append(_old_event(org, days_ago=number * 0.7))
    return made


def _migrate(tmp_path, *options: str) -> int:
    return main(["migrate", "audit", "--progress", str(tmp_path / "progress.json"), *options])


def _copies() -> dict[str, AuditEvent]:
    return {entry.event_key: entry for entry in AuditEvent.scan(consistent_read=True)}


def test_every_event_is_copied_once_to_shard_0_of_its_day_with_every_field_and_marked(tmp_path, capsys):
    made = _old_log()
    gone = _old_event("acme", days_ago=1, expired=True)
    assert _migrate(tmp_path, "--page-size", "5") == 0
    copies = _copies()
    assert sorted(copies) == sorted(made["acme"] + made["globex"])
    for org_id, keys in made.items():
        for key in keys:
            copy, original = copies[key], LegacyAuditEvent.get(org_id, key)
            assert copy.shard_key == audit_shards.shard_key(org_id, audit_shards.day_of_key(key), 0)
            assert copy.org_id == org_id and copy.migrated is True
            assert {
                name: value for name, value in copy.serialize().items() if name not in ("shard_key", "migrated")
            } == (original.serialize())
    assert gone not in copies
    said = capsys.readouterr().out
    assert "23 event(s) copied" in said and "1 past their retention" in said


def test_an_interrupted_migration_resumes_where_it_stopped_and_copies_nothing_twice(tmp_path, monkeypatch):
    made = _old_log(31)
    real_save = AuditEvent.save
    saved: list[str] = []

    def failing_after_twelve(self, *args, **kwargs):
        if len(saved) == 12:
            raise KeyboardInterrupt
        saved.append(self.event_key)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(AuditEvent, "save", failing_after_twelve)
    with pytest.raises(KeyboardInterrupt):
        _migrate(tmp_path, "--page-size", "5")
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["copied"] == 10 and progress["done"] is False  # two whole pages saved their position
    assert len(_copies()) == 12
    monkeypatch.setattr(AuditEvent, "save", real_save)

    assert _migrate(tmp_path, "--page-size", "5") == 0
    progress = json.loads((tmp_path / "progress.json").read_text())
    # The interrupted page is read again: its two copies are found there, not written twice.
    assert (progress["copied"], progress["present"], progress["done"]) == (29, 2, True)
    assert sorted(_copies()) == sorted(made["acme"] + made["globex"])
    assert len(logged_events("acme")) == len(made["acme"])

    # Run again: done already. Started over: everything is there, nothing is written.
    assert _migrate(tmp_path) == 0
    assert _migrate(tmp_path, "--restart") == 0
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert (progress["copied"], progress["present"]) == (0, 31)


def test_copies_are_not_delivered_again_and_the_old_log_reads_as_the_new(api, audit_stream, sent_mail, tmp_path):
    alice = api.login(user="alice", admin=True)
    api.login(user="bob")
    audit_stream.drain()
    before = {(d.channel, d.event_key) for d in Delivery.scan()}
    mailed = len(sent_mail)
    made = [_old_event("acme", days_ago=0.01 * number, action="key.registered") for number in range(1, 4)]

    assert _migrate(tmp_path) == 0
    assert audit_stream.drain() >= 3  # the copies' stream records reached the delivery function...
    assert {(d.channel, d.event_key) for d in Delivery.scan()} == before  # ...which sent none of them
    assert len(sent_mail) == mailed

    listed = api.call("GET", "/org/audit?action=key.registered", token=alice.token)
    assert listed.status == 200
    assert [e["target"] for e in listed.body["events"]] == ["K1"] * len(made)


def test_an_event_written_to_the_old_table_before_the_switch_is_still_delivered_from_its_stream(api, sent_mail):
    from app import deliver_audit_events
    from chalicelib.base.config import settings
    from devstack.stream import StreamPump
    from tests.support.process_stack import prepared

    old_stream = StreamPump(
        handler=deliver_audit_events, table_name=settings().tables.legacy_audit, endpoint=prepared().endpoint
    )
    api.login(user="bob")
    key = _old_event("acme", days_ago=0, action="key.registered")
    assert old_stream.drain() == 1
    [delivery] = [d for d in Delivery.scan() if d.event_key == key and d.channel.startswith("mail#")]
    assert delivery.channel == "mail#acme#bob" and delivery.state == "delivered"
    assert any("bob@acme.example" in destination for mail in sent_mail for destination in mail.destinations)
    # Where the migration puts it: a redelivery finds it there.
    assert delivery.shard_key == audit.moved_to("acme", key)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--page-size", "0"], "not a page size: '0'"),
        (["--page-size", "many"], "not a page size: 'many'"),
    ],
)
def test_bad_options_are_one_line_and_exit_status_2(tmp_path, capsys, options, says):
    assert _migrate(tmp_path, *options) == 2
    error = capsys.readouterr().err
    assert says in error and error.count("\n") == 1


@pytest.mark.parametrize(
    "content",
    ["not json", json.dumps({"source": "x"}), json.dumps({"source": "a", "target": "b", "copied": "many"})],
)
def test_a_progress_file_of_something_else_is_refused_not_a_traceback(tmp_path, capsys, content):
    (tmp_path / "progress.json").write_text(content)
    assert _migrate(tmp_path) == 2
    error = capsys.readouterr().err
    assert "progress.json" in error and "--restart" in error and "Traceback" not in error


def test_the_progress_of_another_pair_of_tables_is_refused(tmp_path, capsys):
    (tmp_path / "progress.json").write_text(json.dumps({"source": "other-audit", "target": "other-audit-log"}))
    assert _migrate(tmp_path) == 2
    assert "is the progress of copying other-audit to other-audit-log" in capsys.readouterr().err


def test_the_same_table_as_source_and_target_is_refused(tmp_path, capsys, monkeypatch):
    import dataclasses

    from chalicelib.base.config import settings

    same = dataclasses.replace(settings(), tables=dataclasses.replace(settings().tables, legacy_audit="x", audit="x"))
    monkeypatch.setattr("chalicelib.base.config.settings", lambda: same)
    assert audit_migration.main(_arguments(tmp_path)) == 2
    assert "both name 'x'" in capsys.readouterr().err


def _arguments(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    audit_migration.add_arguments(parser)
    return parser.parse_args(["--progress", str(tmp_path / "progress.json")])
