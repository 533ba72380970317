"""Known truth for `analyze_circuits`: a planted two-site model whose edges are set by hand.

Tokens embed as sparse non-negative codes over an upstream dictionary `D_up [n, d]`
(orthonormal rows, orthogonal to the all-ones vector so LayerNorm's centring leaves them
alone). The upper block mixes tokens by attention whose pattern depends on the input
(queries and keys from h_U), maps values by `M = D_up^T T D_down`, and applies LayerNorm:

    h_U = embed(ids)                               # site up.output
    h_D = LayerNorm(softmax(h_U h_U^T / sqrt d) h_U M)   # site block.output

With the pattern and the LayerNorm scale frozen, a's contribution to b's pre-activation is
proportional to T[a, b] in every context, so the true edges are the support of `T` (each
downstream feature gets `parents` upstream features: the first excitatory, the others of
random sign; a feature whose parents all inhibit it would never fire, and an edge is measured
where b fires). Through the unfrozen
softmax and norm, every a would touch every b a little: the calibration checks that the
frozen gradient finds exactly the planted parents.

>>> cal = calibrate_circuits(seed=0)          # doctest: +SKIP
>>> cal.recovery.estimate                      # doctest: +SKIP
1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polysemy.analysis.circuits import CircuitsResult, analyze_circuits
from polysemy.analysis.stats import Interval, binomial_ci
from polysemy.sae.config import SAEConfig
from polysemy.sae.registry import build_sae


class _Block(nn.Module):
    def __init__(self, M: Tensor) -> None:
        super().__init__()
        self.M = nn.Parameter(M, requires_grad=False)
        self.ln = nn.LayerNorm(M.shape[0], elementwise_affine=False)

    def forward(self, h: Tensor) -> Tensor:  # h: (B, T, d)
        q = h.unsqueeze(1)  # (B, 1, T, d): one head
        mixed = F.scaled_dot_product_attention(q, q, (h @ self.M).unsqueeze(1)).squeeze(1)
        return self.ln(mixed)


class PlantedCircuit(nn.Module):
    """Embedding (site `up.output` after an identity) -> attention + LayerNorm block
    (site `block.output`); `truth [n, n]` holds the planted edge weights T[a, b]."""

    def __init__(self, D_up: Tensor, D_down: Tensor, truth: Tensor, codes: Tensor) -> None:
        super().__init__()
        self.embed = nn.Embedding.from_pretrained(codes @ D_up, freeze=True)
        self.up = nn.Identity()
        self.block = _Block(D_up.t() @ truth @ D_down)
        self.truth = truth

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.block(self.up(self.embed(input_ids)))


def _dictionary(d: int, n: int, g: torch.Generator) -> Tensor:
    """`[n, d]` orthonormal rows orthogonal to the all-ones vector (needs n < d)."""
    basis = torch.randn(d, d, generator=g, dtype=torch.float64)
    basis[:, 0] = 1.0  # first column: ones, projected away below
    q, _ = torch.linalg.qr(basis)
    return q[:, 1 : n + 1].t().float().contiguous()


def planted_circuit(
    *, d: int = 16, n: int = 12, vocab: int = 64, active: int = 2, parents: int = 2, seed: int = 0
) -> tuple[PlantedCircuit, nn.Module, nn.Module]:
    """The planted model and an exact ReLU SAE at each site (encoder = decoder transpose)."""
    g = torch.Generator().manual_seed(seed)
    D_up, D_down = _dictionary(d, n, g), _dictionary(d, n, g)
    truth = torch.zeros(n, n)
    for b in range(n):
        rows = torch.randperm(n, generator=g)[:parents]
        signs = torch.where(torch.rand(parents, generator=g) < 0.5, -1.0, 1.0)
        signs[0] = 1.0  # one excitatory parent, so b fires somewhere and its edges show
        truth[rows, b] = signs * (0.5 + torch.rand(parents, generator=g))
    codes = torch.zeros(vocab, n)
    for t in range(vocab):
        on = torch.randperm(n, generator=g)[:active]
        codes[t, on] = 0.5 + torch.rand(active, generator=g)
    model = PlantedCircuit(D_up, D_down, truth, codes).eval()
    saes = []
    for D in (D_up, D_down):
        sae = build_sae(SAEConfig(arch="relu", d_in=d, d_sae=n))
        with torch.no_grad():
            sae.W_dec.copy_(D)
            sae.W_enc.copy_(D.t())
            sae.b_enc.zero_()
            sae.b_dec.zero_()
        saes.append(sae.eval())
    return model, saes[0], saes[1]


@dataclass(frozen=True)
class CircuitsCalibration:
    """How well `analyze_circuits` finds the planted edges."""

    recovery: Interval
    """Share of planted parents found among each downstream feature's top `parents`
    edges (Clopper-Pearson over planted edges)."""
    leak: float
    """Largest |weight| off the planted support over the median |weight| on it (0: none)."""
    result: CircuitsResult


def calibrate_circuits(
    *,
    seed: int = 0,
    contexts: int = 64,
    seq: int = 8,
    parents: int = 2,
    frozen: bool = True,
    **planted: int,
) -> CircuitsCalibration:
    """Run `analyze_circuits` on `planted_circuit` and score it against the truth."""
    model, sae_up, sae_down = planted_circuit(seed=seed, parents=parents, **planted)
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, model.embed.num_embeddings, (contexts, seq), generator=g)
    n = int(model.truth.shape[0])
    result = analyze_circuits(
        model, sae_up, sae_down, ids, examples=contexts, site_up="up.output",
        site_down="block.output", top_k=n, top=8, chunk=8, resamples=200, seed=seed, frozen=frozen,
    )  # fmt: skip
    # Full rows (top_k = n) give every (a, b) weight back, ordered by |weight|.
    weights = torch.zeros(n, n, dtype=torch.float64)
    for row, b in enumerate(result.features_down.tolist()):
        weights[result.top_up[row], b] = result.top_weight[row]
    support = model.truth != 0
    found = sum(
        len(set(weights[:, b].abs().topk(parents).indices.tolist())
            & set(support[:, b].nonzero().flatten().tolist()))
        for b in range(n)
    )  # fmt: skip
    on = weights.abs()[support]
    off = weights.abs()[~support]
    leak = float(off.max() / on.median()) if float(on.median()) > 0 else math.inf
    return CircuitsCalibration(binomial_ci(found, int(support.sum())), leak, result)
