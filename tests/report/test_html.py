"""Tests for polysemy.report.html: a self-contained page, escaped text, embedded figures."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from polysemy.checks import Check
from polysemy.report.html import Section, render_page, write_page

_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def test_page_has_sections_checks_numbers_and_no_network() -> None:
    page = render_page(
        "Run <1>",
        [
            Section(
                "First & only",
                "para one\n\npara two",
                figures=("a.png",),
                numbers={"fvu": 0.123456, "counts": [1, 2, 3], "ok": True},
                checks=(Check("fvu < 0.2", True, "0.12"), Check("l0 < 5", False, "7")),
            )
        ],
        intro="hello",
    )
    assert page.startswith("<!DOCTYPE html>")
    assert "Run &lt;1&gt;" in page and "First &amp; only" in page
    assert page.count("<p>") >= 3
    assert '<img src="a.png"' in page
    assert "0.1235" in page and "[1, 2, 3]" in page
    assert "1 of 2 checks pass" in page
    assert 'class="fail">FAIL' in page and 'class="pass">pass' in page
    # nothing fetched from the network
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<script" not in page


def test_embed_inlines_figures(tmp_path: Path) -> None:
    (tmp_path / "f.png").write_bytes(_PNG)
    path = write_page(tmp_path / "index.html", "T", [Section("S", figures=("f.png",))], embed=True)
    text = path.read_text()
    assert "data:image/png;base64," + base64.b64encode(_PNG).decode() in text
    assert not list(tmp_path.glob(".index.html.tmp-*"))


def test_embed_needs_folder() -> None:
    with pytest.raises(ValueError, match="embed=True needs folder"):
        render_page("T", [], embed=True)


def test_embed_missing_figure_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_page(tmp_path / "index.html", "T", [Section("S", figures=("nope.png",))], embed=True)
    assert not (tmp_path / "index.html").exists()
