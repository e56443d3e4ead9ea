"""Browser fixtures shared by the web UI's journeys: Debian's Chromium driven by Playwright,
axe-core on every page, screenshots at 1280x800 and 390x844 in test-artifacts/screenshots/.

    def test_x(live_server, acme, browser_page):
        page = browser_page()                       # a fresh context at 1280x800
        sign_in(page, live_server, acme.users["owner"])
        page.goto(...)
        check_page(page, "keys")                    # axe (no serious/critical), two screenshots
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "pw-for-tests-1234"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Every page records what its Content-Security-Policy refused (an inline script or style, another origin);
# check_page asserts there was nothing.
CSP_WATCH = """document.addEventListener("securitypolicyviolation", (e) => {
  (window.__cspViolations = window.__cspViolations || []).push(
    e.effectiveDirective + " refused " + (e.blockedURI || "inline") + " at " + e.sourceFile + ":" + e.lineNumber);
});"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module (starting one costs about a second). Not per session: while
    Playwright's sync API runs, its event loop is the thread's running loop, and the other
    tests' `asyncio.run()` (the gateway plugin's) would fail for the rest of the session."""
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop in this thread
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield chromium
        chromium.close()


@pytest.fixture
def browser_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """A factory of pages, each in its own context (own cookies): `browser_page()` or
    `browser_page(viewport=PHONE)`. Two users in one test take two pages."""
    contexts: list[Any] = []

    def make(viewport: dict[str, int] | None = None) -> Any:
        context = browser.new_context(viewport=viewport or DESKTOP)
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        context.add_init_script(CSP_WATCH)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def sign_in(page: Any, live_server: Any, user: Any, *, next_url: str = "") -> None:
    """Sets a password on `user` and signs in through the login form."""
    user.set_password(PASSWORD)
    user.save()
    page.goto(f"{live_server.url}/login/" + (f"?next={next_url}" if next_url else ""))
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it stands."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]


def wait_until(page: Any, expression: str, timeout: float = 30_000) -> None:
    """Polls a JavaScript expression until it is true (page.wait_for_function compiles its expression in the
    page, which the Content-Security-Policy refuses as eval; page.evaluate goes through the debugger)."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout / 1000:.0f} s: {expression}")
        page.wait_for_timeout(50)


def csp_violations(page: Any) -> list[str]:
    return list(page.evaluate("() => window.__cspViolations || []"))


def check_page(page: Any, name: str) -> None:
    """The Content-Security-Policy refused nothing on the page, axe-core finds no serious or critical violation, and the page is saved at 1280x800 and
    at 390x844 (`<name>.png`, `<name>-phone.png`), where axe-core runs again. The viewport is
    restored afterwards."""
    assert not csp_violations(page), csp_violations(page)
    violations = axe_violations(page)
    assert not violations, [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:5]) for v in violations]
    size = page.viewport_size
    page.set_viewport_size(DESKTOP)
    settle(page)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(PHONE)
    settle(page)  # charts redraw at the new width on the next frames (ResizeObserver)
    page.screenshot(path=str(SHOTS / f"{name}-phone.png"), full_page=True)
    phone = axe_violations(page)  # the phone layout is another layout: stacked tables, wrapped rows
    page.set_viewport_size(size)
    assert not csp_violations(page), csp_violations(page)
    assert not phone, ("at 390x844", [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:5]) for v in phone])


def settle(page: Any) -> None:
    """Two animation frames and a short pause: layout and the charts' resize have run."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    page.wait_for_timeout(250)
