"""Organization settings → Multi-factor authentication: the admin-only endpoints.

GET/PUT /org/mfa, GET /org/members, GET /org/mfa/keys and
DELETE /org/members/{user_id}/mfa/keys/{key_id}: who may call them, what they show, how they
page, and that an admin of one organization never sees or touches another organization's data.
"""

from __future__ import annotations

import base64
import json

import pytest

from chalicelib.base.models import CredentialClaim, Member, Organization, SecurityKey
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator

LISTS = [("/org/members", "members"), ("/org/mfa/keys", "keys")]
UNKNOWN_KEY_ID = "A" * 22  # well-formed, never registered


# --- helpers ----------------------------------------------------------------------------------


def _admin(api, org: str, user: str):
    """An admin holding one key, signed in through MFA (needed to enforce)."""
    first = api.login(org=org, user=user, admin=True)
    assert api.add_key(first, SoftwareAuthenticator()).status == 201
    return api.mfa_login(org=org, user=user, authenticator=first.authenticators[0], admin=True)


def _member(api, org: str, user: str, keys: int = 0):
    member = api.login(org=org, user=user)
    for n in range(keys):
        assert api.add_key(member, name=f"{user} key {n}").status == 201
    return member


def _key_ids(org: str, user: str | None = None) -> set[str]:
    return {k.key_id for k in SecurityKey.query(org, consistent_read=True) if user in (None, k.user_id)}


def _key_count(org: str, user: str) -> int:
    return Member.get(org, user, consistent_read=True).key_count


def _exists(model, *key) -> bool:
    try:
        model.get(*key, consistent_read=True)
    except model.DoesNotExist:
        return False
    return True


def _cursor(document) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def _pages(api, token: str, path: str, field: str, *, limit: int, query: str = "") -> list[list[dict]]:
    """Every page of a list, following ``next`` until it is null."""
    pages, cursor = [], None
    for _ in range(100):
        url = f"{path}?limit={limit}{query}" + (f"&next={cursor}" if cursor else "")
        reply = api.call("GET", url, token=token)
        assert reply.status == 200, reply.body
        pages.append(reply.body[field])
        cursor = reply.body["next"]
        if cursor is None:
            return pages
    raise AssertionError("the list never ended")


def _sizes(pages: list[list[dict]]) -> list[int]:
    """Page sizes, ignoring one empty last page (allowed when the previous page was full)."""
    sizes = [len(page) for page in pages]
    return sizes[:-1] if len(sizes) > 1 and sizes[-1] == 0 else sizes


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def acme(api):
    """acme: alice (admin, 1 key, through MFA), bob (2 keys), carol (no key)."""
    return {
        "alice": _admin(api, "acme", "alice"),
        "bob": _member(api, "acme", "bob", keys=2),
        "carol": _member(api, "acme", "carol"),
    }


@pytest.fixture
def umbrella(api):
    """umbrella: ursula (admin, 1 key, through MFA) and uma (1 key)."""
    return {"ursula": _admin(api, "umbrella", "ursula"), "uma": _member(api, "umbrella", "uma", keys=1)}


# --- admins only ------------------------------------------------------------------------------


def _admin_only_requests():
    alices_key = next(iter(_key_ids("acme", "alice")))
    return [
        ("GET", "/org/mfa", None),
        ("PUT", "/org/mfa", {"enforced": True, "without_backup_credentials": True}),
        ("GET", "/org/members", None),
        ("GET", "/org/mfa/keys", None),
        ("DELETE", f"/org/members/alice/mfa/keys/{alices_key}", None),
    ]


@pytest.mark.parametrize("endpoint", range(5), ids=["GET mfa", "PUT mfa", "GET members", "GET keys", "DELETE key"])
def test_a_member_is_refused_every_admin_endpoint_and_changes_nothing(api, acme, endpoint):
    method, path, body = _admin_only_requests()[endpoint]
    keys_before = _key_ids("acme")

    reply = api.call(method, path, token=acme["bob"].token, body=body)

    assert (reply.status, reply.code) == (403, "AdminRequired")
    assert Organization.get("acme", consistent_read=True).mfa_enforced is False
    assert _key_ids("acme") == keys_before
    assert _key_count("acme", "alice") == 1


# --- GET /org/mfa -----------------------------------------------------------------------------


def test_status_counts_members_and_compliant_ones_before_any_enforcement(api, acme):
    reply = api.call("GET", "/org/mfa", token=acme["alice"].token)

    assert reply.status == 200, reply.body
    assert reply.body == {
        "enforced": False,
        "enforced_at": None,
        "enforced_by": None,
        "members_total": 3,
        "members_compliant": 2,
        "compliance": {"state": "done"},
        "invalidation": None,
        "enrollment": "open",
        "grace_period_hours": 0,
        "registration_due_at": None,
    }


# --- GET /org/members -------------------------------------------------------------------------


def test_members_show_their_fields_and_compliance_means_holding_a_key(api, acme):
    reply = api.call("GET", "/org/members", token=acme["alice"].token)

    assert reply.status == 200, reply.body
    assert reply.body["next"] is None
    shown = {m["id"]: m for m in reply.body["members"]}
    assert set(shown) == {"alice", "bob", "carol"}
    for member in shown.values():
        assert set(member) == {"id", "name", "email", "admin", "key_count", "compliant", "last_login_at"}
        assert member["compliant"] is (member["key_count"] > 0)
        assert member["last_login_at"].endswith("Z")
    assert {k: shown["bob"][k] for k in ("name", "email", "admin", "key_count", "compliant")} == {
        "name": "Bob",
        "email": "bob@acme.example",
        "admin": False,
        "key_count": 2,
        "compliant": True,
    }
    assert (shown["carol"]["key_count"], shown["carol"]["compliant"]) == (0, False)
    assert (shown["alice"]["admin"], shown["alice"]["key_count"]) == (True, 1)


def test_members_page_through_the_whole_org_exactly_once(api):
    alice = api.login(user="alice", admin=True)
    everyone = {"alice"} | {f"user{i:02}" for i in range(24)}
    for user in sorted(everyone - {"alice"}):
        api.login(user=user)

    pages = _pages(api, alice.token, "/org/members", "members", limit=10)

    assert _sizes(pages) == [10, 10, 5]
    ids = [m["id"] for page in pages for m in page]
    assert len(ids) == len(set(ids)) and set(ids) == everyone


@pytest.mark.parametrize("path,field", LISTS)
@pytest.mark.parametrize("limit", ["0", "501", "abc", "-1", "1.5", "", "%20%207"])
def test_a_bad_limit_is_refused(api, path, field, limit):
    alice = api.login(user="alice", admin=True)
    reply = api.call("GET", f"{path}?limit={limit}", token=alice.token)
    assert (reply.status, reply.code) == (400, "MalformedRequest")


@pytest.mark.parametrize("path,field", LISTS)
def test_a_superscript_digit_limit_is_refused(api, path, field):
    alice = api.login(user="alice", admin=True)
    reply = api.call("GET", f"{path}?limit=%C2%B2", token=alice.token)  # "²"
    assert (reply.status, reply.code) == (400, "MalformedRequest")


@pytest.mark.parametrize("path,field", LISTS)
@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        "bm90LWpzb24",  # not base64url; base64url of "not-json"
        _cursor([1]),
        _cursor({"position": "bob"}),
        _cursor({"after": 5}),
        _cursor({"after": ""}),
        _cursor({"after": "x" * 1025}),
    ],
    ids=["junk", "not-json", "list", "no-after", "number", "empty", "too-long"],
)
def test_a_garbage_cursor_is_refused(api, path, field, cursor):
    alice = api.login(user="alice", admin=True)
    reply = api.call("GET", f"{path}?next={cursor}", token=alice.token)
    assert (reply.status, reply.code) == (400, "InvalidCursor")


# --- GET /org/mfa/keys ------------------------------------------------------------------------


@pytest.fixture
def twelve_keys(api):
    """alice (admin, no key) and four members with three keys each."""
    alice = api.login(user="alice", admin=True)
    for i in range(4):
        _member(api, "acme", f"m{i}", keys=3)
    return alice


def test_keys_show_their_fields_and_owner(api, acme):
    reply = api.call("GET", "/org/mfa/keys", token=acme["alice"].token)

    assert reply.status == 200, reply.body
    assert reply.body["next"] is None
    shown = {k["id"]: k for k in reply.body["keys"]}
    assert set(shown) == _key_ids("acme")
    for key in shown.values():
        assert {"id", "name", "created_at", "last_used_at", "user"} <= set(key)
        assert key["created_at"].endswith("Z")
    owners = {key["user"]["id"]: key["user"] for key in shown.values()}
    assert owners == {"alice": {"id": "alice", "name": "Alice"}, "bob": {"id": "bob", "name": "Bob"}}
    bobs = sorted(k["name"] for k in shown.values() if k["user"]["id"] == "bob")
    assert bobs == ["bob key 0", "bob key 1"]
    assert all(k["last_used_at"] is None for k in shown.values() if k["user"]["id"] == "bob")
    # alice's key passed her MFA login.
    assert next(k for k in shown.values() if k["user"]["id"] == "alice")["last_used_at"].endswith("Z")


def test_keys_page_through_the_whole_org_exactly_once(api, twelve_keys):
    pages = _pages(api, twelve_keys.token, "/org/mfa/keys", "keys", limit=5)

    assert _sizes(pages) == [5, 5, 2]
    ids = [k["id"] for page in pages for k in page]
    assert len(ids) == len(set(ids)) and set(ids) == _key_ids("acme")


def test_the_user_filter_shows_one_members_keys_page_by_page(api, twelve_keys):
    pages = _pages(api, twelve_keys.token, "/org/mfa/keys", "keys", limit=2, query="&user_id=m1")

    assert _sizes(pages) == [2, 1]
    shown = [k for page in pages for k in page]
    assert {k["user"]["id"] for k in shown} == {"m1"}
    assert sorted(k["id"] for k in shown) == sorted(_key_ids("acme", "m1"))


def test_the_user_filter_for_someone_without_keys_is_empty(api, acme):
    for user in ("carol", "nobody"):
        reply = api.call("GET", f"/org/mfa/keys?user_id={user}", token=acme["alice"].token)
        assert (reply.status, reply.body) == (200, {"keys": [], "next": None})


def test_an_empty_user_filter_means_no_filter(api, acme):
    reply = api.call("GET", "/org/mfa/keys?user_id=", token=acme["alice"].token)
    assert reply.status == 200, reply.body
    assert {key["user"]["id"] for key in reply.body["keys"]} >= {"alice", "bob"}


# --- DELETE /org/members/{user_id}/mfa/keys/{id} ----------------------------------------------


def test_an_admin_deletes_a_members_key(api, acme):
    doomed, kept = sorted(_key_ids("acme", "bob"))

    reply = api.call("DELETE", f"/org/members/bob/mfa/keys/{doomed}", token=acme["alice"].token)

    assert reply.status == 204, reply.body
    assert not _exists(SecurityKey, "acme", doomed) and not _exists(CredentialClaim, doomed)
    assert _exists(SecurityKey, "acme", kept) and _exists(CredentialClaim, kept)
    assert _key_count("acme", "bob") == 1
    listed = api.call("GET", "/org/mfa/keys?user_id=bob", token=acme["alice"].token).body["keys"]
    assert [k["id"] for k in listed] == [kept]


@pytest.mark.parametrize(
    "user,key",
    [("carol", "bobs"), ("alice", "bobs"), ("nobody", "bobs"), ("bob", UNKNOWN_KEY_ID), ("bob", "not-a-key-id")],
)
def test_deleting_a_key_the_member_does_not_hold_is_not_found_and_changes_nothing(api, acme, user, key):
    key_id = sorted(_key_ids("acme", "bob"))[0] if key == "bobs" else key
    before = (_key_ids("acme"), {u: _key_count("acme", u) for u in ("alice", "bob", "carol")})

    reply = api.call("DELETE", f"/org/members/{user}/mfa/keys/{key_id}", token=acme["alice"].token)

    assert (reply.status, reply.code) == (404, "KeyNotFound")
    assert (_key_ids("acme"), {u: _key_count("acme", u) for u in ("alice", "bob", "carol")}) == before
    assert all(_exists(CredentialClaim, k) for k in before[0])


def _audited_deletions(org: str) -> list[str]:
    return [event.target for event in logged_events(org) if event.action == "key.deleted"]


def test_under_enforcement_an_admin_may_not_delete_a_members_last_key(api, acme):
    alice = acme["alice"]
    assert (
        api.call(
            "PUT", "/org/mfa", token=alice.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    first, last = sorted(_key_ids("acme", "bob"))
    assert api.call("DELETE", f"/org/members/bob/mfa/keys/{first}", token=alice.token).status == 204

    reply = api.call("DELETE", f"/org/members/bob/mfa/keys/{last}", token=alice.token)

    assert (reply.status, reply.code) == (409, "LastKeyRequired"), reply.body
    assert "last security key" in reply.body["Message"]
    assert _key_ids("acme", "bob") == {last} and _key_count("acme", "bob") == 1
    assert _exists(CredentialClaim, last)
    assert _audited_deletions("acme") == [first]
    listed = api.call("GET", "/org/mfa/keys?user_id=bob", token=alice.token).body["keys"]
    assert [key["id"] for key in listed] == [last]
    status = api.call("GET", "/org/mfa", token=alice.token).body
    assert (status["members_total"], status["members_compliant"]) == (3, 2)


def test_under_enforcement_an_admin_may_not_delete_her_own_last_key_from_the_organizations_keys(api, acme):
    alice = acme["alice"]
    assert (
        api.call(
            "PUT", "/org/mfa", token=alice.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    [own] = _key_ids("acme", "alice")

    reply = api.call("DELETE", f"/org/members/alice/mfa/keys/{own}", token=alice.token)

    # The same answer as Personal settings gives her (DELETE /me/mfa/keys/{id}).
    assert (reply.status, reply.code) == (409, "LastKeyRequired"), reply.body
    assert api.call("DELETE", f"/me/mfa/keys/{own}", token=alice.token).code == "LastKeyRequired"
    assert _key_ids("acme", "alice") == {own} and _key_count("acme", "alice") == 1
    assert _audited_deletions("acme") == []


def test_without_enforcement_an_admin_may_delete_a_members_last_key(api, acme):
    alice = acme["alice"]

    for key_id in sorted(_key_ids("acme", "bob")):
        reply = api.call("DELETE", f"/org/members/bob/mfa/keys/{key_id}", token=alice.token)
        assert reply.status == 204, reply.body

    assert _key_ids("acme", "bob") == set() and _key_count("acme", "bob") == 0
    assert api.login(user="bob").state == "active"


# --- isolation between organizations ----------------------------------------------------------


def test_member_list_shows_only_the_callers_org(api, acme, umbrella):
    reply = api.call("GET", "/org/members", token=umbrella["ursula"].token)
    assert reply.status == 200, reply.body
    assert {m["id"] for m in reply.body["members"]} == {"ursula", "uma"}


def test_key_list_shows_only_the_callers_org(api, acme, umbrella):
    reply = api.call("GET", "/org/mfa/keys", token=umbrella["ursula"].token)
    assert reply.status == 200, reply.body
    assert {k["id"] for k in reply.body["keys"]} == _key_ids("umbrella")
    assert {k["user"]["id"] for k in reply.body["keys"]} == {"ursula", "uma"}


def test_filtering_keys_by_another_orgs_member_is_empty(api, acme, umbrella):
    reply = api.call("GET", "/org/mfa/keys?user_id=bob", token=umbrella["ursula"].token)
    assert (reply.status, reply.body) == (200, {"keys": [], "next": None})


def test_status_and_enforcement_are_per_org(api, acme, umbrella):
    assert (
        api.call(
            "PUT", "/org/mfa", token=acme["alice"].token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )

    shown = api.call("GET", "/org/mfa", token=umbrella["ursula"].token).body
    assert (shown["enforced"], shown["members_total"], shown["members_compliant"]) == (False, 2, 2)

    relaxed = api.call("PUT", "/org/mfa", token=umbrella["ursula"].token, body={"enforced": False})
    assert (relaxed.status, relaxed.body["enforced"]) == (200, False)
    assert Organization.get("acme", consistent_read=True).mfa_enforced is True

    # and the other way round: umbrella enforcing ends no session of acme's.
    carol = api.login(user="carol")
    assert (
        api.call(
            "PUT",
            "/org/mfa",
            token=umbrella["ursula"].token,
            body={"enforced": True, "without_backup_credentials": True},
        ).status
        == 200
    )
    assert api.call("GET", "/me", token=carol.token).status == 200


@pytest.mark.parametrize("umbrella_has_a_bob", [False, True])
def test_an_admin_cannot_delete_another_orgs_key(api, acme, umbrella, umbrella_has_a_bob):
    if umbrella_has_a_bob:
        _member(api, "umbrella", "bob", keys=1)
    acme_key = sorted(_key_ids("acme", "bob"))[0]
    umbrella_before = _key_ids("umbrella")

    reply = api.call("DELETE", f"/org/members/bob/mfa/keys/{acme_key}", token=umbrella["ursula"].token)

    assert (reply.status, reply.code) == (404, "KeyNotFound")
    assert SecurityKey.get("acme", acme_key, consistent_read=True).user_id == "bob"
    assert CredentialClaim.get(acme_key, consistent_read=True).org_id == "acme"
    assert _key_count("acme", "bob") == 2
    assert _key_ids("umbrella") == umbrella_before
    if umbrella_has_a_bob:
        assert _key_count("umbrella", "bob") == 1


@pytest.mark.parametrize("path,field", LISTS)
def test_another_orgs_cursor_reveals_nothing_of_it(api, acme, umbrella, path, field):
    acme_page = api.call("GET", f"{path}?limit=1", token=acme["alice"].token).body
    assert acme_page["next"] is not None
    acme_ids = {m["id"] for m in api.call("GET", path, token=acme["alice"].token).body[field]}

    reply = api.call("GET", f"{path}?next={acme_page['next']}", token=umbrella["ursula"].token)

    assert reply.status == 200, reply.body
    shown = {item["id"] for item in reply.body[field]}
    assert shown <= {m["id"] for m in api.call("GET", path, token=umbrella["ursula"].token).body[field]}
    assert not shown & acme_ids
    if field == "keys":
        assert all(k["user"]["id"] in {"ursula", "uma"} for k in reply.body["keys"])
