"""End-to-end fixtures: the system's headless Chromium driven by Playwright (no browser download:
`apt-get install chromium`), a screenshot of every open page when a test fails, and the README's
screenshots on request (`pytest tests/browser --readme-images`)."""

import os
import re
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, sync_playwright
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import RefreshToken, User
from tests.conftest import ROOT
from tests.factories import make_user

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium waits for services that a closed network never answers.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
README_IMAGES = ROOT / "docs" / "images"
TIMEOUT_MS = 10_000

DEMO_EMAIL = "demo@example.com"
# The demo client is an app on plain http://127.0.0.1 here, so its cookies cannot be Secure.
COOKIE_MODE = {"TOKEN_COOKIE_MODE": "true", "TOKEN_COOKIE_SECURE": "false"}

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Kept for the context fixture, which takes screenshots when the test failed.
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[BrowserContext]:
    """A fresh browser profile: no cookies, no storage."""
    context = chromium.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC"
    )
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    reports = request.node.stash.get(_REPORTS, {})
    if any(report.failed for report in reports.values()):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        for number, page in enumerate(context.pages):
            page.screenshot(path=SCREENSHOTS / f"{name}-{number}.png", full_page=True)
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def console_errors(page: Page) -> list[str]:
    """Script errors and console errors of the page (a CSP violation is one)."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    return errors


ReadmeImage = Callable[[Page, str, Locator], None]


@pytest.fixture
def readme_image(request: pytest.FixtureRequest) -> ReadmeImage:
    """With --readme-images: save the page from its top down to the bottom of `down_to`
    as docs/images/<name>."""

    def save(page: Page, name: str, down_to: Locator) -> None:
        if not request.config.getoption("--readme-images"):
            return
        box = down_to.bounding_box()
        assert box is not None
        bottom = box["y"] + box["height"] + page.evaluate("window.scrollY") + 16
        viewport = page.viewport_size
        assert viewport is not None
        README_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=README_IMAGES / name,
            full_page=True,
            clip={"x": 0, "y": 0, "width": viewport["width"], "height": bottom},
        )

    return save


@pytest.fixture
def demo_user(db: Session) -> User:
    return make_user(db, email=DEMO_EMAIL)


def refresh_tokens(db: Session) -> list[RefreshToken]:
    """Every refresh-token row as the database holds it now, oldest first."""
    db.commit()
    statement = (
        select(RefreshToken).order_by(RefreshToken.id).execution_options(populate_existing=True)
    )
    return list(db.scalars(statement))
