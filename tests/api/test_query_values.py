"""Every query parameter of every endpoint: a value longer than DynamoDB accepts (or than any
stored value can be) is a 400 with a reason code, never a 503 — and values at the limit work."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

EMOJI = "\U0001f600"  # four bytes in UTF-8


def cursor(position: str) -> str:
    """A cursor as the API makes them, for any position."""
    return base64.urlsafe_b64encode(json.dumps({"after": position}).encode()).decode().rstrip("=")


@pytest.fixture
def keyless_admin(api):
    """alice, an admin of acme who holds no key, signed in with her IdP alone."""
    return api.login(user="alice", admin=True)


LISTS = ["/org/members", "/org/mfa/keys", "/org/audit"]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    "position",
    [
        "k" * 1025,  # one byte over DynamoDB's sort key limit
        EMOJI * 257,  # 257 characters, but 1028 bytes
        "k" * 100_000,
        "\ud800",  # a lone surrogate: no key can hold it
        "a\nb",
    ],
)
def test_a_cursor_past_what_a_sort_key_can_hold_is_a_bad_cursor(api, keyless_admin, path, position):
    reply = api.call("GET", f"{path}?next={cursor(position)}", token=keyless_admin.token)

    assert (reply.status, reply.code) == (400, "InvalidCursor"), reply.body


@pytest.mark.parametrize("path", LISTS)
def test_a_cursor_at_the_limit_is_a_cursor(api, keyless_admin, path):
    # The audit log's positions are event keys: their day says which shards to read on from.
    start = "2026-12-07T20:01:02.000003Z#" if path == "/org/audit" else ""
    room = 1024 - len(start)
    for position in (start + "k" * room, start + EMOJI * (room // 4)):
        assert len(position.encode()) == 1024
        reply = api.call("GET", f"{path}?next={cursor(position)}", token=keyless_admin.token)
        assert reply.status == 200, reply.body


def test_a_raw_cursor_of_any_length_is_a_bad_cursor(api, keyless_admin):
    reply = api.call("GET", "/org/audit?next=" + "A" * 200_000, token=keyless_admin.token)

    assert (reply.status, reply.code) == (400, "InvalidCursor"), reply.body


@pytest.mark.parametrize("path", ["/org/mfa/keys", "/org/audit"])
@pytest.mark.parametrize("user_id", ["u" * 256, EMOJI * 256, "u" * 5000, "bob\u0000"])
def test_a_user_id_longer_than_any_member_can_have_is_a_bad_request(api, keyless_admin, path, user_id):
    reply = api.call("GET", f"{path}?user_id={quote(user_id)}", token=keyless_admin.token)

    assert (reply.status, reply.code) == (400, "MalformedRequest"), reply.body
    assert "user_id" in reply.body["Message"]


@pytest.mark.parametrize("path", ["/org/mfa/keys", "/org/audit"])
def test_a_user_id_at_the_limit_lists_that_member(api, keyless_admin, path):
    longest = EMOJI * 255
    member = api.login(user=longest)
    if path == "/org/mfa/keys":
        assert api.add_key(member).status == 201

    reply = api.call("GET", f"{path}?user_id={quote(longest)}", token=keyless_admin.token)

    assert reply.status == 200, reply.body
    listed = reply.body["keys"] if path == "/org/mfa/keys" else reply.body["events"]
    assert listed and all((e["user"]["id"] if "user" in e else e["user_id"]) == longest for e in listed)


@pytest.mark.parametrize("action", ["a" * 65, "login\u0007", "x" * 100_000])
def test_an_action_longer_than_any_action_is_a_bad_request(api, keyless_admin, action):
    reply = api.call("GET", f"/org/audit?action={quote(action)}", token=keyless_admin.token)

    assert (reply.status, reply.code) == (400, "MalformedRequest"), reply.body
    assert "action" in reply.body["Message"]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("limit", ["0", "501", "9" * 5000, "-1", "1e3", "\u0661"])
def test_a_limit_out_of_range_is_a_bad_request(api, keyless_admin, path, limit):
    reply = api.call("GET", f"{path}?limit={quote(limit)}", token=keyless_admin.token)

    assert (reply.status, reply.code) == (400, "MalformedRequest"), reply.body


def test_empty_filters_list_everything(api, keyless_admin):
    api.login(user="bob")

    reply = api.call("GET", "/org/audit?user_id=&action=", token=keyless_admin.token)

    assert reply.status == 200
    assert {e["user_id"] for e in reply.body["events"]} == {"alice", "bob"}
