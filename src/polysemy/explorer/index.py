"""The explorer's index: every number its pages show, precomputed into `RUN/explorer/`.

`build_index(run)` walks `run` for marker files (`analysis.json`, `config.json`,
`manifest.json`, `result.json`), never fixed folder names, so it works on a demo's run folder,
on a single analysis folder or on a hand-made one. It groups the feature-level analyses
(features, neurons, geometry, ablate) by *dictionary* (one SAE on one store: matched by the
store's folder name, the SAE's path or its size) and writes, atomically:

    explorer/index.json                      the run: dictionaries, toys, claims, summaries
    explorer/dicts/<d>/features/<k>.json     feature pages of features 64k .. 64k + 63
    explorer/dicts/<d>/neurons/<k>.json      neuron pages of neurons 64k .. 64k + 63
    explorer/dicts/<d>/neurons.json          effective features against the rotated basis
    explorer/dicts/<d>/geometry.json         interference map, overlap vs co-occurrence
    explorer/toys/<t>.json                   W^T W and feature norms per instance
    explorer/drift/<d>.json, drift/<d>/<k>.json  drift pages (polysemy.explorer.drift_index)
    explorer/claims.json                     every claim with its verdict and evidence
    explorer/circuits/...                    circuits graph pages (explorer/circuits_index.py)
    explorer/search/<hex>.json               words of the features' example texts, sharded
                                             by their first two characters

A page is one static read of a small file (a shard of 64 features is about 0.2 MB; one file
per feature made 24k files, and creating them was most of the build), so the server computes
nothing and pages open fast at 24k features. `ensure_index(run)` rebuilds only when a source
changed (the index records the size and modification time of every file it read).

>>> path = build_index("runs/demo")           # doctest: +SKIP
>>> path = ensure_index("runs/demo")          # doctest: +SKIP  (no work when up to date)
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polysemy import runfolder
from polysemy.explorer.circuits_index import write_circuits
from polysemy.explorer.drift_index import write_drift

logger = logging.getLogger(__name__)

FORMAT = "polysemy.explorer/1"
INDEX = "index.json"
EXPLORER_DIR = "explorer"
# Folders of a run that hold outputs of readers, not sources.
_SKIP_DIRS = {EXPLORER_DIR, "report"}
_MARKERS = ("analysis.json", "config.json", "manifest.json", "result.json")
SEARCH_POSTINGS = 50
"""Features kept per word in the search index (those with the strongest matching example)."""
HEATMAP_FEATURES = 64
"""Most frequent features drawn in the geometry page's interference map."""
SHARD = 64
"""Features (and neurons) per page file: `features/<f // SHARD>.json` maps `str(f)` to the
feature's page. Creating a file costs about 2 ms here, so 24k one-feature files took most of
the build; a 64-feature shard is still a ~0.2 MB read per page."""
SCATTER_PAIRS = 4000
"""Feature pairs drawn in the overlap vs co-occurrence scatter (a seeded sample)."""
TOY_INSTANCES = 12
"""Toy instances drawn per toy run."""
# Bumped whenever the files change shape within a format, so an older index is rebuilt.
_LAYOUT = 3
_WORD = re.compile(r"\w+")
_ID = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class _Dictionary:
    """One SAE on one store, with the analyses found for it."""

    id: str
    store: str | None = None
    site: str | None = None
    d_sae: int | None = None
    d_in: int | None = None
    sae: Path | None = None
    analyses: dict[str, list[Path]] = field(default_factory=lambda: defaultdict(list))


def build_index(run: str | os.PathLike[str]) -> Path:
    """Precompute everything the explorer shows for `run` into `run/explorer/` (atomically)
    and return that folder. FileNotFoundError when `run` is not a folder; ValueError when it
    holds nothing the explorer can show."""
    root = Path(run)
    if not root.is_dir():
        raise FileNotFoundError(f"run must be a folder; got {str(run)!r}")
    found = _discover(root)
    if not any(found[k] for k in ("analysis", "toy", "sae")):
        raise ValueError(
            f"run {str(run)!r} holds no analysis, SAE or toy run (no analysis.json, config.json "
            "or result.json with a polysemy format) for the explorer to show"
        )
    out = root / EXPLORER_DIR
    with runfolder.atomic_folder(out) as tmp:
        index = _write(root, found, tmp)
        (tmp / INDEX).write_text(json.dumps(index, allow_nan=False) + "\n")
    logger.info("explorer index of %s: %d dictionaries", root, len(index["dictionaries"]))
    return out


def ensure_index(run: str | os.PathLike[str]) -> Path:
    """`run/explorer/`, built when missing or stale (a source file changed since)."""
    root = Path(run)
    out = root / EXPLORER_DIR
    try:
        index = json.loads((out / INDEX).read_text())
        if index.get("format") == FORMAT and index.get("stamp") == _stamp(root, _discover(root)):
            return out
    except (OSError, ValueError, AttributeError):
        pass
    return build_index(root)


# ---------------------------------------------------------------------------- discovery


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    fmt = record.get("format") if isinstance(record, dict) else None
    return record if isinstance(fmt, str) and fmt.startswith("polysemy.") else None


def _discover(root: Path) -> dict[str, list[tuple[Path, dict[str, Any]]]]:
    """Marker folders under `root` by family: analysis, sae, store, toy."""
    found: dict[str, list[tuple[Path, dict[str, Any]]]] = defaultdict(list)
    family = {
        "polysemy.analysis": "analysis",
        "polysemy.sae": "sae",
        "polysemy.activations": "store",
        "polysemy.toy": "toy",
    }
    for folder, dirs, files in os.walk(root):  # symlinks are not followed
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and not (here == root and d in _SKIP_DIRS) and d != "state"
        )
        for marker in _MARKERS:
            if marker in files:
                record = _read_marker(here / marker)
                kind = family.get(str(record["format"]).split("/")[0]) if record else None
                if kind and record is not None:
                    found[kind].append((here, record))
                    break
    return found


def _stamp(root: Path, found: dict[str, list[tuple[Path, dict[str, Any]]]]) -> list[Any]:
    """Size and modification time of every source file (a rewrite changes one of them)."""
    stamp: list[Any] = [FORMAT, _LAYOUT]
    for kind in sorted(found):
        for folder, _ in found[kind]:
            for p in sorted(folder.iterdir()):
                if p.is_file() and (kind != "store" or p.suffix == ".json"):
                    st = p.stat()
                    stamp.append([str(p.relative_to(root)), st.st_size, st.st_mtime_ns])
    return stamp


def _name(path: Any) -> str | None:
    return Path(path).name if isinstance(path, str) and path else None


def _group(found: dict[str, list[tuple[Path, dict[str, Any]]]]) -> list[_Dictionary]:
    """Dictionaries from the feature-level analyses and SAE checkpoints found."""
    dicts: list[_Dictionary] = []

    def match(store: str | None, d_sae: int | None, sae: str | None) -> _Dictionary | None:
        for d in dicts:
            if sae and d.sae is not None and Path(sae).name == d.sae.name:
                return d
            same_store = store is not None and d.store == store
            same_size = d_sae is None or d.d_sae is None or d.d_sae == d_sae
            if same_store and same_size:
                return d
        if store is None and d_sae is not None:
            sized = [d for d in dicts if d.d_sae == d_sae]
            if len(sized) == 1:
                return sized[0]
        return None

    def new(label: str, **kw: Any) -> _Dictionary:
        base = _ID.sub("-", label).strip("-") or "dict"
        taken = {d.id for d in dicts}
        ident = base
        while ident in taken:
            ident = f"{base}-{len(taken)}"
        d = _Dictionary(ident, **kw)
        dicts.append(d)
        return d

    for path, record in found["sae"]:
        source = record.get("source") or {}
        store = _name(source.get("acts"))
        d = match(store, record.get("d_sae"), str(path))
        if d is None:
            d = new(path.name, store=store, site=source.get("site"))
        d.sae, d.d_sae, d.d_in = path, record.get("d_sae"), record.get("d_in")
    order = {"features": 0, "neurons": 1, "geometry": 2, "ablate": 3}
    analyses = sorted(
        (r for r in found["analysis"] if r[1].get("kind") in order),
        key=lambda r: order[str(r[1]["kind"])],
    )
    for path, record in analyses:
        kind, inputs, summary = record["kind"], record.get("inputs", {}), record.get("summary", {})
        sae_in = inputs.get("sae")
        sae_path = inputs.get("sae_path") or (sae_in if isinstance(sae_in, str) else None)
        d_sae = summary.get("n_features") or summary.get("d_sae")
        if kind == "ablate":  # matched by site: it names a model site, not a store
            d = next((d for d in dicts if d.site and d.site == inputs.get("site")), None)
            if d is not None:
                d.analyses[kind].append(path)
            continue
        store = _name(inputs.get("acts"))
        if store == "ActivationStore" or store == "Tensor":
            store = None
        d = match(store, d_sae, sae_path)
        if d is None and store is None:
            # Last resort, the demo's naming: `analyses/<kind>-<name>` for dictionary <name>.
            suffix = path.name.partition("-")[2]
            d = next((d for d in dicts if suffix and suffix in (d.id, d.store)), None)
        if d is None:
            d = new(store or path.name, store=store, site=inputs.get("site"))
        d.d_sae = d.d_sae or d_sae
        d.site = d.site or inputs.get("site")
        d.analyses[kind].append(path)
    return dicts


# ---------------------------------------------------------------------------- writing


def _dump(path: Path, obj: Any) -> None:
    """Write `obj` as compact JSON; NaN and infinities become null (a slow walk, taken only
    when the fast dump shows one: walking every page cost a quarter of the build)."""
    try:
        text = json.dumps(obj, allow_nan=False, separators=(",", ":"))
    except (ValueError, TypeError):  # NaN/inf, or a tensor left in
        text = json.dumps(_clean(obj), allow_nan=False, separators=(",", ":"))
    path.write_text(text)


def _clean(x: Any) -> Any:
    """JSON-safe: tensors to lists, NaN and infinities to None."""
    if isinstance(x, torch.Tensor):
        x = x.tolist()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path)) if path.is_file() else {}


def _write(
    root: Path, found: dict[str, list[tuple[Path, dict[str, Any]]]], out: Path
) -> dict[str, Any]:
    claims = _claims(found)
    _dump(out / "claims.json", claims)
    dicts = _group(found)
    search: dict[str, dict[str, list[list[Any]]]] = defaultdict(dict)
    entries = [_write_dictionary(d, out / "dicts" / d.id, claims, search) for d in dicts]
    toys = []
    (out / "toys").mkdir()
    for path, record in found["toy"]:
        toy_id = _ID.sub("-", str(path.relative_to(root))).strip("-") or "toy"
        toys.append(_write_toy(path, record, out / "toys" / f"{toy_id}.json", toy_id))
    shards = _write_search(search, out / "search")
    drift = write_drift(root, found["analysis"], out, entries, shard=SHARD)
    circuits = write_circuits(root, found, dicts, out)
    return {
        "format": FORMAT,
        "run": root.resolve().name,
        "stamp": _stamp(root, found),
        "dictionaries": entries,
        "toys": toys,
        "drift": drift,
        "claims": len(claims),
        "circuits": circuits,
        "search_shards": shards,
        "shard_size": SHARD,
    }


def _claims(found: dict[str, list[tuple[Path, dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Every claim of every claims folder, with the folder it came from."""
    out = []
    for path, record in found["analysis"]:
        if record.get("kind") != "claims" or not (path / "claims.json").is_file():
            continue
        for item in _load(path / "claims.json").get("claims", []):
            if isinstance(item, dict):
                out.append({**_clean(item), "source": path.name})
    return out


def _targets(claim: Any) -> set[str]:
    """`feature:F` / `neuron:N` strings anywhere in a claim as written."""
    found: set[str] = set()
    if isinstance(claim, str) and re.fullmatch(r"(feature|neuron):\d+", claim):
        found.add(claim)
    elif isinstance(claim, dict):
        for key, value in claim.items():
            if key in ("feature", "neuron") and isinstance(value, int):
                found.add(f"{key}:{value}")
            else:
                found |= _targets(value)
    elif isinstance(claim, list):
        for value in claim:
            found |= _targets(value)
    return found


def _claims_for(claims: list[dict[str, Any]], d: _Dictionary) -> dict[str, list[int]]:
    """Target -> indices of the claims about it in this dictionary (a claim naming a site or
    SAE counts only for the dictionary it names)."""
    names = {d.id, d.store, d.site, d.sae.name if d.sae else None} - {None}
    by_target: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(claims):
        claim = item.get("claim") or {}
        where = [claim.get(k) for k in ("site", "sae", "dictionary") if isinstance(claim, dict)]
        where = [w for w in where if isinstance(w, str)]
        if where and not any(w in names or _name(w) in names for w in where):
            continue
        for target in _targets(claim):
            by_target[target].append(i)
    return by_target


def _write_dictionary(
    d: _Dictionary,
    out: Path,
    claims: list[dict[str, Any]],
    search: dict[str, dict[str, list[list[Any]]]],
) -> dict[str, Any]:
    (out / "features").mkdir(parents=True)
    about = _claims_for(claims, d)
    entry: dict[str, Any] = {
        "id": d.id,
        "site": d.site,
        "store": d.store,
        "sae": d.sae.name if d.sae else None,
        "d_sae": d.d_sae,
        "d_in": d.d_in,
        "summaries": {},
        "pages": [],
    }
    for kind, paths in d.analyses.items():
        entry["summaries"][kind] = _clean(_load(paths[0] / "analysis.json").get("summary"))
    features = _features(d, out, about, claims, search, entry)
    if d.analyses.get("neurons"):
        _neurons(d, out, about, claims, entry)
    if d.analyses.get("geometry"):
        _geometry(d, out)
        entry["pages"].append("geometry")
    if features:
        entry["pages"].insert(0, "features")
    return entry


def _decoder(d: _Dictionary) -> torch.Tensor | None:
    if d.sae is None:
        return None
    w = _tensors(d.sae / "sae.safetensors").get("W_dec")
    return None if w is None else w.float()


def _ablation(d: _Dictionary) -> dict[str, dict[str, Any]]:
    """Per target (`feature:F`), its ablation effects against the random-direction null, as
    histograms on shared edges plus the summary row."""
    out: dict[str, dict[str, Any]] = {}
    for path in d.analyses.get("ablate", []):
        summary = _load(path / "analysis.json").get("summary", {})
        effects = _tensors(path / "effects.safetensors")
        targets, null = effects.get("targets"), effects.get("null")
        if targets is None or null is None:
            continue
        for t, row in enumerate(summary.get("results", [])[: targets.shape[0]]):
            name = row.get("target")
            if not isinstance(name, str) or name in out:
                continue
            eff, nul = targets[t].double(), null[t].double().flatten()
            lo = float(min(eff.min(), nul.min()))
            hi = float(max(eff.max(), nul.max()))
            hi = hi if hi > lo else lo + 1.0
            edges = torch.linspace(lo, hi, 31, dtype=torch.float64)
            out[name] = {
                "effect": summary.get("effect"),
                "n": int(eff.numel()),
                "edges": edges.tolist(),
                "counts": torch.histc(eff, 30, lo, hi).tolist(),
                "null_counts": (torch.histc(nul, 30, lo, hi) / max(null.shape[1], 1)).tolist(),
                "null_directions": int(null.shape[1]),
                "summary": _clean(row),
                "source": path.name,
            }
    return out


def _features(
    d: _Dictionary,
    out: Path,
    about: dict[str, list[int]],
    claims: list[dict[str, Any]],
    search: dict[str, dict[str, list[list[Any]]]],
    entry: dict[str, Any],
) -> bool:
    """One JSON per feature; the dictionary entry gets the density distribution and the most
    frequent features. False when there is nothing per feature to show."""
    arrays: dict[str, torch.Tensor] = {}
    examples: list[dict[str, Any]] = []
    if d.analyses.get("features"):
        path = d.analyses["features"][0]
        arrays = _tensors(path / "features.safetensors")
        if (path / "examples.json").is_file():
            examples = _load(path / "examples.json")
    geo: dict[str, torch.Tensor] = {}
    if d.analyses.get("geometry"):
        geo = _tensors(d.analyses["geometry"][0] / "features.safetensors")
    d_sae = d.d_sae or (len(arrays["density"]) if "density" in arrays else None)
    if d_sae is None and "dimensionality" in geo:
        d_sae = len(geo["dimensionality"])
    if not d_sae:
        return False
    W = _decoder(d)
    top_neurons = top_share = None
    if W is not None and W.shape[0] == d_sae:
        sq = W.pow(2)
        share = sq / sq.sum(1, keepdim=True).clamp_min(1e-30)  # (d_sae, d_in)
        top_share, top_neurons = share.topk(min(8, share.shape[1]), dim=1)
    # Reverse of neurons.json: the neurons each feature is a voice of, with its share there.
    voice: dict[int, list[list[Any]]] = defaultdict(list)
    if d.analyses.get("neurons"):
        for rec in _load(d.analyses["neurons"][0] / "neurons.json"):
            for f, s in rec.get("features", []):
                voice[int(f)].append([int(rec["neuron"]), float(s)])
    ablation = _ablation(d)
    null_pr = arrays.get("null_participation_ratio")
    null_range = (
        [
            float(torch.quantile(null_pr.double(), 0.025)),
            float(torch.quantile(null_pr.double(), 0.975)),
        ]
        if null_pr is not None
        else None
    )
    cols = {k: v.tolist() for k, v in arrays.items() if v.dim() >= 1 and v.shape[0] == d_sae}
    geo_cols = {k: v.tolist() for k, v in geo.items() if v.dim() == 1 and v.shape[0] == d_sae}
    edges = arrays["histogram_edges"].tolist() if "histogram_edges" in arrays else None
    labels: list[str | None] = [None] * d_sae
    shard: dict[str, Any] = {}
    for f in range(d_sae):
        page: dict[str, Any] = {"dictionary": d.id, "feature": f, "d_sae": d_sae}
        if cols:
            page["density"] = cols["density"][f]
            page["mean_activation"] = cols["mean_activation"][f]
            page["histogram"] = {"edges": edges, "counts": cols["histogram"][f]}
            page["spread"] = {
                "participation_ratio": cols["participation_ratio"][f],
                "neurons_50": cols["neurons_50"][f],
                "neurons_90": cols["neurons_90"][f],
                "null_range": null_range,
                "null_kind": "random directions of equal norm",
                "null_n": int(null_pr.numel()) if null_pr is not None else None,
                "d_in": d.d_in,
            }
            page["neighbours"] = [
                [g, c]
                for g, c in zip(cols["neighbours"][f], cols["neighbour_cosine"][f], strict=True)
            ]
            page["partners"] = [
                [g, c, lift]
                for g, c, lift in zip(
                    cols["partners"][f],
                    cols["partner_count"][f],
                    cols["partner_lift"][f],
                    strict=True,
                )
                if c > 0
            ]
            page["rows"] = entry["summaries"].get("features", {}).get("rows")
        if top_neurons is not None and top_share is not None:
            page.setdefault("spread", {"d_in": d.d_in})["top_neurons"] = [
                [j, s] for j, s in zip(top_neurons[f].tolist(), top_share[f].tolist(), strict=True)
            ]
        if f < len(examples):
            page["top"] = examples[f].get("top", [])
            page["quantiles"] = examples[f].get("quantiles", [])
            _index_words(search, d.id, f, page["top"] + page["quantiles"])
            if page["top"] and "text" in page["top"][0]:
                labels[f] = page["top"][0]["text"]
        if geo_cols:
            page["geometry"] = {
                k: geo_cols[k][f]
                for k in ("dimensionality", "norm", "firing_count")
                if k in geo_cols
            }
        if voice.get(f):
            page["neurons"] = sorted(voice[f], key=lambda js: -js[1])[:20]
        if f"feature:{f}" in ablation:
            page["ablation"] = ablation[f"feature:{f}"]
        if about.get(f"feature:{f}"):
            page["claims"] = [claims[i] for i in about[f"feature:{f}"]]
        shard[str(f)] = page
        if len(shard) == SHARD or f == d_sae - 1:
            _dump(out / "features" / f"{f // SHARD}.json", shard)
            shard = {}
    if cols:
        density = torch.tensor(cols["density"], dtype=torch.float64)
        alive = density[density > 0]
        dens_edges = torch.logspace(-7, 0, 29, dtype=torch.float64)
        entry["density"] = {
            "edges": dens_edges.tolist(),
            "counts": torch.histc(alive.log10(), 28, -7.0, 0.0).tolist() if alive.numel() else [],
            "dead": int((density == 0).sum()),
            "n": d_sae,
        }
        order = torch.argsort(density, descending=True, stable=True)[:50].tolist()
        entry["top_features"] = [
            {"feature": f, "density": cols["density"][f], "label": labels[f]} for f in order
        ]
    return True


def _index_words(
    search: dict[str, dict[str, list[list[Any]]]],
    dict_id: str,
    feature: int,
    examples: list[dict[str, Any]],
) -> None:
    """Add each word of the examples' texts, with the feature's strongest example holding it."""
    best: dict[str, tuple[float, str]] = {}
    for ex in examples:
        text = ex.get("text")
        if not text:
            continue
        act = float(ex.get("activation", 0.0))
        for word in set(_WORD.findall(text.replace("[[", " ").replace("]]", " ").lower())):
            if word not in best or act > best[word][0]:
                best[word] = (act, text)
    for word, (act, text) in best.items():
        shard = search[word[:2].encode().hex()]
        shard.setdefault(word, []).append([dict_id, feature, act, text])


def _write_search(search: dict[str, dict[str, list[list[Any]]]], out: Path) -> list[str]:
    out.mkdir()
    for key, words in search.items():
        for postings in words.values():
            postings.sort(key=lambda p: -p[2])
            del postings[SEARCH_POSTINGS:]
        _dump(out / f"{key}.json", _clean(words))
    return sorted(search)


def _neurons(
    d: _Dictionary,
    out: Path,
    about: dict[str, list[int]],
    claims: list[dict[str, Any]],
    entry: dict[str, Any],
) -> None:
    """One JSON per neuron, and neurons.json: the distribution against the rotated basis."""
    path = d.analyses["neurons"][0]
    records = _load(path / "neurons.json")
    contexts = {c["neuron"]: c["groups"] for c in _load(path / "contexts.json")} if (
        path / "contexts.json"
    ).is_file() else {}  # fmt: skip
    arrays = _tensors(path / "neurons.safetensors")
    summary = entry["summaries"].get("neurons", {})
    (out / "neurons").mkdir()
    own = torch.tensor([r["effective_features"] for r in records], dtype=torch.float64)
    base = arrays.get("baseline_effective_features")
    hi = float(max(own.max(), base.max() if base is not None else 0.0)) if own.numel() else 1.0
    edges = torch.linspace(1.0, max(hi, 1.0) + 1e-9, 31, dtype=torch.float64)
    lo, top = float(edges[0]), float(edges[-1])
    overview = {
        "dictionary": d.id,
        "summary": summary,
        "edges": edges.tolist(),
        "counts": torch.histc(own, 30, lo, top).tolist(),
        "baseline_counts": torch.histc(base.double(), 30, lo, top).tolist()
        if base is not None
        else None,
        "n": int(own.numel()),
        "baseline_n": int(base.numel()) if base is not None else None,
        "neurons": [
            [r["neuron"], r["effective_features"], r["features"][0][0] if r["features"] else None]
            for r in records
        ],
    }
    _dump(out / "neurons.json", _clean(overview))
    shards: dict[int, dict[str, Any]] = defaultdict(dict)
    for r in records:
        j = int(r["neuron"])
        shown = sum(s for _, s in r.get("features", []))
        page = {
            "dictionary": d.id,
            **r,
            "other_share": max(0.0, 1.0 - shown - float(r.get("error_share", 0.0))),
            "groups": contexts.get(j, []),
            "baseline": summary.get("baseline"),
            "privileged": summary.get("privileged"),
            "warning": summary.get("warning"),
            "rows": summary.get("rows"),
        }
        if about.get(f"neuron:{j}"):
            page["claims"] = [claims[i] for i in about[f"neuron:{j}"]]
        shards[j // SHARD][str(j)] = page
    for k, shard in shards.items():
        _dump(out / "neurons" / f"{k}.json", shard)
    entry["n_neurons"] = len(records)
    entry["pages"].append("neurons")


def _geometry(d: _Dictionary, out: Path) -> None:
    """geometry.json: |cos| histogram against random directions, the interference map of the
    most frequent features, and overlap against co-occurrence over their pairs."""
    path = d.analyses["geometry"][0]
    summary = _load(path / "analysis.json").get("summary", {})
    inter = _tensors(path / "interference.safetensors")
    pairs = _tensors(path / "pairs.safetensors")
    page: dict[str, Any] = {"dictionary": d.id, "summary": summary}
    if inter:
        page["interference"] = {
            "edges": inter["edges"].tolist(),
            "counts": inter["counts"].tolist(),
            "null_counts": inter["null_counts"].tolist(),
            "pairs": int(inter["pair_i"].numel()),
        }
    if pairs:
        fi, fj = pairs["feature_i"].long(), pairs["feature_j"].long()
        # The test's features, most frequent first (the order pairs were written in).
        feats = list(dict.fromkeys(torch.stack([fi, fj], 1).flatten().tolist()))
        keep = feats[:HEATMAP_FEATURES]
        pos = {f: k for k, f in enumerate(keep)}
        # The diagonal (1 by definition) is left blank so the colour scale shows the pairs.
        grid = torch.full((len(keep), len(keep)), float("nan"), dtype=torch.float64)
        for a, b, c in zip(fi.tolist(), fj.tolist(), pairs["abs_cos"].tolist(), strict=True):
            if a in pos and b in pos:
                grid[pos[a], pos[b]] = grid[pos[b], pos[a]] = c
        page["map"] = {"features": keep, "abs_cos": grid.tolist()}
        g = torch.Generator().manual_seed(0)
        pick = torch.randperm(fi.numel(), generator=g)[:SCATTER_PAIRS].sort().values
        page["scatter"] = {
            "feature_i": fi[pick].tolist(),
            "feature_j": fj[pick].tolist(),
            "abs_cos": pairs["abs_cos"][pick].tolist(),
            "phi": pairs["phi"][pick].tolist(),
            "shown": int(pick.numel()),
            "pairs": int(fi.numel()),
        }
    _dump(out / "geometry.json", _clean(page))


def _write_toy(path: Path, record: dict[str, Any], out: Path, toy_id: str) -> dict[str, Any]:
    """toys/<t>.json: per instance (at most TOY_INSTANCES), W^T W and the feature norms."""
    W = _tensors(path / "weights.safetensors").get("W")  # (n_instances, n_hidden, n_features)
    instances = []
    for i, inst in enumerate(record.get("instances", [])[:TOY_INSTANCES]):
        item = {
            k: inst.get(k)
            for k in (
                "sparsity",
                "loss",
                "feature_norms",
                "represented",
                "superposition",
                "dimensions_per_feature",
            )
        }
        if W is not None and i < W.shape[0]:
            Wi = W[i].double()  # (n_hidden, n_features)
            item["WtW"] = (Wi.T @ Wi).tolist()  # (n_features, n_features)
        instances.append(item)
    config = record.get("config", {})
    page = {"id": toy_id, "folder": path.name, "config": config, "instances": instances,
            "n_instances": len(record.get("instances", []))}  # fmt: skip
    _dump(out, _clean(page))
    return {
        "id": toy_id,
        "model": config.get("model"),
        "n_features": config.get("n_features"),
        "n_hidden": config.get("n_hidden"),
        "n_instances": page["n_instances"],
    }
