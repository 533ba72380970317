"""The explorer in a real browser: Debian's headless Chromium driven by Playwright.

Every page kind is opened and clicked through; a test fails on any console error, page error
or request to a host other than 127.0.0.1 (such requests are also aborted), and saves a
screenshot of each page under .artifacts/explorer/. Without /usr/bin/chromium the tests skip
with the command that installs it, except under CI (env CI set), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "explorer"
# Software GL's harmless complaint (see /work/shared/browser-testing.md).
IGNORED = ("GPU stall due to ReadPixels",)


def _require_browser() -> Any:
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is missing; install it with: apt-get install -y chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is missing; install it with: pip install 'polysemy[test]'"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run under CI: {missing}")
        pytest.skip(missing)
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _require_browser()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Guarded:
    """A page that records console errors, page errors and off-host requests."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.route("**/*", self._route)

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and not any(s in msg.text for s in IGNORED):
            self.errors.append(f"console: {msg.text}")

    def _route(self, route: Any) -> None:
        url = urlparse(route.request.url)
        if url.scheme in ("data", "blob") or url.hostname == "127.0.0.1":
            route.continue_()
        else:
            self.foreign.append(route.request.url)
            route.abort()

    def open(self, hash_: str, kind: str) -> Any:
        if self.page.url.startswith(self.base):
            # Same document: a new hash is a route change, as when a link is clicked.
            self.page.evaluate("h => { location.hash = h; }", hash_)
        else:
            self.page.goto(self.base + hash_)
        return self.ready(kind)

    def ready(self, kind: str) -> Any:
        # Drawn, and drawn for the current address: after a click from one feature page to
        # another the old page is still "ready" until the hashchange has been handled.
        self.page.wait_for_function(
            """kind => { const m = document.querySelector('#main');
                return m && m.dataset.ready === kind && m.dataset.hash === location.hash; }""",
            arg=kind,
            timeout=15_000,
        )
        return self.page

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def check(self) -> None:
        errors, foreign = self.errors[:], self.foreign[:]
        self.errors.clear()
        self.foreign.clear()
        assert not errors, errors
        assert not foreign, f"requests off 127.0.0.1: {foreign}"


@pytest.fixture(scope="module")
def shared(browser: Any, live_url: str) -> Iterator[Guarded]:
    # One page for the module: plotly.min.js (4.6 MB) is parsed once, and moving between
    # pages is what a user does (hash routes, no reload).
    g = Guarded(browser, live_url)
    yield g
    g.page.close()


@pytest.fixture
def guarded(shared: Guarded) -> Iterator[Guarded]:
    shared.check()  # nothing left over from the previous test
    yield shared
    shared.check()


def plots(page: Any) -> int:
    """Plotly figures actually drawn (an SVG inside each)."""
    return page.locator(".js-plotly-plot .main-svg").count()


@pytest.mark.parametrize(
    ("hash_", "kind", "min_plots", "tokens"),
    [
        ("#/", "home", 0, False),
        ("#/dict/mlp", "dictionary", 1, True),
        ("#/feature/mlp/3", "feature", 3, True),
        ("#/neurons/mlp", "neurons", 1, False),
        ("#/neuron/mlp/2", "neuron", 2, True),
        ("#/geometry/mlp", "geometry", 3, False),
        ("#/toy/toy-relu", "toy", 4, False),
        ("#/claims", "claims", 0, False),
        ("#/search/bank", "search", 0, True),
    ],
)
def test_every_page_kind_draws(
    guarded: Guarded, hash_: str, kind: str, min_plots: int, tokens: bool
) -> None:
    page = guarded.open(hash_, kind)
    assert plots(page) >= min_plots
    text = page.locator("main").inner_text()
    for broken in ("[object ", "undefined", "NaN"):  # a value drawn as text by mistake
        assert broken not in text, (broken, text[:500])
    if tokens:
        marks = page.locator("mark.tok")
        assert marks.count() > 0 and marks.first.inner_text().strip()
    guarded.shot(kind)


def test_click_through_navigation_and_search(guarded: Guarded) -> None:
    page = guarded.open("#/", "home")
    page.click("#nav >> text=mlp neurons")
    guarded.ready("neurons")
    page.click("table >> text=neuron 2")
    guarded.ready("neuron")
    assert page.locator("h1").inner_text().startswith("Neuron 2")
    page.locator(".group a").first.click()  # the feature dominating a group of contexts
    guarded.ready("feature")
    page.click("text=next →")
    guarded.ready("feature")
    first = page.locator("h1").inner_text()
    page.locator("table a").first.click()  # a nearest feature
    guarded.ready("feature")
    assert page.locator("h1").inner_text() != first  # never its own neighbour
    page.fill("#search", "river bank")
    page.press("#search", "Enter")
    guarded.ready("search")
    results = page.locator("ol.results li")
    assert results.count() > 0
    assert page.locator("ol.results b.hit").count() > 0
    results.first.locator("a").click()
    guarded.ready("feature")
    assert "river" in page.locator("main").inner_text().lower()
    page.click("#nav >> text=claims")
    guarded.ready("claims")
    assert page.locator(".badge.supported").count() >= 1
    page.click("main a[href='#/feature/mlp/3']")  # the claim's target
    guarded.ready("feature")
    assert page.locator("h1").inner_text().startswith("Feature 3")
    assert page.locator(".claim .badge.supported").count() == 1
    page.click("#nav >> text=claims")
    guarded.ready("claims")
    page.click("#nav >> text=toy toy-relu")
    guarded.ready("toy")
    page.click("#nav-home")
    guarded.ready("home")


def test_unknown_feature_shows_not_found(guarded: Guarded) -> None:
    page = guarded.open("#/feature/mlp/999999", "notfound")
    assert "no feature 999999" in page.locator("main").inner_text()


def test_missing_browser_skips_with_the_install_command_except_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(globals(), "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        _require_browser()
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="cannot run under CI"):
        _require_browser()
