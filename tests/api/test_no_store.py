"""``Cache-Control: no-store`` on every answer: tokens, backup secrets and personal data must not
be kept by a browser's or a proxy's cache, and neither must the console's files."""

from __future__ import annotations

import pytest


def _no_store(reply) -> None:
    headers = {name.lower(): value for name, value in reply.headers.items()}
    assert headers.get("cache-control") == "no-store", (reply.status, reply.headers)


def test_a_login_answer_with_its_token_is_not_stored(api):
    reply = api.login_reply(org="acme", user="bob")

    assert reply.status == 200 and reply.body["token"]
    _no_store(reply)


def test_the_backup_secret_is_not_stored(api):
    admin = api.login(org="acme", user="alice", admin=True)

    created = api.call("POST", "/org/backup-credentials", token=admin.token)

    assert created.status == 201 and created.body["secret"]
    _no_store(created)


@pytest.mark.parametrize(
    "method,path,status",
    [
        ("GET", "/me", 401),  # a refusal by keyward
        ("DELETE", "/me", 405),  # Chalice's own: no such method
        ("GET", "/openapi.json", 200),
        ("GET", "/", 200),  # the console's page
        ("GET", "/console/app.js", 200),
        ("GET", "/console/nothing.js", 404),
    ],
)
def test_every_answer_is_not_stored(api, method, path, status):
    reply = api.call(method, path)

    assert reply.status == status
    _no_store(reply)


def test_an_unsupported_content_type_answer_is_not_stored(api):
    reply = api.call("POST", "/auth/login", raw="id_token=x", headers={"content-type": "text/plain"})

    assert reply.status == 415
    _no_store(reply)


def test_a_personal_answer_is_not_stored(api):
    bob = api.login(org="acme", user="bob")

    reply = api.call("GET", "/me", token=bob.token)

    assert reply.status == 200 and reply.body["user"]["email"] == "bob@acme.example"
    _no_store(reply)
