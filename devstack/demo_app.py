"""The local stack's demo app: a relying party of the demo organization that signs people in
through keyward's OpenID provider (authorization code + PKCE, Authlib as its OIDC client, found
through keyward's discovery document) and shows the ID token's claims it received.

It plays an app whose users sign in elsewhere first, as Microsoft Entra ID's users do: the
person's first factor is the dev IdP, whose ID token the app hands keyward as ``id_token_hint``;
keyward is the second factor, the security key.
"""

from __future__ import annotations

import base64
import html
import json
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

# Authlib ships no type information; its classes are used as documented.
from authlib.integrations.base_client import (  # type: ignore[import-untyped]
    BaseApp,
    OAuth2Mixin,
    OAuthError,
    OpenIDMixin,
)
from authlib.integrations.requests_client import OAuth2Session  # type: ignore[import-untyped]

from devstack.seed import DEMO_MEMBER, DEMO_ORG

if TYPE_CHECKING:
    from devstack.idp import DevIdentityProvider

DEMO_CLIENT_ID = "keyward-demo"
DEMO_CLIENT_NAME = "keyward demo app"
# An answer from keyward comes back within minutes of the sign-in it answers, or not at all.
PENDING_SECONDS = 600
_PENDING_LIMIT = 1000
# The hint is read by keyward at once; it need not outlive the authorization request.
HINT_LIFETIME_SECONDS = 300
_HTTP_TIMEOUT_SECONDS = 10
# Bound to the browser that started the sign-in: keyward's answer is accepted only from it.
STATE_COOKIE = "keyward_demo_state"
_MAX_FORM_BYTES = 4096


def register_demo_client(*, redirect_uri: str, org_id: str = DEMO_ORG) -> None:
    """Register (or re-register, with the redirect URI of this run) the demo app as a public
    client of ``org_id``: code flow only, so PKCE binds its codes.

    An admin registers through ``POST /org/oidc-clients``, which draws a random client ID; the
    demo app keeps a fixed one across runs, so it writes the item itself, held to the same rules.
    """
    from chalicelib.base.models import RelyingParty
    from chalicelib.provider import clients

    # The item is the local stack's own: a rerun on another port points it at that port.
    RelyingParty(
        client_id=DEMO_CLIENT_ID,
        org_id=org_id,
        name=DEMO_CLIENT_NAME,
        redirect_uris=[clients.check_redirect_uri(redirect_uri)],
        flows={"code"},
        secret_hash=None,
        signing_alg="RS256",
        created_at=datetime.now(UTC),
        created_by="devstack",
    ).save()


class _LocalSession(OAuth2Session):  # type: ignore[misc]
    """Authlib's requests session, reaching the local API directly: a proxy from the environment
    must not stand between the demo app and localhost."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trust_env = False


class _NoFramework:
    """Authlib's framework integrations keep tokens in a web framework's session; the demo app
    keeps none, and refreshes none."""

    def update_token(self, token: Mapping[str, Any], **kwargs: Any) -> None:
        return None


class KeywardClient(OAuth2Mixin, OpenIDMixin, BaseApp):  # type: ignore[misc]
    """keyward as an OpenID provider, seen through Authlib: discovery, the authorization URL with
    PKCE (S256) and a nonce, the code exchange, and the ID token checked against the JWKS."""

    client_cls = _LocalSession


@dataclass(frozen=True)
class _Pending:
    """A sign-in sent to keyward, waiting for its answer at the callback."""

    code_verifier: str
    nonce: str
    user: str | None
    started: float


@dataclass(frozen=True)
class SignedIn:
    """What the callback received: the ID token, verified, and what introspection says of the
    access token (or, in ``introspection_note``, why the app could not ask)."""

    claims: dict[str, Any]
    id_token: str
    id_token_header: dict[str, Any]
    introspection: dict[str, Any] | None
    introspection_note: str | None


class DemoApp:
    """The demo relying party on ``http://localhost:<port>``, served from a thread."""

    def __init__(
        self,
        *,
        api: str,
        port: int,
        identity_provider: DevIdentityProvider,
        host: str = "127.0.0.1",
        org_id: str = DEMO_ORG,
        client_id: str = DEMO_CLIENT_ID,
    ) -> None:
        self.api = api.rstrip("/")
        self.url = f"http://localhost:{port}"
        self.redirect_uri = f"{self.url}/callback"
        self.org_id = org_id
        self.identity_provider = identity_provider
        self.keyward = KeywardClient(
            _NoFramework(),
            name="keyward",
            client_id=client_id,
            server_metadata_url=f"{self.api}/.well-known/openid-configuration",
            client_kwargs={
                "scope": "openid",
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": "none",
                "default_timeout": _HTTP_TIMEOUT_SECONDS,
            },
        )
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.demo = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-app", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for a serve_forever() that never began otherwise
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- the relying party ---------------------------------------------------------------------

    def start_sign_in(self, *, user: str | None) -> tuple[str, str]:
        """The URL of keyward's authorization endpoint to send the browser to, and its ``state``.

        With ``user``, the person has signed in at the dev IdP as that member of the demo
        organization, and its ID token goes along as ``id_token_hint``; without, keyward asks
        the person's keyward sign-in in that browser.
        """
        extra: dict[str, str] = {}
        if user:
            extra["id_token_hint"] = self.identity_provider.mint(
                org=self.org_id, user=user, lifetime_seconds=HINT_LIFETIME_SECONDS
            )
        request = self.keyward.create_authorization_url(redirect_uri=self.redirect_uri, **extra)
        pending = _Pending(
            code_verifier=request["code_verifier"], nonce=request["nonce"], user=user, started=time.monotonic()
        )
        with self._lock:
            self._forget_stale()
            self._pending[request["state"]] = pending
        return request["url"], request["state"]

    def finish_sign_in(self, *, query: Mapping[str, str], browser_state: str | None) -> SignedIn:
        """Redeem keyward's answer at the callback: the code for tokens (with the PKCE verifier),
        the ID token verified (signature against the JWKS, issuer, audience, expiry, nonce,
        at_hash), and the access token introspected.

        Raises:
            SignInFailed: keyward answered with an error, or the answer is not one this browser
                asked for, or the code was refused.
        """
        if "error" in query:
            raise SignInFailed(query["error"], query.get("error_description", ""))
        state = query.get("state")
        if not state or state != browser_state:
            raise SignInFailed("state_mismatch", "This answer was not asked for by this browser.")
        with self._lock:
            pending = self._pending.pop(state, None)
        if pending is None or time.monotonic() - pending.started > PENDING_SECONDS:
            raise SignInFailed("state_unknown", "This sign-in was already finished, or is too old.")
        if "code" not in query:
            raise SignInFailed("invalid_response", "keyward's answer carries no code.")
        # RFC 9207: an answer that names an issuer must name the one this sign-in went to.
        issuer = self.keyward.load_server_metadata().get("issuer")
        if "iss" in query and query["iss"] != issuer:
            raise SignInFailed("issuer_mismatch", f"The answer names {query['iss']!r}, not {issuer!r}.")
        try:
            token = self.keyward.fetch_access_token(
                redirect_uri=self.redirect_uri, code=query["code"], code_verifier=pending.code_verifier
            )
            claims = self.keyward.parse_id_token(token, nonce=pending.nonce)
        except OAuthError as refused:
            raise SignInFailed(refused.error, refused.description or "") from None
        except Exception as error:  # an answer that is no OAuth error (a 5xx, a token that fails its checks)
            raise SignInFailed("token_not_accepted", f"{type(error).__name__}: {error}") from None
        if claims is None:
            raise SignInFailed("invalid_response", "keyward's token response carries no ID token.")
        introspection, note = self._introspect(str(token["access_token"]))
        return SignedIn(
            claims=dict(claims),
            id_token=str(token["id_token"]),
            id_token_header=_header(str(token["id_token"])),
            introspection=introspection,
            introspection_note=note,
        )

    def _introspect(self, access_token: str) -> tuple[dict[str, Any] | None, str | None]:
        metadata = self.keyward.load_server_metadata()
        endpoint = metadata.get("introspection_endpoint")
        if not endpoint:
            return None, None
        # RFC 7662 asks the caller to authenticate: a public client may only where "none" is offered.
        methods = metadata.get("introspection_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if "none" not in methods:
            return None, f"introspection is for confidential clients ({', '.join(methods)}); this app is public."
        # A public client authenticates at introspection as at the token endpoint: by its ID alone.
        with _LocalSession(
            client_id=self.keyward.client_id,
            revocation_endpoint_auth_method="none",
            default_timeout=_HTTP_TIMEOUT_SECONDS,
        ) as client:
            answer = client.introspect_token(endpoint, token=access_token, token_type_hint="access_token")
        if answer.status_code != HTTPStatus.OK:
            return None, f"keyward answered {answer.status_code}: {answer.text[:500]}"
        found: dict[str, Any] = answer.json()
        return found, None

    def _forget_stale(self) -> None:
        now = time.monotonic()
        for state, pending in list(self._pending.items()):
            if now - pending.started > PENDING_SECONDS:
                del self._pending[state]
        # Abandoned sign-ins must not grow the process without bound.
        while len(self._pending) >= _PENDING_LIMIT:
            del self._pending[next(iter(self._pending))]


class SignInFailed(Exception):
    """The sign-in did not end with a verified ID token: ``error`` is OAuth's code for why."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


def _header(token: str) -> dict[str, Any]:
    encoded = token.split(".", 1)[0]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    return header


# --- the pages ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server_version = "keyward-demo"

    @property
    def demo(self) -> DemoApp:
        found: DemoApp = self.server.demo  # type: ignore[attr-defined]
        return found

    def do_GET(self) -> None:
        path, _, raw_query = self.path.partition("?")
        if path == "/":
            self._page(HTTPStatus.OK, _sign_in_page(self.demo))
        elif path == "/callback":
            self._callback(raw_query)
        else:
            self._page(HTTPStatus.NOT_FOUND, _message_page("Not found", "The demo app has no such page."))

    def do_POST(self) -> None:
        if self.path != "/sign-in":
            self._page(HTTPStatus.NOT_FOUND, _message_page("Not found", "The demo app has no such page."))
            return
        length = int(self.headers.get("content-length") or 0)
        if length > _MAX_FORM_BYTES:
            self._page(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _message_page("Not signed in", "The form is too large."))
            return
        form = _single_values(self.rfile.read(length).decode("utf-8", "replace"))
        user = form.get("user", "").strip() or None
        try:
            url, state = self.demo.start_sign_in(user=user)
        except Exception as error:  # keyward not up yet, or no discovery document: say so on the page
            self._page(
                HTTPStatus.BAD_GATEWAY,
                _message_page("Not signed in", f"keyward's discovery document could not be read: {error}"),
            )
            return
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", url)
        self.send_header("Set-Cookie", f"{STATE_COOKIE}={state}; Path=/callback; HttpOnly; SameSite=Lax")
        self._security_headers()
        self.end_headers()

    def _callback(self, raw_query: str) -> None:
        cookie = SimpleCookie(self.headers.get("cookie") or "")
        browser_state = cookie[STATE_COOKIE].value if STATE_COOKIE in cookie else None
        try:
            signed_in = self.demo.finish_sign_in(query=_single_values(raw_query), browser_state=browser_state)
        except SignInFailed as failed:
            self._page(HTTPStatus.BAD_REQUEST, _failure_page(failed))
            return
        self._page(HTTPStatus.OK, _claims_page(signed_in), clear_state=True)

    def _page(self, status: HTTPStatus, body: str, *, clear_state: bool = False) -> None:
        encoded = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(encoded)))
        if clear_state:
            self.send_header("Set-Cookie", f"{STATE_COOKIE}=; Path=/callback; Max-Age=0; HttpOnly; SameSite=Lax")
        self._security_headers()
        self.end_headers()
        self.wfile.write(encoded)

    def _security_headers(self) -> None:
        # The form's answer redirects to keyward: Chromium holds a form's redirects to form-action.
        self.send_header(
            "Content-Security-Policy",
            f"default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {self.demo.api}; "
            "frame-ancestors 'none'; base-uri 'none'",
        )
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Content-Type-Options", "nosniff")

    def log_message(self, format: str, *args: Any) -> None:
        print(f"demo app: {format % args}", file=sys.stderr)


def _single_values(encoded: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(encoded).items()}


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #1b1b1f; }
h1 { font-size: 1.6rem; }
label { display: block; font-weight: 600; margin: 1rem 0 .3rem; }
input { font: inherit; padding: .4rem .6rem; width: 16rem; }
button { font: inherit; margin-top: 1rem; padding: .5rem 1rem; background: #1f4fd1; color: #fff; border: 0;
  border-radius: .3rem; cursor: pointer; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .35rem .6rem; border-bottom: 1px solid #ddd; }
td code, pre { font-family: ui-monospace, monospace; font-size: .9rem; overflow-wrap: anywhere; white-space: pre-wrap; }
.hint { color: #4a4a55; }
"""


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · keyward demo app</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _sign_in_page(demo: DemoApp) -> str:
    return _document(
        "Sign in",
        f"""<h1>keyward demo app</h1>
<p>An app of the organization <code>{html.escape(demo.org_id)}</code> that asks keyward whether you
just proved your security key (OpenID Connect, authorization code + PKCE).</p>
<form method="post" action="/sign-in">
<label for="user">User ID</label>
<input id="user" name="user" value="{html.escape(DEMO_MEMBER)}" autocomplete="username">
<p class="hint" id="user-hint">The organization's IdP (the local stack's dev IdP) signs you in as this
member, and its ID token goes to keyward as <code>id_token_hint</code>. Leave it empty to be the person
signed in to keyward's console in this browser.</p>
<button type="submit">Sign in with keyward</button>
</form>""",
    )


def _claims_page(signed_in: SignedIn) -> str:
    rows = "\n".join(
        f'<tr><th scope="row">{html.escape(name)}</th><td><code>{html.escape(json.dumps(value))}</code></td></tr>'
        for name, value in sorted(signed_in.claims.items())
    )
    if signed_in.introspection is not None:
        introspection = f'<pre id="introspection">{html.escape(json.dumps(signed_in.introspection, indent=2))}</pre>'
    elif signed_in.introspection_note is not None:
        introspection = f'<p id="introspection">Not introspected: {html.escape(signed_in.introspection_note)}</p>'
    else:
        introspection = '<p id="introspection">keyward\'s discovery document names no introspection endpoint.</p>'
    header = signed_in.id_token_header
    return _document(
        "Signed in",
        f"""<h1>Signed in as {html.escape(str(signed_in.claims.get("sub")))}</h1>
<p id="verified">The ID token's signature was verified against keyward's JWKS
(<code>kid</code> {html.escape(str(header.get("kid")))}, {html.escape(str(header.get("alg")))}), and its issuer,
audience, expiry and nonce were checked.</p>
<h2>The ID token's claims</h2>
<table id="claims"><thead><tr><th scope="col">Claim</th><th scope="col">Value</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<h2>The access token, introspected</h2>
{introspection}
<details><summary>The ID token as received</summary><pre id="id-token">{html.escape(signed_in.id_token)}</pre></details>
<p><a href="/">Sign in again</a></p>""",
    )


def _failure_page(failed: SignInFailed) -> str:
    return _document(
        "Not signed in",
        f"""<h1>Not signed in</h1>
<p id="error">keyward's answer: <code>{html.escape(failed.error)}</code></p>
<p id="error-description">{html.escape(failed.description)}</p>
<p><a href="/">Try again</a></p>""",
    )


def _message_page(title: str, message: str) -> str:
    return _document(title, f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p><p><a href='/'>Back</a></p>")
