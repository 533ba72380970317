"""Drift across data: the same neuron's chorus on corpus A and on corpus B.

A neuron carries several features (its *chorus*, analysis/neurons.py). Which of them it
carries most depends on what the model reads: a neuron that holds a Python-syntax voice and a
place-name voice sings the first on docstrings and the second on plain sentences. Here one
model, one site and one SAE (one dictionary for both corpora, so the voices have the same
names on both sides) read the first `tokens` tokens of corpus A and of corpus B.

With the SAE's codes z and error e on the analysed rows, neuron j's chorus on a corpus is the
squared chorus of the neurons analysis, with the error line as one more voice:

    C[f, j] = (sum_rows z_f^2) W_dec[f, j]^2,   E[j] = sum_rows e_j^2
    share[:, j] = (C[:, j], E[j]) / (sum_f C[f, j] + E[j])          (sums to 1)

Per neuron:

- `score` = total variation distance between its share vectors on A and on B,
  0.5 * sum |share_A - share_B| (0: the same voices in the same proportions; 1: disjoint),
  with a percentile-bootstrap interval over *documents* of each corpus (tokens of one
  document are not independent);
- its dominant voice (largest feature share) on each corpus and its top voices with shares.

The null is sampling noise: a random half of A's documents against the other half (and the
same in B), `null_splits` times. Two halves of n/2 rows are noisier than A (n_A rows) against
B (n_B rows): the TV between two samples of one chorus grows as sqrt(1/n_1 + 1/n_2) (the
difference of two sample shares is that much noise, and TV is its L1 norm), so each half
score is scaled by sqrt((1/n_A + 1/n_B) / (1/h_1 + 1/h_2)) (h: the halves' rows). A neuron
*sings different voices* when its score exceeds the `level` quantile of its scaled null
scores. The null's own fractions are taken split by split: how many neurons a split's score
puts above thresholds set by the other splits, how many change their dominant voice between
the halves (halves are noisier than the whole corpora, so this one errs high), and the mean
score. Neurons share each split's noise, so they are not independent trials: the range of
these fractions over splits is what an effect must leave.

Summary: the fraction of neurons singing different voices and the fraction whose dominant
voice changes (exact intervals), and the mean score (bootstrap over neurons), each against
the null's range and with a verdict (`stats.verdict`). `calibrate_corpus_drift` plants
feature frequencies that differ between two corpora on a known dictionary and measures
detection and false-positive rates.

>>> res = corpus_drift("minilm", "encoder.layer.3.intermediate.intermediate_act_fn.output",
...                    "runs/demo/saes/mlp", "pydocs", "concepts")          # doctest: +SKIP
>>> res.summary["neurons"]["different_fraction"]                              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from polysemy.analysis.folder import start_analysis, write_analysis
from polysemy.analysis.stats import Interval, binomial_ci, bootstrap_ci, null_interval, verdict
from polysemy.validation import ParameterError, check_float, check_int, configured

log = logging.getLogger(__name__)

__all__ = [
    "CorpusDriftConfig",
    "CorpusDriftResult",
    "CorpusRows",
    "corpus_drift",
    "corpus_drift_scores",
    "organism_snapshot",
]


@dataclass(frozen=True)
class CorpusDriftConfig:
    """How `corpus_drift` compares a neuron's chorus on two corpora."""

    tokens: int = 16384
    """Tokens of each corpus analysed (the first ones, in harvest order)."""
    seq_len: int = 128
    """Tokens per sequence fed to the model (at most its positions)."""
    batch_size: int = 64
    """Windows per forward pass when harvesting (memory, not results)."""
    sae_rows: int = 32768
    """Without an SAE: tokens (half from each corpus, from documents after the analysed
    ones) the quick TopK SAE trains on."""
    sae_tokens: int = 131_072
    """Without an SAE: rows the quick SAE sees in training."""
    expansion: int = 4
    """Without an SAE: its width d_sae = expansion x the site's neurons."""
    k: int = 16
    """Without an SAE: its active latents per token."""
    sae_seed: int = 0
    """Without an SAE: its seed."""
    null_splits: int = 50
    """Random halvings of each corpus behind each neuron's null threshold."""
    neuron_resamples: int = 200
    """Bootstrap resamples (over documents) of each neuron's score interval."""
    top_voices: int = 8
    """Voices kept per neuron and corpus in voices.json, by share."""
    resamples: int = 2000
    """Bootstrap resamples (over neurons) of every interval."""
    level: float = 0.95
    """Coverage of every interval, and the null quantile a score must exceed."""

    def __post_init__(self) -> None:
        check_int("tokens", self.tokens, least=8)
        check_int("seq_len", self.seq_len, least=2)
        check_int("batch_size", self.batch_size, least=1)
        check_int("sae_rows", self.sae_rows, least=2)
        check_int("sae_tokens", self.sae_tokens, least=1)
        check_int("expansion", self.expansion, least=1)
        check_int("k", self.k, least=1)
        check_int("sae_seed", self.sae_seed, least=0)
        check_int("null_splits", self.null_splits, least=10)
        check_int("neuron_resamples", self.neuron_resamples, least=20)
        check_int("top_voices", self.top_voices, least=1)
        check_int("resamples", self.resamples, least=100)
        check_float("level", self.level, above=0.5, most=0.999999)


class CorpusRows(NamedTuple):
    """One corpus reduced to what the chorus needs, summed per document."""

    mass: Float[Tensor, "n_docs d_sae"]
    """sum over the document's rows of z_f^2."""
    error: Float[Tensor, "n_docs d"]
    """sum over the document's rows of e_j^2 (the SAE's error)."""
    rows: Int[Tensor, " n_docs"]
    """Rows (tokens) of each document."""


class CorpusDriftResult(NamedTuple):
    """What `corpus_drift` and `corpus_drift_scores` return."""

    score: Float[Tensor, " d"]
    """TV distance between each neuron's shares on A and on B."""
    score_low: Float[Tensor, " d"]
    score_high: Float[Tensor, " d"]
    """Bootstrap interval of the score (over documents)."""
    threshold: Float[Tensor, " d"]
    """The `level` quantile of the neuron's scaled half-split null scores."""
    different: Tensor
    """[d] bool: score > threshold, among `active` neurons."""
    active: Tensor
    """[d] bool: some feature share on both corpora (the rest are left out)."""
    dominant_a: Tensor
    """[d] int64: largest feature share on A (-1: none)."""
    dominant_b: Tensor
    top_a: Tensor
    """[d, top_voices] int64: features by share on A."""
    top_a_shares: Float[Tensor, "d top_voices"]
    top_b: Tensor
    top_b_shares: Float[Tensor, "d top_voices"]
    error_a: Float[Tensor, " d"]
    """Share of the SAE's error line on A."""
    error_b: Float[Tensor, " d"]
    feature_score: Float[Tensor, " d"]
    """The same TV among the feature shares alone (error line left out, renormalised)."""
    null_score: Float[Tensor, "n_splits d"]
    """Scaled half-vs-half scores, splits of A and of B alternating."""
    summary: dict[str, Any]
    """The JSON summary (written to analysis.json)."""


def corpus_rows(
    z: Float[Tensor, "rows d_sae"], e: Float[Tensor, "rows d"], doc: Int[Tensor, " rows"]
) -> CorpusRows:
    """Per-document sums of z^2 and e^2 (documents renumbered 0..n_docs-1)."""
    _, inverse = torch.unique(doc, return_inverse=True)
    n = int(inverse.max()) + 1 if inverse.numel() else 0
    mass = torch.zeros(n, z.shape[1], dtype=torch.float64).index_add_(0, inverse, z.double() ** 2)
    error = torch.zeros(n, e.shape[1], dtype=torch.float64).index_add_(0, inverse, e.double() ** 2)
    rows = torch.bincount(inverse, minlength=n)
    return CorpusRows(mass, error, rows)


def _shares(m: Tensor, e: Tensor, W2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Feature shares [d_sae, d], error share [d], total [d] from mass m [d_sae] and error e."""
    total = m @ W2 + e  # (d,)
    inv = torch.where(total > 0, 1.0 / total.clamp_min(1e-300), torch.zeros_like(total))
    return m[:, None] * W2 * inv[None, :], e * inv, total


def _tv(ma: Tensor, ea: Tensor, mb: Tensor, eb: Tensor, W2: Tensor) -> Tensor:
    """TV distance per neuron between the shares from (ma, ea) and from (mb, eb): [d]."""
    ta, tb = ma @ W2 + ea, mb @ W2 + eb  # (d,)
    ia = torch.where(ta > 0, 1.0 / ta.clamp_min(1e-300), torch.zeros_like(ta))
    ib = torch.where(tb > 0, 1.0 / tb.clamp_min(1e-300), torch.zeros_like(tb))
    # sum_f W2[f, j] |ma_f ia_j - mb_f ib_j|, chunked over neurons: [d_sae, chunk] at a time
    out = torch.empty_like(ta)
    for a in range(0, W2.shape[1], 512):
        b = a + 512
        diff = (ma[:, None] * ia[None, a:b] - mb[:, None] * ib[None, a:b]).abs()
        out[a:b] = (W2[:, a:b] * diff).sum(0)
    return 0.5 * (out + (ea * ia - eb * ib).abs())


def _halves(n: int, g: torch.Generator) -> Tensor:
    """[n] bool: a random half of n documents (the first n // 2 of a permutation)."""
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=g)[: n // 2]] = True
    return mask


def _dominant(m: Tensor, W2: Tensor) -> Tensor:
    c = m[:, None] * W2  # (d_sae, d)
    return torch.where(c.sum(0) > 0, c.argmax(0), torch.full((W2.shape[1],), -1))


def _rate(flags: Tensor, among: Tensor, level: float) -> dict[str, Any]:
    n = int(among.sum())
    if n == 0:
        return {"estimate": None, "low": None, "high": None, "n": 0}
    k = int((flags & among).sum())
    return {**binomial_ci(k, n, level=level).to_dict(), "estimate": k / n}


def _interval(rate: dict[str, Any]) -> Interval:
    return Interval(rate["estimate"], rate["low"], rate["high"], rate["level"], rate["n"], "")


def _mean_ci(v: Tensor, cfg: CorpusDriftConfig, seed: int) -> dict[str, Any] | None:
    if v.numel() == 0:
        return None
    if v.numel() == 1:
        x = float(v[0])
        return Interval(x, x, x, cfg.level, 1, "bootstrap").to_dict()
    return bootstrap_ci(v, resamples=cfg.resamples, level=cfg.level, seed=seed).to_dict()


def corpus_drift_scores(
    a: CorpusRows,
    b: CorpusRows,
    W_dec: Float[Tensor, "d_sae d"],
    config: CorpusDriftConfig | None = None,
    *,
    seed: int = 0,
    **options: Any,
) -> CorpusDriftResult:
    """The scores, intervals and null of the module docstring from two corpora's document
    sums (`corpus_rows`) and the dictionary's `W_dec`. Needs 4 documents per corpus."""
    cfg = configured(CorpusDriftConfig, config, options)
    for name, c in (("corpus_a", a), ("corpus_b", b)):
        if c.mass.shape[0] < 4:
            raise ParameterError(
                name, "a sample of at least 4 documents (raise tokens)", c.mass.shape[0]
            )
    if a.mass.shape[1] != W_dec.shape[0] or a.error.shape[1] != W_dec.shape[1]:
        raise ValueError(
            f"W_dec must be [d_sae, d] = [{a.mass.shape[1]}, {a.error.shape[1]}]; "
            f"got {list(W_dec.shape)}"
        )
    W2 = W_dec.double() ** 2  # (d_sae, d)
    g = torch.Generator().manual_seed(seed)
    ma, ea, mb, eb = a.mass.sum(0), a.error.sum(0), b.mass.sum(0), b.error.sum(0)
    na, nb = int(a.rows.sum()), int(b.rows.sum())
    score = _tv(ma, ea, mb, eb, W2)  # (d,)
    zero = torch.zeros_like(ea)
    # The same among the features alone (error line left out): a change in how well the SAE
    # fits each corpus moves `score` but not this.
    feature_score = _tv(ma, zero, mb, zero, W2)
    sa, era, _ = _shares(ma, ea, W2)
    sb, erb, _ = _shares(mb, eb, W2)
    active = (sa.sum(0) > 0) & (sb.sum(0) > 0)
    dom_a, dom_b = _dominant(ma, W2), _dominant(mb, W2)

    # Bootstrap over documents, each corpus resampled on its own: multinomial weights.
    boot = torch.empty(cfg.neuron_resamples, score.numel(), dtype=torch.float64)
    for r in range(cfg.neuron_resamples):
        wa = torch.bincount(torch.randint(0, len(a.rows), (len(a.rows),), generator=g),
                            minlength=len(a.rows)).double()  # fmt: skip
        wb = torch.bincount(torch.randint(0, len(b.rows), (len(b.rows),), generator=g),
                            minlength=len(b.rows)).double()  # fmt: skip
        boot[r] = _tv(wa @ a.mass, wa @ a.error, wb @ b.mass, wb @ b.error, W2)
    alpha = (1 - cfg.level) / 2
    q = torch.tensor([alpha, 1 - alpha], dtype=torch.float64)
    low, high = torch.quantile(boot, q, dim=0)

    # Null: half against half of each corpus, scaled to the A-vs-B sample sizes.
    target = 1 / na + 1 / nb
    nulls, null_switch, null_feature = [], [], []
    for _ in range(cfg.null_splits):
        for c in (a, b):
            m = _halves(len(c.rows), g)
            h1, h2 = int(c.rows[m].sum()), int(c.rows[~m].sum())
            m1, m2 = c.mass[m].sum(0), c.mass[~m].sum(0)
            raw = _tv(m1, c.error[m].sum(0), m2, c.error[~m].sum(0), W2)
            scale = math.sqrt(target / (1 / max(h1, 1) + 1 / max(h2, 1)))
            nulls.append(raw * scale)
            null_feature.append(float(_tv(m1, zero, m2, zero, W2)[active].mean()) * scale)
            null_switch.append(_dominant(m1, W2) != _dominant(m2, W2))
    null_score = torch.stack(nulls)  # (2 * null_splits, d)
    threshold = torch.quantile(null_score, cfg.level, dim=0)
    different = active & (score > threshold)
    switch = active & (dom_a != dom_b)
    # The null's own fractions, one per split: how often noise alone clears a threshold set
    # by the *other* splits (leave one out), or moves the dominant voice. Their spread over
    # splits is the range an effect must leave: neurons share each split's noise, so they
    # are not independent trials of it.
    n_active = max(int(active.sum()), 1)
    null_diff, null_sw, null_mean = [], [], []
    for i in range(null_score.shape[0]):
        others = torch.cat([null_score[:i], null_score[i + 1 :]])
        thr = torch.quantile(others, cfg.level, dim=0)
        null_diff.append(float((active & (null_score[i] > thr)).sum()) / n_active)
        null_sw.append(float((active & null_switch[i]).sum()) / n_active)
        null_mean.append(float(null_score[i][active].mean()) if active.any() else 0.0)

    top = min(cfg.top_voices, W2.shape[0])
    ta_s, ta_f = sa.t().topk(top, dim=1)  # (d, top)
    tb_s, tb_f = sb.t().topk(top, dim=1)
    idx = active.nonzero().flatten()
    diff_rate = _rate(different, active, cfg.level)
    switch_rate = _rate(switch, active, cfg.level)
    mean_score = _mean_ci(score[idx], cfg, seed)
    ranges = {
        "different_fraction": null_interval(null_diff, level=cfg.level, method="splits"),
        "dominant_change_fraction": null_interval(null_sw, level=cfg.level, method="splits"),
        "mean_score": null_interval(null_mean, level=cfg.level, method="splits"),
        "mean_feature_score": null_interval(null_feature, level=cfg.level, method="splits"),
    }
    mean_feature = _mean_ci(feature_score[idx], cfg, seed)

    def decide(effect: dict[str, Any] | None, null: Interval) -> str | None:
        if effect is None or effect["estimate"] is None:
            return None
        return verdict(_interval(effect), null)

    # Where the dictionary's voices live: a feature's energy per token on A against on B.
    rate_a, rate_b = ma / na, mb / nb  # (d_sae,)
    fired = (rate_a + rate_b) > 0
    frac_a = torch.where(fired, rate_a / (rate_a + rate_b).clamp_min(1e-300), 0.0)
    summary: dict[str, Any] = {
        "d": int(score.numel()),
        "d_sae": int(W2.shape[0]),
        "rows": {"a": na, "b": nb},
        "documents": {"a": len(a.rows), "b": len(b.rows)},
        "features": {
            "fired": int(fired.sum()),
            "mostly_a": int((fired & (frac_a >= 0.9)).sum()),
            "mostly_b": int((fired & (frac_a <= 0.1)).sum()),
            "both": int((fired & (frac_a > 0.1) & (frac_a < 0.9)).sum()),
            "unit": "features by the share of their energy per token that falls on A "
            "(mostly: at least 90%)",
        },
        "neurons": {
            "n": int(active.sum()),
            "different_fraction": diff_rate,
            "dominant_change_fraction": switch_rate,
            "mean_score": _mean_ci(score[idx], cfg, seed),
            "median_score": float(score[idx].median()) if idx.numel() else None,
            "mean_feature_score": mean_feature,
            "unit": "neuron with some feature share on both corpora",
        },
        "null": {
            "kind": "random halves of each corpus's documents, scores scaled to the A-vs-B sizes",
            "splits": 2 * cfg.null_splits,
            "threshold_quantile": cfg.level,
            **{
                k: {**v.to_dict(), "mean": sum(vals) / len(vals)}
                for (k, v), vals in zip(
                    ranges.items(), (null_diff, null_sw, null_mean, null_feature), strict=True
                )
            },
            "unit": "one value per split (its median and central range over splits)",
        },
        "verdict": {
            "different": decide(diff_rate, ranges["different_fraction"]),
            "dominant_change": decide(switch_rate, ranges["dominant_change_fraction"]),
            "mean_score": decide(mean_score, ranges["mean_score"]),
            "mean_feature_score": decide(mean_feature, ranges["mean_feature_score"]),
        },
    }
    return CorpusDriftResult(
        score=score.float(),
        score_low=low.float(),
        score_high=high.float(),
        threshold=threshold.float(),
        different=different,
        active=active,
        dominant_a=dom_a,
        dominant_b=dom_b,
        top_a=ta_f,
        top_a_shares=ta_s.float(),
        top_b=tb_f,
        top_b_shares=tb_s.float(),
        error_a=era.float(),
        error_b=erb.float(),
        feature_score=feature_score.float(),
        null_score=null_score.float(),
        summary=summary,
    )


def voices(result: CorpusDriftResult, limit: int | None = None) -> list[dict[str, Any]]:
    """voices.json: per active neuron (by score, highest first; at most `limit`), its score
    with interval and null threshold, dominant voice and top voices `[[feature, share]]` on
    each corpus, and its error share on each."""
    order = torch.argsort(result.score.double(), descending=True)
    out = []
    for j in order.tolist():
        if not bool(result.active[j]):
            continue
        out.append(
            {
                "neuron": j,
                "score": float(result.score[j]),
                "feature_score": float(result.feature_score[j]),
                "ci": [float(result.score_low[j]), float(result.score_high[j])],
                "null_threshold": float(result.threshold[j]),
                "different": bool(result.different[j]),
                "dominant_a": int(result.dominant_a[j]),
                "dominant_b": int(result.dominant_b[j]),
                "a": [
                    [int(f), float(s)]
                    for f, s in zip(result.top_a[j], result.top_a_shares[j], strict=True)
                ],
                "b": [
                    [int(f), float(s)]
                    for f, s in zip(result.top_b[j], result.top_b_shares[j], strict=True)
                ],
                "error_share_a": float(result.error_a[j]),
                "error_share_b": float(result.error_b[j]),
            }
        )
        if limit is not None and len(out) >= limit:
            break
    return out


# ---- model, corpora and SAE ---------------------------------------------------------------


class _Harvested(NamedTuple):
    x: Tensor  # (rows, d) analysed rows
    doc: Tensor  # (rows,)
    x_train: Tensor  # (rows', d) rows of later documents, for a quick SAE
    name: str


@torch.no_grad()
def _harvest(
    loaded: Any, site: str, corpus: Any, rows: int, train_rows: int, cfg: CorpusDriftConfig
) -> _Harvested:
    """The site's activations on the first `rows` tokens of `corpus` (harvest order, the
    batching of `ps.harvest`) and up to `train_rows` more from documents not among them."""
    from polysemy.activations.harvest import iter_batches
    from polysemy.models.sites import read_sites

    name = str(getattr(corpus, "name", "documents"))
    xs, docs = [], []
    have = 0
    with read_sites(loaded, [site], early_exit=True) as reader:
        for batch in iter_batches(
            loaded.tokenizer, corpus, seq_len=cfg.seq_len, batch_size=cfg.batch_size
        ):
            v = reader.run(input_ids=batch.input_ids, attention_mask=batch.attention_mask)[site]
            xs.append(v[batch.keep].float())  # (rows in batch, d)
            docs.append(batch.doc)
            have += batch.rows
            if have >= rows + train_rows:
                break
    if not xs:
        raise ValueError(f"corpus {name!r} holds no text tokens; nothing to compare")
    x, doc = torch.cat(xs), torch.cat(docs)
    analysed = doc[:rows]
    later = ~torch.isin(doc[rows:], analysed)  # the SAE never trains on an analysed document
    return _Harvested(x[:rows], analysed, x[rows:][later][:train_rows], name)


@torch.no_grad()
def _encode(sae: Any, x: Tensor, doc: Tensor, chunk: int = 2048) -> tuple[CorpusRows, dict]:
    """`corpus_rows` of the SAE's codes and error on x, `chunk` rows at a time (dense codes
    of a wide SAE on every row at once would not fit), with its FVU and l0 on x."""
    _, inverse = torch.unique(doc, return_inverse=True)
    n = int(inverse.max()) + 1
    mass = torch.zeros(n, int(sae.d_sae), dtype=torch.float64)
    error = torch.zeros(n, x.shape[1], dtype=torch.float64)
    sq_err, l0 = 0.0, 0.0
    for a in range(0, x.shape[0], chunk):
        z = sae.encode(x[a : a + chunk])  # (chunk, d_sae)
        e = x[a : a + chunk] - sae.decode(z)  # (chunk, d)
        mass.index_add_(0, inverse[a : a + chunk], z.double() ** 2)
        error.index_add_(0, inverse[a : a + chunk], e.double() ** 2)
        sq_err += float((e.double() ** 2).sum())
        l0 += float((z != 0).sum())
    var = float(((x.double() - x.double().mean(0)) ** 2).sum())
    stats = {"fvu": sq_err / var if var > 0 else None, "l0": l0 / x.shape[0]}
    return CorpusRows(mass, error, torch.bincount(inverse, minlength=n)), stats


def _open(corpus: Any, seed: int) -> Any:
    if isinstance(corpus, str):
        from polysemy.corpora import open_corpus

        return open_corpus(corpus, seed=seed)
    if not isinstance(corpus, Iterable):
        raise ParameterError("corpus", "a corpus spec, a Corpus or an iterable of texts", corpus)
    return corpus


def _quick_sae(x_train: Tensor, cfg: CorpusDriftConfig) -> Any:
    from polysemy.api import train_sae

    d = x_train.shape[1]
    return train_sae(
        x_train,
        arch="topk",
        k=min(cfg.k, cfg.expansion * d),
        d_sae=cfg.expansion * d,
        tokens=cfg.sae_tokens,
        batch_size=min(1024, x_train.shape[0]),
        seed=cfg.sae_seed,
        progress=False,
    ).sae.eval()


def organism_snapshot(
    organism_run: str | os.PathLike[str], step: int | None = None
) -> tuple[Path, str]:
    """The folder of an organism run's snapshot at `step` (default: the last) and the run's
    MLP site."""
    run = Path(organism_run)
    meta_path = run / "organism.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"organism_run must be an organism run folder (with organism.json); got {str(run)!r}"
        )
    meta = json.loads(meta_path.read_text())
    snaps = meta.get("snapshots", [])
    if not snaps:
        raise ValueError(f"organism_run must hold a snapshot; got none in {str(run)!r}")
    steps = [int(s["step"]) for s in snaps]
    if step is None:
        pick = snaps[-1]
    elif step in steps:
        pick = snaps[steps.index(step)]
    else:
        raise ParameterError("snapshot", f"one of the run's snapshot steps {steps}", step)
    from polysemy.organism.train import require_causal

    require_causal(run / pick["path"], "organism_run's snapshot")
    return run / pick["path"], str(meta["model"]["sites"]["mlp"])


def corpus_drift(
    loaded: Any,
    site: str,
    sae: Any,
    corpus_a: Any,
    corpus_b: Any,
    config: CorpusDriftConfig | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    seed: int = 0,
    **options: Any,
) -> CorpusDriftResult:
    """Each neuron of `site` as a chorus of `sae`'s features on `corpus_a` and on `corpus_b`
    (module docstring).

    `loaded`: a `LoadedModel` or a name/folder for `load_model` (an organism snapshot
    folder too: `organism_snapshot`). `sae`: an SAE, a checkpoint folder, or None to train a
    quick TopK SAE on `sae_rows` tokens of both corpora (documents never analysed).
    `corpus_a`/`corpus_b`: specs for `open_corpus` (with `seed`), `Corpus` objects or
    iterables of texts. When `out` is given, writes an analysis folder of kind "drift"
    (`corpus_drift.safetensors`, `voices.json`)."""
    from polysemy.models import load_model
    from polysemy.models.sites import get_site

    cfg = configured(CorpusDriftConfig, config, options)
    check_int("seed", seed, least=0)
    if not isinstance(site, str) or not site:
        raise ParameterError("site", "a site name", site)
    if isinstance(loaded, str | os.PathLike):
        from transformers.utils import logging as hf_logging

        # An organism snapshot leaves its LM head unused, which transformers reports at length.
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            loaded = load_model(loaded)
        finally:
            hf_logging.set_verbosity(level)
    if loaded.tokenizer is None:
        raise ValueError(f"loaded must have a tokenizer to read text; {loaded.name!r} has none")
    if not get_site(loaded, site).per_token:
        raise ParameterError("site", "a per-token site (e.g. a layer's output)", site)
    max_pos = getattr(getattr(loaded.model, "config", None), "max_position_embeddings", None)
    if isinstance(max_pos, int) and cfg.seq_len > max_pos:
        raise ParameterError("seq_len", f"at most the model's {max_pos} positions", cfg.seq_len)
    sae_path = None
    if isinstance(sae, str | os.PathLike):
        from polysemy.sae.io import load_sae

        sae_path = str(sae)
        sae = load_sae(sae)
    docs_a, docs_b = _open(corpus_a, seed), _open(corpus_b, seed)
    path = start_analysis(out, force=force) if out is not None else None

    train_rows = 0 if sae is not None else cfg.sae_rows // 2
    ha = _harvest(loaded, site, docs_a, cfg.tokens, train_rows, cfg)
    hb = _harvest(loaded, site, docs_b, cfg.tokens, train_rows, cfg)
    d = ha.x.shape[1]
    trained = sae is None
    if sae is None:
        x_train = torch.cat([ha.x_train, hb.x_train])
        if x_train.shape[0] < 2:
            raise ParameterError(
                "sae", "an SAE, or corpora with documents beyond the analysed tokens", None
            )
        log.info("training a quick TopK SAE on %d rows of both corpora", x_train.shape[0])
        sae = _quick_sae(x_train, cfg)
    if int(sae.d_in) != d:
        raise ParameterError("sae", f"an SAE with d_in={d} (the site's width)", sae.d_in)
    sae = sae.eval()
    stats = {}
    rows = {}
    for key, h in (("a", ha), ("b", hb)):
        rows[key], stats[key] = _encode(sae, h.x, h.doc)
    W_dec = sae.W_dec.detach()
    result = corpus_drift_scores(rows["a"], rows["b"], W_dec, cfg, seed=seed)
    summary = {
        "across": "corpora",
        "model": loaded.name,
        "site": site,
        "corpus_a": ha.name,
        "corpus_b": hb.name,
        **result.summary,
        "sae": {
            "path": sae_path,
            "trained_here": trained,
            "rows": int(ha.x_train.shape[0] + hb.x_train.shape[0]) if trained else None,
            "on_a": stats["a"],
            "on_b": stats["b"],
        },
        "examples": voices(result, limit=3),
    }
    result = result._replace(summary=summary)
    if path is not None:
        write_analysis(
            path,
            "drift",
            inputs={
                "model": loaded.name,
                "site": site,
                "sae": sae_path,
                "corpus_a": ha.name,
                "corpus_b": hb.name,
                "seed": seed,
                "config": dataclasses.asdict(cfg),
            },
            summary=summary,
            files={
                "corpus_drift.safetensors": {
                    "score": result.score.contiguous(),
                    "score_low": result.score_low.contiguous(),
                    "score_high": result.score_high.contiguous(),
                    "threshold": result.threshold.contiguous(),
                    "different": result.different.to(torch.uint8).contiguous(),
                    "active": result.active.to(torch.uint8).contiguous(),
                    "dominant_a": result.dominant_a.contiguous(),
                    "dominant_b": result.dominant_b.contiguous(),
                    "top_a": result.top_a.contiguous(),
                    "top_a_shares": result.top_a_shares.contiguous(),
                    "top_b": result.top_b.contiguous(),
                    "top_b_shares": result.top_b_shares.contiguous(),
                    "error_a": result.error_a.contiguous(),
                    "error_b": result.error_b.contiguous(),
                    "feature_score": result.feature_score.contiguous(),
                    "null_score": result.null_score.contiguous(),
                },
                "voices.json": voices(result),
            },
        )
    return result
