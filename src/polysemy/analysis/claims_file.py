"""Claims files: interpretations written down before they are tested.

A claims file (TOML; YAML too when PyYAML is installed) holds a list of claims, each naming a
target and the concept it is said to mean, with pre-registered thresholds:

    site = "encoder.layer.3.intermediate.intermediate_act_fn.output"   # default site
    twins = "my_twins.jsonl"               # optional: edits from a file, not the corpus

    [thresholds]                           # this file's thresholds
    auroc = 0.8

    [[claim]]
    neuron = 1203                          # neuron N of `site`
    concept = "negation"

    [[claim]]
    feature = 812                          # feature F of an SAE, named (`saes=`) or a path
    sae = "mlp"
    concept = "food"
    thresholds = { precision = 0.6 }       # this claim's own thresholds

    [[claim]]
    direction = "tense"                    # a probe direction fitted here for a concept, or
    concept = "tense"                      # a vector file / probes analysis folder

Each claim has exactly one of `neuron`, `feature`, `direction`, and a `concept` of the
`concepts` corpus (optionally a `value`, e.g. `concept = "food"`, `value = "apple"`).
Precedence of thresholds: the claim's own > the file's `[thresholds]` > the caller's
(`check_claims(..., auroc=0.7)`, CLI flags) > the defaults of `Thresholds`. Paths in the file
are relative to the file's folder.

Every mistake is one ValueError naming the parameter: an unknown key, an unknown concept, a
threshold outside [0, 1], no claims, a malformed twins line (with its line number).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from polysemy.analysis.probe_data import check_concept
from polysemy.validation import ParameterError

ClaimKind = Literal["neuron", "feature", "direction"]
KINDS: tuple[ClaimKind, ...] = ("neuron", "feature", "direction")


@dataclass(frozen=True)
class Thresholds:
    """Pre-registered thresholds of the battery, each a number in [0, 1]."""

    auroc: float = 0.8
    """Held-out and shifted AUROC of the target's value for the concept must reach this."""
    precision: float = 0.8
    """Share of the target's strongest held-out contexts that carry the concept (0.5 let a
    neuron of two concepts pass as one of them a quarter of the time: docs/claims.md)."""
    recall: float = 0.5
    """Share of held-out sentences with the concept on which the target fires (its value
    reaches the threshold picked on the fitting sentences)."""
    specificity: float = 0.75
    """Share of the other concepts whose edits do not move the target."""
    dominance: float = 0.5
    """A neuron's top SAE feature's share of its activity (with a neurons analysis): below
    this, the neuron is a chorus."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_unit(f.name, getattr(self, f.name))


THRESHOLD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Thresholds))


def check_unit(name: str, value: Any) -> float:
    """`value` as a float in [0, 1]; ParameterError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ParameterError(name, "a number in [0, 1]", value)
    return float(value)


@dataclass(frozen=True)
class Claim:
    """One claim: a target said to mean a concept, with its own threshold overrides."""

    kind: ClaimKind
    concept: str
    index: int | None = None
    """The neuron or feature index (None for a direction)."""
    site: str | None = None
    """Site of a neuron or direction (a feature's site is its SAE's)."""
    sae: str | None = None
    """A feature's SAE: a name given to `check_claims(saes=...)` or a checkpoint path."""
    direction: str | None = None
    """A direction: a concept to fit a probe for, or a vector file / probes folder."""
    value: str | None = None
    """The concept's value counted positive (None: present / the "on" value)."""
    name: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    """This claim's overrides (only names of `Thresholds`)."""
    raw: dict[str, Any] = field(default_factory=dict)
    """The claim as written (echoed in claims.json)."""

    @property
    def target(self) -> str:
        if self.kind == "direction":
            return f"direction:{self.direction}"
        return f"{self.kind}:{self.index}"


@dataclass(frozen=True)
class ClaimsFile:
    """A parsed claims file."""

    claims: tuple[Claim, ...]
    thresholds: dict[str, float] = field(default_factory=dict)
    """The file's `[thresholds]` overrides."""
    site: str | None = None
    twins: str | None = None
    """A twins file (absolute, or relative to the working folder when given in Python)."""
    path: str | None = None


_FILE_KEYS = ("claim", "claims", "thresholds", "site", "twins")
_CLAIM_KEYS = ("neuron", "feature", "direction", "concept", "value", "site", "sae", "name",
               "thresholds")  # fmt: skip


def _thresholds(table: Any, where: str) -> dict[str, float]:
    if not isinstance(table, dict):
        raise ParameterError(where, "a table of thresholds", table)
    out = {}
    for key, value in table.items():
        if key not in THRESHOLD_NAMES:
            raise ParameterError(where, f"thresholds among {', '.join(THRESHOLD_NAMES)}", key)
        out[key] = check_unit(f"{where}.{key}", value)
    return out


def _index(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParameterError(where, "an int >= 0", value)
    return value


def parse_claims(data: dict[str, Any], *, base: str | os.PathLike[str] | None = None) -> ClaimsFile:
    """A claims file's content (a dict, as TOML or YAML loads it) as a `ClaimsFile`; paths
    relative to `base`. ParameterError naming the key at the first mistake."""
    if not isinstance(data, dict):
        raise ParameterError("claims", "a table with [[claim]] entries", type(data).__name__)
    for key in data:
        if key not in _FILE_KEYS:
            raise ParameterError("claims", f"top-level keys among {', '.join(_FILE_KEYS)}", key)
    root = Path(base) if base is not None else None

    def resolve(path: str) -> str:
        return str(root / path) if root is not None and not Path(path).is_absolute() else path

    entries = data.get("claim", data.get("claims", []))
    if not isinstance(entries, list) or not entries:
        raise ParameterError("claims", "at least one [[claim]]", entries)
    file_site = data.get("site")
    if file_site is not None and (not isinstance(file_site, str) or not file_site):
        raise ParameterError("site", "a site name", file_site)
    twins = data.get("twins")
    if twins is not None and (not isinstance(twins, str) or not twins):
        raise ParameterError("twins", "a path to a JSON-lines file", twins)
    claims = []
    for i, entry in enumerate(entries):
        where = f"claim[{i}]"
        if not isinstance(entry, dict):
            raise ParameterError(where, "a table", entry)
        for key in entry:
            if key not in _CLAIM_KEYS:
                raise ParameterError(where, f"keys among {', '.join(_CLAIM_KEYS)}", key)
        kinds = [k for k in KINDS if k in entry]
        if len(kinds) != 1:
            raise ParameterError(where, "exactly one of neuron, feature, direction", kinds)
        kind = kinds[0]
        concept = entry.get("concept")
        if not isinstance(concept, str):
            raise ParameterError(f"{where}.concept", "a concept name", concept)
        value = entry.get("value")
        try:
            check_concept(concept, value)
        except ParameterError as exc:
            raise ParameterError(f"{where}.{exc.parameter}", exc.expected, exc.got) from None
        site = entry.get("site", file_site)
        if site is not None and (not isinstance(site, str) or not site):
            raise ParameterError(f"{where}.site", "a site name", site)
        index = direction = sae = None
        if kind == "direction":
            direction = entry["direction"]
            if not isinstance(direction, str) or not direction:
                raise ParameterError(f"{where}.direction", "a concept or a path", direction)
            if direction not in _concepts():
                direction = resolve(direction)
            if site is None:
                raise ParameterError(f"{where}.site", "a site (here or at the top)", None)
        else:
            index = _index(entry[kind], f"{where}.{kind}")
            if kind == "feature":
                sae = entry.get("sae")
                if not isinstance(sae, str) or not sae:
                    raise ParameterError(f"{where}.sae", "an SAE name or path", sae)
                site = entry.get("site")  # a feature lives at its SAE's site
            elif site is None:
                raise ParameterError(f"{where}.site", "a site (here or at the top)", None)
        name = entry.get("name")
        if name is not None and not isinstance(name, str):
            raise ParameterError(f"{where}.name", "a string", name)
        own = _thresholds(entry.get("thresholds", {}), f"{where}.thresholds")
        claims.append(Claim(kind, concept, index, site, sae, direction, value, name, own,
                            dict(entry)))  # fmt: skip
    return ClaimsFile(
        claims=tuple(claims),
        thresholds=_thresholds(data.get("thresholds", {}), "thresholds"),
        site=file_site,
        twins=None if twins is None else resolve(twins),
    )


def _concepts() -> tuple[str, ...]:
    from polysemy.corpora.concepts import CONCEPTS

    return CONCEPTS


def read_claims(path: str | os.PathLike[str]) -> ClaimsFile:
    """Parse a `.toml` (or, with PyYAML installed, `.yaml`/`.yml`) claims file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"claims {str(path)!r} does not exist")
    text = p.read_text(encoding="utf-8")
    if p.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ParameterError(
                "claims", "a .toml file (PyYAML is not installed)", str(p)
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            at = "" if line is None else f" line {line + 1}"
            raise ValueError(f"claims {str(p)!r}{at}: not YAML") from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"claims {str(p)!r}: not TOML ({exc})") from None
    parsed = parse_claims(data, base=p.parent)
    return dataclasses.replace(parsed, path=str(p))


def effective_thresholds(claim: Claim, claims_file: ClaimsFile, base: Thresholds) -> Thresholds:
    """The claim's thresholds: its own > the file's > `base` (the caller's, then defaults)."""
    return dataclasses.replace(base, **{**claims_file.thresholds, **claim.thresholds})
