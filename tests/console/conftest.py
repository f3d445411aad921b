"""Fixtures of the console's tests: the console on the module's server (it calls
that server's gRPC API over loopback, as `hookline serve --console-port` does)
and Debian's Chromium driven by Playwright. Chromium must be installed
(scripts/test installs it): without it these tests fail, they never skip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.conftest import other_space  # noqa: F401  # a second space, for its ids
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from hookline.client import Client
from hookline.server.app import Hookline
from hookline.server.console import Console

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def console(client: Client, grpc_addr: str) -> Iterator[Console]:
    """The console on a free loopback port (`client` starts the module's server)."""
    served = Console("127.0.0.1", 0, grpc_addr)
    served.start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # Root on these machines: Chromium's sandbox needs a user namespace it may not get.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport={"width": 1280, "height": 900})
    made.set_default_timeout(15_000)
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def admin_key(hookline_app: Hookline) -> str:
    assert hookline_app.admin_key
    return hookline_app.admin_key


def sign_in(page: Page, console: Console, api_key: str) -> None:
    page.goto(console.url + "/signin")
    page.fill("input[name=api_key]", api_key)
    page.click("button[type=submit]")


def shot(page: Page, folder: Path, name: str) -> Path:
    """A screenshot of the whole page, kept in the test's temporary folder."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
