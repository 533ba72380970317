"""polysemy: study superposition in toy models, real models held fixed, and sparse autoencoders.

The notebook API, one import away (`import polysemy as ps`):

    model = ps.load_model("minilm")                  # the bundled MiniLM, or any HF model
    corpus = ps.open_corpus("pydocs")                # built-in, local files, hf:NAME
    store = ps.harvest(model, corpus, site="encoder.layer.3.output", tokens=50_000,
                       out="acts/l3")                # -> ActivationStore
    run = ps.train_sae(store, arch="topk", expansion=4, k=16, tokens=500_000,
                       out="saes/l3")                # -> TrainResult; run.sae is the SAE
    result = ps.evaluate(run.sae, store, split="heldout")
    z = run.sae.encode(store.read(0, 8))             # [8, d_sae] feature activations

Also: `list_sites`, `ActivationStore`, `load_sae`, `SAEConfig`, `TrainConfig`, `synth`, and
the `toy` namespace (`ps.toy.train`, `ps.toy.reproduce`), and `analysis`, the evidence tools
(`ps.analysis.analyze_neurons`, `ps.analysis.ablate`, ... and their calibrations), and
`report` (`ps.report.write_report(RUN)`: an offline HTML + Markdown report of a run folder),
`explorer` (`ps.explorer.build_index(run)`, the index `polysemy explore` serves), `demo`,
the whole pipeline on MiniLM (`ps.demo.run_demo(ps.demo.preset("quick"))`), and `organism`
(`ps.organism.train_organism`: a small causal LM trained here, with snapshots).
docs/python.md walks through them.
Names are imported on first use, so `import polysemy` (and `polysemy --help`) stays fast.

Subpackages: `toy`, `synth`, `models`, `corpora`, `activations`, `sae`, `analysis`, `report`,
`explorer`, `demo`, `organism`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it (imported on first access, PEP 562)
_EXPORTS: dict[str, str] = {
    "load_model": "polysemy.models.loading",
    "list_sites": "polysemy.models.sites",
    "open_corpus": "polysemy.corpora.corpus",
    "harvest": "polysemy.api",
    "ActivationStore": "polysemy.activations.store",
    "train_sae": "polysemy.api",
    "load_sae": "polysemy.sae.io",
    "evaluate": "polysemy.analysis.reconstruction",
    "SAEConfig": "polysemy.sae.config",
    "TrainConfig": "polysemy.sae.config",
}
# `synth` is the subpackage, made callable (see polysemy/synth/__init__.py): a function of the
# same name would be replaced by the subpackage the first time anything imports it.
_SUBMODULES = ("toy", "synth", "analysis", "report", "explorer", "demo", "organism")

__all__ = [
    "ActivationStore",
    "SAEConfig",
    "TrainConfig",
    "__version__",
    "analysis",
    "demo",
    "evaluate",
    "explorer",
    "harvest",
    "list_sites",
    "load_model",
    "load_sae",
    "open_corpus",
    "organism",
    "report",
    "synth",
    "toy",
    "train_sae",
]

if TYPE_CHECKING:
    from polysemy import analysis, demo, explorer, organism, report, toy
    from polysemy.activations.store import ActivationStore
    from polysemy.analysis.reconstruction import evaluate
    from polysemy.api import harvest, synth, train_sae
    from polysemy.corpora.corpus import open_corpus
    from polysemy.models.loading import load_model
    from polysemy.models.sites import list_sites
    from polysemy.sae.config import SAEConfig, TrainConfig
    from polysemy.sae.io import load_sae


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"polysemy.{name}")
    else:
        raise AttributeError(f"module 'polysemy' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
