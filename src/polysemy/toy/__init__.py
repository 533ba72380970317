"""Toy models of superposition (Elhage et al. 2022), trained many at once and fast.

A `ToyConfig` describes a sweep: one model kind, sizes, and one instance per sparsity value
(each with its own importance row). `train_toy` trains every instance (times `best_of` seeds,
keeping the lowest-loss seed) in one batched tensor with a hand-derived backward and returns
a `ToyRun`; `polysemy.toy.metrics` measures its geometry; `save_toy_run` / `load_toy_run`
write and read the `result.json` + `weights.safetensors` run folder.

>>> from polysemy.toy import ToyConfig, train_toy, metrics
>>> cfg = ToyConfig.sweep("relu-output", 20, 5, [0.0, 0.9, 0.99], decay=0.7, steps=200)
>>> run = train_toy(cfg)                                   # doctest: +SKIP
>>> metrics.represented_count(run.W)                       # doctest: +SKIP
tensor([5, 9, 12])

Whole runs that write a folder, with every default in a frozen config (`polysemy.toy.runs`):
`train` (a sweep, what `polysemy toy train` does), `phase` (an empirical phase grid) and
`reproduce` (the paper's figures, `polysemy.toy.experiments`); their config fields may be
given as keywords:

>>> import polysemy as ps
>>> run = ps.toy.train(out="runs/x", n_features=20, n_hidden=5, sparsity=[0, 0.9])  # doctest: +SKIP

Model kinds: `linear`, `relu-output`, `relu-hidden`, `abs` (see `polysemy.toy.model`).
Data: `sample_features` (see `polysemy.toy.data` for correlated / anti-correlated pairs).
"""

from polysemy.toy import metrics
from polysemy.toy.data import sample_features
from polysemy.toy.model import (
    ModelKind,
    ToyConfig,
    ToyParams,
    importance_decay,
    toy_forward,
    toy_loss,
)
from polysemy.toy.result import load_toy_run, save_toy_run, summarize
from polysemy.toy.runs import (
    PhaseConfig,
    ReproduceConfig,
    Reproduction,
    ToySweepConfig,
    phase,
    reproduce,
    train,
)
from polysemy.toy.trainer import ToyRun, evaluate_loss, train_toy

__all__ = [
    "ModelKind",
    "PhaseConfig",
    "ReproduceConfig",
    "Reproduction",
    "ToyConfig",
    "ToyParams",
    "ToyRun",
    "ToySweepConfig",
    "evaluate_loss",
    "importance_decay",
    "load_toy_run",
    "metrics",
    "phase",
    "reproduce",
    "sample_features",
    "save_toy_run",
    "summarize",
    "toy_forward",
    "toy_loss",
    "train",
    "train_toy",
]
