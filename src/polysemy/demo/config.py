"""What `polysemy demo` runs and with what budgets: one frozen `DemoConfig`, three presets.

Budgets measured on 2 CPU cores (docs/demo.md, every stage): `full` about 530 CPU-seconds
(4.5 minutes idle before the circuits stage added ~70; 10 minutes wall under load with it),
`quick` about 125 CPU-seconds (1.3 minutes), `tiny` seconds (tests).

>>> preset("quick").tokens < preset("full").tokens
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from polysemy.validation import ParameterError, check_choice, check_int

PresetName = Literal["full", "quick", "tiny"]
PRESETS: tuple[PresetName, ...] = ("full", "quick", "tiny")

MLP_SITE = "encoder.layer.{layer}.intermediate.intermediate_act_fn.output"
"""The MLP neurons of a BERT-style layer (after the GELU): a privileged basis."""
RESID_SITE = "encoder.layer.{layer}.output"
"""The residual stream after a BERT-style layer: no privileged basis."""
ATTN_SITE = "encoder.layer.{layer}.intermediate.input"
"""The next layer's attention block output (after its LayerNorm, where its MLP reads): one
attention block past `RESID_SITE`, the site pair the circuits' factored path covers."""


@dataclass(frozen=True)
class DemoConfig:
    """The demo's model, data and budgets (defaults: the full demo)."""

    model: str = "minilm"
    """Model to unpack: the bundled minilm, or a BERT-style model name or folder."""
    layer: int = 3
    """Layer whose MLP neurons and residual stream are harvested; the next layer's attention
    output is the circuits' downstream end, so the model's last layer is refused (before
    anything is written)."""
    corpus: str = "pydocs"
    """Text to harvest (a spec for open_corpus); concept sentences are mixed in."""
    concepts: int = 10_000
    """Generated concept sentences mixed into the harvest corpus, 4 after each document
    (0: none)."""
    tokens: int = 120_000
    """Rows harvested per site (text tokens)."""
    seq_len: int = 128
    """Tokens per harvested sequence, special tokens included."""
    harvest_batch_size: int = 32
    """Sequences per forward pass while harvesting."""
    k: int = 32
    """Active latents per row of both TopK SAEs."""
    mlp_expansion: int = 4
    """Dictionary size of the MLP SAE, in multiples of the 1536 neurons."""
    resid_expansion: int = 8
    """Dictionary size of the residual-stream SAE and of the attention-output SAE (the
    circuits' two ends), in multiples of their 384 dimensions."""
    sae_tokens: int = 480_000
    """Training rows per SAE (the store is passed over again when it holds fewer)."""
    sae_batch_size: int = 1024
    """Rows per SAE training step."""
    checkpoint_every: int = 50
    """SAE steps between resumable training states (a killed demo resumes from the last)."""
    analysis_rows: int = 24_000
    """Store rows read by the neurons, features and geometry analyses."""
    fidelity_examples: int = 128
    """Held-out concept sentences run with each SAE spliced in (fidelity)."""
    ablate_features: int = 3
    """Most active MLP SAE features ablated (beside the most active neuron)."""
    ablate_examples: int = 64
    """Held-out concept sentences per ablation."""
    ablate_random: int = 39
    """Random directions per ablation target: the null (39 allow a 5% rank test)."""
    geometry_features: int = 128
    """Most frequent latents whose pairs enter the overlap vs co-occurrence test (its cost
    grows with their square times `resamples`)."""
    geometry_min_count: int = 20
    """Held-out rows a latent must fire on to enter the overlap vs co-occurrence test."""
    interference_pairs: int = 50_000
    """Decoder row pairs sampled for the interference quantiles (geometry; each pair costs a
    gathered d_in-long dot product: the analysis default of 1M took ~50 s per SAE here)."""
    claims_sentences: int = 1000
    """Concept sentences the claims battery fits and tests its detections on (half each)."""
    claims_shifted: int = 400
    """Sentences of unseen template families: the claims' shifted test."""
    claims_edit_sentences: int = 200
    """Sentences whose counterfactual twins are the claims' edits."""
    claims_ablation_examples: int = 32
    """Sentences each claimed neuron or feature is ablated on (0: no ablation)."""
    circuits_examples: int = 256
    """Held-out concept sentences the circuits stage averages edges over (residual stream
    -> the next layer's attention output)."""
    circuits_seq_len: int = 64
    """Tokens per circuits context, special tokens included."""
    circuits_top: int = 50
    """Strongest edges reported with intervals and braids."""
    circuits_ablate: int = 5
    """Strongest edges also ablated in the real model, each against `ablate_random` random
    directions and random edges."""
    resamples: int = 500
    """Bootstrap resamples behind every interval."""
    seed: int = 0
    """Seed of the corpus, the SAEs, the nulls and every bootstrap."""

    def __post_init__(self) -> None:
        for name in ("model", "corpus"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ParameterError(name, "a non-empty string", getattr(self, name))
        check_int("layer", self.layer, least=0)
        check_int("concepts", self.concepts, least=0)
        check_int("tokens", self.tokens, least=64)
        check_int("seq_len", self.seq_len, least=4, most=512)
        for name in ("harvest_batch_size", "k", "mlp_expansion", "resid_expansion"):
            check_int(name, getattr(self, name), least=1)
        check_int("sae_batch_size", self.sae_batch_size, least=1)
        check_int("sae_tokens", self.sae_tokens, least=self.sae_batch_size)
        check_int("checkpoint_every", self.checkpoint_every, least=1)
        check_int("analysis_rows", self.analysis_rows, least=64)
        check_int("fidelity_examples", self.fidelity_examples, least=3)
        check_int("ablate_features", self.ablate_features, least=1)
        check_int("ablate_examples", self.ablate_examples, least=2)
        check_int("ablate_random", self.ablate_random, least=2)
        check_int("geometry_features", self.geometry_features, least=5)
        check_int("geometry_min_count", self.geometry_min_count, least=1)
        check_int("interference_pairs", self.interference_pairs, least=100)
        check_int("claims_sentences", self.claims_sentences, least=40)
        check_int("claims_shifted", self.claims_shifted, least=20)
        check_int("claims_edit_sentences", self.claims_edit_sentences, least=10)
        check_int("claims_ablation_examples", self.claims_ablation_examples, least=0)
        if self.claims_ablation_examples == 1:
            raise ParameterError("claims_ablation_examples", "0 or an int >= 2", 1)
        check_int("circuits_examples", self.circuits_examples, least=2)
        check_int("circuits_seq_len", self.circuits_seq_len, least=3, most=512)
        check_int("circuits_top", self.circuits_top, least=1)
        check_int("circuits_ablate", self.circuits_ablate, least=0)
        check_int("resamples", self.resamples, least=100)
        check_int("seed", self.seed, least=0)

    @property
    def mlp_site(self) -> str:
        return MLP_SITE.format(layer=self.layer)

    @property
    def resid_site(self) -> str:
        return RESID_SITE.format(layer=self.layer)

    @property
    def attn_site(self) -> str:
        """The circuits' downstream site: layer `layer + 1`'s attention output."""
        return ATTN_SITE.format(layer=self.layer + 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_QUICK = {
    "concepts": 3_000,
    "tokens": 32_000,
    "mlp_expansion": 2,
    "resid_expansion": 4,
    "sae_tokens": 160_000,
    "sae_batch_size": 512,
    "checkpoint_every": 20,
    "analysis_rows": 8_000,
    "fidelity_examples": 64,
    "ablate_features": 2,
    "ablate_examples": 32,
    "ablate_random": 19,
    "geometry_features": 64,
    "interference_pairs": 20_000,
    "claims_sentences": 400,
    "claims_shifted": 200,
    "claims_edit_sentences": 100,
    "claims_ablation_examples": 0,
    "circuits_examples": 128,
    "circuits_ablate": 3,
    "resamples": 200,
}
_TINY = {
    "concepts": 50,
    "tokens": 1000,
    "seq_len": 32,
    "k": 4,
    "mlp_expansion": 1,
    "resid_expansion": 1,
    "sae_tokens": 512,
    "sae_batch_size": 128,
    "checkpoint_every": 1,
    "analysis_rows": 400,
    "fidelity_examples": 8,
    "ablate_features": 1,
    "ablate_examples": 4,
    "ablate_random": 2,
    "geometry_features": 16,
    "geometry_min_count": 1,
    "interference_pairs": 1000,
    "claims_sentences": 40,
    "claims_shifted": 20,
    "claims_edit_sentences": 10,
    "claims_ablation_examples": 0,
    "circuits_examples": 8,
    "circuits_seq_len": 16,
    "circuits_top": 10,
    "circuits_ablate": 2,
    "resamples": 100,
}


def preset(name: PresetName = "full", **overrides: Any) -> DemoConfig:
    """The `full` demo (~530 CPU-s), `quick` (~125 CPU-s) or `tiny` (seconds, for tests),
    with `overrides` (fields of DemoConfig) on top."""
    check_choice("preset", name, PRESETS)
    base = {"full": {}, "quick": _QUICK, "tiny": _TINY}[name]
    names = {f.name for f in dataclasses.fields(DemoConfig)}
    for key in overrides:
        if key not in names:
            raise ParameterError(key, f"a field of DemoConfig ({', '.join(sorted(names))})", key)
    return DemoConfig(**{**base, **overrides})
