"""Chorus cards: a neuron described as the mixture it is, never as one named concept.

From a neurons analysis folder (`neurons.json`, `contexts.json`, DESIGN.md §4) each card says

    Neuron 17 is a chorus of about 4.2 features (effective number; rotation baseline 6.1);
    its strongest voices are feature 3 (41%), feature 12 (22%) and feature 40 (9%), and
    which one you hear depends on context: ...

followed by the top context of each dominant feature (its token highlighted) and the SAE's
error line: the share of the neuron's activation that no feature carries.

>>> cards = chorus_cards("runs/demo/analyses/neurons-mlp", cards=8)   # doctest: +SKIP
>>> cards[0].sentence()                                              # doctest: +SKIP
"""

from __future__ import annotations

import html as _html
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ChorusCard", "Context", "card_html", "card_markdown", "chorus_cards", "highlight"]

_MARK = re.compile(r"\[\[(.*?)\]\]")


@dataclass(frozen=True)
class Context:
    """One top-activating row of a neuron, grouped under the feature that dominates it."""

    feature: int
    """The feature contributing most to the neuron on this row."""
    rows: int
    """How many of the neuron's top rows this feature dominates."""
    row: int
    """Store row of this context."""
    activation: float
    """The neuron's activation on the row."""
    text: str | None
    """Token window with the row's token marked `[[...]]`; None when the store has no text."""


@dataclass(frozen=True)
class ChorusCard:
    """One neuron as a chorus of features."""

    neuron: int
    effective_features: float
    """exp(entropy) of the feature shares (error excluded)."""
    baseline: float | None
    """Median effective number over the rotated basis (the null), when recorded."""
    voices: tuple[tuple[int, float], ...]
    """Strongest features and their shares (error included in the denominator)."""
    error_share: float
    """Share of the neuron's activation carried by no feature (the SAE's error)."""
    contexts: tuple[Context, ...]
    """Top context of each dominant feature, most frequent first."""

    def sentence(self) -> str:
        """The card's headline sentence (plain text)."""
        base = (
            f"rotation baseline {self.baseline:.1f}"
            if self.baseline is not None
            else ("no rotation baseline recorded")
        )
        voices = [f"feature {f} ({_percent(s)})" for f, s in self.voices]
        listed = (
            ", ".join(voices[:-1]) + f" and {voices[-1]}" if len(voices) > 1 else "".join(voices)
        )
        return (
            f"Neuron {self.neuron} is a chorus of about {self.effective_features:.1f} features "
            f"(effective number; {base}); its strongest voices are {listed}, and which one "
            "you hear depends on context:"
        )

    def error_line(self) -> str:
        return (
            f"SAE error line: {self.error_share:.0%} of this neuron's activation is carried "
            "by no feature (what the SAE fails to reconstruct)."
        )


def _percent(share: float) -> str:
    # A voice under 1% still has a size: "0%" would read as silence.
    return f"{share:.0%}" if share >= 0.0095 else f"{share:.1%}"  # 0.0096 -> "1%", not "1.0%"


def chorus_cards(
    folder: str | os.PathLike[str], *, cards: int = 12, voices: int = 3, contexts: int = 3
) -> list[ChorusCard]:
    """Cards for up to `cards` neurons of a neurons analysis folder: the neurons the SAE
    explains best (lowest error share), so the chorus described is the one measured, taking
    first those seen firing in their top contexts (a silent neuron has no context to show)."""
    folder = Path(folder)
    records = json.loads((folder / "neurons.json").read_text())
    ctx_path = folder / "contexts.json"
    by_neuron: dict[int, Any] = {}
    if ctx_path.is_file():
        by_neuron = {int(c["neuron"]): c for c in json.loads(ctx_path.read_text())}
    baseline = _baseline(folder)
    fired_by_neuron = {j: _fired(c.get("groups", [])) for j, c in by_neuron.items()}
    # Neurons seen firing first (a card without a context shows no chorus), then by error.
    chosen = sorted(
        records,
        key=lambda r: (not fired_by_neuron.get(int(r["neuron"])), r["error_share"], r["neuron"]),
    )[:cards]
    out = []
    for r in chosen:
        fired = fired_by_neuron.get(int(r["neuron"]), [])[:contexts]
        picked = [
            Context(feature, len(rows), int(rows[0]["row"]), float(rows[0]["activation"]),
                    rows[0].get("text"))
            for feature, rows in fired
        ]  # fmt: skip
        out.append(
            ChorusCard(
                neuron=int(r["neuron"]),
                effective_features=float(r["effective_features"]),
                baseline=baseline,
                voices=tuple((int(f), float(s)) for f, s in r["features"][:voices]),
                error_share=float(r["error_share"]),
                contexts=tuple(picked),
            )
        )
    return out


def _fired(groups: list[dict[str, Any]]) -> list[tuple[int, list[dict[str, Any]]]]:
    """Each group's rows where the neuron fires (a row where it is silent says nothing about
    what it carries), most rows first; groups left empty are dropped."""
    fired = [
        (int(g["feature"]), [c for c in g.get("contexts", []) if float(c["activation"]) > 0])
        for g in groups
    ]
    return sorted((f for f in fired if f[1]), key=lambda f: -len(f[1]))


def _baseline(folder: Path) -> float | None:
    try:
        summary = json.loads((folder / "analysis.json").read_text())["summary"]
        return float(summary["baseline"]["effective_features_median"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def highlight(text: str) -> str:
    """HTML of a context: escaped, with the `[[token]]` marker turned into `<mark>`."""
    parts = _MARK.split(text)
    return "".join(
        f"<mark>{_html.escape(p)}</mark>" if i % 2 else _html.escape(p) for i, p in enumerate(parts)
    )


def _context_label(c: Context) -> str:
    return f"feature {c.feature} (dominates {c.rows} of the top rows)"


def card_html(card: ChorusCard) -> str:
    """The card as an HTML `<div class="chorus">`."""
    esc = _html.escape
    items = []
    for c in card.contexts:
        shown = (
            f'<span class="ctx">{highlight(c.text)}</span>'
            if c.text
            else f'<span class="ctx">row {c.row} (activation {c.activation:.3g}; the store '
            "holds no text)</span>"
        )
        items.append(f"<li><b>{esc(_context_label(c))}</b>: {shown}</li>")
    ctx = (
        f"<ul>{''.join(items)}</ul>"
        if items
        else "<p>(no recorded context in which this neuron fires)</p>"
    )
    return (
        f'<div class="chorus" id="neuron-{card.neuron}"><p>{esc(card.sentence())}</p>{ctx}'
        f'<p class="error-line">{esc(card.error_line())}</p></div>'
    )


def card_markdown(card: ChorusCard) -> str:
    """The card as Markdown (the marked token in bold)."""
    lines = [card.sentence(), ""]
    for c in card.contexts:
        shown = (
            _MARK.sub(lambda m: f"**{m.group(1)}**", c.text)
            if c.text
            else f"row {c.row} (activation {c.activation:.3g}; the store holds no text)"
        )
        lines.append(f"- {_context_label(c)}: {shown}")
    lines += ["", card.error_line()]
    return "\n".join(lines)
