"""The browser tests' stack: one local stack (``python -m devstack run``) and one Chromium per
module, and a fresh browser context per user, closed when the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browser.console import CHROMIUM, CHROMIUM_ARGS, WIDE, Console
from tests.support.local_stack import LocalStack, running_local_stack

OpenConsole = Callable[..., Console]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    # The console's tests are part of the suite: a machine without the browser fails them, with
    # the command that installs it (as .ci/run does), rather than skipping them unnoticed.
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing; install Debian's chromium with: sudo apt-get install -y chromium", pytrace=False
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def stack(chromium: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_local_stack(tmp_path_factory.mktemp("console-stack")) as running:
        yield running


@pytest.fixture
def open_console(chromium: Browser, stack: LocalStack) -> Iterator[OpenConsole]:
    """Opens a browser of its own for each user: its own cookies, storage and security keys."""
    opened: list[Console] = []

    def open_one(*, viewport: dict[str, int] = WIDE) -> Console:
        context = chromium.new_context(
            viewport=viewport,
            base_url=stack.api,
            permissions=["clipboard-read", "clipboard-write"],
        )
        console = Console(context=context, stack=stack)
        opened.append(console)
        return console

    yield open_one
    failures = []
    for console in opened:
        try:
            console.close()
        except AssertionError as failure:
            failures.append(str(failure))
        finally:
            console.context.close()
    assert not failures, failures
