"""``POST /oidc/introspect``: token introspection (RFC 7662) for an organization's backends.

A relying party authenticates as at the token endpoint (``client_secret_basic`` or
``client_secret_post``; a public client has no secret and may not introspect) and learns whether
a token stands now. It learns nothing of another organization's tokens: those are inactive to
it. Errors are OAuth's (RFC 6749 §5.2), ``{"error": ..., "error_description": ...}``, not
keyward's ``{"Code", "Message"}``.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_plus

from chalice import Blueprint, Response

from chalicelib.base import errors
from chalicelib.base.config import settings
from chalicelib.base.deferred import deferred

# The first introspection loads them, not every cold start.
if TYPE_CHECKING:
    from chalicelib.base import storage
    from chalicelib.provider import clients, introspection
else:
    clients = deferred("chalicelib.provider.clients")
    introspection = deferred("chalicelib.provider.introspection")
    storage = deferred("chalicelib.base.storage")

FORM = "application/x-www-form-urlencoded"

token_introspection = Blueprint(__name__)


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


@token_introspection.route("/oidc/introspect", methods=["POST"], content_types=[FORM])
def introspect() -> Response:
    request = token_introspection.current_request
    try:
        with storage.unavailable_on_failure():
            form = _form(request.raw_body)
            client = _authenticated_client(request.headers.get("authorization"), form)
            token = form.get("token")
            if not token:
                raise _OAuthError(400, "invalid_request", "'token' is required.")
            active = introspection.judge(token)
    except _OAuthError as refused:
        return _error(refused)
    except errors.StorageUnavailable as unavailable:
        return _error(_OAuthError(503, "temporarily_unavailable", str(unavailable)))
    if active is None or active.org_id != client.org_id:
        return _json(introspection.INACTIVE)
    return _json(active.introspection())


def _form(raw: bytes | str) -> dict[str, str]:
    """The form's parameters; each at most once (RFC 6749 §3.2)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > settings().max_body_bytes:
        raise _OAuthError(400, "invalid_request", f"The request body is larger than {settings().max_body_bytes} bytes.")
    try:
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise _OAuthError(
            400, "invalid_request", "The body is not a UTF-8 form (application/x-www-form-urlencoded)."
        ) from None
    repeated = sorted(name for name, values in parsed.items() if len(values) > 1)
    if repeated:
        raise _OAuthError(400, "invalid_request", f"Parameters sent more than once: {', '.join(repeated)}.")
    return {name: values[0] for name, values in parsed.items()}


def _authenticated_client(authorization: str | None, form: dict[str, str]) -> clients.Client:
    """The confidential client the request authenticates, by one method only (RFC 6749 §2.3)."""
    basic = _basic_credentials(authorization)
    posted = "client_secret" in form
    if basic is not None and (posted or "client_id" in form and form["client_id"] != basic[0]):
        raise _OAuthError(400, "invalid_request", "Authenticate the client by one method only.")
    client_id, secret = basic if basic is not None else (form.get("client_id"), form.get("client_secret"))
    if not client_id or not secret:
        raise _OAuthError(401, "invalid_client", "Authenticate the client with its ID and secret.")
    try:
        return clients.authenticate(client_id=client_id, secret=secret)
    except errors.InvalidClient:
        raise _OAuthError(401, "invalid_client", "The client could not be authenticated.") from None


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """``client_secret_basic``: the ID and secret, each form-encoded, then Base64 (RFC 6749 §2.3.1)."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise _OAuthError(401, "invalid_client", "Authenticate the client with HTTP Basic or in the form.")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _OAuthError(401, "invalid_client", "The Basic credentials are not Base64 of UTF-8 text.") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise _OAuthError(401, "invalid_client", "The Basic credentials hold no ':'.")
    return unquote_plus(client_id), unquote_plus(secret)


def _json(body: dict[str, Any]) -> Response:
    return Response(body=body, status_code=200, headers={"Content-Type": "application/json"})


def _error(refused: _OAuthError) -> Response:
    headers: dict[str, str | list[str]] = {"Content-Type": "application/json"}
    if refused.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="keyward", error="invalid_client"'
    return Response(
        body={"error": refused.error, "error_description": refused.description},
        status_code=refused.status,
        headers=headers,
    )
