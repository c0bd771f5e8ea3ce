"""Signing in through the organization's IdP from the console (implicit flow): the console makes
the ``state`` and ``nonce`` itself, accepts only the answer to its own request, and the API checks
the ID token's ``nonce``. The IdP is played by the test (Playwright answers its authorization
endpoint), signing with the dev IdP key the local stack trusts."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from playwright.sync_api import Browser, Route, expect

from devstack.idp import DevIdentityProvider
from tests.browser.conftest import OpenConsole
from tests.browser.console import Console, unique_org
from tests.support.local_stack import LocalStack, running_local_stack

pytestmark = pytest.mark.browser

AUTHORIZATION_ENDPOINT = "https://idp.keyward.test/authorize"
PENDING_KEY = "keyward.idp-sign-in"


@pytest.fixture(scope="module")
def stack(chromium: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A local stack whose console offers the IdP sign-in (the variable is passed on to it)."""
    previous = os.environ.get("KEYWARD_OIDC_AUTHORIZATION_ENDPOINT")
    os.environ["KEYWARD_OIDC_AUTHORIZATION_ENDPOINT"] = AUTHORIZATION_ENDPOINT
    try:
        running = running_local_stack(tmp_path_factory.mktemp("console-idp-stack"))
        started = running.__enter__()
    finally:
        # Only the stack's own environment carries it, not the other modules' stacks.
        if previous is None:
            del os.environ["KEYWARD_OIDC_AUTHORIZATION_ENDPOINT"]
        else:
            os.environ["KEYWARD_OIDC_AUTHORIZATION_ENDPOINT"] = previous
    try:
        yield started
    finally:
        running.__exit__(None, None, None)


class IdentityProvider:
    """The organization's IdP as the browser meets it: it signs the user in and redirects back to
    the console with an ID token carrying the nonce it was given (or, if told, another)."""

    def __init__(self, console: Console, *, org: str, user: str) -> None:
        self.keys = DevIdentityProvider.load_or_create()
        self.org, self.user = org, user
        self.requests: list[dict[str, str]] = []
        self.nonce_override: str | None = None
        console.context.route(AUTHORIZATION_ENDPOINT + "*", self._answer)

    def _answer(self, route: Route) -> None:
        query = {name: values[0] for name, values in parse_qs(urlparse(route.request.url).query).items()}
        self.requests.append(query)
        nonce = self.nonce_override if self.nonce_override is not None else query["nonce"]
        id_token = self.keys.mint(org=self.org, user=self.user, name=self.user.title(), nonce=nonce)
        fragment = urlencode({"id_token": id_token, "state": query["state"]})
        route.fulfill(status=302, headers={"location": f"{query['redirect_uri']}#{fragment}"})


@pytest.fixture
def signing_in(open_console: OpenConsole) -> Callable[..., tuple[Console, IdentityProvider]]:
    def make(user: str) -> tuple[Console, IdentityProvider]:
        console = open_console()
        return console, IdentityProvider(console, org=unique_org("idp"), user=user)

    return make


def _pending(console: Console) -> str | None:
    return console.page.evaluate(f"sessionStorage.getItem({PENDING_KEY!r})")


def test_the_console_starts_the_sign_in_with_its_own_state_and_nonce(signing_in):
    uma, idp = signing_in("uma")
    uma.open()

    uma.button("Sign in with your identity provider").click()

    expect(uma.heading("Personal settings")).to_be_visible()
    [sent] = idp.requests
    assert sent["client_id"] == "keyward-local"
    assert (sent["response_type"], sent["response_mode"]) == ("id_token", "fragment")
    assert sent["redirect_uri"] == f"{uma.stack.api}/"
    assert len(sent["state"]) >= 43 and len(sent["nonce"]) >= 43 and sent["state"] != sent["nonce"]
    assert uma.get("/me")["user"]["id"] == "uma"
    # The token is out of the address bar, and the pending sign-in is used up.
    assert "id_token" not in uma.page.url
    assert _pending(uma) is None


def test_each_sign_in_gets_a_fresh_state_and_nonce(signing_in):
    vic, idp = signing_in("vic")
    for _ in range(2):
        vic.open()
        vic.button("Sign in with your identity provider").click()
        expect(vic.heading("Personal settings")).to_be_visible()
        vic.sign_out()

    first, second = idp.requests
    assert first["state"] != second["state"] and first["nonce"] != second["nonce"]


def test_an_answer_this_tab_did_not_ask_for_is_refused(signing_in):
    # Login CSRF: someone else's link hands the console an ID token (valid, even with a nonce).
    wes, idp = signing_in("wes")
    planted = idp.keys.mint(org=idp.org, user="mallory", nonce="chosen-by-mallory")
    wes.page.goto(f"{wes.stack.api}/#" + urlencode({"id_token": planted, "state": "chosen-by-mallory"}))

    expect(wes.heading("Sign in to keyward")).to_be_visible()
    expect(wes.page.locator("#sign-in-reason")).to_contain_text("not started from this page")
    assert wes.token() is None
    assert "id_token" not in wes.page.url


def test_an_answer_is_accepted_once(signing_in):
    xia, idp = signing_in("xia")
    xia.open()
    xia.button("Sign in with your identity provider").click()
    expect(xia.heading("Personal settings")).to_be_visible()
    answered = idp.requests[0]
    replay = idp.keys.mint(org=idp.org, user="xia", nonce=answered["nonce"])
    xia.sign_out()
    xia.page.goto("about:blank")  # a fresh load of the console, as a link opened again would be

    xia.page.goto(f"{xia.stack.api}/#" + urlencode({"id_token": replay, "state": answered["state"]}))

    expect(xia.page.locator("#sign-in-reason")).to_contain_text("not started from this page")
    assert xia.token() is None


def test_a_token_with_another_nonce_is_refused_by_the_api(signing_in):
    # A token from another sign-in, slipped into the answer to this tab's own request.
    yan, idp = signing_in("yan")
    idp.nonce_override = "the-nonce-of-another-sign-in"
    yan.open()

    yan.button("Sign in with your identity provider").click()

    expect(yan.heading("Sign in to keyward")).to_be_visible()
    expect(yan.page.get_by_role("alert")).to_contain_text("nonce is not the one this sign-in sent")
    assert yan.token() is None
