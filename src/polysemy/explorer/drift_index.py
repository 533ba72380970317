"""The explorer's drift pages, precomputed: one per drift analysis folder found in the run.

`write_drift(root, analyses, out, dictionaries)` (called by `build_index`) writes

    explorer/drift/<id>.json            the overview: summary, pairs with their verdicts,
                                        genealogy against the null, loss curve, the score's
                                        distribution against the null, the picked neurons
    explorer/drift/<id>/<k>.json        neurons SHARD k .. : voices over snapshots, score and
                                        null per pair, activation correlation

and returns the entries of `index.json`'s `drift` list. The numbers come from
`polysemy.analysis.drift_views` (what the analysis saved); this only bins and slices them.
A cross-corpus drift folder (`corpus_drift`, `summary.across == "corpora"`) gets its own page
(`"corpora": true`): the summary against the half-split null, the per-neuron score
histogram against the null's, and per neuron its voices on corpus A and on corpus B (shards
as above, from `polysemy.analysis.corpus_drift_views`).
A drift folder without the per-neuron files this version reads (another kind of drift, or a
later version's) gets a summary-only page (`"generic": true`): its summary as recorded.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from polysemy.analysis.corpus_drift_views import (
    CorpusDriftView,
    corpus_histogram,
    corpus_neuron,
    is_corpus_drift,
    read_corpus_drift,
)
from polysemy.analysis.drift_views import (
    DriftView,
    genealogy_counts,
    loss_curve,
    neuron_voices,
    null_band,
    read_drift,
)

logger = logging.getLogger(__name__)

__all__ = ["write_drift"]

_ID = re.compile(r"[^A-Za-z0-9_-]+")
_BINS = 30


def _histograms(view: DriftView) -> dict[str, Any]:
    """Per-neuron mean score and mean null score over pairs, on shared bins."""
    own, null = view.score.mean(0), view.null_score.mean(0)  # (n_neurons,)
    hi = float(max(own.max(initial=0.0), null.max(initial=0.0), 1e-6))
    edges = np.linspace(0.0, hi * 1.0001, _BINS + 1)
    return {
        "edges": edges.tolist(),
        "counts": np.histogram(own, edges)[0].tolist(),
        "null_counts": np.histogram(null, edges)[0].tolist(),
        "n": int(own.size),
    }


def _neuron_links(view: DriftView, dictionaries: list[dict[str, Any]]) -> str | None:
    """The dictionary whose neuron pages are this drift's neurons (same site), if any."""
    site = view.inputs.get("site") or view.summary.get("site")
    if view.source != "organism" or not site:
        return None
    for d in dictionaries:
        if d.get("site") == site and "neurons" in (d.get("pages") or []):
            return str(d["id"])
    return None


def _overview(view: DriftView, ident: str, link: str | None, shard: int) -> dict[str, Any]:
    s = view.summary
    return {
        "id": ident,
        "folder": view.folder.name,
        "source": view.source,
        "steps": view.steps,
        "labels_kind": "toy" if view.source == "toy" else "organism",
        "n_neurons": len(view.labels),
        "summary": s,
        "pairs": s.get("pairs", []),
        "genealogy": genealogy_counts(view),
        "loss": loss_curve(view),
        "score_histogram": _histograms(view),
        "null_band": null_band(view),
        "picks": view.picks,
        "neuron_dictionary": link,
        "shard_size": shard,
    }


def _corpus_links(
    view: CorpusDriftView, dictionaries: list[dict[str, Any]]
) -> dict[str, str | None]:
    """The dictionaries holding feature pages of the drift's SAE (by checkpoint name, else by
    site and width) and neuron pages of its site, if the run has them."""
    site = view.summary.get("site") or view.inputs.get("site")
    sae = view.inputs.get("sae") or (view.summary.get("sae") or {}).get("path")
    d_sae = view.summary.get("d_sae")
    features = neurons = None
    for d in dictionaries:
        pages = d.get("pages") or []
        same_site = bool(site) and d.get("site") == site
        same_sae = bool(sae) and bool(d.get("sae")) and Path(str(sae)).name == d.get("sae")
        same_shape = same_site and d_sae is not None and d.get("d_sae") == d_sae
        if "features" in pages and features is None and (same_sae or (sae and same_shape)):
            features = str(d["id"])
        if "neurons" in pages and same_site and neurons is None:
            neurons = str(d["id"])
    return {"features": features, "neurons": neurons}


def _write_corpora(
    path: Path, ident: str, out: Path, dictionaries: list[dict[str, Any]], shard: int
) -> dict[str, Any]:
    """The cross-corpus page of `path` (module docstring); its index entry."""
    from polysemy.explorer.index import _clean, _dump

    view = read_corpus_drift(path)
    s = view.summary
    overview = {
        "id": ident,
        "folder": view.folder.name,
        "source": "corpora",
        "corpora": True,
        "corpus_a": view.corpus_a,
        "corpus_b": view.corpus_b,
        "n_neurons": view.n_neurons,
        "summary": s,
        "score_histogram": corpus_histogram(view),
        "picks": view.picks,
        "links": _corpus_links(view, dictionaries),
        "shard_size": shard,
        "level": (view.inputs.get("config") or {}).get("level", 0.95),
    }
    _dump(out / "drift" / f"{ident}.json", _clean(overview))
    folder = out / "drift" / ident
    folder.mkdir(parents=True)
    n = view.n_neurons
    for k in range(0, n, shard):
        page = {str(j): corpus_neuron(view, j) for j in range(k, min(k + shard, n))}
        _dump(folder / f"{k // shard}.json", _clean(page))
    return {
        "id": ident,
        "source": "corpora",
        "corpora": True,
        "corpus_a": view.corpus_a,
        "corpus_b": view.corpus_b,
        "steps": [],
        "n_neurons": n,
        "different_fraction": (s.get("neurons") or {}).get("different_fraction"),
        "null_different_fraction": (s.get("null") or {}).get("different_fraction"),
    }


def write_drift(
    root: Path,
    analyses: list[tuple[Path, dict[str, Any]]],
    out: Path,
    dictionaries: list[dict[str, Any]],
    *,
    shard: int = 64,
) -> list[dict[str, Any]]:
    """Write every drift folder's pages under `out/drift/`; the index entries (see module)."""
    from polysemy.explorer.index import _clean, _dump

    entries: list[dict[str, Any]] = []
    for path, record in analyses:
        if record.get("kind") != "drift":
            continue
        ident = _ID.sub("-", str(path.relative_to(root))).strip("-") or "drift"
        (out / "drift").mkdir(exist_ok=True)
        if is_corpus_drift(path, record):
            try:
                entries.append(_write_corpora(path, ident, out, dictionaries, shard))
                continue
            except (OSError, ValueError, KeyError) as exc:
                logger.info("explorer: corpus drift %s shown as summary only: %s", path, exc)
                shutil.rmtree(out / "drift" / ident, ignore_errors=True)
        try:
            view = read_drift(path)
        except (OSError, ValueError, KeyError) as exc:
            # Another kind of drift (a later version's, or one with other files): its
            # summary as recorded, drawn generically.
            logger.info("explorer: drift folder %s shown as summary only: %s", path, exc)
            found = record.get("summary")
            s: dict[str, Any] = found if isinstance(found, dict) else {}
            page = {"id": ident, "folder": path.name, "source": "summary only", "generic": True,
                    "reason": f"{type(exc).__name__}: {exc}", "summary": s,
                    "inputs": record.get("inputs", {}), "steps": s.get("steps") or [],
                    "pairs": s.get("pairs") or []}  # fmt: skip
            _dump(out / "drift" / f"{ident}.json", _clean(page))
            entries.append(
                {"id": ident, "source": "summary only", "steps": page["steps"], "generic": True,
                 "switch_fraction": (s.get("neurons") or {}).get("switch_fraction"),
                 "null_switch_fraction": (s.get("null") or {}).get("switch_fraction")}
            )  # fmt: skip
            continue
        folder = out / "drift" / ident
        folder.mkdir(parents=True)
        link = _neuron_links(view, dictionaries)
        _dump(out / "drift" / f"{ident}.json", _clean(_overview(view, ident, link, shard)))
        n = len(view.labels)
        for k in range(0, n, shard):
            page = {
                str(j): {"label": view.labels[j], **neuron_voices(view, j)}
                for j in range(k, min(k + shard, n))
            }
            _dump(folder / f"{k // shard}.json", _clean(page))
        s = view.summary
        entries.append(
            {
                "id": ident,
                "source": view.source,
                "steps": view.steps,
                "n_neurons": n,
                "switch_fraction": s.get("neurons", {}).get("switch_fraction"),
                "null_switch_fraction": s.get("null", {}).get("switch_fraction"),
            }
        )
    return entries
