"""A self-contained HTML page builder: sections of text, figures, numbers and checks.

No JavaScript, no CDN, no web fonts: the page opens from disk on a machine with no network.
Figures are linked by relative path (they sit beside the page) or, with `embed=True`,
inlined as base64 data URIs so one file carries everything.

>>> html = render_page("Run", [Section("A", "text", numbers={"fvu": 0.1})])  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html as _html
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polysemy.checks import Check
from polysemy.runfolder import atomic_write_text

__all__ = ["Section", "render_page", "write_page"]


@dataclass(frozen=True)
class Section:
    """One block of the page: a heading, a paragraph, figures, numbers and checks."""

    title: str
    """Heading."""
    text: str = ""
    """Explanation (plain text; blank lines start new paragraphs)."""
    figures: Sequence[str] = ()
    """Image paths relative to the page's folder."""
    numbers: Mapping[str, Any] = field(default_factory=dict)
    """Measured numbers shown in a table (scalars or short lists)."""
    checks: Sequence[Check] = ()
    """Acceptance checks shown as pass/fail."""


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:2em}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f6f6f6}.pass{color:#176f2c;font-weight:600}.fail{color:#b00020;font-weight:600}
.summary{background:#f6f8fa;padding:.6em 1em;border-radius:4px}code{font-size:.95em}
"""


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_fmt(v) for v in value[:40])
        return f"[{inner}{', ...' if len(value) > 40 else ''}]"
    if isinstance(value, dict):
        return json.dumps(value, default=str)[:300]
    return str(value)


def _image_src(folder: Path | None, rel: str, embed: bool) -> str:
    if embed and folder is not None:
        data = (folder / rel).read_bytes()
        mime = "image/svg+xml" if rel.endswith(".svg") else "image/png"
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return _html.escape(rel, quote=True)


def render_page(
    title: str,
    sections: Sequence[Section],
    *,
    intro: str = "",
    folder: str | os.PathLike[str] | None = None,
    embed: bool = False,
) -> str:
    """The page as one HTML string. With `embed`, figures are read from `folder` and inlined."""
    if embed and folder is None:
        raise ValueError("embed=True needs folder (where the figures are); got folder=None")
    root = Path(folder) if folder is not None else None
    esc = _html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    all_checks = [c for s in sections for c in s.checks]
    if intro:
        parts += [f"<p>{esc(p)}</p>" for p in intro.split("\n\n") if p.strip()]
    if all_checks:
        passed = sum(c.passed for c in all_checks)
        parts.append(
            f'<p class="summary">{passed} of {len(all_checks)} checks pass. '
            + ", ".join(
                f'<a href="#s{i}">{esc(s.title)}</a>' for i, s in enumerate(sections, start=1)
            )
            + "</p>"
        )
    for i, section in enumerate(sections, start=1):
        parts.append(f'<h2 id="s{i}">{esc(section.title)}</h2>')
        parts += [f"<p>{esc(p)}</p>" for p in section.text.split("\n\n") if p.strip()]
        if section.checks:
            parts.append("<table><tr><th>check</th><th>result</th><th>measured</th></tr>")
            for c in section.checks:
                cls, word = ("pass", "pass") if c.passed else ("fail", "FAIL")
                parts.append(
                    f'<tr><td>{esc(c.name)}</td><td class="{cls}">{word}</td>'
                    f"<td>{esc(c.detail)}</td></tr>"
                )
            parts.append("</table>")
        for fig in section.figures:
            src = _image_src(root, fig, embed)
            parts.append(f'<div><img src="{src}" alt="{esc(fig)}"></div>')
        if section.numbers:
            parts.append("<table><tr><th>quantity</th><th>value</th></tr>")
            for key, value in section.numbers.items():
                parts.append(
                    f"<tr><td><code>{esc(key)}</code></td><td>{esc(_fmt(value))}</td></tr>"
                )
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_page(
    path: str | os.PathLike[str],
    title: str,
    sections: Sequence[Section],
    *,
    intro: str = "",
    embed: bool = False,
) -> Path:
    """Render the page and write it atomically to `path` (figures are relative to its folder)."""
    path = Path(path)
    text = render_page(title, sections, intro=intro, folder=path.parent, embed=embed)
    atomic_write_text(path, text)
    return path
