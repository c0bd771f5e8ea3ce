"""Organization settings → Relying parties: registering the apps and IdPs that ask keyward for a
key check (admins only, changes within the step-up window, audited), their redirect URI rule, the
secret shown once and stored hashed, and the operator's clients for the stage (KEYWARD_PROVIDER_CLIENTS)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime, timedelta

import pytest

from chalicelib.base import clock
from chalicelib.base.config import load, settings
from chalicelib.base.errors import ConfigurationError, InvalidClient, UnknownClient
from chalicelib.base.models import AuditEvent, RelyingParty
from chalicelib.provider import clients
from tests.support.audit_log import logged_events
from tests.support.keyward_client import KeywardClient, Member

WINDOW = timedelta(seconds=900)
APP = {
    "name": "Expenses",
    "redirect_uris": ["https://expenses.example.com/callback", "http://localhost:5173/callback"],
    "flows": ["code"],
}


def _create(api: KeywardClient, admin: Member, **fields: object) -> dict[str, object]:
    reply = api.call("POST", "/org/oidc-clients", token=admin.token, body={**APP, **fields})
    assert reply.status == 201, reply.body
    return reply.body


def _stored(client_id: str) -> RelyingParty:
    return RelyingParty.get(client_id, consistent_read=True)


def _events(org: str = "acme") -> list[AuditEvent]:
    return [e for e in logged_events(org) if e.action.startswith("oidc_client.")]


def test_an_admin_registers_a_confidential_client_and_sees_its_secret_once(api, admin):
    created = _create(api, admin)
    client, secret = created["client"], created["client_secret"]
    assert isinstance(secret, str) and len(secret) >= 43
    assert client["name"] == "Expenses" and client["type"] == "confidential"
    assert (client["redirect_uris"], client["flows"], client["signing_alg"]) == (
        APP["redirect_uris"],
        ["code"],
        "RS256",
    )
    assert client["created_by"] == "alice" and client["updated_at"] is None
    assert set(client) == {
        "client_id",
        "name",
        "redirect_uris",
        "flows",
        "type",
        "signing_alg",
        "created_at",
        "created_by",
        "updated_at",
    }

    stored = _stored(client["client_id"])
    assert stored.org_id == "acme"
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps(stored.attribute_values, default=str)

    listed = api.call("GET", "/org/oidc-clients", token=admin.token)
    assert listed.status == 200 and listed.body == {"clients": [client]}
    fetched = api.call("GET", f"/org/oidc-clients/{client['client_id']}", token=admin.token)
    assert fetched.body == {"client": client}
    assert secret not in json.dumps(listed.body) + json.dumps(fetched.body)

    [event] = _events()
    assert (event.action, event.target, event.actor) == ("oidc_client.created", client["client_id"], "alice")
    assert event.details.as_dict()["redirect_uris"] == APP["redirect_uris"]
    assert secret not in json.dumps(event.details.as_dict()) and stored.secret_hash not in json.dumps(
        event.details.as_dict()
    )

    authenticated = clients.authenticate(client_id=client["client_id"], secret=secret)
    assert authenticated.confidential and authenticated.serves("acme") and not authenticated.serves("globex")


def test_client_ids_are_url_safe_and_distinct(api, admin):
    ids = {_create(api, admin)["client"]["client_id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(len(i) >= 20 and all(c.isalnum() or c in "-_" for c in i) for i in ids)


def test_a_public_client_has_no_secret_and_only_the_code_flow(api, admin):
    created = _create(api, admin, type="public")
    assert created["client_secret"] is None and created["client"]["type"] == "public"
    assert _stored(created["client"]["client_id"]).secret_hash is None
    refused = api.call(
        "POST", "/org/oidc-clients", token=admin.token, body={**APP, "type": "public", "flows": ["id_token"]}
    )
    assert (refused.status, refused.code) == (400, "InvalidClientRegistration")
    rotate = api.call("POST", f"/org/oidc-clients/{created['client']['client_id']}/secret", token=admin.token)
    assert (rotate.status, rotate.code) == (409, "PublicClientHasNoSecret")
    widened = api.call(
        "PATCH",
        f"/org/oidc-clients/{created['client']['client_id']}",
        token=admin.token,
        body={"flows": ["code", "id_token"]},
    )
    assert (widened.status, widened.code) == (400, "InvalidClientRegistration")


@pytest.mark.parametrize(
    "uris",
    [
        [],
        "https://app.example.com/cb",
        ["http://app.example.com/cb"],
        ["https://app.example.com/cb#done"],
        ["https://*.example.com/cb"],
        ["https://app.example.com/*"],
        ["/callback"],
        ["app.example.com/cb"],
        ["ftp://app.example.com/cb"],
        ["https://user:pw@app.example.com/cb"],
        ["https://app.example.com/a b"],
        ["https://app.example.com:99999/cb"],
        ["https://app.example.com/cb", "https://app.example.com/cb"],
        [f"https://app.example.com/{n}" for n in range(11)],
        ["https://app.example.com/" + "a" * 2100],
        [42],
    ],
)
def test_a_redirect_uri_keyward_does_not_register_is_refused(api, admin, uris):
    reply = api.call("POST", "/org/oidc-clients", token=admin.token, body={**APP, "redirect_uris": uris})
    assert (reply.status, reply.code) == (400, "InvalidRedirectUri"), reply.body
    assert list(RelyingParty.scan(consistent_read=True)) == []
    assert _events() == []


@pytest.mark.parametrize(
    "uri",
    ["https://app.example.com/cb?tenant=1", "http://127.0.0.1:8400/cb", "http://localhost/cb", "http://[::1]:9/cb"],
)
def test_https_urls_and_loopback_http_are_registered(api, admin, uri):
    assert _create(api, admin, redirect_uris=[uri])["client"]["redirect_uris"] == [uri]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"name": ""}, "InvalidClientRegistration"),
        ({"name": "x" * 101}, "InvalidClientRegistration"),
        ({"flows": []}, "InvalidClientRegistration"),
        ({"flows": ["implicit"]}, "InvalidClientRegistration"),
        ({"type": "secret"}, "InvalidClientRegistration"),
        ({"signing_alg": "HS256"}, "InvalidClientRegistration"),
        ({"client_id": "mine"}, "MalformedRequest"),
    ],
)
def test_a_registration_keyward_cannot_honour_is_refused(api, admin, fields, code):
    reply = api.call("POST", "/org/oidc-clients", token=admin.token, body={**APP, **fields})
    assert (reply.status, reply.code) == (400, code), reply.body
    assert list(RelyingParty.scan(consistent_read=True)) == []


def test_an_admin_changes_a_client_and_the_log_says_what_changed(api, admin):
    client_id = _create(api, admin)["client"]["client_id"]
    uris = ["https://expenses.example.com/oidc"]
    changed = api.call(
        "PATCH",
        f"/org/oidc-clients/{client_id}",
        token=admin.token,
        body={"name": "Expenses (EU)", "redirect_uris": uris, "flows": ["code", "id_token"], "signing_alg": "ES256"},
    )
    assert changed.status == 200, changed.body
    client = changed.body["client"]
    assert (client["name"], client["redirect_uris"], client["flows"], client["signing_alg"]) == (
        "Expenses (EU)",
        uris,
        ["code", "id_token"],
        "ES256",
    )
    assert client["updated_at"] is not None
    stored = _stored(client_id)
    assert (stored.name, list(stored.redirect_uris), stored.flows, stored.signing_alg) == (
        "Expenses (EU)",
        uris,
        {"code", "id_token"},
        "ES256",
    )
    event = _events()[-1]
    assert event.action == "oidc_client.changed"
    details = event.details.as_dict()
    assert details["changed"] == ["name", "redirect_uris", "flows", "signing_alg"]
    assert details["before"]["redirect_uris"] == APP["redirect_uris"]

    same = api.call("PATCH", f"/org/oidc-clients/{client_id}", token=admin.token, body={"redirect_uris": uris})
    assert same.status == 200 and len(_events()) == 2  # nothing changed, nothing logged
    bad = api.call(
        "PATCH", f"/org/oidc-clients/{client_id}", token=admin.token, body={"redirect_uris": ["https://a.example/#x"]}
    )
    assert (bad.status, bad.code) == (400, "InvalidRedirectUri")
    for body in ({}, {"name": None}, {"type": "public"}):
        reply = api.call("PATCH", f"/org/oidc-clients/{client_id}", token=admin.token, body=body)
        assert (reply.status, reply.code) == (400, "MalformedRequest"), body
    assert list(_stored(client_id).redirect_uris) == uris


def test_rotating_the_secret_shows_a_new_one_and_the_old_one_stops_working(api, admin):
    created = _create(api, admin)
    client_id, old = created["client"]["client_id"], created["client_secret"]
    rotated = api.call("POST", f"/org/oidc-clients/{client_id}/secret", token=admin.token)
    assert rotated.status == 200, rotated.body
    new = rotated.body["client_secret"]
    assert new != old and rotated.body["client"]["client_id"] == client_id
    assert _stored(client_id).secret_hash == hashlib.sha256(new.encode()).hexdigest()
    assert clients.authenticate(client_id=client_id, secret=new).client_id == client_id
    with pytest.raises(InvalidClient):
        clients.authenticate(client_id=client_id, secret=old)
    with pytest.raises(InvalidClient):
        clients.authenticate(client_id=client_id, secret=None)
    event = _events()[-1]
    assert (event.action, event.target) == ("oidc_client.secret_rotated", client_id)
    assert new not in json.dumps(event.details.as_dict()) and old not in json.dumps(event.details.as_dict())


def test_deleting_a_client_ends_its_registration(api, admin):
    client_id = _create(api, admin)["client"]["client_id"]
    assert api.call("DELETE", f"/org/oidc-clients/{client_id}", token=admin.token).status == 204
    assert list(RelyingParty.scan(consistent_read=True)) == []
    with pytest.raises(UnknownClient):
        clients.client_for(client_id)
    again = api.call("DELETE", f"/org/oidc-clients/{client_id}", token=admin.token)
    assert (again.status, again.code) == (404, "UnknownClient")
    assert [e.action for e in _events()] == ["oidc_client.created", "oidc_client.deleted"]
    assert api.call("GET", "/org/oidc-clients", token=admin.token).body == {"clients": []}


def test_another_organizations_admin_finds_no_such_client(api, admin):
    created = _create(api, admin)
    client_id = created["client"]["client_id"]
    other = api.login(org="globex", user="gina", admin=True)
    for method, path, body in (
        ("GET", f"/org/oidc-clients/{client_id}", None),
        ("PATCH", f"/org/oidc-clients/{client_id}", {"name": "Mine now"}),
        ("DELETE", f"/org/oidc-clients/{client_id}", None),
        ("POST", f"/org/oidc-clients/{client_id}/secret", None),
    ):
        reply = api.call(method, path, token=other.token, body=body)
        assert (reply.status, reply.code) == (404, "UnknownClient"), (method, path)
    assert api.call("GET", "/org/oidc-clients", token=other.token).body == {"clients": []}
    stored = _stored(client_id)
    assert (stored.name, stored.secret_hash) == (
        "Expenses",
        hashlib.sha256(created["client_secret"].encode()).hexdigest(),
    )
    assert _events("globex") == []


def test_only_admins_see_or_change_relying_parties(api, admin):
    client_id = _create(api, admin)["client"]["client_id"]
    bob = api.login(user="bob")
    for method, path, body in (
        ("POST", "/org/oidc-clients", APP),
        ("GET", "/org/oidc-clients", None),
        ("GET", f"/org/oidc-clients/{client_id}", None),
        ("PATCH", f"/org/oidc-clients/{client_id}", {"name": "Bob's"}),
        ("DELETE", f"/org/oidc-clients/{client_id}", None),
        ("POST", f"/org/oidc-clients/{client_id}/secret", None),
    ):
        reply = api.call(method, path, token=bob.token, body=body)
        assert (reply.status, reply.code) == (403, "AdminRequired"), (method, path)
    assert len(list(RelyingParty.scan(consistent_read=True))) == 1


class Clock:
    def __init__(self) -> None:
        self.now = clock.now()

    def __call__(self) -> datetime:
        return self.now


def test_changes_need_a_recent_key_check_but_reading_does_not(api, admin, monkeypatch):
    client_id = _create(api, admin)["client"]["client_id"]
    later = Clock()
    later.now += WINDOW + timedelta(seconds=1)
    monkeypatch.setattr(clock, "now", later)
    for method, path, body in (
        ("POST", "/org/oidc-clients", APP),
        ("PATCH", f"/org/oidc-clients/{client_id}", {"name": "Late"}),
        ("DELETE", f"/org/oidc-clients/{client_id}", None),
        ("POST", f"/org/oidc-clients/{client_id}/secret", None),
    ):
        reply = api.call(method, path, token=admin.token, body=body)
        assert (reply.status, reply.code) == (403, "ReauthenticationRequired"), (method, path)
    assert api.call("GET", "/org/oidc-clients", token=admin.token).status == 200
    assert api.call("GET", f"/org/oidc-clients/{client_id}", token=admin.token).status == 200
    assert _stored(client_id).name == "Expenses" and len(_events()) == 1


def test_an_unknown_client_id_is_404(api, admin):
    for client_id in ("nope", "x" * 200):
        reply = api.call("GET", f"/org/oidc-clients/{client_id}", token=admin.token)
        assert (reply.status, reply.code) == (404, "UnknownClient")


# --- the operator's clients for the stage --------------------------------------------------------------

ENTRA = {
    "client_id": "3f1c2a9e-entra",
    "name": "Microsoft Entra ID",
    "redirect_uris": ["https://login.microsoftonline.com/common/federation/externalauthprovider"],
    "flows": ["id_token"],
}


def test_the_operators_clients_are_read_from_the_environment():
    assert load({}).provider_clients == ()
    assert load({"KEYWARD_PROVIDER_CLIENTS": " "}).provider_clients == ()
    [entra, app] = load(
        {
            "KEYWARD_PROVIDER_CLIENTS": json.dumps(
                [
                    ENTRA,
                    {**ENTRA, "client_id": "app", "flows": ["code"], "signing_alg": "ES256", "organizations": ["acme"]},
                ]
            )
        }
    ).provider_clients
    assert (entra.client_id, entra.flows, entra.signing_alg, entra.organizations) == (
        "3f1c2a9e-entra",
        frozenset({"id_token"}),
        "RS256",
        None,
    )
    assert entra.redirect_uris == tuple(ENTRA["redirect_uris"])
    assert (app.signing_alg, app.organizations) == ("ES256", frozenset({"acme"}))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{", "must be a JSON list of relying parties"),
        (json.dumps({"client_id": "x"}), "must be a JSON list of objects"),
        (json.dumps([{**ENTRA, "client_id": ""}]), "client 1 needs a 'client_id'"),
        (json.dumps([{**ENTRA, "secret": "s"}]), "unknown field(s) secret"),
        (json.dumps([ENTRA, ENTRA]), "3f1c2a9e-entra is listed twice"),
        (json.dumps([{**ENTRA, "name": " "}]), "needs a 'name'"),
        (json.dumps([{**ENTRA, "redirect_uris": []}]), "'redirect_uris' must be a non-empty list"),
        (json.dumps([{**ENTRA, "flows": ["implicit"]}]), "'flows' must be a non-empty list of code, id_token"),
        (json.dumps([{**ENTRA, "signing_alg": "none"}]), "'signing_alg' must be one of RS256, ES256"),
        (json.dumps([{**ENTRA, "organizations": []}]), "'organizations' must list organization IDs"),
    ],
)
def test_an_unusable_client_list_names_what_is_wrong(raw, message):
    with pytest.raises(ConfigurationError) as refused:
        load({"KEYWARD_PROVIDER_CLIENTS": raw})
    assert message in str(refused.value) and "KEYWARD_PROVIDER_CLIENTS" in str(refused.value)


@pytest.fixture
def stage_clients(monkeypatch):
    def configure(*entries: dict[str, object]) -> None:
        configured = load({"KEYWARD_PROVIDER_CLIENTS": json.dumps(list(entries))}).provider_clients
        monkeypatch.setattr(clients, "settings", lambda: dataclasses.replace(settings(), provider_clients=configured))
        clients.preconfigured.cache_clear()

    yield configure
    clients.preconfigured.cache_clear()


def test_the_provider_finds_the_operators_clients_which_have_no_secret(stage_clients):
    stage_clients(ENTRA, {**ENTRA, "client_id": "acme-only", "organizations": ["acme"]})
    entra = clients.client_for("3f1c2a9e-entra")
    assert (entra.org_id, entra.confidential, entra.flows) == (None, False, frozenset({"id_token"}))
    assert entra.serves("acme") and entra.serves("globex")
    assert clients.redirect_allowed(entra, ENTRA["redirect_uris"][0])
    assert clients.authenticate(client_id="3f1c2a9e-entra", secret=None) == entra
    with pytest.raises(InvalidClient):
        clients.authenticate(client_id="3f1c2a9e-entra", secret="anything")
    acme_only = clients.client_for("acme-only")
    assert acme_only.serves("acme") and not acme_only.serves("globex")


def test_an_operators_client_with_a_redirect_uri_the_rule_refuses_is_a_configuration_error(stage_clients):
    stage_clients({**ENTRA, "redirect_uris": ["http://login.example.com/*"]})
    with pytest.raises(ConfigurationError, match="KEYWARD_PROVIDER_CLIENTS: 3f1c2a9e-entra"):
        clients.client_for("3f1c2a9e-entra")


def test_an_admin_cannot_reach_the_operators_clients(api, admin, stage_clients):
    stage_clients(ENTRA)
    for method, body in (("GET", None), ("PATCH", {"name": "Ours"}), ("DELETE", None)):
        reply = api.call(method, "/org/oidc-clients/3f1c2a9e-entra", token=admin.token, body=body)
        assert (reply.status, reply.code) == (404, "UnknownClient")
    assert api.call("GET", "/org/oidc-clients", token=admin.token).body == {"clients": []}
