"""``python -m keyward migrate sessions``: an existing deployment's sessions, in the table of
before (keyed by organization and session ID, with the by-member local index), moved to the
table keyed by session ID — none lost, none overwritten, resumable, and its tokens still work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.background import session_migration
from chalicelib.background.session_migration import OldSession, old_sessions_table
from chalicelib.base.models import Session, member_session_key, org_shard_key, session_shard
from keyward.__main__ import main
from keyward.exits import run
from tests.support.sessions import org_sessions

# What the old code stored: no index keys, no sign-out generation.
_OLD_ATTRIBUTES = [
    name for name in OldSession.get_attributes() if name not in ("sign_out_generation", "org_shard", "member_session")
]


@pytest.fixture
def old_table() -> Iterator[type[OldSession]]:
    """An old-layout sessions table, as a deployment of before has it."""
    model = old_sessions_table(Session.Meta.table_name + "-before")
    model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
    yield model
    model.delete_table()


def _back_to_the_old_table(model: type[OldSession]) -> list[str]:
    """Every session keyward stored, put back where the old code kept it, as it kept it."""
    moved = []
    for session in Session.scan(consistent_read=True):
        values = {name: getattr(session, name) for name in _OLD_ATTRIBUTES if name not in ("org_id", "session_id")}
        model(session.org_id, session.session_id, **values).save()
        session.delete()
        moved.append(session.session_id)
    return moved


def _cli(*arguments: str) -> int:
    return run(lambda: main(["migrate", "sessions", *arguments]))


def _sid(token: str) -> str:
    return token.split(".")[3]


def test_every_session_is_moved_and_its_token_works_as_before(api, old_table, capsys):
    tokens = [api.login(org="acme", user=user).token for user in ("bob", "bob", "carol", "dave")]
    tokens.append(api.login(org="other", user="bob").token)
    moved = _back_to_the_old_table(old_table)
    assert len(moved) == 5 and org_sessions("acme") == []
    assert api.call("GET", "/me", token=tokens[0]).status == 401  # until they are moved

    assert _cli("--from", old_table.Meta.table_name, "--page-size", "2") == 0

    assert list(old_table.scan(consistent_read=True)) == []
    stored = {session.session_id: session for session in Session.scan(consistent_read=True)}
    assert set(stored) == set(moved)
    for session in stored.values():
        assert session.org_shard == org_shard_key(session.org_id, session_shard(session.user_id))
        assert session.member_session == member_session_key(session.user_id, session.session_id)
        assert session.sign_out_generation == 0
    for token in tokens:
        assert api.call("GET", "/me", token=token).status == 200
    listed = api.call("GET", "/me/sessions", token=tokens[0]).body["sessions"]
    assert {s["id"] for s in listed} == {_sid(tokens[0]), _sid(tokens[1])}
    out = capsys.readouterr().out
    assert "cursor " in out and "scan complete" in out and out.strip().endswith("5 moved, 0 already there")


def test_an_interrupted_run_resumes_from_its_cursor_and_moves_each_session_once(api, old_table, monkeypatch, capsys):
    for user in ("bob", "carol", "dave", "erin", "frank", "gina", "hal"):
        api.login(user=user)
    moved = set(_back_to_the_old_table(old_table))
    name = old_table.Meta.table_name

    first = session_migration.migrate(old_table=name, page_size=3, max_pages=1)
    assert (first.moved, first.complete) == (3, False) and first.cursor

    # The next run dies in the middle of its second page (the operator's laptop sleeps).
    real_move = session_migration._move
    calls = []

    def dying(model: Any, old: Any) -> bool:
        calls.append(old.session_id)
        if len(calls) == 4:  # the first session of the run's second page
            raise KeyboardInterrupt
        return real_move(model, old)

    monkeypatch.setattr(session_migration, "_move", dying)
    assert _cli("--from", name, "--cursor", first.cursor, "--page-size", "3") == 130
    printed = [line for line in capsys.readouterr().out.splitlines() if "cursor " in line]
    monkeypatch.setattr(session_migration, "_move", real_move)
    last_cursor = printed[-1].rsplit("cursor ", 1)[1]

    assert _cli("--from", name, "--cursor", last_cursor, "--page-size", "3") == 0

    assert list(old_table.scan(consistent_read=True)) == []
    assert {s.session_id for s in Session.scan(consistent_read=True)} == moved
    # And once more from the start: nothing left, nothing written.
    assert _cli("--from", name) == 0
    assert capsys.readouterr().out.strip().endswith("0 moved, 0 already there")


def test_a_session_already_in_the_new_table_is_never_overwritten(api, old_table):
    bob = api.login(user="bob")
    [session] = Session.scan(consistent_read=True)
    # An old copy left behind, older than the session keyward has now (which passed MFA since).
    values = {name: getattr(session, name) for name in _OLD_ATTRIBUTES if name not in ("org_id", "session_id")}
    old_table(session.org_id, session.session_id, **{**values, "state": "mfa_required", "token_hash": "stale"}).save()

    done = session_migration.migrate(old_table=old_table.Meta.table_name)

    assert (done.moved, done.present) == (0, 1)
    kept = Session.get(session.session_id, consistent_read=True)
    assert (kept.state, kept.token_hash) == (session.state, session.token_hash)
    assert list(old_table.scan(consistent_read=True)) == []
    assert api.call("GET", "/me", token=bob.token).status == 200


def test_a_session_the_old_code_changes_meanwhile_is_moved_as_it_is_now(api, old_table, monkeypatch):
    api.login(user="bob")
    _back_to_the_old_table(old_table)
    real = session_migration._as_new
    changed = []

    def old_code_verifies_mfa_meanwhile(old: Any) -> Any:
        if not changed:
            changed.append(old.session_id)
            old_table(old.org_id, old.session_id).update(actions=[old_table.state.set("active-after-mfa")])
        return real(old)

    monkeypatch.setattr(session_migration, "_as_new", old_code_verifies_mfa_meanwhile)

    done = session_migration.migrate(old_table=old_table.Meta.table_name)

    assert done.moved == 1
    assert Session.get(changed[0], consistent_read=True).state == "active-after-mfa"
    assert list(old_table.scan(consistent_read=True)) == []


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--cursor", "not-a-cursor"], "not a cursor of `migrate sessions`"),
        (["--page-size", "lots"], "not a page size"),
        (["--page-size", "0"], "not a page size"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(old_table, capsys, arguments, says):
    assert _cli("--from", old_table.Meta.table_name, *arguments) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_new_table_or_another_kind_of_table_is_refused(capsys):
    from chalicelib.base.models import Member

    assert _cli("--from", Session.Meta.table_name) == 2
    assert "sessions table keyward uses now" in capsys.readouterr().err
    assert _cli("--from", Member.Meta.table_name) == 2
    assert "not keyed as the old sessions table was" in capsys.readouterr().err
    assert _cli("--from", "not a table!") == 2
    assert "not a DynamoDB table name" in capsys.readouterr().err


def test_a_table_that_does_not_exist_is_one_line_and_exit_status_1(capsys):
    assert _cli("--from", "no-such-sessions-table") == 1
    err = capsys.readouterr().err
    assert "ResourceNotFoundException" in err and len(err.strip().splitlines()) == 1
