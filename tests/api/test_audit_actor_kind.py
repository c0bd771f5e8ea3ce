"""Who acted, by kind: an IdP user called ``operator`` or ``backup credentials …`` never passes
for the operator or for backup credentials in the audit log."""

from __future__ import annotations

from chalicelib.base import audit
from chalicelib.base.models import Organization
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator


def _events(api, member, action):
    reply = api.call("GET", f"/org/audit?action={action}", token=member.token)
    assert reply.status == 200, reply.body
    return reply.body["events"]


def _admin_with_key(api, user):
    member = api.login(user=user, admin=True)
    assert api.add_key(member, SoftwareAuthenticator()).status == 201
    return api.mfa_login(org="acme", user=user, authenticator=member.authenticators[0], admin=True)


def test_a_member_called_operator_who_enforces_is_a_member_not_the_operator(api, stream):
    impostor = _admin_with_key(api, "operator")
    api.login(user="bob")

    assert (
        api.call(
            "PUT", "/org/mfa", token=impostor.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    stream.drain()

    [login] = [e for e in _events(api, impostor, "login") if e["user_id"] == "operator"][:1]
    assert (login["actor"], login["actor_kind"]) == ("operator", "member")
    [enabled] = _events(api, impostor, "enforcement.enabled")
    assert (enabled["actor"], enabled["actor_kind"]) == ("operator", "member")
    [ended] = _events(api, impostor, "enforcement.sessions_ended")
    assert (ended["actor"], ended["actor_kind"]) == ("operator", "member")


def test_the_real_operator_is_recorded_as_the_operator(api, stream):
    alice = _admin_with_key(api, "alice")
    Organization("acme").update(actions=[Organization.mfa_enforced.set(True)])  # the AWS console
    stream.drain()

    alice = api.mfa_login(org="acme", user="alice", authenticator=alice.authenticators[0], admin=True)
    [enabled] = _events(api, alice, "enforcement.enabled")
    assert (enabled["actor"], enabled["actor_kind"]) == ("operator", "operator")
    [ended] = _events(api, alice, "enforcement.sessions_ended")
    assert (ended["actor"], ended["actor_kind"]) == ("operator", "operator")


def test_a_member_named_like_backup_credentials_is_a_member(api):
    alice = api.login(user="alice", admin=True)
    created = api.call("POST", "/org/backup-credentials", token=alice.token)
    assert created.status == 201
    key_id = created.body["key_id"]
    lookalike = f"backup credentials {key_id}"
    api.login(user=lookalike)
    used = api.call("POST", "/auth/backup-login", body={"key_id": key_id, "secret": created.body["secret"]})
    assert used.status == 200, used.body

    logins = _events(api, alice, "login")
    [member_login] = [e for e in logins if e["user_id"] == lookalike]
    assert (member_login["actor"], member_login["actor_kind"]) == (lookalike, "member")
    [backup_login] = _events(api, alice, "backup_login.succeeded")
    assert (backup_login["actor"], backup_login["actor_kind"]) == (lookalike, "backup_credentials")


def test_a_backup_session_acts_as_its_backup_credentials(api):
    alice = api.login(user="alice", admin=True)
    api.login(user="bob")
    created = api.call("POST", "/org/backup-credentials", token=alice.token).body
    backup = api.call("POST", "/auth/backup-login", body={"key_id": created["key_id"], "secret": created["secret"]})

    assert api.call("DELETE", "/org/members/bob/sessions", token=backup.body["token"]).status == 204

    [ended] = _events(api, alice, "member.sessions_ended")
    assert (ended["actor"], ended["actor_kind"]) == (f"backup credentials {created['key_id']}", "backup_credentials")
    [made] = _events(api, alice, "backup_credentials.created")
    assert (made["actor"], made["actor_kind"]) == ("alice", "member")


def test_events_recorded_before_kinds_were_stored_have_their_kind_judged_by_name(api):
    alice = api.login(user="alice", admin=True)
    for name in ("operator", "backup credentials K1", "carol"):
        entry = audit.event(org_id="acme", actor=name, action=f"old.{name.split()[0]}")
        entry.actor = name
        entry.actor_kind = None
        entry.save()

    kinds = {
        e["actor"]: e["actor_kind"]
        for e in api.call("GET", "/org/audit", token=alice.token).body["events"]
        if e["action"].startswith("old.")
    }
    assert kinds == {"operator": "operator", "backup credentials K1": "backup_credentials", "carol": "member"}
    assert all(e.actor_kind is None for e in logged_events("acme") if e.action.startswith("old."))


def test_keyward_disabling_a_webhook_is_the_system_and_a_member_called_keyward_is_a_member(
    api, audit_stream, monkeypatch
):
    import dataclasses

    from chalicelib.base.config import settings
    from chalicelib.delivery import outbox, webhooks
    from tests.support.webhook_receiver import running_receiver

    monkeypatch.setattr(outbox, "BACKOFF_SECONDS", 0.01)
    monkeypatch.setattr(webhooks, "settings", lambda: dataclasses.replace(settings(), webhook_disable_after_failures=1))
    lookalike = api.login(user="keyward", admin=True)
    with running_receiver() as failing, running_receiver() as siem:
        failing.statuses = [500] * 100
        for receiver, events in ((failing, ["login"]), (siem, ["webhook.disabled"])):
            created = api.call(
                "POST", "/org/webhooks", token=lookalike.token, body={"url": receiver.url, "events": events}
            )
            assert created.status == 201, created.body
            receiver.secret = created.body["secret"]
        failing_id = api.call("GET", "/org/webhooks", token=lookalike.token).body["webhooks"]
        [failing_id] = [w["id"] for w in failing_id if w["url"] == failing.url]
        api.login(user="bob")
        audit_stream.drain()

        [disabled] = _events(api, lookalike, "webhook.disabled")
        assert (disabled["actor"], disabled["actor_kind"], disabled["target"]) == ("keyward", "system", failing_id)
        [stored] = [e for e in logged_events("acme") if e.action == "webhook.disabled"]
        assert stored.actor_kind == "system"
        [created] = _events(api, lookalike, "webhook.created")[:1]
        assert (created["actor"], created["actor_kind"]) == ("keyward", "member")
        # What the organization's other endpoint receives carries the kind too.
        [delivered] = [r.payload for r in siem.accepted() if r.verified]
        assert (delivered["type"], delivered["data"]["actor"], delivered["data"]["actor_kind"]) == (
            "webhook.disabled",
            "keyward",
            "system",
        )
