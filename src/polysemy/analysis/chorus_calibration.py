"""Calibration of the neurons and features analyses on planted stores, where the truth is known.

A store from `polysemy.synth` with `neuron_support=s` plants each feature on s random
coordinates (with `chorus=c`, the well-posed layout of `plant_chorus`: exactly c features per
neuron, distinct loadings, no near-twins), so neuron j's true chorus is known: with
magnitudes drawn alike for every feature, the true share of feature f in neuron j is

    T[f, j] = n_f |F[f, j]| / sum_g n_g |F[g, j]|      (n_f: rows where f fired)

An SAE is trained on the store, each latent is matched to the planted feature of largest
decoder cosine, and the analyses' reports are scored against T:

- `calibrate_neurons`: per neuron, is the reported top feature the true top feature, and is
  the reported top-3 set the true top-3 set (rates with exact binomial intervals), strictly
  over every neuron and again where a top 3 exists (3 or more planted features on the
  neuron) and where the SAE learned all three; Spearman correlation of reported and true
  shares and effective numbers; whether the rotated-basis null is told apart (verdict). The
  truth uses the magnitudes actually drawn (`realised_mass`).
- `calibrate_neurons_toy`: the same on the hidden layer of toy ReLU-hidden models, whose
  loadings W[j, i] are known, with an oracle or a trained SAE.
- `calibrate_features`: for planted features recovered by a latent (cosine > 0.9), does the
  latent's spread over neurons match the truth (participation ratio within 25%, same number
  of neurons holding 90% of the mass), and how often is a planted feature called
  *concentrated* (PR below the random-direction null's 2.5% quantile): the true-positive
  rate on sparse loadings and the false-positive rate on dense random features (which are
  the null, so about 2.5% is expected).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from polysemy.analysis.stats import Interval, binomial_ci, null_interval, spearman
from polysemy.validation import check_int


class PlantedSetup(NamedTuple):
    store: Any
    sae: Any
    truth: Tensor
    """`[n_features, d_in]` planted features."""
    fired: Tensor
    """`[n_features]` rows each fired in."""
    latent_truth: Tensor
    """`[d_sae]` planted feature of largest cosine with each latent."""
    latent_cosine: Tensor
    """`[d_sae]` that cosine."""


def planted_setup(
    folder: str | Path,
    *,
    n_features: int,
    d_in: int,
    neuron_support: int,
    active: float,
    tokens: int,
    train_tokens: int,
    seed: int = 0,
    chorus: int = 0,
    chorus_ratio: float = 0.7,
    d_sae: int | None = None,
    k: int | None = None,
    lr: float = 3e-3,
    batch_size: int = 1024,
) -> PlantedSetup:
    """A planted store with known loadings and a TopK SAE trained on it (d_sae: n_features
    unless given; k: round(active) + 1 unless given)."""
    from polysemy.api import synth, train_sae

    store = synth(
        Path(folder) / "store",
        n_features=n_features,
        d_in=d_in,
        active=active,
        tokens=tokens,
        neuron_support=neuron_support,
        chorus=chorus,
        chorus_ratio=chorus_ratio,
        seed=seed,
        progress=False,
    )
    run = train_sae(
        store,
        arch="topk",
        d_sae=d_sae or n_features,
        k=k or max(1, round(active) + 1),
        tokens=train_tokens,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        progress=False,
    )
    truth = store.truth()
    assert truth is not None
    F = truth["features"].double()
    W = run.sae.W_dec.detach().double()
    cos = (W / W.norm(dim=1, keepdim=True)) @ (F / F.norm(dim=1, keepdim=True)).t()
    best_cos, best = cos.max(dim=1)
    return PlantedSetup(store, run.sae, F, truth["count"], best, best_cos)


def realised_mass(store: Any, power: int) -> Tensor:
    """`[n_features]`: sum over the rows where each planted feature fired of |a|^power, its
    coefficient; regenerated from the store's seeded synth config, so the truth holds the
    magnitudes actually drawn, not their expectation."""
    from polysemy.synth import SynthConfig
    from polysemy.synth.planted import generate_chunks

    config = SynthConfig(**store.source["synth"])
    mass = torch.zeros(config.n_features, dtype=torch.float64)
    for chunk in generate_chunks(config):
        mass.index_add_(0, chunk.features, chunk.values.double().abs() ** power)
    return mass


class NeuronsCalibration(NamedTuple):
    """How often `analyze_neurons` names a planted store's true chorus.

    Reported latents are read as the planted feature of largest decoder cosine. The strict
    rates count every neuron; the others say where the misses come from: neurons whose
    true top 3 does not exist (fewer than 3 features load on them: the "true top 3" then
    holds arbitrary zero-share features), and features the SAE never learned."""

    top1: Interval
    """Neurons whose reported top feature is the true top feature."""
    top3: Interval
    """Neurons whose reported top-3 set is the true top-3 set (strict: every neuron)."""
    top3_defined: Interval
    """The same among neurons with at least 3 planted features."""
    top3_recovered: Interval
    """The same among neurons with at least 3 planted features whose true top 3 the SAE
    all recovered (a latent with decoder cosine > 0.9): the analysis's own error."""
    top1_in_top3: Interval
    """Neurons whose true top feature is among the reported top 3."""
    top1_recovered: Interval
    """Top feature right, among neurons whose true top feature the SAE recovered (a latent
    with decoder cosine > 0.9): the analysis's own error, apart from the SAE's."""
    share_spearman: float
    """Median over neurons of the Spearman correlation of reported and true shares, over
    the planted features that load on the neuron and that the SAE recovered (reported
    shares of latents read as the same feature summed); neurons with 3 or more such."""
    share_spearman_neurons: int
    """Neurons in that median."""
    effective_spearman: float
    """Spearman correlation of reported and true effective numbers over neurons."""
    effective_median: float
    """Median reported effective number of features."""
    true_effective_median: float
    baseline_effective_median: float
    """Median effective number for the randomly rotated basis (the null)."""
    verdict: str
    """The analysis's verdict against its null (`effect` expected on a privileged basis)."""
    n_neurons: int
    recovered: int
    """Planted features with a latent of decoder cosine > 0.9."""
    recipe: dict[str, Any]
    """How the SAE was trained."""


def calibrate_neurons(
    *,
    n_features: int = 256,
    d_in: int = 128,
    neuron_support: int = 2,
    active: float = 4.0,
    tokens: int = 100_000,
    train_tokens: int = 600_000,
    seed: int = 0,
    chorus: int = 0,
    chorus_ratio: float = 0.7,
    share: str = "squared",
    d_sae: int | None = None,
    k: int | None = None,
    lr: float = 3e-3,
    batch_size: int = 1024,
) -> NeuronsCalibration:
    """Run `analyze_neurons` on a planted store with known loadings; score it (module doc).
    `d_sae`, `k`, `lr`, `batch_size` and `train_tokens` are the SAE's training recipe;
    `chorus` c > 0 plants the well-posed store (`polysemy.synth.plant_chorus`: exactly c
    features per neuron with distinct loadings, no near-twins; n_features must then be
    d_in * c / neuron_support), 0 the random supports."""
    from polysemy.analysis.neurons import analyze_neurons, effective_numbers

    check_int("n_features", n_features, least=4)
    recipe = {"d_sae": d_sae or n_features, "k": k or max(1, round(active) + 1), "lr": lr,
              "batch_size": batch_size, "train_tokens": train_tokens}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        setup = planted_setup(
            tmp,
            n_features=n_features,
            d_in=d_in,
            neuron_support=neuron_support,
            active=active,
            tokens=tokens,
            train_tokens=train_tokens,
            seed=seed,
            chorus=chorus,
            chorus_ratio=chorus_ratio,
            d_sae=d_sae,
            k=k,
            lr=lr,
            batch_size=batch_size,
        )
        power = 2 if share == "squared" else 1
        true_mass = realised_mass(setup.store, power)[:, None] * setup.truth.abs() ** power
        result = analyze_neurons(
            setup.sae, setup.store, texts=False, top_features=setup.sae.d_sae, rows=tokens,
            seed=seed, share=share,
        )  # fmt: skip
    # true_mass[f, j]: neuron j's true (unnormalised) share of planted feature f.
    n_loaded = (true_mass > 0).sum(0)  # (d_in,) planted features on each neuron
    true_top = true_mass.topk(3, dim=0).indices.t()  # (d_in, 3)
    reported = setup.latent_truth[result.top_features]  # (d_in, d_sae) as planted ids
    top1 = reported[:, 0] == true_top[:, 0]
    top3 = torch.tensor(
        [set(r) == set(t) for r, t in zip(reported[:, :3].tolist(), true_top.tolist(), strict=True)]
    )
    in_top3 = (reported[:, :3] == true_top[:, :1]).any(1)
    recovered = torch.zeros(n_features, dtype=torch.bool)
    recovered[setup.latent_truth[setup.latent_cosine > 0.9]] = True
    has_top1 = recovered[true_top[:, 0]]
    defined = n_loaded >= 3
    has_top3 = defined & recovered[true_top].all(1)
    # Reported shares summed by planted id: [d_in, n_features].
    shares = torch.zeros(d_in, n_features, dtype=torch.float64)
    shares.scatter_add_(1, reported, result.shares)
    rhos = []
    for j in range(d_in):
        keep = (true_mass[:, j] > 0) & recovered
        if int(keep.sum()) >= 3:
            rhos.append(spearman(shares[j, keep], true_mass[keep, j]))
    true_eff = effective_numbers(true_mass)
    rate = lambda hit, among: binomial_ci(int(hit[among].sum()), max(int(among.sum()), 1))  # noqa: E731
    every = torch.ones(d_in, dtype=torch.bool)
    return NeuronsCalibration(
        top1=rate(top1, every),
        top3=rate(top3, every),
        top3_defined=rate(top3, defined),
        top3_recovered=rate(top3, has_top3),
        top1_in_top3=rate(in_top3, every),
        top1_recovered=rate(top1, has_top1),
        share_spearman=float(torch.tensor(rhos).median()) if rhos else float("nan"),
        share_spearman_neurons=len(rhos),
        effective_spearman=spearman(result.effective_features, true_eff),
        effective_median=float(result.effective_features.median()),
        true_effective_median=float(true_eff.median()),
        baseline_effective_median=result.baseline_effective_features_median.estimate,
        verdict=result.verdict,
        n_neurons=d_in,
        recovered=int(recovered.sum()),
        recipe=recipe,
    )


class FeaturesCalibration(NamedTuple):
    """How well `analyze_features` measures planted features' spread over neurons."""

    recovered: int
    """Planted features matched by a latent with decoder cosine > 0.9 (the ones scored)."""
    pr_within_25pct: Interval
    """Recovered features whose latent's participation ratio is within 25% of the truth's."""
    same_neurons_90: Interval
    """Recovered features whose latent needs as many neurons for 90% of its mass as truth."""
    concentrated_sparse: Interval
    """Latents of recovered sparse-loading features called concentrated (true positives)."""
    concentrated_dense: Interval
    """Dense random planted features called concentrated (false positives; ~2.5% by design)."""
    null_median: float
    """Median participation ratio of random directions (about d_in / 3)."""


def calibrate_features(
    *,
    n_features: int = 256,
    d_in: int = 128,
    neuron_support: int = 3,
    active: float = 4.0,
    tokens: int = 100_000,
    train_tokens: int = 600_000,
    seed: int = 0,
) -> FeaturesCalibration:
    """Run `analyze_features` on a planted store with known loadings; score it (module doc)."""
    from polysemy.analysis.features import analyze_features, spread_over_neurons
    from polysemy.synth import plant_dictionary

    with tempfile.TemporaryDirectory() as tmp:
        setup = planted_setup(
            tmp,
            n_features=n_features,
            d_in=d_in,
            neuron_support=neuron_support,
            active=active,
            tokens=tokens,
            train_tokens=train_tokens,
            seed=seed,
        )
        result = analyze_features(setup.sae, setup.store, texts=False, rows=tokens, seed=seed)
    pr = result.arrays["participation_ratio"]
    n90 = result.arrays["neurons_90"]
    true_pr, _, true_n90 = spread_over_neurons(setup.truth)
    # Each planted feature scored once, by its best latent above 0.9.
    scored: dict[int, int] = {}
    for latent, (t, c) in enumerate(
        zip(setup.latent_truth.tolist(), setup.latent_cosine.tolist(), strict=True)
    ):
        if c > 0.9 and (t not in scored or c > setup.latent_cosine[scored[t]]):
            scored[t] = latent
    planted = torch.tensor(list(scored), dtype=torch.int64)
    latents = torch.tensor(list(scored.values()), dtype=torch.int64)
    n = max(len(scored), 1)
    close = ((pr[latents] - true_pr[planted]).abs() <= 0.25 * true_pr[planted]).sum()
    same90 = (n90[latents] == true_n90[planted]).sum()
    null = null_interval(result.arrays["null_participation_ratio"])
    sparse_hits = (pr[latents] < null.low).sum()
    dense = plant_dictionary(4 * n_features, d_in, seed=seed + 1)
    dense_pr, _, _ = spread_over_neurons(dense)
    dense_hits = int((dense_pr < null.low).sum())
    return FeaturesCalibration(
        recovered=len(scored),
        pr_within_25pct=binomial_ci(int(close), n),
        same_neurons_90=binomial_ci(int(same90), n),
        concentrated_sparse=binomial_ci(int(sparse_hits), n),
        concentrated_dense=binomial_ci(dense_hits, dense.shape[0]),
        null_median=null.estimate,
    )


class ToyNeuronsCalibration(NamedTuple):
    """How often `analyze_neurons` names a toy ReLU-hidden model's true chorus, pooled over
    its instances (one per sparsity) and their live neurons."""

    sae: str
    """`oracle` (exact decoder, the toy's own readout as encoder) or `trained` (TopK)."""
    top1: Interval
    """Live neurons whose reported top feature is the true top feature."""
    top3: Interval
    """Live neurons whose reported top-3 set is the true top-3 set (strict)."""
    top3_defined: Interval
    """The same among neurons with at least 3 features of positive loading."""
    top1_in_top3: Interval
    """Live neurons whose true top feature is among the reported top 3."""
    effective_spearman: float
    """Spearman correlation of reported and true effective numbers over live neurons."""
    effective_median: float
    true_effective_median: float
    baseline_effective_median: float
    """Median effective number for the randomly rotated basis (the null), over instances."""
    verdicts: tuple[str, ...]
    """The analysis's verdict against its null, per instance."""
    per_instance: tuple[dict[str, Any], ...]
    """Per sparsity: `sparsity`, `live`, `top1` (Interval), `effective_spearman`."""
    live_neurons: int
    """Neurons with a positive loading on some feature (the others never fire)."""


def _toy_store(folder: Path, h: Tensor) -> Any:
    from polysemy.activations.store import ActivationStore, StoreWriter

    source = {"model": "toy", "site": "hidden", "corpus": "toy", "seq_len": 1}
    with StoreWriter(folder, d_in=h.shape[1], dtype="float32", source=source) as writer:
        writer.append(h)
    return ActivationStore(folder)


def calibrate_neurons_toy(
    *,
    n_features: int = 64,
    n_hidden: int = 32,
    sparsity: tuple[float, ...] = (0.9, 0.95, 0.97, 0.99),
    steps: int = 4000,
    rows: int = 20_000,
    sae: str = "oracle",
    train_tokens: int = 300_000,
    seed: int = 0,
    share: str = "squared",
) -> ToyNeuronsCalibration:
    """Run `analyze_neurons` on the hidden layer h = ReLU(W x) of toy ReLU-hidden models.

    Truth: feature i alone writes x_i ReLU(W[:, i]) into h (x_i >= 0), so neuron j's true
    chorus is T[i, j] = sum_rows x_i^p ReLU(W[j, i])^p over the sampled rows (p = 2 for
    squared shares). `sae="oracle"`: an SAE whose decoder rows are those directions
    ReLU(W[:, i]) and whose encoder is the toy's own readout ReLU(W^T h + b) (exact decoder,
    approximate codes: interference is the toy's); `sae="trained"`: a TopK SAE trained on h
    (d_sae = n_features, k = expected active features + 1), latents read as the feature of
    largest decoder cosine."""
    from polysemy.analysis.neurons import analyze_neurons, effective_numbers
    from polysemy.api import train_sae
    from polysemy.sae import sae_from_weights
    from polysemy.toy import ToyConfig, sample_features, train_toy

    check_int("n_features", n_features, least=4)
    check_int("n_hidden", n_hidden, least=2)
    check_int("rows", rows, least=100)
    if sae not in ("oracle", "trained"):
        raise ValueError(f"sae must be 'oracle' or 'trained'; got {sae!r}")
    power = 2 if share == "squared" else 1
    toy = train_toy(
        ToyConfig.sweep("relu-hidden", n_features, n_hidden, sparsity, steps=steps, seed=seed)
    )
    x = sample_features(sparsity, n_features, rows, generator=torch.Generator().manual_seed(seed))
    hits: dict[str, list[Tensor]] = {"top1": [], "top3": [], "in3": [], "defined": []}
    eff, true_eff, null, verdicts, per = [], [], [], [], []
    for i, s in enumerate(sparsity):
        W = toy.W[i].float()  # (n_hidden, n_features)
        directions = torch.relu(W).t().contiguous()  # (n_features, n_hidden): x_i alone
        h = torch.relu(x[i] @ W.t())  # (rows, n_hidden)
        with tempfile.TemporaryDirectory() as tmp:
            store = _toy_store(Path(tmp) / "h", h)
            if sae == "oracle":
                model = sae_from_weights(
                    "relu", W_enc=W.clone(), b_enc=toy.b_final[i].float().clone(),
                    W_dec=directions, b_dec=torch.zeros(n_hidden),
                )  # fmt: skip
                as_feature = torch.arange(n_features)
            else:
                k = max(1, round(n_features * (1 - s)) + 1)
                run = train_sae(
                    store, arch="topk", d_sae=n_features, k=k, tokens=train_tokens,
                    batch_size=512, lr=4e-3, seed=seed, progress=False,
                )  # fmt: skip
                model = run.sae
                D = model.W_dec.detach().double()
                U = directions.double()
                cos = (D / D.norm(dim=1, keepdim=True).clamp_min(1e-12)) @ (
                    U / U.norm(dim=1, keepdim=True).clamp_min(1e-12)
                ).t()
                as_feature = cos.argmax(1)
            r = analyze_neurons(model, store, texts=False, top_features=3, rows=rows,
                                seed=seed, share=share)  # fmt: skip
        T = (x[i].double().abs() ** power).sum(0)[:, None] * directions.double() ** power
        live = T.sum(0) > 0  # a neuron with no positive loading never fires
        true_top = T.topk(3, dim=0).indices.t()  # (n_hidden, 3)
        reported = as_feature[r.top_features]
        t1 = reported[:, 0] == true_top[:, 0]
        t3 = torch.tensor(
            [set(a) == set(b) for a, b in zip(reported.tolist(), true_top.tolist(), strict=True)]
        )
        hits["top1"].append(t1[live])
        hits["top3"].append(t3[live])
        hits["in3"].append((reported == true_top[:, :1]).any(1)[live])
        hits["defined"].append(((T > 0).sum(0) >= 3)[live])
        e, te = r.effective_features[live], effective_numbers(T)[live]
        eff.append(e)
        true_eff.append(te)
        verdicts.append(r.verdict)
        null.append(r.baseline_effective_features_median.estimate)
        per.append(
            {
                "sparsity": s,
                "live": int(live.sum()),
                "top1": binomial_ci(int(t1[live].sum()), max(int(live.sum()), 1)),
                "effective_spearman": spearman(e, te) if e.numel() > 1 else float("nan"),
            }
        )
    t1, t3, in3, defined = (torch.cat(hits[key]) for key in ("top1", "top3", "in3", "defined"))
    n = max(t1.numel(), 1)
    all_eff, all_true = torch.cat(eff), torch.cat(true_eff)
    return ToyNeuronsCalibration(
        sae=sae,
        top1=binomial_ci(int(t1.sum()), n),
        top3=binomial_ci(int(t3.sum()), n),
        top3_defined=binomial_ci(int(t3[defined].sum()), max(int(defined.sum()), 1)),
        top1_in_top3=binomial_ci(int(in3.sum()), n),
        effective_spearman=spearman(all_eff, all_true),
        effective_median=float(all_eff.median()),
        true_effective_median=float(all_true.median()),
        baseline_effective_median=float(torch.tensor(null).median()),
        verdicts=tuple(verdicts),
        per_instance=tuple(per),
        live_neurons=int(t1.numel()),
    )
