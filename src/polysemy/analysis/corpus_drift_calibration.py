"""Calibration of `corpus_drift` where the truth is known: planted voices that differ between
two corpora on some neurons and not on others.

A planted dictionary (`synth.plant_chorus`: every neuron carries exactly `chorus` features,
every feature loads on `neuron_support` neurons) writes rows x = z @ F + noise. Both corpora
draw feature j with probability `density` per token, except `n_shifted` features whose
probability is multiplied by `ratio` in corpus B (divided, for every other one of them, so
the shift is not one-sided). Documents of `doc_rows` tokens each draw their own multiplier of
every feature's probability (Gamma, mean 1, coefficient of variation `doc_spread`): tokens of
one document are alike, as in real text, which the bootstrap and the null must respect.

A neuron's voices differ between the corpora exactly when it carries a shifted feature; its
true score is the TV distance between its expected shares, with E[z_f^2] = p_f E[m^2] and
the noise as the error line. The oracle reads the chorus with the planted codes and
dictionary (the statistics alone are tested, not an SAE's recovery); `sae=True` trains a
TopK SAE on both corpora instead (SAE noise included).

Reported per setting (pooled over `seeds`): the detection rate among neurons whose true
score is at least `min_effect`, the false-positive rate among unchanged neurons (exact
intervals), and the run's verdicts; with `ratio=1` nothing differs and every call is a false
positive.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from polysemy.analysis.corpus_drift import CorpusDriftConfig, corpus_drift_scores, corpus_rows
from polysemy.analysis.stats import binomial_ci
from polysemy.validation import check_float, check_int

__all__ = ["CorpusDriftCalibration", "calibrate_corpus_drift", "planted_corpora"]


class PlantedCorpora(NamedTuple):
    x_a: Tensor
    """[rows, d_in] corpus A's activations."""
    z_a: Tensor
    """[rows, n_features] its planted codes."""
    doc_a: Tensor
    x_b: Tensor
    z_b: Tensor
    doc_b: Tensor
    features: Tensor
    """[n_features, d_in] the planted dictionary."""
    true_score: Tensor
    """[d_in] TV distance between each neuron's expected shares on A and on B."""
    changed: Tensor
    """[d_in] bool: the neuron carries a shifted feature."""


def planted_corpora(
    *,
    n_features: int = 64,
    d_in: int = 32,
    chorus: int = 4,
    n_shifted: int = 6,
    ratio: float = 3.0,
    density: float = 0.04,
    tokens: int = 8192,
    doc_rows: int = 32,
    doc_spread: float = 0.5,
    noise: float = 0.05,
    seed: int = 0,
) -> PlantedCorpora:
    """Two corpora of planted activations (module docstring)."""
    from polysemy.synth.planted import plant_chorus

    check_int("n_shifted", n_shifted, least=0, most=n_features)
    check_float("ratio", ratio, least=1.0)
    check_float("density", density, above=0.0, most=1.0)
    check_float("doc_spread", doc_spread, least=0.0)
    check_float("noise", noise, least=0.0)
    support = (d_in * chorus) // n_features  # every slot of every neuron filled
    F = plant_chorus(
        n_features, d_in, neuron_support=support, chorus=chorus, seed=seed, dtype=torch.float64
    )  # (n_features, d_in)
    g = torch.Generator().manual_seed(seed)
    shifted = torch.randperm(n_features, generator=g)[:n_shifted]
    factor = torch.ones(n_features, dtype=torch.float64)
    factor[shifted[0::2]] = ratio
    factor[shifted[1::2]] = 1.0 / ratio
    p_a = torch.full((n_features,), density, dtype=torch.float64)
    p_b = (p_a * factor).clamp(max=1.0)

    def corpus(p: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n_docs = math.ceil(tokens / doc_rows)
        if doc_spread > 0:
            shape = 1.0 / doc_spread**2
            gamma = torch.distributions.Gamma(
                torch.full((n_docs, n_features), shape, dtype=torch.float64),
                torch.full((n_docs, n_features), shape, dtype=torch.float64),
            )
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
            mult = gamma.sample()  # (n_docs, n_features), mean 1
        else:
            mult = torch.ones(n_docs, n_features, dtype=torch.float64)
        doc = torch.arange(n_docs).repeat_interleave(doc_rows)[:tokens]  # (tokens,)
        prob = (p[None, :] * mult).clamp(max=1.0)[doc]  # (tokens, n_features)
        fire = torch.rand(prob.shape, generator=g, dtype=torch.float64) < prob
        mag = 0.5 + torch.rand(prob.shape, generator=g, dtype=torch.float64)  # U(0.5, 1.5)
        z = torch.where(fire, mag, torch.zeros_like(mag))
        x = z @ F + noise * torch.randn(tokens, d_in, generator=g, dtype=torch.float64)
        return x.float(), z.float(), doc

    x_a, z_a, doc_a = corpus(p_a)
    x_b, z_b, doc_b = corpus(p_b)
    W2 = F**2
    m2 = 13.0 / 12.0  # E[m^2] for m ~ U(0.5, 1.5)

    def shares(p: Tensor) -> Tensor:
        c = (p * m2)[:, None] * W2  # (n_features, d_in)
        err = torch.full((1, d_in), noise**2, dtype=torch.float64)
        full = torch.cat([c, err])
        return full / full.sum(0, keepdim=True)

    true_score = 0.5 * (shares(p_a) - shares(p_b)).abs().sum(0)
    changed = (W2[shifted] > 0).any(0) & (ratio > 1.0)  # ratio 1: nothing differs
    return PlantedCorpora(x_a, z_a, doc_a, x_b, z_b, doc_b, F.float(), true_score, changed)


class CorpusDriftCalibration(NamedTuple):
    detection: dict[str, Any]
    """Rate at which neurons with true score >= min_effect are called different."""
    false_positive: dict[str, Any]
    """Rate at which unchanged neurons are called different."""
    verdicts: list[dict[str, Any]]
    """Each seed's summary verdicts."""
    true_score: Tensor
    """[seeds * d_in] the planted scores."""
    score: Tensor
    """[seeds * d_in] the measured scores."""
    config: dict[str, Any]


def calibrate_corpus_drift(
    *,
    seeds: int = 5,
    sae: bool = False,
    min_effect: float = 0.05,
    sae_k: int = 4,
    sae_tokens: int = 400_000,
    config: CorpusDriftConfig | None = None,
    **planted: Any,
) -> CorpusDriftCalibration:
    """Detection and false-positive rates of `corpus_drift_scores` on `planted_corpora`
    (fields as `planted`) over `seeds` seeds; with `sae`, through a TopK SAE trained on
    both corpora (d_sae = 2 n_features, k = `sae_k`, `sae_tokens` rows) rather than the
    planted codes."""
    check_int("seeds", seeds, least=1)
    check_float("min_effect", min_effect, above=0.0)
    cfg = config or CorpusDriftConfig(null_splits=50, neuron_resamples=50)
    hit = miss = fp = tn = 0
    verdicts, truths, scores = [], [], []
    for s in range(seeds):
        pc = planted_corpora(seed=s, **planted)
        if sae:
            from polysemy.api import train_sae

            x = torch.cat([pc.x_a, pc.x_b])
            model = train_sae(
                x, arch="topk", k=sae_k, d_sae=2 * pc.features.shape[0], tokens=sae_tokens,
                batch_size=256, seed=s, progress=False,
            ).sae.eval()  # fmt: skip
            with torch.no_grad():
                za, zb = model.encode(pc.x_a), model.encode(pc.x_b)
                ea, eb = pc.x_a - model.decode(za), pc.x_b - model.decode(zb)
            W_dec = model.W_dec.detach()
        else:
            za, zb, W_dec = pc.z_a, pc.z_b, pc.features
            ea = pc.x_a - pc.z_a @ pc.features
            eb = pc.x_b - pc.z_b @ pc.features
        res = corpus_drift_scores(
            corpus_rows(za, ea, pc.doc_a), corpus_rows(zb, eb, pc.doc_b), W_dec, cfg, seed=s
        )
        real = pc.changed & (pc.true_score >= min_effect)
        same = ~pc.changed
        hit += int((res.different & real).sum())
        miss += int((~res.different & real).sum())
        fp += int((res.different & same).sum())
        tn += int((~res.different & same).sum())
        verdicts.append({"seed": s, **res.summary["verdict"]})
        truths.append(pc.true_score)
        scores.append(res.score.double())

    def rate(k: int, n: int) -> dict[str, Any]:
        if n == 0:
            return {"estimate": None, "n": 0}
        return {**binomial_ci(k, n, level=cfg.level).to_dict(), "estimate": k / n}

    return CorpusDriftCalibration(
        detection=rate(hit, hit + miss),
        false_positive=rate(fp, fp + tn),
        verdicts=verdicts,
        true_score=torch.cat(truths),
        score=torch.cat(scores),
        config={
            "seeds": seeds,
            "sae": sae,
            "sae_k": sae_k,
            "sae_tokens": sae_tokens,
            "min_effect": min_effect,
            **planted,
        },
    )
