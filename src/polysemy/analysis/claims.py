"""Check claims ("neuron 1203 means negation") with a battery of tests and a calibrated verdict.

`check_claims` reads a claims file (`polysemy.analysis.claims_file`), runs every claim through
the battery (`polysemy.analysis.claims_battery`: detection held out and under template
shift, edits, ablation against random directions, a neuron's chorus) and gives each a verdict
with one plain sentence (`polysemy.analysis.claims_verdict`). All claims share one pass of
the model over the sentences, so twenty claims cost little more than one.

The sentences come from the `concepts` corpus: `sentences` of the train split (the first half
fits each claim's firing threshold and any probe direction, the second half is the i.i.d.
held-out set), `shifted` of the held-out split (template families never seen in fitting) and
the counterfactual twins of the first `edit_sentences` held-out sentences (or a twins file).

>>> result = check_claims("claims.toml", model="minilm",
...                       saes={"mlp": "runs/demo/saes/mlp"},
...                       neurons="runs/demo/analyses/neurons-mlp",
...                       out="runs/demo/analyses/claims")            # doctest: +SKIP
>>> [c.verdict for c in result.claims]                               # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from polysemy.analysis.claims_battery import (
    detection,
    edit_effects,
    neuron_chorus,
    pick_threshold,
    read_pooled,
)
from polysemy.analysis.claims_file import (
    Claim,
    ClaimsFile,
    Thresholds,
    check_unit,
    effective_thresholds,
    parse_claims,
    read_claims,
)
from polysemy.analysis.claims_verdict import (
    ClaimVerdict,
    Outcome,
    against,
    decide,
    edit_outcome,
    sentence,
)
from polysemy.analysis.folder import start_analysis, write_analysis
from polysemy.analysis.replay import check_sae_fits, resolve_site, sae_site
from polysemy.validation import ParameterError, check_int, configured

logger = logging.getLogger(__name__)

CLAIMS_FORMAT = "polysemy.claims/1"
MINILM_CLAIMS = Path(__file__).with_name("claims_minilm.toml")
"""The claims file shipped for MiniLM (package data)."""


@dataclass(frozen=True)
class ClaimsConfig:
    """The sentences the battery runs on, its sample sizes and the caller's thresholds."""

    sentences: int = 2000
    """Train-split sentences of the concepts corpus: half fit thresholds and probe directions,
    half are the i.i.d. held-out set."""
    shifted: int = 1000
    """Held-out-split sentences (unseen template families): the shifted set."""
    edit_sentences: int = 300
    """Held-out sentences whose counterfactual twins are the edits (without a twins file)."""
    twins: str | None = None
    """A JSON-lines file of {"text", "twin", "concept"} edits (the claims file's `twins` wins)."""
    top: int = 50
    """Strongest contexts per target whose share carrying the concept is its precision."""
    auroc: float = 0.8
    """Threshold of the held-out and shifted AUROC (the file's and the claim's win)."""
    precision: float = 0.8
    """Threshold of the strongest-context precision."""
    recall: float = 0.5
    """Threshold of the recall at the fitted firing threshold."""
    specificity: float = 0.75
    """Threshold of the share of other concepts whose edits leave the target alone."""
    dominance: float = 0.5
    """Threshold of a neuron's top feature share (with a neurons analysis)."""
    ablation_examples: int = 64
    """Held-out sentences each neuron or feature is ablated on (0: no ablation)."""
    random: int = 19
    """Random directions of the ablation null (19 is the least a 5% rank test can use)."""
    resamples: int = 1000
    """Bootstrap resamples per interval."""
    permutations: int = 1000
    """Label permutations of the edits' null."""
    seq_len: int = 64
    """Tokens per sentence, special tokens included."""
    batch_size: int = 64
    """Sentences per forward pass."""
    seed: int = 0
    """Seed of the sentences, bootstraps, permutations and random directions."""

    def __post_init__(self) -> None:
        check_int("sentences", self.sentences, least=40)
        check_int("shifted", self.shifted, least=20)
        check_int("edit_sentences", self.edit_sentences, least=10)
        if self.twins is not None and (not isinstance(self.twins, str) or not self.twins):
            raise ParameterError("twins", "a path to a JSON-lines file", self.twins)
        check_int("top", self.top, least=1)
        for name in ("auroc", "precision", "recall", "specificity", "dominance"):
            check_unit(name, getattr(self, name))
        check_int("ablation_examples", self.ablation_examples, least=0)
        if self.ablation_examples == 1:
            raise ParameterError("ablation_examples", "0 or an int >= 2", 1)
        check_int("random", self.random, least=2)
        check_int("resamples", self.resamples, least=100)
        check_int("permutations", self.permutations, least=100)
        check_int("seq_len", self.seq_len, least=3)
        check_int("batch_size", self.batch_size, least=1)
        check_int("seed", self.seed)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.auroc, self.precision, self.recall, self.specificity,
                          self.dominance)  # fmt: skip


@dataclass(frozen=True)
class ClaimResult:
    """One claim's verdict, its evidence and its sentence."""

    claim: dict[str, Any]
    """The claim as written."""
    verdict: ClaimVerdict
    evidence: dict[str, Any]
    """Every figure with its interval and sample size, the thresholds and the tests'
    outcomes."""
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "verdict": self.verdict, "evidence": self.evidence,
                "sentence": self.sentence}  # fmt: skip


@dataclass(frozen=True)
class ClaimsResult:
    """The verdicts of a claims file, in its order."""

    claims: tuple[ClaimResult, ...]
    path: str | None = None
    """The claims analysis folder written, if any."""
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    """Wall time of each stage: `forward` (the one pass over every text), `tests` (detection
    and edits, all claims) and `ablation` (all claims)."""

    def counts(self) -> dict[str, int]:
        kinds = ("supported", "partial", "refuted", "inconclusive")
        return {v: sum(c.verdict == v for c in self.claims) for v in kinds}

    def to_dict(self) -> dict[str, Any]:
        """claims.json and the CLI's `--json`: `{"claims": [{claim, verdict, evidence,
        sentence}]}`."""
        return {"claims": [c.to_dict() for c in self.claims]}


# ---- inputs ---------------------------------------------------------------------------------


def _claims_file(claims: Any) -> ClaimsFile:
    if isinstance(claims, ClaimsFile):
        return claims
    if isinstance(claims, Mapping):
        return parse_claims(dict(claims))
    return read_claims(claims)


def _load_sae(claim: Claim, where: str, saes: Mapping[str, Any], base: Path | None) -> Any:
    """The claim's SAE (from `saes` by name, else a checkpoint path relative to the claims
    file); None when neither exists (the claim is then not tested)."""
    from polysemy.sae import load_sae

    assert claim.sae is not None
    given = saes.get(claim.sae)
    if given is None:
        path = Path(claim.sae)
        if base is not None and not path.is_absolute():
            path = base / path
        if not (path / "config.json").is_file():
            return None
        given = path
    if isinstance(given, str | os.PathLike):
        if not Path(given).exists():
            raise FileNotFoundError(f"saes[{claim.sae!r}] {str(given)!r} does not exist")
        sae = load_sae(given)
        if sae.metadata is not None:
            sae.metadata.setdefault("path", str(given))
        given = sae
    d_sae = int(given.W_dec.shape[0])
    if claim.index is None or claim.index >= d_sae:
        raise ParameterError(f"{where}.feature", f"a feature below d_sae={d_sae}", claim.index)
    if hasattr(given, "eval"):
        given.eval()
    return given


@dataclass
class _Plan:
    """A claim resolved against the model: its site, SAE and (loaded) direction."""

    claim: Claim
    thresholds: Thresholds
    site: str | None = None
    sae: Any = None
    vector: torch.Tensor | None = None
    skipped: str | None = None


def _plan(
    cf: ClaimsFile, loaded: Any, saes: Mapping[str, Any], config: ClaimsConfig
) -> list[_Plan]:
    from polysemy.analysis.edits import load_direction

    base = Path(cf.path).parent if cf.path else None
    plans = []
    for i, claim in enumerate(cf.claims):
        where = f"claim[{i}]"
        plan = _Plan(claim, effective_thresholds(claim, cf, config.thresholds))
        if claim.kind == "feature":
            sae = _load_sae(claim, where, saes, base)
            if sae is None:
                plan.skipped = f"no SAE {claim.sae!r} was given"
                plans.append(plan)
                continue
            plan.sae = sae
            site = resolve_site(loaded, sae_site(sae, claim.site))
            check_sae_fits(sae, site)
        else:
            site = _site(loaded, claim.site, where)
            if claim.kind == "neuron" and claim.index is not None and claim.index >= site.width:
                raise ParameterError(
                    f"{where}.neuron", f"a neuron below the site's width {site.width}",
                    claim.index,
                )  # fmt: skip
            if claim.kind == "direction" and claim.direction is not None:
                from polysemy.corpora.concepts import CONCEPTS

                if claim.direction not in CONCEPTS:
                    try:
                        vector = load_direction(claim.direction).reshape(-1)
                    except ParameterError as exc:
                        raise ParameterError(f"{where}.direction", exc.expected, exc.got) from None
                    if vector.numel() != site.width or float(vector.norm()) == 0:
                        raise ParameterError(
                            f"{where}.direction",
                            f"a non-zero vector of {site.width} numbers",
                            f"{vector.numel()} numbers",
                        )
                    plan.vector = vector.double()
        plan.site = site.name
        plans.append(plan)
    return plans


def _site(loaded: Any, name: str | None, where: str) -> Any:
    try:
        return resolve_site(loaded, name)
    except (ValueError, KeyError) as exc:
        raise ParameterError(f"{where}.site", "a site of the model", name) from exc


# ---- the check ------------------------------------------------------------------------------


def _labels(sentences: list[Any], concept: str, value: str | None) -> torch.Tensor:
    from polysemy.analysis.probe_data import positive_value

    want = positive_value(concept, value)
    got = [s.labels.get(concept) for s in sentences]
    return torch.tensor([(v is not None) if want is None else v == want for v in got])


def check_claims(
    claims: Any,
    config: ClaimsConfig | None = None,
    *,
    model: Any = "minilm",
    saes: Mapping[str, Any] | None = None,
    neurons: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    device: Any = "cpu",
    **options: Any,
) -> ClaimsResult:
    """Check every claim of `claims` (a claims file path, its parsed dict or a `ClaimsFile`)
    on `model` (a name for `load_model`, or a `LoadedModel`). `saes` maps the SAE names the
    file uses to checkpoint folders (or loaded SAEs); a feature claim whose SAE is neither
    given nor a checkpoint path relative to the file is not tested (`inconclusive`, saying
    why). `neurons` is a neurons analysis folder: a neuron claim at its site gets its chorus.
    With `out`, writes a `claims` analysis folder (claims.json). Mistakes in the file or the
    arguments raise ValueError naming the parameter before anything is written."""
    from polysemy.analysis.edits import EditPair, read_twins
    from polysemy.corpora.concepts import generate_concepts
    from polysemy.models.loading import LoadedModel

    config = configured(ClaimsConfig, config, options)
    cf = _claims_file(claims)
    if isinstance(model, LoadedModel):
        loaded = model
    else:
        from polysemy.models import load_model

        loaded = load_model(model, device=device)
    plans = _plan(cf, loaded, saes or {}, config)
    twins = cf.twins or config.twins
    pairs = read_twins(twins) if twins is not None else None
    if neurons is not None and not Path(neurons).is_dir():
        raise FileNotFoundError(f"neurons {str(neurons)!r} does not exist")
    if out is not None:
        start_analysis(out, force=force)

    train = generate_concepts(config.sentences, seed=config.seed, split="train")
    fit, heldout = train[: config.sentences // 2], train[config.sentences // 2 :]
    shifted = generate_concepts(config.shifted, seed=config.seed, split="heldout")
    if pairs is None:  # the twins of the first held-out sentences
        pairs = [EditPair(s.text, t.text, t.concept, s.index)
                 for s in heldout[: config.edit_sentences] for t in s.twins]  # fmt: skip
    edit_labels = [p.concept for p in pairs]
    texts = list(dict.fromkeys(
        [s.text for s in fit + heldout + shifted] + [t for p in pairs for t in (p.text, p.twin)]
    ))  # fmt: skip
    index = {t: i for i, t in enumerate(texts)}
    rows = {
        "fit": torch.tensor([index[s.text] for s in fit]),
        "heldout": torch.tensor([index[s.text] for s in heldout]),
        "shifted": torch.tensor([index[s.text] for s in shifted]),
    }
    pair_a = torch.tensor([index[p.text] for p in pairs])
    pair_b = torch.tensor([index[p.twin] for p in pairs])

    # One pass: every site's pooled activations, each SAE's requested features, and the last
    # layer (the ablation's concept readout) when any neuron or feature is ablated.
    sites: dict[str, list[tuple[Any, list[int]]]] = {}
    for plan in plans:
        if plan.site is None:
            continue
        sites.setdefault(plan.site, [])
        if plan.sae is not None:
            entry = next((e for e in sites[plan.site] if e[0] is plan.sae), None)
            if entry is None:
                entry = (plan.sae, [])
                sites[plan.site].append(entry)
            if plan.claim.index not in entry[1]:
                entry[1].append(int(plan.claim.index or 0))
    ablating = config.ablation_examples > 0 and any(
        p.site is not None and p.claim.kind != "direction" for p in plans
    )
    last = _last_layer(loaded) if ablating else None
    if last is not None:
        sites.setdefault(last, [])
    clock = time.perf_counter()
    pooled = read_pooled(loaded, sites, texts, seq_len=config.seq_len,
                         batch_size=config.batch_size) if sites else {}  # fmt: skip

    seconds = {"forward": time.perf_counter() - clock, "tests": 0.0, "ablation": 0.0}
    results = []
    for i, plan in enumerate(plans):
        clock = time.perf_counter()
        claim = plan.claim
        seed = config.seed + 1009 * i
        evidence: dict[str, Any] = {"target": claim.target, "site": plan.site,
                                    "thresholds": asdict(plan.thresholds)}  # fmt: skip
        if plan.skipped is not None or plan.site is None:
            evidence["skipped"] = plan.skipped
            verdict: ClaimVerdict = "inconclusive"
            results.append(ClaimResult(claim.raw, verdict, evidence,
                                       sentence(claim, verdict, evidence)))  # fmt: skip
            continue
        p = pooled[plan.site]
        y = {name: _labels(s, claim.concept, claim.value)
             for name, s in (("fit", fit), ("heldout", heldout), ("shifted", shifted))}  # fmt: skip
        if claim.kind == "neuron":
            values = p.max[:, int(claim.index or 0)].double()
        elif claim.kind == "feature":
            column = sites[plan.site]
            entry = next(e for e in column if e[0] is plan.sae)
            values = p.features[id(plan.sae)][:, entry[1].index(int(claim.index or 0))].double()
        else:
            direction = plan.vector
            if direction is None:  # fit a probe for the named concept on the fitting half
                assert claim.direction is not None
                y_dir = _labels(fit, claim.direction, None)
                direction = probe_direction(p.mean[rows["fit"]], y_dir)
                evidence["probe"] = {"concept": claim.direction, "fitted_on": len(fit)}
            values = p.mean.double() @ (direction / direction.norm())
        threshold = pick_threshold(values[rows["fit"]], y["fit"])
        held = detection(values[rows["heldout"]], y["heldout"], threshold, top=config.top,
                         resamples=config.resamples, seed=seed)  # fmt: skip
        shift = detection(values[rows["shifted"]], y["shifted"], threshold, top=config.top,
                          resamples=config.resamples, seed=seed + 1)  # fmt: skip
        evidence["heldout"] = held.to_dict()
        evidence["shifted"] = shift.to_dict()
        evidence["auroc_gap"] = held.auroc.estimate - shift.auroc.estimate

        edits = None
        if edit_labels.count(claim.concept) >= 2 and edit_labels.count(None) >= 4:
            delta = values[pair_b] - values[pair_a]  # (pairs,)
            active = (values[pair_a] > 0) | (values[pair_b] > 0)
            edits = edit_effects(claim.target, delta, active, edit_labels, claim.concept,
                                 resamples=config.resamples, permutations=config.permutations,
                                 seed=seed)  # fmt: skip
            evidence["edits"] = edits.to_dict()
        else:
            evidence["edits"] = None
        if ablating and claim.kind != "direction":
            seconds["tests"] += time.perf_counter() - clock
            clock = time.perf_counter()
            evidence["ablation"] = _ablation(loaded, plan, pooled, last, rows, fit, heldout,
                                             config, seed)  # fmt: skip
            seconds["ablation"] += time.perf_counter() - clock
            clock = time.perf_counter()
        chorus = None
        if claim.kind == "neuron" and neurons is not None:
            chorus = neuron_chorus(neurons, int(claim.index or 0))
            if chorus is not None and chorus.get("site") not in (None, plan.site):
                chorus = None  # the analysis is of another site
        evidence["chorus"] = chorus

        t = plan.thresholds
        core: dict[str, Outcome] = {
            "heldout_auroc": against(held.auroc, t.auroc),
            "edit_sensitivity": "undecided" if edits is None
            else edit_outcome(edits.sensitivity.verdict),
        }  # fmt: skip
        secondary: dict[str, Outcome] = {
            "shifted_auroc": against(shift.auroc, t.auroc),
            "precision": against(held.top_precision, t.precision),
            "recall": against(held.recall, t.recall),
        }
        if edits is not None and edits.specificity is not None:
            secondary["specificity"] = "pass" if edits.specificity >= t.specificity else "fail"
        if chorus is not None:
            secondary["dominance"] = "pass" if chorus["top_share"] >= t.dominance else "fail"
        evidence["tests"] = {"core": core, "secondary": secondary}
        verdict = decide(core, secondary)
        seconds["tests"] += time.perf_counter() - clock
        results.append(ClaimResult(claim.raw, verdict, evidence,
                                   sentence(claim, verdict, evidence)))  # fmt: skip

    result = ClaimsResult(tuple(results), seconds={k: round(v, 3) for k, v in seconds.items()})
    if out is not None:
        inputs = {
            "model": getattr(loaded, "name", None),
            "claims_file": cf.path,
            "saes": {k: str(v) for k, v in (saes or {}).items() if isinstance(v, str | Path)},
            "neurons": None if neurons is None else str(neurons),
            "edits": twins or f"concepts:train:{config.edit_sentences} twins",
            "config": asdict(config),
        }
        summary = {
            "format": CLAIMS_FORMAT,
            "counts": result.counts(),
            "seconds": result.seconds,
            "claims": [{"target": c.evidence["target"], "concept": c.claim.get("concept"),
                        "verdict": c.verdict, "sentence": c.sentence} for c in results],
        }  # fmt: skip
        write_analysis(out, "claims", inputs=inputs, summary=summary,
                       files={"claims.json": result.to_dict()})  # fmt: skip
        result = dataclasses.replace(result, path=str(out))
    return result


def probe_direction(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`[width]` weights of a logistic probe of `y` on `x [rows, width]` (columns constant up
    to rounding get weight 0: `LogisticProbe` sees to it)."""
    from polysemy.analysis.logistic import LogisticProbe

    return LogisticProbe().fit(x.double(), y).coef_.double()


def _last_layer(loaded: Any) -> str:
    from polysemy.analysis.ablation_calibration import _layer_outputs

    return _layer_outputs(loaded)[-1]


def _ablation(
    loaded: Any,
    plan: _Plan,
    pooled: Any,
    last: str | None,
    rows: dict[str, torch.Tensor],
    fit: list[Any],
    heldout: list[Any],
    config: ClaimsConfig,
    seed: int,
) -> dict[str, Any] | None:
    """Ablate the claim's neuron or feature on held-out sentences; the effect is read on a
    probe of the concept fitted at the last layer (mean-pooled) on the fitting sentences."""
    from polysemy.analysis.ablation import ablate

    assert last is not None
    claim = plan.claim
    y = _labels(fit, claim.concept, claim.value)
    if bool(y.all()) or not bool(y.any()):
        return None
    readout = probe_direction(pooled[last].mean[rows["fit"]], y)
    n = min(config.ablation_examples, len(heldout))
    result = ablate(
        loaded, [s.text for s in heldout[:n]], sae=plan.sae, site=plan.site,
        targets=(claim.target,), readout_direction=readout, examples=n, random=config.random,
        seq_len=config.seq_len, seed=seed,
    )  # fmt: skip
    summary = result.results[0].to_dict()
    summary["readout"] = f"probe of {claim.concept} at {last} (mean-pooled)"
    summary["n"] = result.n
    return summary
