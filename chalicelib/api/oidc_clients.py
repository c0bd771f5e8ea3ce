"""Organization settings → Relying parties: the apps and IdPs that may ask keyward, as their
OpenID provider, for a member's key check (admins only; changes within the step-up window)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Blueprint

from chalicelib.access.actions import Action
from chalicelib.api.http import caller_of, json_body, only_fields, route
from chalicelib.base.deferred import deferred
from chalicelib.base.errors import MalformedRequest

if TYPE_CHECKING:
    from chalicelib.base.context import Caller

# Only the relying-party settings need it; the API's cold starts do not load it.
if TYPE_CHECKING:
    from chalicelib.provider import clients
else:
    clients = deferred("chalicelib.provider.clients")

oidc_clients = Blueprint(__name__)


def _reader() -> Caller:
    return caller_of(oidc_clients.current_request, action=Action.READ_ORG)


def _changer() -> Caller:
    return caller_of(oidc_clients.current_request, action=Action.CHANGE_ORG)


def _registered(registered: clients.Registered) -> dict[str, Any]:
    return {"client": clients.describe(registered.relying_party), "client_secret": registered.secret}


@route(oidc_clients, "/org/oidc-clients", methods=["POST"], status=201)
def create_client() -> dict[str, Any]:
    caller = _changer()
    body = json_body(oidc_clients.current_request)
    only_fields(body, {"name", "redirect_uris", "flows", "type", "signing_alg"})
    registered = clients.create(
        caller=caller,
        name=body.get("name"),
        redirect_uris=body.get("redirect_uris"),
        flows=body.get("flows", ["code"]),
        client_type=body.get("type", clients.CONFIDENTIAL),
        signing_alg=body.get("signing_alg", "RS256"),
    )
    return _registered(registered)


@route(oidc_clients, "/org/oidc-clients", methods=["GET"])
def list_clients() -> dict[str, Any]:
    caller = _reader()
    return {"clients": [clients.describe(item) for item in clients.list_clients(org_id=caller.org.org_id)]}


@route(oidc_clients, "/org/oidc-clients/{client_id}", methods=["GET"])
def get_client(client_id: str) -> dict[str, Any]:
    caller = _reader()
    return {"client": clients.describe(clients.get(org_id=caller.org.org_id, client_id=client_id))}


@route(oidc_clients, "/org/oidc-clients/{client_id}", methods=["PATCH"])
def change_client(client_id: str) -> dict[str, Any]:
    caller = _changer()
    body = json_body(oidc_clients.current_request)
    only_fields(body, {"name", "redirect_uris", "flows", "signing_alg"})
    if not body:
        raise MalformedRequest("Name what to change: 'name', 'redirect_uris', 'flows' or 'signing_alg'.")
    if any(value is None for value in body.values()):
        raise MalformedRequest("A field to change must not be null.")
    changed = clients.change(
        caller=caller,
        client_id=client_id,
        name=body.get("name"),
        redirect_uris=body.get("redirect_uris"),
        flows=body.get("flows"),
        signing_alg=body.get("signing_alg"),
    )
    return {"client": clients.describe(changed)}


@route(oidc_clients, "/org/oidc-clients/{client_id}", methods=["DELETE"], status=204)
def delete_client(client_id: str) -> None:
    caller = _changer()
    clients.delete(caller=caller, client_id=client_id)


@route(oidc_clients, "/org/oidc-clients/{client_id}/secret", methods=["POST"])
def rotate_client_secret(client_id: str) -> dict[str, Any]:
    caller = _changer()
    return _registered(clients.rotate_secret(caller=caller, client_id=client_id))
