"""`OrganismConfig`: every choice a model-organism run makes, frozen, with its default.

The defaults are sized for a run of at most 10 minutes on two shared CPU cores that ends below
the corpus's bigram baseline (docs/organism.md has the numbers); `quick=True` shrinks the run
to a smoke test of under a minute. Fields that depend on
`quick` default to None and are resolved by the `resolved_*` properties, so the config itself
is never rewritten.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from polysemy.validation import (
    ParameterError,
    check_choice,
    check_float,
    check_int,
    check_optional_int,
)

__all__ = ["OrganismConfig", "Precision"]

Precision = Literal["auto", "float32", "bfloat16"]

QUICK_STEPS = 60
"""Optimizer steps of a `quick` run."""
DEFAULT_STEPS = 1200
"""Optimizer steps of a default run (under 10 minutes on two CPU cores shared with other work)."""
QUICK_CORPUS_CHARS = 1_000_000
DEFAULT_CORPUS_CHARS = 8_000_000
MIN_VOCAB = 300
"""Byte-level BPE starts from 256 byte tokens and one special token; fewer leaves no merges."""

RESUME_FREE = ("checkpoint_every", "log_every", "eval_tokens")
"""Fields a resume may change: they do not change the weights."""


@dataclass(frozen=True)
class OrganismConfig:
    """A small GPT-2 trained here on a local corpus: what `polysemy organism train` runs."""

    corpus: str = "pydocs"
    """Corpus spec (see `ps.open_corpus`): pydocs, concepts, local files."""
    corpus_chars: int | None = None
    """Characters of the corpus read, in its order (None: 8M, or 1M when quick)."""
    heldout_every: int = 50
    """Every N-th document is held out (never trained on) for the held-out loss."""
    vocab_size: int = 512
    """Size of the byte-level BPE vocabulary trained on the corpus (>= 300).

    Small on purpose: the unembedding dominates a small model's compute, and on a 10-minute
    budget a small vocabulary is what lets the model get below the bigram (docs/organism.md)."""
    n_ctx: int = 128
    """Context length in tokens: training windows are packed to exactly this length."""
    n_layer: int = 1
    """Transformer blocks (1: the one-layer organism of "Towards Monosemanticity")."""
    d_model: int = 128
    """Residual stream width."""
    d_mlp: int = 512
    """MLP neurons per block (the privileged basis the drift analyses study)."""
    n_head: int = 4
    """Attention heads per block (must divide d_model)."""
    tie_embeddings: bool = False
    """Share one matrix between embedding and unembedding, as GPT-2 does (untied learns the
    corpus's bigram statistics faster: docs/organism.md)."""
    batch_size: int = 16
    """Windows per optimizer step (batch_size * n_ctx tokens)."""
    steps: int | None = None
    """Optimizer steps (None: 1200, or 60 when quick)."""
    lr: float = 5e-3
    """Peak learning rate of AdamW."""
    warmup_steps: int = 30
    """Linear learning-rate warm-up, then cosine decay to lr / 10."""
    weight_decay: float = 0.1
    """AdamW weight decay on matrices (not on biases, norms or embeddings)."""
    snapshots: int = 8
    """Snapshots kept: step 0 and log-spaced steps up to the last (always kept)."""
    checkpoint_every: int = 100
    """Steps between resumable states in <out>/state/ (a kill loses at most this many)."""
    eval_tokens: int = 32768
    """Held-out tokens scored at every snapshot and at the end (fewer if held out is smaller)."""
    log_every: int = 10
    """Steps between entries of the loss history."""
    precision: Precision = "auto"
    """Matmuls in bfloat16 autocast (weights and AdamW stay float32) or float32; auto:
    bfloat16 where the CPU or GPU computes it natively."""
    compile: bool = False
    """torch.compile the training step (pays a one-off compile; see docs/organism.md)."""
    quick: bool = False
    """A smoke test of under a minute (fewer steps, a smaller slice of the corpus)."""
    seed: int = 0
    """Seed of initialisation and data order."""

    def __post_init__(self) -> None:
        if not isinstance(self.corpus, str) or not self.corpus.strip():
            raise ParameterError("corpus", "a corpus spec", self.corpus)
        check_optional_int("corpus_chars", self.corpus_chars, least=1000)
        check_int("heldout_every", self.heldout_every, least=2)
        check_int("vocab_size", self.vocab_size, least=MIN_VOCAB)
        check_int("n_ctx", self.n_ctx, least=2)
        check_int("n_layer", self.n_layer, least=1)
        check_int("d_model", self.d_model, least=1)
        check_int("d_mlp", self.d_mlp, least=1)
        check_int("n_head", self.n_head, least=1)
        if self.d_model % self.n_head:
            raise ParameterError("n_head", f"a divisor of d_model={self.d_model}", self.n_head)
        check_int("batch_size", self.batch_size, least=1)
        check_optional_int("steps", self.steps, least=1)
        check_float("lr", self.lr, above=0.0)
        check_int("warmup_steps", self.warmup_steps, least=0)
        check_float("weight_decay", self.weight_decay, least=0.0)
        check_int("snapshots", self.snapshots, least=2)
        check_int("checkpoint_every", self.checkpoint_every, least=1)
        check_int("eval_tokens", self.eval_tokens, least=1)
        check_int("log_every", self.log_every, least=1)
        check_choice("precision", self.precision, ("auto", "float32", "bfloat16"))
        for name in ("compile", "quick", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(name, "a bool", getattr(self, name))
        check_int("seed", self.seed)

    @property
    def resolved_steps(self) -> int:
        """`steps`, or its default for a quick or a full run."""
        if self.steps is not None:
            return self.steps
        return QUICK_STEPS if self.quick else DEFAULT_STEPS

    @property
    def resolved_corpus_chars(self) -> int:
        """`corpus_chars`, or its default for a quick or a full run."""
        if self.corpus_chars is not None:
            return self.corpus_chars
        return QUICK_CORPUS_CHARS if self.quick else DEFAULT_CORPUS_CHARS

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON, with the resolved values beside the fields."""
        d = dataclasses.asdict(self)
        d["resolved_steps"] = self.resolved_steps
        d["resolved_corpus_chars"] = self.resolved_corpus_chars
        return d
