"""The audit log: a complete trail of who did what to whom, newest first, paged, filtered, for
admins of the organization only; refusals logged as refusals and never as done."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.base.models import AuditEvent, Organization, SecurityKey
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import USER_AGENT, Member
from tests.support.sessions import org_sessions

LOCAL_IP = "127.0.0.1"  # what Chalice's test gateway reports as the source IP
EVIL_ORIGIN = "https://evil.example"


def _events(api, member, **query):
    """Every event the query lists, following ``next`` to the end; asserts each page's shape."""
    found, cursor = [], None
    for _ in range(100):
        params = {**query, **({"next": cursor} if cursor else {})}
        path = "/org/audit" + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")
        reply = api.call("GET", path, token=member.token)
        assert reply.status == 200, reply.body
        if "limit" in query:
            assert len(reply.body["events"]) <= int(query["limit"])
        found += reply.body["events"]
        cursor = reply.body["next"]
        if cursor is None:
            return found
    raise AssertionError("the cursor never ran out")


def _trail(events):
    return [(e["action"], e["actor"], e["target"]) for e in events]


def _key_id(reply) -> str:
    assert reply.status == 201, reply.body
    return reply.body["key"]["id"]


def _fail_mfa(api, member, authenticator, **forged):
    options = api.mfa_options(member)
    assert options.status == 200, options.body
    return api.mfa_verify(
        member, options.body["challenge_id"], authenticator.authenticate(options.body["publicKey"], **forged)
    )


# --- the complete trail ---------------------------------------------------------------------------


def test_a_scripted_morning_leaves_a_complete_trail_newest_first(api, stream):
    alice = api.login(user="alice", admin=True)
    alices_key = SoftwareAuthenticator()
    alices_key_id = _key_id(api.add_key(alice, alices_key))
    alice = api.mfa_login(org="acme", user="alice", authenticator=alices_key, admin=True)
    issued = api.call("POST", "/org/backup-credentials", token=alice.token)
    assert issued.status == 201, issued.body
    backup_id, secret = issued.body["key_id"], issued.body["secret"]
    assert api.call("PUT", "/org/mfa", token=alice.token, body={"enforced": True}).status == 200
    stream.drain()

    bob = api.login(user="bob")
    assert bob.state == "registration_required"
    bobs_key = SoftwareAuthenticator()
    bobs_key_id = _key_id(api.add_key(bob, bobs_key))
    verified = api.mfa_login(org="acme", user="bob", authenticator=bobs_key)
    # A spare key, so that bob's first is not his last: under enforcement, that one stays.
    spare_key_id = _key_id(api.add_key(verified, SoftwareAuthenticator()))
    failing = api.login(user="bob")
    assert _fail_mfa(api, failing, bobs_key, origin=EVIL_ORIGIN).code == "OriginMismatch"
    assert api.call("DELETE", f"/org/members/bob/mfa/keys/{bobs_key_id}", token=alice.token).status == 204
    backup = api.call("POST", "/auth/backup-login", body={"key_id": backup_id, "secret": secret})
    assert backup.status == 200, backup.body
    wrong = api.call("POST", "/auth/backup-login", body={"key_id": backup_id, "secret": secret[::-1]})
    assert (wrong.status, wrong.code) == (401, "InvalidBackupCredentials")

    events = _events(api, alice)
    backup_actor = f"backup credentials {backup_id}"
    assert _trail(events) == [
        ("backup_login.failed", backup_actor, backup_id),
        ("backup_login.succeeded", backup_actor, backup_id),
        ("key.deleted", "alice", bobs_key_id),
        ("mfa.failed", "bob", "bob"),
        ("login", "bob", "bob"),
        ("key.registered", "bob", spare_key_id),
        ("mfa.succeeded", "bob", bobs_key_id),
        ("login", "bob", "bob"),
        ("key.registered", "bob", bobs_key_id),
        ("login", "bob", "bob"),
        ("enforcement.sessions_ended", "alice", "acme"),
        ("enforcement.enabled", "alice", "acme"),
        ("backup_credentials.created", "alice", backup_id),
        ("mfa.succeeded", "alice", alices_key_id),
        ("login", "alice", "alice"),
        ("key.registered", "alice", alices_key_id),
        ("login", "alice", "alice"),
    ]
    # The backup session, an admin too, reads the same trail.
    assert _events(api, Member(org="acme", user="backup", token=backup.body["token"], state="active")) == events

    by_action = {}
    for entry in events:
        by_action.setdefault(entry["action"], []).append(entry)
        assert set(entry) >= {"at", "actor", "action", "target", "user_id", "source_ip", "user_agent", "details"}
        assert entry["at"].endswith("Z")
        from_the_stream = entry["action"] == "enforcement.sessions_ended"
        assert entry["source_ip"] == (None if from_the_stream else LOCAL_IP), entry
        assert entry["user_agent"] == (None if from_the_stream else USER_AGENT), entry
    assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)

    assert [e["details"]["state"] for e in by_action["login"]] == [
        "mfa_required",
        "mfa_required",
        "registration_required",
        "mfa_required",
        "active",
    ]
    assert all(e["details"]["method"] == "idp" for e in by_action["login"])
    assert [e["user_id"] for e in by_action["login"]] == ["bob", "bob", "bob", "alice", "alice"]
    [ended] = by_action["enforcement.sessions_ended"]
    assert ended["details"]["sessions_ended"] == 1  # alice's first session; her enforcing one is spared
    [enabled] = by_action["enforcement.enabled"]
    assert enabled["details"]["generation"] == 1
    assert enabled["details"]["session_id"] == alice.token.split(".")[3]
    [deleted] = by_action["key.deleted"]
    assert (deleted["details"]["by"], deleted["user_id"]) == ("admin", "bob")
    assert [e["details"]["by"] for e in by_action["key.registered"]] == ["self", "self", "self"]
    [failed] = by_action["mfa.failed"]
    assert (failed["details"]["reason"], failed["user_id"]) == ("OriginMismatch", "bob")
    [succeeded] = by_action["backup_login.succeeded"]
    assert succeeded["details"]["session_id"] == backup.body["token"].split(".")[3]


def test_an_enforcement_set_by_an_operator_is_logged_as_the_operators(api, admin, stream):
    api.login(user="bob")
    Organization("acme").update(actions=[Organization.mfa_enforced.set(True)])  # the console
    stream.drain()

    alice = api.mfa_login(org="acme", user="alice", authenticator=admin.authenticators[0], admin=True)
    [enabled] = _events(api, alice, action="enforcement.enabled")
    assert (enabled["actor"], enabled["target"], enabled["source_ip"]) == ("operator", "acme", None)
    assert enabled["details"]["generation"] == 1
    [ended] = _events(api, alice, action="enforcement.sessions_ended")
    assert ended["actor"] == "operator"
    assert ended["details"]["sessions_ended"] == 3  # both of alice's and bob's: none is spared


def test_the_other_actions_are_logged_with_their_details(api):
    alice = api.login(user="alice", admin=True)
    bob = api.login(user="bob")
    a, b = SoftwareAuthenticator(), SoftwareAuthenticator()
    key_a, key_b = _key_id(api.add_key(bob, a, name="A")), _key_id(api.add_key(bob, b, name="B"))
    assert api.call("PATCH", f"/me/mfa/keys/{key_a}", token=bob.token, body={"name": " Red "}).status == 200
    api.mfa_login(org="acme", user="bob", authenticator=b)
    cloned = api.login(user="bob")
    b.sign_count = 0  # a clone of B, behind the original's counter
    assert _fail_mfa(api, cloned, b).code == "SignCountRegression"
    assert api.call("DELETE", f"/me/mfa/keys/{key_a}", token=bob.token).status == 204
    assert api.call("DELETE", "/me/mfa", token=bob.token).status == 204
    assert api.call("DELETE", f"/me/sessions/{cloned.token.split('.')[3]}", token=bob.token).status == 204
    assert api.call("DELETE", "/org/members/bob/sessions", token=alice.token).status == 204
    backup_id = api.call("POST", "/org/backup-credentials", token=alice.token).body["key_id"]
    assert api.call("DELETE", f"/org/backup-credentials/{backup_id}", token=alice.token).status == 204
    alices_key_id = _key_id(api.add_key(alice))
    assert (
        api.call(
            "PUT", "/org/mfa", token=alice.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    assert api.call("PUT", "/org/mfa", token=alice.token, body={"enforced": False}).status == 200

    events = _events(api, alice)
    assert _trail(events)[:15] == [
        ("enforcement.disabled", "alice", "acme"),
        ("enforcement.enabled", "alice", "acme"),
        ("key.registered", "alice", alices_key_id),
        ("backup_credentials.deleted", "alice", backup_id),
        ("backup_credentials.created", "alice", backup_id),
        ("member.sessions_ended", "alice", "bob"),
        ("session.ended", "bob", cloned.token.split(".")[3]),
        ("mfa.disabled", "bob", "bob"),
        ("key.deleted", "bob", key_a),
        ("mfa.failed", "bob", "bob"),
        ("key.sign_count_regression", "bob", key_b),
        ("login", "bob", "bob"),  # the clone's
        ("mfa.succeeded", "bob", key_b),
        ("login", "bob", "bob"),  # the session that passed MFA with B
        ("key.renamed", "bob", key_a),
    ]
    details = [e["details"] for e in events[:15]]
    # Only the first session was left: disabling MFA ended the one verified with B, bob the clone's.
    assert details[5]["sessions_ended"] == 1
    assert details[7] == {"keys_deleted": 1, "keys": [{"id": key_b, "name": "B"}]}
    # A deleted key is named as it was called when it went.
    assert details[8] == {"by": "self", "name": "Red"}
    assert details[9]["reason"] == "SignCountRegression"
    assert (details[10]["stored"], details[10]["presented"]) == (1, 1)
    assert details[14] == {"name": "Red"}
    assert all(e["user_agent"] == USER_AGENT and e["source_ip"] == LOCAL_IP for e in events)


# --- refusals are not logged as done --------------------------------------------------------------


def test_refused_actions_are_not_logged_as_done(api, admin):
    keyless_admin = api.login(user="dora", admin=True)
    assert (
        api.call(
            "PUT", "/org/mfa", token=keyless_admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).code
        == "SecurityKeyRequired"
    )
    assert _events(api, admin, action="enforcement.enabled") == []

    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    carol = api.login(user="carol")
    options = api.registration_options(carol)
    forged = SoftwareAuthenticator().register(options.body["publicKey"], origin=EVIL_ORIGIN)
    refused = api.call(
        "POST",
        "/me/mfa/keys",
        token=carol.token,
        body={"challenge_id": options.body["challenge_id"], "name": "Evil", "credential": forged},
    )
    assert refused.code == "OriginMismatch"
    assert _events(api, admin, action="key.registered", user_id="carol") == []

    bob = api.login(user="bob")
    bobs_key_id = _key_id(api.add_key(bob))
    assert api.call("DELETE", f"/me/mfa/keys/{bobs_key_id}", token=bob.token).code == "LastKeyRequired"
    assert api.call("DELETE", "/me/mfa", token=bob.token).code == "LastKeyRequired"
    for name in ("   ", "x" * 65, "tab\there"):
        assert (
            api.call("PATCH", f"/me/mfa/keys/{bobs_key_id}", token=bob.token, body={"name": name}).code
            == "InvalidKeyName"
        )
    alices_key_id = next(iter(SecurityKey.by_member.query("acme", SecurityKey.user_id == "alice"))).key_id
    assert (
        api.call("PATCH", f"/me/mfa/keys/{alices_key_id}", token=bob.token, body={"name": "Mine"}).code == "KeyNotFound"
    )
    assert api.call("DELETE", f"/me/mfa/keys/{alices_key_id}", token=bob.token).code == "KeyNotFound"
    assert api.call("DELETE", f"/org/members/carol/mfa/keys/{bobs_key_id}", token=admin.token).code == "KeyNotFound"

    assert _events(api, admin, action="key.deleted") == []
    assert _events(api, admin, action="key.renamed") == []
    assert _events(api, admin, action="mfa.disabled") == []
    assert [e["user_id"] for e in _events(api, admin, action="key.registered")] == ["bob", "alice"]
    assert SecurityKey.count("acme") == 2


# --- paging, filters and who may read it ----------------------------------------------------------


def _busy_morning(api):
    """Ten events of four people; returns alice, the admin who reads them."""
    alice = api.login(user="alice", admin=True)
    bob = api.login(user="bob")
    bobs_key = SoftwareAuthenticator()
    key_id = _key_id(api.add_key(bob, bobs_key))
    api.login(user="carol")
    bob = api.mfa_login(org="acme", user="bob", authenticator=bobs_key)
    assert api.call("POST", "/org/backup-credentials", token=alice.token).status == 201
    api.login(user="carol")
    assert api.call("PATCH", f"/me/mfa/keys/{key_id}", token=bob.token, body={"name": "Blue"}).status == 200
    api.login(user="dave")
    return alice


def test_pages_are_complete_without_repeats_newest_first(api):
    alice = _busy_morning(api)
    everything = _events(api, alice)
    assert [(e["action"], e["actor"]) for e in everything] == [
        ("login", "dave"),
        ("key.renamed", "bob"),
        ("login", "carol"),
        ("backup_credentials.created", "alice"),
        ("mfa.succeeded", "bob"),
        ("login", "bob"),
        ("login", "carol"),
        ("key.registered", "bob"),
        ("login", "bob"),
        ("login", "alice"),
    ]
    first = api.call("GET", "/org/audit?limit=3", token=alice.token).body
    assert len(first["events"]) == 3 and first["next"]
    assert _events(api, alice, limit=3) == everything
    assert _events(api, alice, limit=1) == everything


def test_filters_by_action_by_member_and_both(api):
    alice = _busy_morning(api)
    everything = _events(api, alice)

    logins = _events(api, alice, action="login")
    assert logins == [e for e in everything if e["action"] == "login"]
    assert [e["actor"] for e in logins] == ["dave", "carol", "bob", "carol", "bob", "alice"]
    bobs = _events(api, alice, user_id="bob")
    assert [e["action"] for e in bobs] == ["key.renamed", "mfa.succeeded", "login", "key.registered", "login"]
    assert _events(api, alice, action="login", user_id="bob") == [e for e in bobs if e["action"] == "login"]
    assert _events(api, alice, action="nothing.happened") == []
    # Filtered pages hold only matches and, followed to the end, all of them.
    assert _events(api, alice, action="login", limit=2) == logins
    assert _events(api, alice, action="login", user_id="bob", limit=1) == [e for e in bobs if e["action"] == "login"]


@pytest.mark.parametrize("limit", ["0", "-1", "501", "abc", "1.5", ""])
def test_a_bad_limit_is_refused(api, limit):
    alice = api.login(user="alice", admin=True)
    reply = api.call("GET", f"/org/audit?limit={limit}", token=alice.token)
    assert (reply.status, reply.code) == (400, "MalformedRequest")


@pytest.mark.parametrize("cursor", ["garbage", "eyJmb28iOiAiYmFyIn0", "eyJhZnRlciI6IDF9", "%25%25%25"])
def test_a_bad_cursor_is_refused(api, cursor):
    alice = api.login(user="alice", admin=True)
    reply = api.call("GET", f"/org/audit?next={cursor}", token=alice.token)
    assert (reply.status, reply.code) == (400, "InvalidCursor")


def test_members_may_not_read_the_log(api):
    api.login(user="alice", admin=True)
    bob = api.login(user="bob")
    reply = api.call("GET", "/org/audit", token=bob.token)
    assert (reply.status, reply.code) == (403, "AdminRequired")


def test_another_orgs_admin_sees_nothing_of_acmes_even_with_acmes_cursor(api):
    alice = _busy_morning(api)
    acme_cursor = api.call("GET", "/org/audit?limit=3", token=alice.token).body["next"]
    gina = api.login(org="globex", user="gina", admin=True)
    api.login(org="globex", user="bob")  # a namesake in globex

    theirs = _events(api, gina)
    assert _trail(theirs) == [("login", "bob", "bob"), ("login", "gina", "gina")]
    reply = api.call("GET", f"/org/audit?next={acme_cursor}", token=gina.token)
    assert reply.status == 200
    assert all(
        e["actor"] in {"gina", "bob"} and e["details"]["session_id"] not in _acme_sessions()
        for e in reply.body["events"]
    )
    assert _events(api, gina, user_id="alice") == []
    assert [e["actor"] for e in _events(api, gina, user_id="bob")] == ["bob"]


def _acme_sessions() -> set[str]:

    return {s.session_id for s in org_sessions("acme")}


def test_every_stored_event_expires_after_the_retention_period(api):
    _busy_morning(api)
    stored = list(AuditEvent.scan(consistent_read=True))
    assert len(stored) == 10
    for entry in stored:
        assert abs(entry.ttl - (entry.at + timedelta(days=400))) < timedelta(seconds=2), entry.action
