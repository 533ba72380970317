"""The stages of the demo, one function each, in the order `STAGES` lists them.

Each stage reads what earlier stages wrote into the run folder, writes its own output
atomically (a store, an SAE checkpoint or an analysis folder), and returns the few figures
that demo.json records beside its seconds. A stage that is re-run (because the demo was
killed before it was marked done) replaces its output or, for harvesting and SAE training,
continues it from where it stopped.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

from polysemy.demo.config import DemoConfig

logger = logging.getLogger(__name__)

SITES = ("mlp", "resid", "attn")
"""Store and SAE names: the MLP neurons (privileged basis), the residual stream, and the next
layer's attention output (the circuits' downstream end)."""
CONCEPTS_PER_DOCUMENT = 4
"""Concept sentences mixed in after each document of the harvest corpus."""


@dataclass
class StageContext:
    """What every stage needs: the config, the run folder, and the model loaded once."""

    config: DemoConfig
    run: Path
    device: torch.device | str = "cpu"
    progress: bool = True
    _loaded: Any = field(default=None, repr=False)

    @property
    def loaded(self) -> Any:
        """The model, loaded on first use (a resumed demo that only writes the report never
        loads it)."""
        if self._loaded is None:
            from polysemy.models import load_model

            self._loaded = load_model(self.config.model, device=self.device)
        return self._loaded

    def store(self, name: str) -> Path:
        return self.run / "stores" / name

    def sae_path(self, name: str) -> Path:
        return self.run / "saes" / name

    def analysis(self, kind: str, name: str) -> Path:
        return self.run / "analyses" / f"{kind}-{name}"

    def site(self, name: str) -> str:
        c = self.config
        return {"mlp": c.mlp_site, "resid": c.resid_site, "attn": c.attn_site}[name]

    def load_sae(self, name: str) -> Any:
        from polysemy.sae import load_sae

        path = self.sae_path(name)
        sae = load_sae(path, device=self.device)
        if sae.metadata is not None:  # analyses record where their SAE came from
            sae.metadata.setdefault("path", str(path))
        return sae

    def open_store(self, name: str) -> Any:
        from polysemy.activations.store import ActivationStore

        return ActivationStore(self.store(name))

    def heldout(self, n: int) -> Any:
        """`n` held-out concept sentences (never harvested): the text of fidelity and
        ablation."""
        from polysemy.corpora import open_corpus

        return open_corpus(f"concepts:heldout:{n}", seed=self.config.seed)


def harvest_corpus(config: DemoConfig) -> Any:
    """`config.corpus` with `CONCEPTS_PER_DOCUMENT` concept sentences after each document
    (until `config.concepts` are used), so the dictionaries also see the concepts the claims
    battery asks about."""
    from polysemy.corpora import open_corpus
    from polysemy.corpora.corpus import Corpus

    base = open_corpus(config.corpus, seed=config.seed)
    if config.concepts == 0:
        return base
    concepts = open_corpus(f"concepts:train:{config.concepts}", seed=config.seed)

    def documents() -> Iterator[str]:
        sentences = iter(concepts)
        for document in base:
            yield document
            yield from itertools.islice(sentences, CONCEPTS_PER_DOCUMENT)
        yield from sentences

    name = f"{base.name}+{concepts.name} ({CONCEPTS_PER_DOCUMENT} after each document)"
    return Corpus(name, documents)


# ---- the stages -------------------------------------------------------------------------


def harvest(ctx: StageContext) -> dict[str, Any]:
    """Both sites of the layer and the next layer's attention output in one pass over the
    corpus into stores/mlp, stores/resid and stores/attn (a killed harvest resumes)."""
    from polysemy.activations.harvest import HarvestConfig
    from polysemy.activations.harvest import harvest as harvest_sites

    c = ctx.config
    paths = {ctx.site(name): ctx.store(name) for name in SITES}
    config = HarvestConfig(
        sites=tuple(paths), tokens=c.tokens, seq_len=c.seq_len, batch_size=c.harvest_batch_size
    )
    result = harvest_sites(
        ctx.loaded, harvest_corpus(c), config, out=paths, resume=True, progress=ctx.progress
    )
    return {"rows": int(result.rows), "documents": int(result.documents)}


def _train(ctx: StageContext, name: str, expansion: int, seed: int = 0) -> dict[str, Any]:
    from polysemy.api import train_sae

    c = ctx.config
    result = train_sae(
        ctx.store(name),
        out=ctx.sae_path(name),
        arch="topk",
        k=c.k,
        expansion=expansion,
        tokens=c.sae_tokens,
        batch_size=c.sae_batch_size,
        checkpoint_every=c.checkpoint_every,
        seed=c.seed + seed,
        resume=True,
        device=ctx.device,
        progress=ctx.progress,
    )
    s = result.summary()
    keys = ("d_sae", "k", "steps", "fvu", "l0", "dead_fraction", "evaluated_on")
    return {key: s[key] for key in keys} | {"resumed_from_step": result.resumed_from_step}


def sae_mlp(ctx: StageContext) -> dict[str, Any]:
    """A TopK SAE on the MLP neurons (saes/mlp; resumes from its state/)."""
    return _train(ctx, "mlp", ctx.config.mlp_expansion)


def sae_resid(ctx: StageContext) -> dict[str, Any]:
    """A TopK SAE on the residual stream (saes/resid; resumes from its state/)."""
    return _train(ctx, "resid", ctx.config.resid_expansion)


def sae_attn(ctx: StageContext) -> dict[str, Any]:
    """A TopK SAE on the next layer's attention output (saes/attn), the circuits' downstream
    dictionary."""
    # Another seed than the residual SAE upstream: two SAEs started from the same random
    # directions keep part of that start after a short run, and the residual stream between
    # the sites turns it into strong a == b edges that say nothing about the model.
    return _train(ctx, "attn", ctx.config.resid_expansion, seed=1)


def _fidelity(ctx: StageContext, name: str) -> dict[str, Any]:
    from polysemy.analysis.fidelity import FidelityConfig, analyze_fidelity

    c = ctx.config
    config = FidelityConfig(
        examples=c.fidelity_examples,
        seq_len=c.seq_len,
        similarity_sentences=min(200, c.fidelity_examples),
        resamples=c.resamples,
        seed=c.seed,
    )
    out = ctx.analysis("fidelity", name)
    result = analyze_fidelity(
        ctx.loaded,
        ctx.load_sae(name),
        ctx.heldout(c.fidelity_examples),
        config,
        out=out,
        force=True,
        progress=ctx.progress,
    )
    s = result.summary()
    return {"out": str(out), "fvu": s.get("fvu"), "embedding_cosine": s.get("embedding_cosine")}


def fidelity_mlp(ctx: StageContext) -> dict[str, Any]:
    """The MLP SAE spliced into the model: how much of the output it keeps."""
    return _fidelity(ctx, "mlp")


def fidelity_resid(ctx: StageContext) -> dict[str, Any]:
    """The residual-stream SAE spliced into the model."""
    return _fidelity(ctx, "resid")


def neurons_mlp(ctx: StageContext) -> dict[str, Any]:
    """Each MLP neuron as a chorus of SAE features, against a randomly rotated basis."""
    from polysemy.analysis.neurons import NeuronsConfig, analyze_neurons

    c = ctx.config
    out = ctx.analysis("neurons", "mlp")
    result = analyze_neurons(
        ctx.load_sae("mlp"),
        ctx.open_store("mlp"),
        NeuronsConfig(rows=c.analysis_rows, resamples=max(c.resamples, 100)),
        out=out,
        force=True,
        device=ctx.device,
        seed=c.seed,
        progress=ctx.progress,
    )
    eff = result.effective_features_median
    return {
        "out": str(out),
        "effective_features_median": [eff.estimate, eff.low, eff.high],
        "baseline_effective_features_median": result.baseline_effective_features_median.estimate,
        "verdict": result.verdict,
    }


def _features(ctx: StageContext, name: str) -> dict[str, Any]:
    from polysemy.analysis.features import FeaturesConfig, analyze_features

    c = ctx.config
    out = ctx.analysis("features", name)
    config = FeaturesConfig(rows=c.analysis_rows, cooccurrence_rows=c.analysis_rows)
    result = analyze_features(
        ctx.load_sae(name),
        ctx.open_store(name),
        config,
        out=out,
        force=True,
        device=ctx.device,
        seed=c.seed,
        progress=ctx.progress,
    )
    s = result.summary()
    return {"out": str(out), "n_features": s["n_features"], "dead_fraction": s["dead_fraction"]}


def features_mlp(ctx: StageContext) -> dict[str, Any]:
    """Feature dashboards of the MLP SAE: examples, densities, neighbours, partners."""
    return _features(ctx, "mlp")


def features_resid(ctx: StageContext) -> dict[str, Any]:
    """Feature dashboards of the residual-stream SAE."""
    return _features(ctx, "resid")


def features_attn(ctx: StageContext) -> dict[str, Any]:
    """Feature dashboards of the attention-output SAE (the circuit graph's feature links)."""
    return _features(ctx, "attn")


def _geometry(ctx: StageContext, name: str) -> dict[str, Any]:
    from polysemy.analysis.geometry import GeometryConfig, analyze_geometry

    c = ctx.config
    out = ctx.analysis("geometry", name)
    config = GeometryConfig(
        max_rows=c.analysis_rows,
        resamples=c.resamples,
        permutations=c.resamples,
        min_count=c.geometry_min_count,
        interference_pairs=c.interference_pairs,
        top_features=c.geometry_features,
    )
    result = analyze_geometry(
        ctx.load_sae(name),
        ctx.open_store(name),
        config,
        out=out,
        force=True,
        seed=c.seed,
        device=ctx.device,
        progress=ctx.progress,
        inputs={"sae_path": str(ctx.sae_path(name)), "acts": str(ctx.store(name))},
    )
    return {
        "out": str(out),
        "dimensionality_mean": result.dimensionality_mean.estimate,
        "cooccurrence_verdict": result.cooccurrence.verdict,
    }


def geometry_mlp(ctx: StageContext) -> dict[str, Any]:
    """Interference and overlap vs co-occurrence of the MLP SAE's decoder rows."""
    return _geometry(ctx, "mlp")


def geometry_resid(ctx: StageContext) -> dict[str, Any]:
    """The same for the residual-stream SAE."""
    return _geometry(ctx, "resid")


def ablation_targets(sae: Any, store: Any, n_features: int, rows: int) -> tuple[str, ...]:
    """The `n_features` features with the largest mean activation on the first `rows` rows
    of `store`, and the neuron with the largest mean |activation|: what the ablation stage
    tests (the most used parts, so their effects are the ones a reader cares about)."""
    x = store.read(0, min(rows, store.rows)).float()  # [rows, d_in]
    with torch.no_grad():
        z = sae.encode(x.to(next(sae.parameters()).device)).float().cpu()  # [rows, d_sae]
    features = torch.topk(z.mean(0), k=min(n_features, z.shape[1])).indices.tolist()
    neuron = int(x.abs().mean(0).argmax())
    return (*(f"feature:{f}" for f in features), f"neuron:{neuron}")


def ablate_mlp(ctx: StageContext) -> dict[str, Any]:
    """Ablate the most active MLP features and the most active neuron, each against random
    directions of its own norm."""
    from polysemy.analysis.ablation import AblateConfig, ablate

    c = ctx.config
    sae = ctx.load_sae("mlp")
    targets = ablation_targets(sae, ctx.open_store("mlp"), c.ablate_features, 4096)
    config = AblateConfig(
        targets=targets,
        random=c.ablate_random,
        examples=c.ablate_examples,
        seq_len=c.seq_len,
        seed=c.seed,
    )
    out = ctx.analysis("ablate", "mlp")
    result = ablate(
        ctx.loaded,
        ctx.heldout(c.ablate_examples),
        config,
        sae=sae,
        out=out,
        force=True,
        progress=ctx.progress,
    )
    # the summary also lists a few of the random directions as targets: record ours only
    verdicts = {
        r["target"]: r["verdict"] for r in result.summary()["results"] if r["target"] in targets
    }
    return {"out": str(out), "verdicts": verdicts}


def circuits(ctx: StageContext) -> dict[str, Any]:
    """Edges from the residual SAE's features into the attention-output SAE's (factored path)
    on held-out concept sentences, with braids and the strongest edges ablated."""
    from polysemy.analysis.circuits import CircuitsConfig, analyze_circuits

    c = ctx.config
    config = CircuitsConfig(
        examples=c.circuits_examples,
        seq_len=c.circuits_seq_len,
        top=c.circuits_top,
        resamples=c.resamples,
        seed=c.seed,
        method="factored",
        ablate=c.circuits_ablate,
        ablate_random=c.ablate_random,
    )
    out = ctx.analysis("circuits", "resid-attn")
    # One torch thread: the analysis is many small ops (braids per edge and shuffle, ablation
    # replays of one block), where two threads on the 2-core machine under load spent ~25x
    # the CPU time in synchronisation (the --quick stage: 145 s against 15 s on one thread).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = analyze_circuits(
            ctx.loaded,
            ctx.load_sae("resid"),
            ctx.load_sae("attn"),
            ctx.heldout(c.circuits_examples),
            config,
            out=out,
            force=True,
            progress=ctx.progress,
        )
    finally:
        torch.set_num_threads(threads)
    s = result.summary()
    info: dict[str, Any] = {
        "out": str(out),
        "edges": len(result.edges),
        "effects": sum(e["verdict"] == "effect" for e in result.edges),
        "braided_fraction": s["braids"].get("braided_fraction"),
    }
    if result.ablation is not None:
        info["ablated"] = [e.get("verdict") for e in result.ablation.get("edges", [])]
    return info


def claims(ctx: StageContext) -> dict[str, Any]:
    """The shipped MiniLM claims battery, each claim with a verdict and its evidence."""
    from polysemy.analysis.claims import ClaimsConfig, check_claims

    c = ctx.config
    config = ClaimsConfig(
        sentences=c.claims_sentences,
        shifted=c.claims_shifted,
        edit_sentences=c.claims_edit_sentences,
        ablation_examples=c.claims_ablation_examples,
        resamples=c.resamples,
        permutations=c.resamples,
        seed=c.seed,
    )
    out = ctx.analysis("claims", "minilm")
    result = check_claims(
        files("polysemy.analysis") / "claims_minilm.toml",
        config,
        model=ctx.loaded,
        saes={"mlp": ctx.sae_path("mlp"), "resid": ctx.sae_path("resid")},
        neurons=ctx.analysis("neurons", "mlp"),
        out=out,
        force=True,
    )
    return {"out": str(out), "verdicts": result.counts()}


def report(ctx: StageContext) -> dict[str, Any]:
    """The offline HTML (and Markdown) report of everything in the run folder."""
    from polysemy.report import write_report

    write_report(ctx.run)
    return {"out": str(ctx.run / "report" / "index.html")}


def explorer(ctx: StageContext) -> dict[str, Any]:
    """Everything the explorer serves, precomputed into explorer/."""
    from polysemy.explorer import build_index

    build_index(ctx.run)
    return {"out": str(ctx.run / "explorer")}


Stage = Callable[[StageContext], dict[str, Any]]

STAGES: tuple[tuple[str, Stage], ...] = (
    ("harvest", harvest),
    ("sae-mlp", sae_mlp),
    ("sae-resid", sae_resid),
    ("sae-attn", sae_attn),
    ("fidelity-mlp", fidelity_mlp),
    ("fidelity-resid", fidelity_resid),
    ("neurons-mlp", neurons_mlp),
    ("features-mlp", features_mlp),
    ("features-resid", features_resid),
    ("features-attn", features_attn),
    ("geometry-mlp", geometry_mlp),
    ("geometry-resid", geometry_resid),
    ("ablate-mlp", ablate_mlp),
    ("circuits", circuits),
    ("claims", claims),
    ("report", report),
    ("explorer", explorer),
)
"""Every stage, in the order it runs (each needs only stages before it)."""
