"""What every endpoint shares: reading the request, authenticating it, and the one place that
turns domain refusals into HTTP errors with a stable reason code."""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Chalice, Response
from chalice.app import ChaliceViewError, Request

from chalicelib.access.actions import Action
from chalicelib.base import errors, logs, metrics
from chalicelib.base.config import settings
from chalicelib.base.deferred import deferred

if TYPE_CHECKING:
    from chalicelib.base.audit import Client
    from chalicelib.base.context import AlsoReads, Caller

# Every request that authenticates loads them, on its first request rather than at import: the
# stream and schedule functions import this module too and need none of them.
if TYPE_CHECKING:
    from chalicelib.access import assurance, sessions
    from chalicelib.base import audit, storage
else:
    assurance = deferred("chalicelib.access.assurance")
    audit = deferred("chalicelib.base.audit")
    sessions = deferred("chalicelib.access.sessions")
    storage = deferred("chalicelib.base.storage")

_STATUS_BY_KIND: tuple[tuple[type[errors.Refusal], int], ...] = (
    (errors.InvalidInput, 400),
    (errors.NotAuthenticated, 401),
    (errors.NotAllowed, 403),
    (errors.NotFound, 404),
    (errors.RuleViolation, 409),
    (errors.TooLarge, 413),
    (errors.RateLimited, 429),
    (errors.Unavailable, 503),
)
_http_errors: dict[str, type[ChaliceViewError]] = {}
_SURROGATE = re.compile(r"[\ud800-\udfff]")
log = logging.getLogger("keyward.api")


def http_error(refusal: errors.Refusal) -> ChaliceViewError:
    """A Chalice error whose body is ``{"Code": <reason code>, "Message": ...}``.

    Chalice names ``Code`` after the error's class, so each reason code gets a class of its own.
    """
    status = next(status for kind, status in _STATUS_BY_KIND if isinstance(refusal, kind))
    code = refusal.code
    error_class = _http_errors.get(code)
    if error_class is None:
        error_class = type(code, (ChaliceViewError,), {"STATUS_CODE": status})
        _http_errors[code] = error_class
    return error_class(str(refusal))


def route(
    blueprint: Blueprint,
    path: str,
    *,
    methods: list[str],
    status: int = 200,
    content_types: list[str] | None = None,
    refusals_counted_as: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a handler; its refusals become HTTP errors and its result the response body.

    DynamoDB failures that no domain function expected become 503 ``StorageUnavailable``: the
    client learns that nothing was done, never a 500. Each refusal is logged here, once, with its
    reason code; not its message, which may repeat what the client sent. It is counted here too,
    by its reason code, in the metric ``Refusals`` and, for a route whose refusals are worth a
    metric of their own (the MFA check's), in ``refusals_counted_as``.
    """
    counted_as = ("Refusals", refusals_counted_as) if refusals_counted_as else ("Refusals",)

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(handler)
        def endpoint(**params: Any) -> Response:
            try:
                with storage.unavailable_on_failure():
                    body = handler(**params)
            except errors.Refusal as refusal:
                error = http_error(refusal)
                log.info(
                    "refused %s %s: %s",
                    " ".join(methods),
                    path,
                    refusal.code,
                    extra={"reason": refusal.code, "status": error.STATUS_CODE, "route": path},
                )
                metrics.count(*counted_as, by=("Reason", refusal.code), route=path, status=error.STATUS_CODE)
                if isinstance(refusal, errors.RateLimited) and refusal.retry_after is not None:
                    # RFC 9110 §10.2.3: when to try again. Chalice's errors carry no headers.
                    return Response(
                        body={"Code": refusal.code, "Message": str(refusal)},
                        status_code=error.STATUS_CODE,
                        headers={"Retry-After": str(refusal.retry_after)},
                    )
                raise error from None
            if status == 204:
                return Response(body="", status_code=204)
            if isinstance(body, Response):  # a body that is not JSON (an NDJSON export)
                return body
            return Response(body=body, status_code=status)

        if content_types is None:
            blueprint.route(path, methods=methods)(endpoint)
        else:
            blueprint.route(path, methods=methods, content_types=content_types)(endpoint)
        return handler

    return register


# RFC 6749 §5.2: the OAuth endpoints' refusals carry an OAuth error code, not keyward's body.
_OAUTH_ERRORS: tuple[tuple[type[errors.Refusal], str, int], ...] = (
    (errors.InvalidClient, "invalid_client", 401),
    (errors.InvalidGrant, "invalid_grant", 400),
    (errors.UnsupportedGrantType, "unsupported_grant_type", 400),
    (errors.InvalidInput, "invalid_request", 400),
    (errors.TooLarge, "invalid_request", 400),
    (errors.Unavailable, "temporarily_unavailable", 503),
)


def oauth_error(refusal: errors.Refusal, *, basic_auth: bool = False) -> Response:
    """An OAuth endpoint's refusal, as RFC 6749 §5.2 shapes it: ``{"error", "error_description"}``;
    a client that authenticated with HTTP Basic is challenged again (§5.2, ``invalid_client``)."""
    error, status = next(
        ((error, status) for kind, error, status in _OAUTH_ERRORS if isinstance(refusal, kind)),
        ("invalid_request", 400),
    )
    headers: dict[str, str | list[str]] = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if status == 401 and basic_auth:
        headers["WWW-Authenticate"] = 'Basic realm="keyward"'
    return Response(body={"error": error, "error_description": str(refusal)}, status_code=status, headers=headers)


def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, refused when too large, malformed, not an object, or holding a
    string that is not text."""
    raw = request.raw_body or b""
    if len(raw) > settings().max_body_bytes:
        raise errors.BodyTooLarge(f"The request body is larger than {settings().max_body_bytes} bytes.")
    if not raw.strip():
        raise errors.MalformedJson("A JSON object is required as the request body.")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise errors.MalformedJson("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise errors.MalformedJson("The request body must be a JSON object.")
    if _holds_lone_surrogate(body):
        raise errors.MalformedJson(
            "A string in the request body holds an unpaired surrogate (such as \\ud800), which is not text."
        )
    return body


def _holds_lone_surrogate(document: object) -> bool:
    """Whether any string of a parsed body, a field's name or a value at any depth, holds an
    unpaired UTF-16 surrogate: one no UTF-8 can carry, so that hashing, comparing or storing it
    fails (I-JSON, RFC 7493 §2.1, forbids them). ``json.loads`` joins an escaped pair into one
    character, and lets an unpaired one through, escaped or as raw CESU-8 bytes alike."""
    pending = [document]
    while pending:  # a loop, not recursion: the body may be nested as deep as json.loads allows
        value = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def string_field(body: dict[str, Any], name: str, *, limit: int = 4096) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise errors.MalformedRequest(f"'{name}' is required and must be a non-empty string.")
    if len(value) > limit:
        raise errors.MalformedRequest(f"'{name}' is too long.")
    return value


def only_fields(body: dict[str, Any], allowed: Iterable[str]) -> None:
    """Refuse unknown fields, so a client never believes it changed something it did not."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise errors.MalformedRequest(f"Unknown field(s): {', '.join(unknown)}.")


def client_of(request: Request) -> Client:
    identity = (request.context or {}).get("identity") or {}
    return audit.Client(source_ip=identity.get("sourceIp"), user_agent=request.headers.get("user-agent"))


def caller_of(request: Request, *, action: Action, also: AlsoReads | None = None) -> Caller:
    """The authenticated caller, refused unless the assurance rule allows them ``action``."""
    caller = sessions.resolve(authorization=request.headers.get("authorization"), client=client_of(request), also=also)
    logs.annotate(org=caller.session.org_id, user=caller.session.user_id)
    assurance.require(caller, action)
    return caller


def caller_with[Submitted](
    request: Request,
    *,
    action: Action,
    parse: Callable[[dict[str, Any]], Submitted],
    reads: Callable[[Submitted], AlsoReads],
) -> tuple[Caller, Submitted]:
    """The caller and their parsed request body, read together: what the body names (a
    challenge, a security key) comes in the same round trip as the session.

    The refusals come in the order of every other endpoint: no valid session (401), the
    assurance rule's refusal of ``action``, then a body that cannot be parsed.
    """
    try:
        submitted = parse(json_body(request))
    except (errors.InvalidInput, errors.TooLarge) as refusal:
        caller_of(request, action=action)
        raise refusal from None
    return caller_of(request, action=action, also=reads(submitted)), submitted


def no_store(event: Request, get_response: Callable[[Request], Response]) -> Response:
    """Every answer may carry a token, a secret or personal data: no cache keeps a copy, not
    the browser's and not a proxy's, so neither a back button nor a shared machine shows it later."""
    response = get_response(event)
    response.headers["Cache-Control"] = "no-store"
    return response


def logged_invocation(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Every invocation, a request, a stream batch or a scheduled run, starts its log lines
    afresh with its Lambda request ID."""
    context = event.lambda_context if isinstance(event, Request) else getattr(event, "context", None)
    logs.start_invocation(request_id=getattr(context, "aws_request_id", None))
    return get_response(event)


class KeywardApp(Chalice):
    """Chalice keeps the current request on the app object. Lambda runs one request at a time,
    but ``chalice local`` serves each request on its own thread, so each thread gets its own.

    Chalice would set the ``keyward`` logger to ERROR, dropping every warning: keyward sets up
    its own (chalicelib/base/logs.py)."""

    _per_thread = threading.local()

    def __init__(self, app_name: str) -> None:
        super().__init__(app_name=app_name, configure_logs=False)
        logs.configure(level=settings().log_level)
        self.register_middleware(logged_invocation, "all")

    @property
    def current_request(self) -> Request | None:
        return getattr(self._per_thread, "request", None)

    @current_request.setter
    def current_request(self, request: Request | None) -> None:
        self._per_thread.request = request


class LambdaDeadline:
    """The time an invocation has left, from its Lambda context."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def seconds_left(self) -> float:
        return self._context.get_remaining_time_in_millis() / 1000
