"""Calibrate `ablate` where the answer is known: planted readout directions and blind ones.

Trial j draws a unit readout direction r_j of the last hidden state and ablates, at the last
layer's output (so the model's downstream map is the mean pooling alone and the truth is
exact), the features of a planted dictionary: feature 0 is r_j itself (it feeds the readout:
removing z·r_j moves the readout by the pooled z), features 1..C are unit directions
orthogonal to r_j (they cannot move it: their effect is 0 up to rounding). With the readout
effect:

- false negatives: trials in which feature 0 is not flagged (`verdict` is not "effect");
- false positives (planted): orthogonal features flagged;
- false positives (random): `random:r` entries (a random direction judged against the others
  exactly as a target is) flagged, at the last layer with the readout effect and at the
  first layer's output with the embedding effect (1 - cosine of pooled outputs), where the
  downstream map is the whole rest of the model.

Every rate comes with its exact (Clopper-Pearson) interval.

>>> cal = calibrate_ablation(trials=10)                 # doctest: +SKIP
>>> cal.false_negative.estimate, cal.false_positive_random.high   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from polysemy.analysis.ablation import ablate
from polysemy.analysis.stats import Interval, binomial_ci
from polysemy.models.loading import LoadedModel
from polysemy.validation import check_int


@dataclass(frozen=True)
class AblationCalibration:
    """Error rates of `ablate`'s verdicts where the truth is known."""

    trials: int
    false_negative: Interval
    """Planted readout directions not flagged, of `trials`."""
    false_positive_planted: Interval
    """Orthogonal (readout-blind) planted directions flagged."""
    false_positive_random: Interval
    """Random directions flagged (readout effect, last layer)."""
    false_positive_random_embedding: Interval
    """Random directions flagged (embedding effect, first layer: the whole model downstream)."""
    examples: int
    random: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "examples": self.examples,
            "random": self.random,
            "false_negative": self.false_negative.to_dict(),
            "false_positive_planted": self.false_positive_planted.to_dict(),
            "false_positive_random": self.false_positive_random.to_dict(),
            "false_positive_random_embedding": self.false_positive_random_embedding.to_dict(),
        }


class PlantedDictionary:
    """An SAE-like dictionary of unit directions: z = ReLU(x · W_dec.T), x̂ = z W_dec."""

    def __init__(self, W_dec: Tensor) -> None:
        self.W_dec = W_dec  # (d_sae, d_in)
        self.d_in = int(W_dec.shape[1])

    def encode(self, x: Tensor) -> Tensor:
        return torch.relu(x @ self.W_dec.T)

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.W_dec


def tiny_encoder(seed: int = 0) -> LoadedModel:
    """A 2-layer BERT (d_model 32) built from a config with the bundled MiniLM's tokenizer:
    random weights, nothing downloaded."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from polysemy.models.loading import minilm_path

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model = BertModel(config).eval()
    model.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    return LoadedModel(model=model, tokenizer=tokenizer, name="tiny-bert")


def calibrate_ablation(
    loaded: LoadedModel | None = None,
    documents: Any = None,
    *,
    trials: int = 20,
    examples: int = 200,
    random: int = 40,
    orthogonal: int = 4,
    seq_len: int = 32,
    seed: int = 0,
) -> AblationCalibration:
    """Run the planted-readout trials (module docstring) on `loaded` (default: a tiny random
    BERT) over `documents` (default: the `concepts` corpus's held-out sentences)."""
    check_int("trials", trials, least=1)
    check_int("orthogonal", orthogonal, least=1)
    if loaded is None:
        loaded = tiny_encoder(seed)
    if documents is None:
        from polysemy.corpora import open_corpus

        documents = open_corpus(f"concepts:heldout:{examples * 2}", seed=seed).take(examples * 2)
    layers = [s for s in _layer_outputs(loaded)]
    last, first = layers[-1], layers[0]
    d = int(getattr(loaded.model, "config").hidden_size)  # noqa: B009 (nn.Module typing)
    g = torch.Generator().manual_seed(seed)
    missed = planted_flagged = random_flagged = 0
    for trial in range(trials):
        r = F.normalize(torch.randn(d, generator=g, dtype=torch.float64), dim=0)
        others = torch.randn(orthogonal, d, generator=g, dtype=torch.float64)
        others = F.normalize(others - (others @ r)[:, None] * r, dim=-1)  # orthogonal to r
        sae = PlantedDictionary(torch.cat([r[None], others]).float())
        targets = tuple(f"feature:{i}" for i in range(orthogonal + 1))
        result = ablate(
            loaded, documents, sae=sae, site=last, targets=targets, readout_direction=r,
            examples=examples, random=random, seq_len=seq_len, seed=seed + trial,
        )  # fmt: skip
        verdicts = {t.target: t.verdict for t in result.results}
        missed += verdicts["feature:0"] != "effect"
        planted_flagged += sum(
            verdicts[f"feature:{i}"] == "effect" for i in range(1, orthogonal + 1)
        )
        random_flagged += sum(verdicts[f"random:{i}"] == "effect" for i in range(random))
    # The embedding-effect null at the first layer: every random direction of a neuron target.
    embedding_flagged = 0
    embedding_trials = max(1, trials // 4)
    for trial in range(embedding_trials):
        result = ablate(
            loaded, documents, site=first, targets=("neuron:0",), examples=examples,
            random=random, seq_len=seq_len, seed=seed + 1000 + trial,
        )  # fmt: skip
        embedding_flagged += sum(
            t.verdict == "effect" for t in result.results if t.target.startswith("random:")
        )
    return AblationCalibration(
        trials=trials,
        false_negative=binomial_ci(missed, trials),
        false_positive_planted=binomial_ci(planted_flagged, trials * orthogonal),
        false_positive_random=binomial_ci(random_flagged, trials * random),
        false_positive_random_embedding=binomial_ci(embedding_flagged, embedding_trials * random),
        examples=examples,
        random=random,
    )


def _layer_outputs(loaded: LoadedModel) -> list[str]:
    """Names of the per-token sites that are whole transformer layers' outputs, in order."""
    from polysemy.models.sites import list_sites

    sites = list_sites(loaded)
    layers = [s.name for s in sites if s.module_type.endswith(("Layer", "Block")) and s.per_token]
    if not layers:
        raise ValueError("model has no layer-output sites to calibrate on")
    return layers
