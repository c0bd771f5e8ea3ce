"""The web console: its page and static files from ``chalicelib/console/``, and the local stage's
demo sign-in (``POST /dev/id-token``), a Blueprint of its own that app.py registers only there."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

from chalice import Blueprint, Response

from chalicelib.api.http import http_error, json_body, only_fields, route
from chalicelib.base import errors
from chalicelib.base.config import settings

console = Blueprint(__name__)
dev_sign_in = Blueprint(__name__)

CONSOLE_DIRECTORY = Path(__file__).resolve().parent.parent / "console"
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page talks only to its own origin and runs only its own files: an injected script or a
# framing site gets nowhere near the session token.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'self'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Never kept: the page is small, and a stored copy on a shared machine is one more place a
    # signed-in console could be read from. (The API's middleware sets it on every answer too.)
    "Cache-Control": "no-store",
}


class ConsoleFileNotFound(errors.NotFound):
    """No such file among the console's static files."""


# A named tuple, not a dataclass: every cold start builds this class, and a dataclass compiles
# the source of its methods as it is built.
class _Asset(NamedTuple):
    body: str
    content_type: str
    etag: str


@functools.cache
def _assets() -> dict[str, _Asset]:
    """The console's static files by name, read once per process (the page is handled apart)."""
    found: dict[str, _Asset] = {}
    for path in sorted(CONSOLE_DIRECTORY.iterdir()):
        content_type = _CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_text(encoding="utf-8")
        found[path.name] = _Asset(body=body, content_type=content_type, etag=_etag(body))
    return found


def _etag(body: str) -> str:
    import hashlib  # as html below: loaded by the console's first request, not by every cold start

    return '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'


@functools.cache
def _page(
    *, base: str, dev_sign_in_enabled: bool, idp_authorization_endpoint: str = "", idp_client_id: str = ""
) -> _Asset:
    # The page is filled in per deployment: API Gateway serves it under its stage (/api/), and
    # every URL in it is relative to that base.
    import html

    template = _assets()["index.html"].body
    body = (
        template.replace("{{base}}", html.escape(base, quote=True))
        .replace("{{dev_sign_in}}", "on" if dev_sign_in_enabled else "off")
        .replace("{{idp_authorization_endpoint}}", html.escape(idp_authorization_endpoint, quote=True))
        .replace("{{idp_client_id}}", html.escape(idp_client_id, quote=True))
    )
    return _Asset(body=body, content_type=_CONTENT_TYPES[".html"], etag=_etag(body))


def _base_path(context: dict[str, Any]) -> str:
    """The path the console's root is served at: ``/`` locally, ``/api/`` behind API Gateway."""
    path = str(context.get("path") or "/")
    resource = str(context.get("resourcePath") or "/")
    if resource != "/" and path.endswith(resource):
        path = path[: -len(resource)]
    return path.rstrip("/") + "/"


# Files, not JSON: these handlers build their own responses rather than going through route().
def _serve(asset: _Asset) -> Response:
    headers: dict[str, str | list[str]] = {**_SECURITY_HEADERS, "ETag": asset.etag}
    if_none_match = console.current_request.headers.get("if-none-match")
    if if_none_match is not None and asset.etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(body="", status_code=304, headers=headers)
    return Response(body=asset.body, status_code=200, headers={**headers, "Content-Type": asset.content_type})


@console.route("/", methods=["GET"])
def page() -> Response:
    request = console.current_request
    config = settings()
    return _serve(
        _page(
            base=_base_path(request.context or {}),
            dev_sign_in_enabled=config.dev_idp_key_file is not None,
            idp_authorization_endpoint=config.oidc_authorization_endpoint or "",
            idp_client_id=config.oidc_audience,
        )
    )


@console.route("/console/{name}", methods=["GET"])
def static_file(name: str) -> Response:
    asset = _assets().get(name)
    # The pages are templates keyward fills in (index.html, authorize.html), never files to fetch.
    if asset is None or name.endswith(".html"):
        raise http_error(ConsoleFileNotFound("No such file in the console."))
    return _serve(asset)


@route(dev_sign_in, "/dev/id-token", methods=["POST"])
def dev_id_token() -> dict[str, Any]:
    from chalicelib.access import (
        devidp,  # the local stage's alone: no other stage loads it
    )

    body = json_body(dev_sign_in.current_request)
    only_fields(body, {"org", "user", "admin", "name", "email"})
    token = devidp.mint_id_token(
        org=body.get("org"),
        user=body.get("user"),
        admin=body.get("admin", False),
        name=body.get("name"),
        email=body.get("email"),
    )
    return {"id_token": token}
