"""Driving the console in Debian's Chromium: one browser context per user, each with virtual
security keys from Chrome DevTools' WebAuthn domain, so the browser's own WebAuthn stack runs the
ceremonies against the running local stack; and the API behind the page, called with the page's
own session token."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import requests
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.support.local_stack import PROJECT_ROOT, LocalStack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Test runs keep their screenshots out of git; KEYWARD_SCREENSHOTS=docs/screenshots refreshes the
# images the README and docs show.
SCREENSHOTS = PROJECT_ROOT / os.environ.get("KEYWARD_SCREENSHOTS", ".artifacts/screenshots")
WIDE = {"width": 1440, "height": 900}
# A current phone (iPhone 12 to 15); narrower phones are covered by the same single-column layout.
NARROW = {"width": 390, "height": 844}
# axe-core (vendored by axe-playwright-python, so no network at test time) finds these or worse on
# no screen of the console.
SERIOUS = {"serious", "critical"}
AXE = Axe()
# A plain USB security key: no PIN, no passkey; it answers as soon as it is asked.
SECURITY_KEY = {
    "protocol": "ctap2",
    "transport": "usb",
    "hasResidentKey": False,
    "hasUserVerification": False,
    "isUserConsenting": True,
    "automaticPresenceSimulation": True,
}
# Fail fast: every step of the console answers within a second or two on the local stack.
STEP_TIMEOUT_MS = 10_000
TOKEN_KEY = "keyward.session"

expect.set_options(timeout=STEP_TIMEOUT_MS)


def unique_org(prefix: str) -> str:
    """An organization of the test's own, so tests on the shared stack never meet."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class SecurityKeys:
    """The security keys plugged into one page. Only the key in use answers a ceremony, as when a
    person touches one of several keys."""

    def __init__(self, context: BrowserContext, page: Page) -> None:
        self._cdp = context.new_cdp_session(page)
        self._cdp.send("WebAuthn.enable")
        self._plugged: list[str] = []

    def plug_in_new(self) -> str:
        """A new, empty security key, which becomes the one in use."""
        authenticator = self._cdp.send("WebAuthn.addVirtualAuthenticator", {"options": SECURITY_KEY})["authenticatorId"]
        self._plugged.append(authenticator)
        self.use(authenticator)
        return authenticator

    @property
    def first(self) -> str:
        """The key plugged in when the browser opened."""
        return self._plugged[0]

    def use(self, authenticator: str) -> None:
        for plugged in self._plugged:
            self._cdp.send(
                "WebAuthn.setAutomaticPresenceSimulation",
                {"authenticatorId": plugged, "enabled": plugged == authenticator},
            )

    def credentials(self, authenticator: str) -> list[dict[str, Any]]:
        return self._cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]


class Console:
    """One user's browser on the console, and the API as that browser's session sees it."""

    def __init__(self, *, context: BrowserContext, stack: LocalStack) -> None:
        self.context = context
        self.stack = stack
        self.page = context.new_page()
        self.page.set_default_timeout(STEP_TIMEOUT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error) + " " + str(getattr(error, "stack", ""))))
        self.keys = SecurityKeys(context, self.page)
        self.keys.plug_in_new()
        self._http = requests.Session()
        self._http.trust_env = False  # a proxy from the environment must not stand between us and localhost

    # --- what the page shows -------------------------------------------------------------------

    def open(self) -> None:
        self.page.goto(f"{self.stack.api}/")

    def heading(self, name: str) -> Locator:
        return self.page.get_by_role("heading", name=name, level=1)

    def button(self, name: str, *, exact: bool = True) -> Locator:
        return self.page.get_by_role("button", name=name, exact=exact)

    def status(self) -> Locator:
        return self.page.locator("#status")

    def alert(self) -> Locator:
        return self.page.locator("#alert")

    def dialog(self) -> Locator:
        return self.page.get_by_role("dialog")

    def key_row(self, table: str, name: str) -> Locator:
        return self.page.locator(f"#{table} tr").filter(has=self.page.get_by_role("cell", name=name, exact=True))

    def accessibility_violations(self) -> list[str]:
        """axe-core's serious and critical findings on the page as it is now."""
        results = AXE.run(self.page)
        return [
            f"{violation['id']} ({violation['impact']}): {violation['help']} — "
            + "; ".join(
                node["target"][0] if isinstance(node["target"][0], str) else str(node["target"])
                for node in violation["nodes"][:5]
            )
            for violation in results.response["violations"]
            if violation["impact"] in SERIOUS
        ]

    def check_accessibility(self) -> None:
        found = self.accessibility_violations()
        assert found == [], f"axe-core on {self.page.title()!r}: {found}"

    def screenshot(self, name: str) -> Path:
        """Saves the page and checks it with axe-core: every screen a test shows is checked."""
        self.check_accessibility()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    # --- what a person does --------------------------------------------------------------------

    def sign_in(self, *, org: str, user: str, admin: bool = False, reload: bool = True) -> None:
        """The local stage's demo sign-in with a user of one's choosing; ``reload=False`` signs in
        on the sign-in screen already shown, as the next person at a tab does."""
        if reload:
            self.open()
        expect(self.heading("Sign in to keyward")).to_be_visible()
        self.page.get_by_role("textbox", name="Organization ID").fill(org)
        self.page.get_by_role("textbox", name="User ID").fill(user)
        self.page.get_by_role("checkbox", name="Admin of the organization").set_checked(admin)
        self.button("Sign in as this user").click()

    def sign_in_to_settings(self, *, org: str, user: str, admin: bool = False, reload: bool = True) -> None:
        self.sign_in(org=org, user=user, admin=admin, reload=reload)
        expect(self.heading("Personal settings")).to_be_visible()

    def enable_mfa(self, *, key_name: str) -> None:
        self.page.get_by_role("textbox", name="Key name").fill(key_name)
        self.button("Enable").click()
        expect(self.status()).to_contain_text(f"Security key “{key_name}” was added")

    def add_key(self, *, key_name: str) -> str:
        """Plug in another security key and register it; returns the new virtual key."""
        authenticator = self.keys.plug_in_new()
        self.page.get_by_role("textbox", name="Key name").fill(key_name)
        self.button("Add key").click()
        expect(self.status()).to_contain_text(f"Security key “{key_name}” was added")
        return authenticator

    def sign_out(self) -> None:
        self.button("Sign out").click()
        expect(self.heading("Sign in to keyward")).to_be_visible()

    def go_to(self, settings: str) -> None:
        self.page.get_by_role("link", name=settings).click()
        expect(self.heading(settings)).to_be_visible()

    def open_section(self, section: str) -> None:
        """On Organization settings: follow the link of a section (Members, Security keys, Roll-out,
        Backup credentials, ...) and wait for it to be the page shown."""
        nav = self.page.get_by_role("navigation", name="Organization settings")
        link = nav.get_by_role("link", name=section, exact=True)
        link.click()
        expect(link).to_have_attribute("aria-current", "page")

    def open_member(self, name: str) -> None:
        """On Organization settings: open a member's own page from the members table."""
        self.open_section("Members")
        self.page.get_by_role("table", name="Members").get_by_role("link", name=name, exact=True).click()
        heading = self.page.get_by_role("heading", name=re.compile(rf"^{re.escape(name)}( \(you\))?$"), level=2)
        expect(heading).to_be_focused()

    def enforce_mfa(self) -> None:
        """On Organization settings: enforce MFA at once through the roll-out flow and its checklist."""
        self.start_enforcing()
        self.enforce_from_checklist()
        expect(self.status()).to_contain_text("MFA is now enforced")
        expect(self.page.locator("#rollout-state")).to_contain_text("MFA is enforced since")

    def start_enforcing(self) -> None:
        """From the overview into the roll-out flow, and its *Enforce MFA…*: the checklist opens."""
        self.open_section("Overview")
        self.button("Roll out enforcement").click()
        expect(self.page.get_by_role("heading", name="Roll-out", level=2)).to_be_focused()
        self.button("Enforce MFA…").click()
        expect(self.dialog().get_by_role("heading", name="Before you enforce MFA")).to_be_visible()

    def enforce_from_checklist(self) -> None:
        """On the pre-flight checklist before enforcing: enforce, saying so when the organization has
        no backup credentials (the tests' organizations seldom have any)."""
        dialog = self.dialog()
        expect(dialog.get_by_role("list", name="Pre-flight checklist")).to_be_visible()
        acknowledgement = dialog.get_by_role("checkbox", name="Enforce without backup credentials")
        if acknowledgement.is_visible():
            acknowledgement.check()
        self.confirm("Enforce MFA")

    def confirm(self, button: str) -> None:
        dialog = self.dialog()
        expect(dialog).to_be_visible()
        dialog.get_by_role("button", name=button, exact=True).click()
        expect(dialog).to_be_hidden()

    # --- what the API says about it ------------------------------------------------------------

    def token(self) -> str | None:
        return self.page.evaluate(f"sessionStorage.getItem({json.dumps(TOKEN_KEY)})")

    def call(self, method: str, path: str, *, token: str | None = None, body: Any = None) -> requests.Response:
        """The API, as the page's current session (or ``token``) sees it."""
        sent = token if token is not None else self.token()
        assert sent, "the page holds no session token"
        return self._http.request(
            method,
            f"{self.stack.api}{path}",
            headers={"authorization": f"Bearer {sent}", "content-type": "application/json"},
            data=json.dumps(body) if body is not None else None,
            timeout=30,
        )

    def get(self, path: str) -> Any:
        response = self.call("GET", path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def close(self) -> None:
        self._http.close()
        assert not self.errors, f"the page threw: {self.errors}"
        if not self.page.is_closed():
            self.check_accessibility()
