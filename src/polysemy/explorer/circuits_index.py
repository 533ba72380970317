"""The explorer's circuits pages: what `build_index` precomputes for each `circuits` folder.

A circuits analysis (`polysemy analyze circuits`, polysemy.analysis.circuits) holds the
strongest edges from one SAE's features into a later SAE's, each with its bootstrap interval
over contexts, its direct virtual weight, the contexts that carry it and its braid clusters.
For each such folder found under the run this writes

    explorer/circuits/<c>.json               the graph page: edges, braids, null, inputs
    explorer/circuits/features/<d>.json      per feature of dictionary <d>: the edges it
                                             takes part in (feature pages link back)

and returns the entries `index.json` lists under `circuits` (with the words search matches).
An edge's two endpoints link to the feature pages of the dictionaries whose SAE checkpoint the
analysis read: matched by the checkpoint's path (`inputs.sae_up` / `inputs.sae_down`), then by
its folder name, then by the site when exactly one dictionary sits there (a match whose d_sae
is below an endpoint's index is dropped). An endpoint with no dictionary in the run is drawn
without a link.

>>> entries = write_circuits(root, found, dicts, out)     # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["write_circuits"]

_ID = re.compile(r"[^A-Za-z0-9_-]+")


def _same_path(a: str, b: Path) -> bool:
    try:
        return Path(a).resolve() == b.resolve()
    except OSError:
        return False


def _dictionary(dicts: list[Any], sae: Any, site: Any) -> tuple[str | None, str | None]:
    """(dictionary id, how it was matched) for the SAE a circuits analysis read."""
    have = [d for d in dicts if d.sae is not None]
    if isinstance(sae, str) and sae:
        hit = [d for d in have if _same_path(sae, d.sae)]
        if len(hit) == 1:
            return hit[0].id, "path"
        hit = [d for d in have if Path(sae).name == d.sae.name]
        if len(hit) == 1:
            return hit[0].id, "name"
    if isinstance(site, str) and site:
        hit = [d for d in dicts if d.site == site]
        if len(hit) == 1:
            return hit[0].id, "site"
    return None, None


def _fits(dicts: list[Any], dict_id: str | None, features: list[int]) -> bool:
    d_sae = next((d.d_sae for d in dicts if d.id == dict_id), None)
    return dict_id is not None and (not d_sae or not features or max(features) < d_sae)


def _labels(out: Path, dict_id: str | None, features: set[int], shard: int) -> dict[int, str]:
    """The strongest example text of each feature, from the feature pages already written."""
    if dict_id is None:
        return {}
    labels: dict[int, str] = {}
    for k in sorted({f // shard for f in features}):
        path = out / "dicts" / dict_id / "features" / f"{k}.json"
        if not path.is_file():
            continue
        pages = json.loads(path.read_text())
        for f in features:
            top = (pages.get(str(f)) or {}).get("top") or []
            if top and isinstance(top[0], dict) and top[0].get("text"):
                labels[f] = str(top[0]["text"])
    return labels


def write_circuits(
    root: Path,
    found: dict[str, list[tuple[Path, dict[str, Any]]]],
    dicts: list[Any],
    out: Path,
) -> list[dict[str, Any]]:
    """Write the circuits pages of every `circuits` folder in `found` under `out/circuits/`
    and return their index entries. `dicts` are index.py's dictionaries, whose feature pages
    are already written under `out/dicts/`."""
    from polysemy.explorer.index import SHARD, _clean, _dump  # index.py imports this module

    folders = [(p, r) for p, r in found.get("analysis", []) if r.get("kind") == "circuits"]
    if not folders:
        return []
    (out / "circuits" / "features").mkdir(parents=True)
    entries: list[dict[str, Any]] = []
    back: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    taken: set[str] = set()
    for path, record in folders:
        base = _ID.sub("-", str(path.relative_to(root))).strip("-") or "circuits"
        cid, n = base, 1
        while cid in taken:
            n += 1
            cid = f"{base}-{n}"
        taken.add(cid)
        inputs, summary = record.get("inputs") or {}, record.get("summary") or {}
        edges_path = path / "edges.json"
        edges = json.loads(edges_path.read_text()) if edges_path.is_file() else []
        edges = [e for e in edges if isinstance(e, dict) and "up" in e and "down" in e]
        site_up = summary.get("site_up") or inputs.get("site_up")
        site_down = summary.get("site_down") or inputs.get("site_down")
        up, up_how = _dictionary(dicts, inputs.get("sae_up"), site_up)
        down, down_how = _dictionary(dicts, inputs.get("sae_down"), site_down)
        # A dictionary too small for the edges' features is not the SAE the analysis read.
        if not _fits(dicts, up, [int(e["up"]) for e in edges]):
            up, up_how = None, None
        if not _fits(dicts, down, [int(e["down"]) for e in edges]):
            down, down_how = None, None
        labels_up = _labels(out, up, {int(e["up"]) for e in edges}, SHARD)
        labels_down = _labels(out, down, {int(e["down"]) for e in edges}, SHARD)
        for i, e in enumerate(edges):
            a, b = int(e["up"]), int(e["down"])
            e["label_up"], e["label_down"] = labels_up.get(a), labels_down.get(b)
            short = {
                "circuit": cid,
                "edge": i,
                "weight": e.get("weight"),
                "ci": e.get("ci"),
                "verdict": e.get("verdict"),
                "contexts": e.get("contexts"),
            }
            if up is not None:
                back[up][str(a)].append({**short, "role": "up", "other": b, "other_dict": down})
            if down is not None:
                back[down][str(b)].append({**short, "role": "down", "other": a, "other_dict": up})
        braids = summary.get("braids") or {}
        page = {
            "id": cid,
            "folder": str(path.relative_to(root)),
            "inputs": inputs,
            "summary": {k: v for k, v in summary.items() if k != "edges"},
            "edges": edges,
            "dict_up": up,
            "dict_down": down,
            "matched": {"up": up_how, "down": down_how},
        }
        _dump(out / "circuits" / f"{cid}.json", _clean(page))
        words = [
            cid,
            site_up,
            site_down,
            inputs.get("model"),
            inputs.get("corpus"),
            up,
            down,
            summary.get("method"),
            "circuit circuits edges edge braids braid graph",
        ]
        entries.append(
            _clean(
                {
                    "id": cid,
                    "folder": page["folder"],
                    "site_up": site_up,
                    "site_down": site_down,
                    "dict_up": up,
                    "dict_down": down,
                    "contexts": summary.get("contexts"),
                    "n_edges": len(edges),
                    "method": summary.get("method"),
                    "braided_fraction": braids.get("braided_fraction"),
                    "ci": braids.get("ci"),
                    "null_ci": braids.get("null_ci"),
                    "terms": " ".join(str(w) for w in words if w).lower(),
                }
            )
        )
    for dict_id, per_feature in back.items():
        _dump(out / "circuits" / "features" / f"{dict_id}.json", _clean(per_feature))
    return entries
