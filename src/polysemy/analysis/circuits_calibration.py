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
    return model, *_exact_saes(D_up, D_down)


def _exact_saes(D_up: Tensor, D_down: Tensor) -> tuple[nn.Module, nn.Module]:
    n, d = D_up.shape
    saes = []
    for D in (D_up, D_down):
        sae = build_sae(SAEConfig(arch="relu", d_in=d, d_sae=n))
        with torch.no_grad():
            sae.W_dec.copy_(D)
            sae.W_enc.copy_(D.t())
            # A small threshold: without it, rounding leaves absent features at +1e-8, "active"
            sae.b_enc.fill_(-1e-3)
            sae.b_dec.zero_()
        saes.append(sae.eval())
    return saes[0], saes[1]


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


# ---- braids: shared and unshared connections ---------------------------------------------------

POOL_A, POOL_B, SHARED = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9), (10, 11)


def planted_braids(*, seed: int = 0, vocab: int = 64) -> tuple[PlantedCircuit, Tensor, Tensor]:
    """A planted circuit over two topics, and which of its edges are shared.

    Upstream features 0-4 occur only in topic-A tokens (the first half of the vocabulary),
    5-9 only in topic-B tokens, 10 and 11 in both (each token carries one with probability
    1/2). Downstream features 0-5 have two excitatory parents, a shared feature and a
    topic feature; 6-11 one topic feature. An edge from a shared feature serves both topics
    (braided); an edge from a topic feature serves one. Returns the model (SAEs as in
    `planted_circuit`: `model.saes`), `shared [n, n]` bool (the braided truth, on T's support)
    and token ids `[contexts, 8]` are drawn by `braid_contexts`."""
    g = torch.Generator().manual_seed(seed)
    d, n = 16, 12
    D_up, D_down = _dictionary(d, n, g), _dictionary(d, n, g)
    truth = torch.zeros(n, n)
    for b in range(6):
        pool = POOL_A if b < 3 else POOL_B
        truth[SHARED[b % 2], b] = 0.5 + float(torch.rand(1, generator=g))
        truth[pool[b % 3], b] = 0.5 + float(torch.rand(1, generator=g))
    for b in range(6, 12):
        pool = POOL_A if b < 9 else POOL_B
        truth[pool[b % 3 + 2], b] = 0.5 + float(torch.rand(1, generator=g))
    codes = torch.zeros(vocab, n)
    for t in range(vocab):
        pool = POOL_A if t < vocab // 2 else POOL_B
        on = torch.tensor(pool)[torch.randperm(len(pool), generator=g)[:2]]
        codes[t, on] = 0.5 + torch.rand(2, generator=g)
        if float(torch.rand(1, generator=g)) < 0.5:
            codes[t, SHARED[int(torch.randint(0, 2, (1,), generator=g))]] = 1.0
    model = PlantedCircuit(D_up, D_down, truth, codes).eval()
    model.saes = _exact_saes(D_up, D_down)  # type: ignore[assignment]
    shared = torch.zeros(n, n, dtype=torch.bool)
    shared[list(SHARED)] = truth[list(SHARED)] != 0
    return model, truth != 0, shared


def braid_contexts(contexts: int, seq: int = 8, *, vocab: int = 64, seed: int = 0) -> Tensor:
    """`[contexts, seq]` token ids, each context from one topic (alternating)."""
    g = torch.Generator().manual_seed(seed)
    half = vocab // 2
    ids = torch.randint(0, half, (contexts, seq), generator=g)
    return ids + half * (torch.arange(contexts)[:, None] % 2)


@dataclass(frozen=True)
class BraidsCalibration:
    """How well the braid score separates shared from unshared planted edges."""

    true_positive: Interval
    """Shared planted edges called braided (Clopper-Pearson)."""
    false_positive: Interval
    """Unshared planted edges called braided."""
    result: CircuitsResult


def calibrate_braids(*, seed: int = 0, contexts: int = 64) -> BraidsCalibration:
    """Run `analyze_circuits` on `planted_braids` and score its braids against the truth."""
    model, support, shared = planted_braids(seed=seed)
    sae_up, sae_down = model.saes  # type: ignore[misc]
    n_planted = int(support.sum())
    result = analyze_circuits(
        model, sae_up, sae_down, braid_contexts(contexts, seed=seed), examples=contexts,
        site_up="up.output", site_down="block.output", top_k=12, top=n_planted, chunk=12,
        resamples=200, shuffles=20, seed=seed,
    )  # fmt: skip
    tp = fp = n_shared = n_unshared = 0
    for e in result.edges:
        if not support[e["up"], e["down"]]:
            continue  # an off-support edge among the top would show as a missing planted one
        braided = e["clusters"] >= 2 and bool(e["braided"])
        if shared[e["up"], e["down"]]:
            n_shared += 1
            tp += braided
        else:
            n_unshared += 1
            fp += braided
    return BraidsCalibration(binomial_ci(tp, n_shared), binomial_ci(fp, n_unshared), result)
