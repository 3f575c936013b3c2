"""Browser fixtures: one headless Chromium (the distribution's ``chromium``, driven by
Playwright) per test session, over the deployment of tests/conftest.py.

Every page a test opens through ``pages`` records its console errors and uncaught exceptions;
the test fails at teardown if any page had one. Without a ``chromium`` binary the browser tests
are skipped with that reason (.ci/run installs it where it can).
"""

from __future__ import annotations

import random
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from hyperlocal_client import Api

pytestmark = pytest.mark.integration

try:
    from playwright.async_api import Browser, BrowserContext, Page, async_playwright
except ImportError:  # the dev extra brings it; without it there is nothing to drive
    async_playwright = None

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # a closed network refuses what these would fetch
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None or async_playwright is None:
        pytest.skip("no chromium on PATH (apt-get install chromium) or no playwright")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        await chromium.close()


@pytest.fixture
def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def client_api(base_url: str, http: ClientSession) -> Api:
    """The typed Python client (hyperlocal_client) on the same gateway, for test setup."""
    return Api(base_url, http)


@dataclass
class Pages:
    """Opens pages in fresh browser contexts (one per simulated person) and keeps what their
    consoles said."""

    browser: Browser
    base_url: str
    errors: list[str] = field(default_factory=list)
    contexts: list[BrowserContext] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    """Console lines a test expects (the browser logs every 4xx answer it fetched)."""

    def expect_error(self, text: str) -> None:
        self.expected.append(text)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(x in e for x in self.expected)]

    async def open(
        self, path: str = "/", init_script: str | None = None, **context_args: object
    ) -> Page:
        """A page in a context of its own; ``init_script`` runs in it before any page script."""
        context = await self.browser.new_context(base_url=self.base_url, **context_args)  # type: ignore[arg-type]
        context.set_default_timeout(10_000)
        if init_script is not None:
            await context.add_init_script(init_script)
        self.contexts.append(context)
        page = await context.new_page()
        page.on(
            "console",
            lambda m: m.type == "error" and self.errors.append(f"{m.text} @ {m.location}"),
        )
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        await page.goto(path)
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest.fixture
async def pages(browser: Browser, base_url: str) -> AsyncIterator[Pages]:
    opened = Pages(browser, base_url)
    try:
        yield opened
    finally:
        await opened.close()
    unexpected = opened.unexpected()
    assert not unexpected, "console errors:\n" + "\n".join(unexpected)


@pytest.fixture
def spot() -> tuple[float, float]:
    """A point of its own for a test (its neighbourhood holds only what the test makes)."""
    return round(random.uniform(-60, 60), 5), round(random.uniform(-170, 170), 5)


SignUp = Callable[[Page, str], Awaitable[str]]


async def sign_up(page: Page, name: str) -> str:
    """Sign up through the form; the new user's email."""
    email = f"{name.lower()}-{random.getrandbits(40):x}@example.test"
    await page.get_by_role("link", name="Create an account").click()
    await page.get_by_label("Your name").fill(name)
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await page.get_by_role("heading", name="Where are you?").wait_for()
    return email


async def pick_spot(page: Page, lat: float, lng: float) -> None:
    """Locate by typing a point (the map's fallback to geolocation)."""
    await page.get_by_label("Latitude").fill(str(lat))
    await page.get_by_label("Longitude").fill(str(lng))
    await page.get_by_role("button", name="Go there").click()
    await page.get_by_role("heading", name="Your neighbourhood").wait_for()


async def sign_in(page: Page, email: str) -> None:
    """Sign in through the form."""
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("navigation", name="Sections").wait_for()


async def user_id(page: Page) -> str:
    """The signed-in user's id, as the app knows it."""
    return str(await page.evaluate("window.hyperlocal.me.id"))
