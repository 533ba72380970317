"""Model organisms: small causal language models trained here, with their history kept.

A one-layer GPT-2 (transformers' own classes) trained on a local corpus with a tokenizer
learned from that corpus, saving log-spaced snapshots as ordinary Hugging Face folders, so
every tool that takes a model (sites, harvest, fidelity, ablation) works on each snapshot,
and analyses can follow a neuron across training:

>>> import polysemy as ps
>>> run = ps.organism.train_organism(out="runs/organism", quick=True)  # doctest: +SKIP
>>> model = ps.load_model(run.snapshots[-1])                            # doctest: +SKIP

docs/organism.md describes the run folder, the defaults and what a 10-minute run reaches.
"""

from __future__ import annotations

from polysemy.organism.config import OrganismConfig
from polysemy.organism.train import OrganismRun, load_organism, snapshot_steps, train_organism

__all__ = ["OrganismConfig", "OrganismRun", "load_organism", "snapshot_steps", "train_organism"]
