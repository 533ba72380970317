"""The report in a real browser: headless Chromium (Debian's, driven by Playwright through
`executable_path`; never `playwright install`) opens index.html from file:// with every
non-file request aborted, and fails on console errors and page errors. Screenshots go to
`.artifacts/` (gitignored). See docs/report.md for installing chromium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("POLYSEMY_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts"
INSTALL = (
    "browser tests need Debian's chromium and playwright: apt-get install -y chromium && "
    "pip install playwright==1.65.0 (never `playwright install`)"
)


@pytest.fixture(scope="session")
def browser_ready() -> None:
    """Skip (fail under CI) before the run folder is built when there is no browser."""
    missing = []
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing.append(f"no chromium at {CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright is not installed")
    if missing:
        message = f"{'; '.join(missing)}: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_report_renders_offline_in_chromium(browser_ready: None, report_dir: Path) -> None:
    with offline_report_page(report_dir) as page:
        n_charts = page.locator("[data-chart]").count()
        assert page.locator(".js-plotly-plot").count() == n_charts >= 4
        # plotly drew over every PNG fallback: no fallback image remains in a chart.
        assert page.locator("[data-chart] img").count() == 0
        assert page.locator("[data-chart] svg.main-svg").count() >= n_charts
        cards = page.locator(".chorus")
        assert cards.count() >= 1
        assert "is a chorus of about" in cards.first.inner_text()
        assert "SAE error line" in cards.first.inner_text()
        # Each context's own token is highlighted in its card.
        assert page.locator(".chorus .ctx mark").count() >= cards.count()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"))
        page.locator(".chorus").first.screenshot(path=str(ARTIFACTS / "report-chorus.png"))


@contextmanager
def offline_report_page(report_dir: Path) -> Iterator[Any]:
    """A Chromium page on `report_dir/index.html` over file:// once its plots are drawn;
    on exit, asserts that no console error was logged and nothing off the disk requested."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    blocked: list[str] = []

    def route(r: Any) -> None:  # anything not on disk is aborted and recorded
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", route)
            page.goto((report_dir / "index.html").as_uri())
            page.wait_for_selector(".js-plotly-plot", timeout=15_000)
            yield page
        finally:
            browser.close()
    ignorable = "GPU stall due to ReadPixels"  # software GL under --disable-gpu
    assert [e for e in errors if ignorable not in e] == []
    assert blocked == []
