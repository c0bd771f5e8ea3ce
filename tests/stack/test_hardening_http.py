"""The review's smaller findings, played over real HTTP against the running local stack
(``python -m devstack run``): an injected ID token with another nonce, an IdP user posing as the
operator in the audit log, caching of answers, and query values DynamoDB would refuse."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from tests.support.stack_client import StackClient, unique_org


def _get(keyward: StackClient, path: str, *, token: str | None = None, **headers: str) -> requests.Response:
    if token:
        headers["authorization"] = f"Bearer {token}"
    with requests.Session() as http:
        http.trust_env = False
        return http.get(f"{keyward.api}{path}", headers={**headers, "connection": "close"}, timeout=30)


def _post(keyward: StackClient, path: str, *, token: str | None = None, json: object = None) -> requests.Response:
    # A connection of its own per request: the server closes each one ("connection: close").
    headers = {"connection": "close", **({"authorization": f"Bearer {token}"} if token else {})}
    with requests.Session() as http:
        http.trust_env = False
        return http.post(f"{keyward.api}{path}", json=json, headers=headers, timeout=30)


def test_an_id_token_from_another_sign_in_is_refused_and_nothing_is_stored(keyward, db):
    org = unique_org("nonce")
    stolen = keyward.idp.mint(org=org, user="bob", nonce="nonce-of-the-victims-sign-in")

    reply = keyward.call("POST", "/auth/login", body={"id_token": stolen, "nonce": "nonce-of-this-sign-in"})

    assert (reply.status, reply.code) == (401, "NonceMismatch"), str(reply)
    # Refused before anything was written: no organization, member or session.
    assert db.get("orgs", org_id=org) is None
    assert db.snapshot(org) == {
        org: {"org": None, "members": {}, "keys": {}, "sessions": {}, "credentials": {}, "backup-credentials": {}}
    }
    honest = keyward.idp.mint(org=org, user="bob", nonce="nonce-of-this-sign-in")
    assert (
        keyward.call("POST", "/auth/login", body={"id_token": honest, "nonce": "nonce-of-this-sign-in"}).status == 200
    )


def test_an_id_token_for_another_party_is_refused(keyward, db):
    org = unique_org("azp")
    token = keyward.idp.mint(
        org=org, user="bob", aud=["keyward-local", "https://other.example"], azp="https://other.example"
    )

    reply = keyward.call("POST", "/auth/login", body={"id_token": token})

    assert (reply.status, reply.code) == (401, "InvalidIdToken"), str(reply)
    assert db.get("orgs", org_id=org) is None


def test_an_idp_user_called_operator_is_a_member_in_the_audit_log(keyward):
    org = unique_org("actor")
    impostor = keyward.token(org=org, user="operator", admin=True)
    admin = keyward.token(org=org, user="alice", admin=True)

    events = keyward.call("GET", "/org/audit?action=login", token=admin).body["events"]

    [posing] = [event for event in events if event["actor"] == "operator"]
    assert posing["actor_kind"] == "member"
    assert impostor  # the impostor really holds an admin session of the organization


def test_no_answer_may_be_cached(keyward):
    org = unique_org("cache")
    token = keyward.token(org=org, user="alice", admin=True)
    login = _post(keyward, "/auth/login", json={"id_token": keyward.idp.mint(org=org, user="bob")})
    secret = _post(keyward, "/org/backup-credentials", token=token)
    answers = {
        "login": login,
        "backup secret": secret,
        "me": _get(keyward, "/me", token=token),
        "refusal": _get(keyward, "/me"),
        "console page": _get(keyward, "/"),
        "console script": _get(keyward, "/console/app.js"),
        "openapi": _get(keyward, "/openapi.json"),
    }

    assert {name: answer.headers.get("cache-control") for name, answer in answers.items()} == {
        name: "no-store" for name in answers
    }
    assert login.status_code == 200 and secret.status_code == 201


def _cursor(position: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": position}).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "query,code",
    [
        ("/org/mfa/keys?user_id=" + "u" * 2000, "MalformedRequest"),
        ("/org/audit?user_id=" + "u" * 2000, "MalformedRequest"),
        ("/org/audit?action=" + "a" * 5000, "MalformedRequest"),
        ("/org/members?limit=" + "9" * 5000, "MalformedRequest"),
        ("/org/members?next=" + _cursor("m" * 1025), "InvalidCursor"),
        ("/org/mfa/keys?next=" + _cursor("\U0001f600" * 300), "InvalidCursor"),
        ("/org/audit?next=" + _cursor("e" * 4000), "InvalidCursor"),
    ],
)
def test_a_query_value_dynamodb_would_refuse_is_a_400(keyward, query, code):
    token = keyward.token(org=unique_org("query"), user="alice", admin=True)

    reply = _get(keyward, query, token=token)

    assert (reply.status_code, reply.json()["Code"]) == (400, code), reply.text
