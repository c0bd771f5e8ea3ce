"""The assurance rule is one table, asked by every endpoint, and printed in docs/security.md.

Every route is called in each standing a session can be in, and must answer as the table says:
no endpoint decides by a rule of its own.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from chalicelib.access.actions import Action
from chalicelib.access.assurance import RULE, Permit, Standing
from chalicelib.base import clock
from chalicelib.base.models import Session
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import KeywardClient, Member

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = json.loads((ROOT / "chalicelib" / "openapi.json").read_text())
TABLE_START, TABLE_END = "<!-- assurance-rule:start -->", "<!-- assurance-rule:end -->"

# The routes no session is needed for.
PUBLIC = {
    ("GET", "/"),
    ("GET", "/console/{name}"),
    ("GET", "/openapi.json"),
    ("POST", "/auth/login"),
    ("POST", "/auth/backup-login"),
    ("POST", "/dev/id-token"),
    # The OpenID provider's own endpoints: clients and the authorize page, which either carry a
    # relying party's credentials or lead to a key check (chalicelib/provider/authorization.py).
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/oidc/jwks"),
    ("GET", "/oidc/authorize"),
    ("POST", "/oidc/authorize"),
    ("GET", "/oidc/authorize/{request_id}"),
    ("POST", "/oidc/authorize/{request_id}/session"),
    ("POST", "/oidc/authorize/{request_id}/cancel"),
    ("POST", "/oidc/token"),
    ("POST", "/oidc/introspect"),
}
# The routes a session needs but that change nothing of anyone's, or only end the caller's own session.
READ_ACCOUNT = {("GET", "/me"), ("POST", "/auth/logout")}
MFA_CHECK = {("POST", "/auth/mfa/options"), ("POST", "/auth/mfa/verify")}
STEP_UP = {("POST", "/auth/reauth/options"), ("POST", "/auth/reauth/verify")}
# The authorize page's key check: the MFA check for a session that owes it, a step-up otherwise.
KEY_CHECK = {("POST", "/oidc/authorize/{request_id}/options"), ("POST", "/oidc/authorize/{request_id}/verify")}


def _cell_text(cell: object) -> str:
    if cell is Permit.ALLOWED:
        return "yes"
    if cell is Permit.IN_WINDOW:
        return "window"
    return f"`{cell}`"


def rule_as_markdown() -> str:
    """RULE as docs/security.md prints it: an action per row, a standing per column."""
    lines = [
        "| Action | " + " | ".join(f"`{standing.value}`" for standing in Standing) + " |",
        "|---|" + "---|" * len(Standing),
    ]
    for action in Action:
        lines.append(
            f"| {action.value} | " + " | ".join(_cell_text(RULE[standing][action]) for standing in Standing) + " |"
        )
    return "\n".join(lines)


def test_the_security_doc_prints_the_rule_the_code_decides_by():
    text = (ROOT / "docs" / "security.md").read_text()
    printed = text[text.index(TABLE_START) + len(TABLE_START) : text.index(TABLE_END)].strip()
    assert printed == rule_as_markdown()
    # Every standing is described beside the table.
    for standing in Standing:
        assert f"- `{standing.value}`" in text, standing


def test_the_rule_covers_every_standing_and_action():
    assert set(RULE) == set(Standing)
    assert all(set(cells) == set(Action) for cells in RULE.values())


def _routes() -> list[tuple[str, str]]:
    from app import app

    return sorted((method, path) for path, entry in app.routes.items() for method in entry)


def _call(api: KeywardClient, method: str, path: str, token: str):
    concrete = re.sub(
        r"\{[a-z_]+\}", lambda m: {"{key_id}": "k" * 22, "{session_id}": "s" * 22}.get(m.group(0), "x"), path
    )
    return api.call(method, concrete, token=token, body={} if method in {"POST", "PUT", "PATCH"} else None)


def _admin_with_key(api: KeywardClient) -> tuple[Member, SoftwareAuthenticator]:
    first = api.login(user="alice", admin=True)
    key = SoftwareAuthenticator()
    assert api.add_key(first, key).status == 201
    return first, key


def _step_up_routes() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in OPENAPI["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and operation.get("x-keyward-step-up")
    }


def test_a_session_that_owes_the_mfa_check_reaches_only_its_account_and_the_check(api):
    _admin_with_key(api)
    for method, path in _routes():
        if (method, path) in PUBLIC:
            continue
        pending = api.login(user="alice", admin=True)
        reply = _call(api, method, path, pending.token)
        if (method, path) in READ_ACCOUNT | MFA_CHECK | KEY_CHECK:
            assert reply.code != "MfaRequired", (method, path, reply)
        else:
            assert (reply.status, reply.code) == (403, "MfaRequired"), (method, path, reply)


def test_a_session_whose_proof_lapsed_may_read_and_step_up_only(api):
    _, key = _admin_with_key(api)
    reads = {(method, path) for method, path in _routes() if method == "GET"}
    for method, path in _routes():
        if (method, path) in PUBLIC:
            continue
        alice = api.mfa_login(org="acme", user="alice", authenticator=key, admin=True)
        # The key the session proved is gone (by its ID); the member still holds another.
        Session(alice.token.split(".")[3]).update(actions=[Session.verified_key_id.set("gone" * 5 + "xx")])
        reply = _call(api, method, path, alice.token)
        if (method, path) in reads | READ_ACCOUNT | STEP_UP | KEY_CHECK:
            assert reply.code != "ReauthenticationRequired", (method, path, reply)
        elif (method, path) in MFA_CHECK:
            assert (reply.status, reply.code) == (403, "WrongSessionState"), (method, path, reply)
        else:
            assert (reply.status, reply.code) == (403, "ReauthenticationRequired"), (method, path, reply)


def test_exactly_the_routes_the_document_marks_as_sensitive_need_the_step_up_window(api, monkeypatch):
    _, key = _admin_with_key(api)
    later = clock.now() + timedelta(minutes=16)
    marked = _step_up_routes()
    for method, path in _routes():
        if (method, path) in PUBLIC:
            continue
        monkeypatch.undo()
        alice = api.mfa_login(org="acme", user="alice", authenticator=key, admin=True)
        monkeypatch.setattr(clock, "now", lambda: later)
        reply = _call(api, method, path, alice.token)
        if (method, path) in marked:
            assert (reply.status, reply.code) == (403, "ReauthenticationRequired"), (method, path, reply)
        else:
            assert reply.code != "ReauthenticationRequired", (method, path, reply)


@pytest.mark.parametrize("standing", list(Standing))
def test_every_standing_is_reachable_over_http(api, standing):
    """Each column of the table is a session someone can hold, reached through the API."""
    from chalicelib.access import assurance, sessions
    from tests.support.keyward_client import enforce_in_table

    admin, key = _admin_with_key(api)
    if standing is Standing.MFA_REQUIRED:
        token = api.login(user="alice", admin=True).token
    elif standing is Standing.REGISTRATION_REQUIRED:
        enforce_in_table("acme")
        token = api.login(user="bob").token
    elif standing is Standing.REPLACING_KEY:
        bob = api.login(user="bob")
        plain = SoftwareAuthenticator()
        assert api.add_key(bob, plain).status == 201
        enforce_in_table("acme")
        verified = api.mfa_login(org="acme", user="alice", authenticator=key, admin=True)
        assert api.call("PUT", "/org/mfa/policy", token=verified.token, body={"attestation": "required"}).status == 200
        token = api.mfa_login(org="acme", user="bob", authenticator=plain).token
    elif standing is Standing.WAITING_OVERTAKEN:
        enforce_in_table("acme")
        waiting, other = api.login(user="bob"), api.login(user="bob")
        assert api.add_key(other).status == 201
        # The waiting session proved nothing, yet started after the member's first key's generation.
        Session(waiting.token.split(".")[3]).update(actions=[Session.member_generation.set(1)])
        token = waiting.token
    elif standing is Standing.KEYLESS:
        token = api.login(user="bob").token
    elif standing is Standing.PROOF_LAPSED:
        bob = api.login(user="bob")
        first, second = SoftwareAuthenticator(), SoftwareAuthenticator()
        assert api.add_key(bob, first).status == 201
        assert api.add_key(bob, second).status == 201
        bob = api.mfa_login(org="acme", user="bob", authenticator=first)
        [first_id] = [k["id"] for k in api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"][:1]]
        assert api.call("DELETE", f"/me/mfa/keys/{first_id}", token=bob.token).status == 204
        token = bob.token
    elif standing is Standing.VERIFIED:
        token = api.mfa_login(org="acme", user="alice", authenticator=key, admin=True).token
    else:
        created = api.call("POST", "/org/backup-credentials", token=admin.token).body
        token = api.call(
            "POST", "/auth/backup-login", body={"key_id": created["key_id"], "secret": created["secret"]}
        ).body["token"]

    assert assurance.standing_of(sessions.resolve(authorization=f"Bearer {token}")) is standing
