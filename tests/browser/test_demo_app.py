"""The demo app end to end in Chromium: a member with a security key signs in to the local stack's
demo app (a relying party using Authlib, code + PKCE) through keyward's OpenID provider — app →
keyward's authorization page → the key → the app's callback — and the ID token the app shows
verifies against keyward's JWKS with PyJWT, a library neither the app nor keyward signs with."""

from __future__ import annotations

import re
import uuid

import jwt
import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import Console

pytestmark = pytest.mark.browser

DEMO_ORG = "acme"
DEMO_CLIENT_ID = "keyward-demo"


def _member_with_a_key(open_console: OpenConsole) -> tuple[Console, str]:
    """A member of the demo organization who has registered a security key in the console (the
    browser's virtual key), in the tab that will visit the demo app."""
    member = open_console()
    user = f"demo-{uuid.uuid4().hex[:8]}"
    member.sign_in_to_settings(org=DEMO_ORG, user=user)
    member.enable_mfa(key_name="Demo key")
    return member, user


def _sign_in_at_the_demo_app(member: Console, *, user: str) -> None:
    member.page.goto(f"{member.stack.demo}/")
    expect(member.heading("keyward demo app")).to_be_visible()
    member.page.get_by_role("textbox", name="User ID").fill(user)
    member.button("Sign in with keyward").click()
    member.page.wait_for_url(re.compile(re.escape(member.stack.api) + r"/oidc/authorize.*"))


def _back_at_the_demo_app(member: Console) -> None:
    member.page.wait_for_url(re.compile(re.escape(member.stack.demo) + r"/callback.*"))


def _discovery(api: str) -> dict[str, object]:
    with requests.Session() as http:
        http.trust_env = False  # a proxy from the environment must not stand between us and localhost
        found: dict[str, object] = http.get(f"{api}/.well-known/openid-configuration", timeout=10).json()
        return found


def test_a_member_signs_in_to_the_demo_app_with_their_security_key(open_console):
    member, user = _member_with_a_key(open_console)

    _sign_in_at_the_demo_app(member, user=user)
    # keyward's page: the member touches the key (the virtual key answers at once).
    member.button("Use my security key").click()
    _back_at_the_demo_app(member)

    expect(member.heading(f"Signed in as {user}")).to_be_visible()
    claims_table = member.page.locator("#claims")
    expect(claims_table.get_by_role("row", name=re.compile(r"^sub "))).to_contain_text(f'"{user}"')
    expect(claims_table.get_by_role("row", name=re.compile(r"^amr "))).to_contain_text('"hwk"')

    # The token the app received verifies against keyward's published keys, independently of Authlib.
    id_token = member.page.locator("#id-token").text_content() or ""
    discovery = _discovery(member.stack.api)
    assert discovery["issuer"] == member.stack.api
    signing_key = jwt.PyJWKClient(str(discovery["jwks_uri"])).get_signing_key_from_jwt(id_token)
    claims = jwt.decode(
        id_token,
        signing_key.key,
        algorithms=["RS256", "ES256"],
        audience=DEMO_CLIENT_ID,
        issuer=member.stack.api,
        options={"require": ["iss", "aud", "sub", "exp", "iat", "auth_time", "nonce"]},
    )
    assert claims["sub"] == user
    assert "hwk" in claims["amr"]
    assert claims["org"] == DEMO_ORG
    member.screenshot("demo-app-signed-in")


def test_a_member_without_a_key_is_told_why_and_the_app_gets_keywards_refusal(open_console):
    # Signed in to the console in this tab, but no key registered: keyward cannot vouch for them.
    member = open_console()
    user = f"nokey-{uuid.uuid4().hex[:8]}"
    member.sign_in_to_settings(org=DEMO_ORG, user=user)

    _sign_in_at_the_demo_app(member, user=user)
    member.button("Use my security key").click()
    expect(member.page.get_by_role("alert")).to_be_visible()
    member.button("Return to keyward demo app").click()
    _back_at_the_demo_app(member)

    expect(member.heading("Not signed in")).to_be_visible()
    expect(member.page.locator("#error")).to_contain_text("access_denied")


def test_an_answer_this_browser_did_not_ask_for_is_refused(open_console):
    # Login CSRF: a link hands the app a code and state of someone else's sign-in.
    visitor = open_console()

    visitor.page.goto(f"{visitor.stack.demo}/callback?code=planted-code&state=planted-state")

    expect(visitor.heading("Not signed in")).to_be_visible()
    expect(visitor.page.locator("#error")).to_contain_text("state_mismatch")


def test_keywards_refusal_is_shown_as_it_came(open_console):
    visitor = open_console()

    visitor.page.goto(f"{visitor.stack.demo}/callback?error=access_denied&error_description=No+security+key+yet.")

    expect(visitor.heading("Not signed in")).to_be_visible()
    expect(visitor.page.locator("#error")).to_contain_text("access_denied")
    expect(visitor.page.locator("#error-description")).to_contain_text("No security key yet.")
