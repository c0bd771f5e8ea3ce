"""keyward as an OpenID provider: discovery, the JWKS, the authorization endpoint with its page
and that page's steps, and the token endpoint."""

from __future__ import annotations

import base64
import binascii
import html
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

from chalice import Blueprint, Response
from chalice.app import Request

from chalicelib.access.actions import Action
from chalicelib.api.console import CONSOLE_DIRECTORY, _base_path
from chalicelib.api.http import caller_of, caller_with, client_of, oauth_error, route
from chalicelib.api.views import login_body
from chalicelib.base import errors
from chalicelib.base.config import settings
from chalicelib.base.deferred import deferred

if TYPE_CHECKING:
    from chalicelib.access import mfa
    from chalicelib.access.mfa import Assertion
    from chalicelib.base import storage
    from chalicelib.provider import authorization, discovery, signing, token_endpoint
else:
    authorization = deferred("chalicelib.provider.authorization")
    discovery = deferred("chalicelib.provider.discovery")
    mfa = deferred("chalicelib.access.mfa")
    signing = deferred("chalicelib.provider.signing")
    storage = deferred("chalicelib.base.storage")
    token_endpoint = deferred("chalicelib.provider.token_endpoint")

provider = Blueprint(__name__)

FORM = "application/x-www-form-urlencoded"
# A browser's GET carries no content type, which Chalice reads as JSON.
_AUTHORIZE_TYPES = [FORM, "application/json"]


@route(provider, "/.well-known/openid-configuration", methods=["GET"])
def openid_configuration() -> dict[str, Any]:
    return discovery.metadata()


@route(provider, "/oidc/jwks", methods=["GET"])
def jwks() -> dict[str, Any]:
    return signing.jwks()


# --- the authorization endpoint ------------------------------------------------------------------


def _form(request: Request) -> dict[str, list[str]]:
    raw = request.raw_body or b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > settings().max_body_bytes:
        raise errors.BodyTooLarge(f"The request body is larger than {settings().max_body_bytes} bytes.")
    try:
        return parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise errors.MalformedRequest("The form is not UTF-8.") from None


def _authorization_params(request: Request) -> dict[str, list[str]]:
    """The request's parameters: the query (GET), or the form (POST, OIDC Core §3.1.2.1)."""
    if request.method == "POST":
        return _form(request)
    query = request.query_params
    if query is None:
        return {}
    return {name: list(query.getlist(name)) for name in query}


_PAGE_SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _csp(form_action: str | None) -> str:
    # As the console's, except that a form may be posted to the client's redirect URI (form_post).
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        f"base-uri 'self'; form-action {form_action or "'none'"}; frame-ancestors 'none'"
    )


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _html(body: str, *, status: int = 200, form_action: str | None = None) -> Response:
    return Response(
        body=body,
        status_code=status,
        headers={
            **_PAGE_SECURITY,
            "Content-Security-Policy": _csp(form_action),
            "Content-Type": "text/html; charset=utf-8",
        },
    )


def _page(request: Request, *, title: str, main: str, data: dict[str, str]) -> str:
    base = html.escape(_base_path(request.context or {}), quote=True)
    template = (CONSOLE_DIRECTORY / "authorize.html").read_text(encoding="utf-8")
    attributes = " ".join(f'data-{name}="{html.escape(value, quote=True)}"' for name, value in data.items())
    return (
        template.replace("{{base}}", base)
        .replace("{{title}}", html.escape(title))
        .replace("{{data}}", attributes)
        .replace("{{main}}", main)
    )


def _send(request: Request, response: authorization.Response) -> Response:
    """The browser sent on to the client: a redirect with the query, or a form it posts."""
    if response.mode == "query":
        return Response(
            body="", status_code=302, headers={"Location": response.location(), "Cache-Control": "no-store"}
        )
    fields = "".join(
        f'<input type="hidden" name="{html.escape(name, quote=True)}" value="{html.escape(value, quote=True)}">'
        for name, value in response.params.items()
    )
    main = (
        f'<form id="response" method="post" action="{html.escape(response.redirect_uri, quote=True)}">{fields}'
        '<p>Returning you to the application…</p><button type="submit">Continue</button></form>'
    )
    return _html(
        _page(request, title="Returning to the application", main=main, data={"step": "respond"}),
        form_action=_origin(response.redirect_uri),
    )


def _error_page(request: Request, refusal: errors.Refusal) -> Response:
    main = (
        '<h1>This sign-in request cannot be answered</h1><p role="alert">'
        f"{html.escape(str(refusal))} ({html.escape(refusal.code)})</p>"
    )
    status = 404 if isinstance(refusal, errors.NotFound) else 503 if isinstance(refusal, errors.Unavailable) else 400
    return _html(_page(request, title="Sign-in request refused", main=main, data={"step": "error"}), status=status)


@provider.route("/oidc/authorize", methods=["GET", "POST"], content_types=_AUTHORIZE_TYPES)
def authorize() -> Response:
    request = provider.current_request
    try:
        with storage.unavailable_on_failure():
            outcome = authorization.begin(params=_authorization_params(request), client=client_of(request))
    except errors.Refusal as refusal:
        return _error_page(request, refusal)
    if isinstance(outcome, authorization.Response):
        return _send(request, outcome)
    main = (
        f"<h1>Confirm it is you for {html.escape(outcome.client.name)}</h1>"
        '<p id="authorize-status" role="status" aria-live="polite">Preparing the security key check…</p>'
        '<div id="authorize-actions"></div>'
    )
    return _html(
        _page(
            request,
            title=f"Security key check for {outcome.client.name}",
            main=main,
            data={
                "step": "check",
                "request": outcome.request_id,
                "client": outcome.client.name,
                "hint": "yes" if outcome.member_hint else "no",
            },
        ),
        form_action=_origin(outcome.redirect_uri),
    )


def _finished(finished: authorization.Finished) -> dict[str, Any]:
    refusal = finished.refusal
    return {
        "done": finished.response.as_json(),
        "refusal": None if refusal is None else {"Code": refusal.code, "Message": str(refusal)},
        "token": finished.token,
    }


@route(provider, "/oidc/authorize/{request_id}", methods=["GET"])
def authorization_request(request_id: str) -> dict[str, Any]:
    pending = authorization.describe(request_id=request_id)
    return {
        "request_id": pending.request_id,
        "client": {"client_id": pending.client.client_id, "name": pending.client.name},
        "member_hint": pending.member_hint,
    }


@route(provider, "/oidc/authorize/{request_id}/session", methods=["POST"])
def authorization_session(request_id: str) -> dict[str, Any]:
    request = provider.current_request
    outcome = authorization.session_from_hint(request_id=request_id, client=client_of(request))
    if isinstance(outcome, authorization.Finished):
        return _finished(outcome)
    return login_body(
        token=outcome.issued.token, session=outcome.issued.session, org=outcome.org, member=outcome.member
    )


@route(provider, "/oidc/authorize/{request_id}/options", methods=["POST"])
def authorization_options(request_id: str) -> dict[str, Any]:
    caller = caller_of(provider.current_request, action=Action.READ_ACCOUNT)
    outcome = authorization.options(request_id=request_id, caller=caller)
    if isinstance(outcome, authorization.Finished):
        return _finished(outcome)
    return {"challenge_id": outcome.challenge_id, "publicKey": outcome.public_key}


def _assertion(body: dict[str, Any]) -> Assertion:
    from chalicelib.api.http import only_fields

    only_fields(body, {"challenge_id", "credential"})
    return mfa.parse_assertion(challenge_id=body.get("challenge_id"), credential=body.get("credential"))


@route(provider, "/oidc/authorize/{request_id}/verify", methods=["POST"])
def authorization_verify(request_id: str) -> dict[str, Any]:
    try:
        caller, assertion = caller_with(
            provider.current_request, action=Action.READ_ACCOUNT, parse=_assertion, reads=mfa.assertion_reads
        )
    except errors.InvalidInput:
        # As on every route, a session the rule refuses learns that before what was wrong with its body.
        authorization.can_check_a_key(caller_of(provider.current_request, action=Action.READ_ACCOUNT))
        raise
    return _finished(authorization.verify(request_id=request_id, caller=caller, assertion=assertion))


@route(provider, "/oidc/authorize/{request_id}/cancel", methods=["POST"])
def authorization_cancel(request_id: str) -> dict[str, Any]:
    return _finished(authorization.cancel(request_id=request_id, client=client_of(provider.current_request)))


# --- the token endpoint --------------------------------------------------------------------------


def _single_values(form: dict[str, list[str]]) -> dict[str, str]:
    repeated = sorted(name for name, values in form.items() if len(values) > 1)
    if repeated:
        # RFC 6749 §3.2: parameters MUST NOT be included more than once.
        raise errors.MalformedRequest(f"Sent more than once: {', '.join(repeated)}.")
    return {name: values[0] for name, values in form.items()}


def _client_credentials(authorization_header: str | None, form: dict[str, str]) -> tuple[str | None, str | None]:
    """The client's ID and secret: HTTP Basic (RFC 6749 §2.3.1, each part form-encoded) or the
    body's ``client_id``/``client_secret``; never both (§2.3)."""
    if authorization_header:
        scheme, _, encoded = authorization_header.strip().partition(" ")
        if scheme.lower() != "basic":
            raise errors.InvalidClient("The token endpoint authenticates clients with HTTP Basic or the form.")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise errors.InvalidClient("The Basic credentials are not base64 of 'id:secret'.") from None
        client_id, separator, secret = decoded.partition(":")
        if not separator:
            raise errors.InvalidClient("The Basic credentials are not base64 of 'id:secret'.")
        if "client_secret" in form:
            raise errors.MalformedRequest("Send the client secret once: in the header or in the form.")
        if "client_id" in form and form["client_id"] != unquote_plus(client_id):
            raise errors.InvalidClient("The form's client_id is not the authenticated client.")
        return unquote_plus(client_id), unquote_plus(secret)
    return form.get("client_id"), form.get("client_secret")


@provider.route("/oidc/token", methods=["POST"], content_types=[FORM])
def token() -> Response:
    request = provider.current_request
    basic = (request.headers.get("authorization") or "").lower().startswith("basic")
    try:
        with storage.unavailable_on_failure():
            form = _single_values(_form(request))
            client_id, secret = _client_credentials(request.headers.get("authorization"), form)
            issued = token_endpoint.exchange(client_id=client_id, secret=secret, form=form, client=client_of(request))
    except errors.Refusal as refusal:
        return oauth_error(refusal, basic_auth=basic)
    # RFC 6749 §5.1: the answer carries tokens, so no cache may keep it.
    return Response(body=issued.as_json(), status_code=200, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
