"""Organization settings → Webhooks: where the organization's audit events are posted (admins only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chalice import Blueprint

from chalicelib.access.actions import Action
from chalicelib.api.http import caller_of, json_body, only_fields, route, string_field
from chalicelib.base.deferred import deferred
from chalicelib.base.errors import (
    InvalidWebhookEvents,
    MalformedRequest,
    WebhookNotFound,
)

if TYPE_CHECKING:
    from chalicelib.base.context import Caller

# Only the webhook settings need them; the API's cold starts do not load them.
if TYPE_CHECKING:
    from chalicelib.base import pagination
    from chalicelib.delivery import webhooks as endpoints
else:
    endpoints = deferred("chalicelib.delivery.webhooks")
    pagination = deferred("chalicelib.base.pagination")

webhooks = Blueprint(__name__)

# Webhook IDs are "wh_" and 16 URL-safe characters; anything else names no webhook.
_ID_LENGTH = 19


def _admin() -> Caller:
    return caller_of(webhooks.current_request, action=Action.READ_ORG)


def _admin_changing() -> Caller:
    return caller_of(webhooks.current_request, action=Action.CHANGE_ORG)


def _webhook_id(raw: str) -> str:
    if not raw.startswith("wh_") or len(raw) != _ID_LENGTH:
        raise WebhookNotFound("No such webhook.")
    return raw


def _events(body: dict[str, Any]) -> list[str]:
    events = body.get("events")
    if not isinstance(events, list) or not all(isinstance(name, str) for name in events):
        raise InvalidWebhookEvents("'events' must be a list of audit actions, or [\"*\"] for all.")
    return events


@route(webhooks, "/org/webhooks", methods=["POST"], status=201)
def create_webhook() -> dict[str, Any]:
    caller = _admin_changing()
    body = json_body(webhooks.current_request)
    only_fields(body, {"url", "events", "description"})
    url = string_field(body, "url", limit=endpoints.MAX_URL_LENGTH)
    events = _events(body)
    description = body.get("description", "")
    if not isinstance(description, str):
        raise MalformedRequest("'description' must be a string.")
    created = endpoints.create(caller=caller, url=url, events=events, description=description)
    return {"webhook": endpoints.describe(created.webhook), "secret": created.secret}


@route(webhooks, "/org/webhooks", methods=["GET"])
def list_webhooks() -> dict[str, Any]:
    caller = _admin()
    return {"webhooks": [endpoints.describe(webhook) for webhook in endpoints.list_webhooks(org_id=caller.org.org_id)]}


@route(webhooks, "/org/webhooks/{webhook_id}", methods=["DELETE"], status=204)
def delete_webhook(webhook_id: str) -> None:
    caller = _admin_changing()
    endpoints.delete(caller=caller, webhook_id=_webhook_id(webhook_id))


@route(webhooks, "/org/webhooks/{webhook_id}", methods=["PATCH"])
def change_webhook(webhook_id: str) -> dict[str, Any]:
    caller = _admin_changing()
    body = json_body(webhooks.current_request)
    only_fields(body, {"enabled", "url", "events"})
    if not body:
        raise MalformedRequest("Name what to change: 'enabled', 'url' or 'events'.")
    enabled = body.get("enabled")
    if "enabled" in body and not isinstance(enabled, bool):
        raise MalformedRequest("'enabled' must be true or false.")
    url = string_field(body, "url", limit=endpoints.MAX_URL_LENGTH) if "url" in body else None
    events = _events(body) if "events" in body else None
    changed = endpoints.change(
        caller=caller, webhook_id=_webhook_id(webhook_id), enabled=enabled, url=url, events=events
    )
    return {"webhook": endpoints.describe(changed)}


@route(webhooks, "/org/webhooks/{webhook_id}/deliveries", methods=["GET"])
def webhook_deliveries(webhook_id: str) -> dict[str, Any]:
    caller = _admin()
    params: Mapping[str, str] = webhooks.current_request.query_params or {}
    limit = pagination.limit_from(params.get("limit"))
    found = endpoints.recent_deliveries(org_id=caller.org.org_id, webhook_id=_webhook_id(webhook_id), limit=limit)
    return {"deliveries": [endpoints.describe_delivery(delivery) for delivery in found]}


@route(webhooks, "/org/webhooks/{webhook_id}/ping", methods=["POST"], status=202)
def ping_webhook(webhook_id: str) -> dict[str, Any]:
    caller = _admin_changing()
    return {"delivery_id": endpoints.ping(caller=caller, webhook_id=_webhook_id(webhook_id))}


@route(webhooks, "/org/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", methods=["POST"], status=202)
def redeliver_webhook_delivery(webhook_id: str, delivery_id: str) -> dict[str, Any]:
    caller = _admin_changing()
    return {"delivery_id": endpoints.redeliver(caller=caller, webhook_id=_webhook_id(webhook_id), delivery=delivery_id)}
