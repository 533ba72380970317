"""Calibrate `analyze_probes` where the answer is known: planted features and a spurious neuron.

Each trial plants a dictionary (`polysemy.synth`: `n_features` unit directions in `d_in`
dimensions, Zipf frequencies so feature 0 fires on about 40% of rows) and labels a row
positive when feature 0 is active: the concept *is* feature 0. One extra neuron (coordinate
`d_in`, outside every feature's span) is made spurious: on the training and i.i.d. rows it is
the label plus noise, so a single-neuron probe latches onto it; on the shifted rows
("broken") it is an independent coin at the same rate. A second shifted set ("fresh") is
another sample of the training distribution. The SAE is the planted dictionary itself
(z = ReLU(x W_decᵀ), blind to the spurious neuron). Counted over trials:

- `feature_missed`: the single-feature probe reads a feature other than 0;
- `direction_missed`: the direction probe, fitted on rows without the spurious neuron, has
  |cos| < 0.5 with feature 0's direction (random directions in 32 dimensions: about 0.14);
- `gap_missed`: the single-neuron probe's gap on "broken" is not called an effect;
- `gap_false_feature`: the feature probes' (feature, features) gaps on "broken" called an
  effect (the features never saw the spurious neuron: truth, no gap);
- `gap_false_fresh`: any probe's gap on "fresh" called an effect (truth: no gap);
- `selectivity_false`: with labels drawn independently of the rows, a probe's selectivity
  called an effect (truth: nothing to learn).

>>> cal = calibrate_probes(trials=4)                                  # doctest: +SKIP
>>> cal.gap_missed.estimate, cal.gap_false_fresh.high                 # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from polysemy.analysis.probe_data import LabelledRows
from polysemy.analysis.probes import analyze_probes
from polysemy.analysis.stats import Interval, binomial_ci
from polysemy.validation import check_int


@dataclass(frozen=True)
class ProbesCalibration:
    """Error rates of `analyze_probes` where the truth is known (module docstring)."""

    trials: int
    rows: int
    feature_missed: Interval
    direction_missed: Interval
    gap_missed: Interval
    gap_false_feature: Interval
    gap_false_fresh: Interval
    selectivity_false: Interval

    def to_dict(self) -> dict[str, Any]:
        rates = ("feature_missed", "direction_missed", "gap_missed", "gap_false_feature",
                 "gap_false_fresh", "selectivity_false")  # fmt: skip
        return {"trials": self.trials, "rows": self.rows,
                **{r: getattr(self, r).to_dict() for r in rates}}  # fmt: skip


class PlantedEncoder:
    """The planted dictionary as an SAE: z = ReLU(x W_decᵀ) on the first `d_in` coordinates
    (zero weight on any coordinate beyond them)."""

    def __init__(self, W_dec: Tensor) -> None:
        self.W_dec = W_dec  # (d_sae, width)
        self.d_in = int(W_dec.shape[1])

    def encode(self, x: Tensor) -> Tensor:
        return torch.relu(x @ self.W_dec.T)


def planted_rows(
    rows: int,
    *,
    seed: int,
    n_features: int = 64,
    d_in: int = 32,
    spurious: str = "label",
    strength: float = 3.0,
    random_labels: bool = False,
    words: int = 500,
    doc_rows: int = 10,
    dictionary_seed: int | None = None,
) -> tuple[LabelledRows, Tensor]:
    """Rows of a planted store labelled by feature 0's firing, with one extra spurious
    neuron: `label` (`strength` times the label, plus N(0, 1) noise), `coin` (the same with
    an independent coin at the label's rate instead of the label) or `none` (zero). The
    dictionary is drawn from `dictionary_seed` (default `seed`), so sets of other rows can
    share it. Returns the rows and the planted features `[n_features, d_in + 1]` (zero in the
    spurious coordinate)."""
    from polysemy.synth.planted import SynthConfig, generate_chunks, plant_dictionary

    config = SynthConfig(n_features=n_features, d_in=d_in, active=2.0, tokens=rows, seed=seed,
                         frequency_decay=1.0, noise=0.05)  # fmt: skip
    planted = plant_dictionary(
        n_features, d_in, seed=seed if dictionary_seed is None else dictionary_seed
    )
    xs, ys = [], []
    start = 0
    for chunk in generate_chunks(config, features=planted):
        n = chunk.activations.shape[0]
        y = torch.zeros(n, dtype=torch.bool)
        y[chunk.rows[chunk.features == 0]] = True
        xs.append(chunk.activations)
        ys.append(y)
        start += n
    x, y = torch.cat(xs), torch.cat(ys)
    g = torch.Generator().manual_seed(seed + 7919)
    if random_labels:
        y = torch.rand(rows, generator=g) < float(y.double().mean())
    rate = float(y.double().mean())
    if spurious == "label":
        extra = strength * y.float() + torch.randn(rows, generator=g)
    elif spurious == "coin":
        extra = strength * (
            (torch.rand(rows, generator=g) < rate).float() + torch.randn(rows, generator=g)
        )
    else:
        extra = torch.zeros(rows)
    x = torch.cat([x, extra[:, None]], dim=1)  # (rows, d_in + 1)
    word = torch.randint(0, words, (rows,), generator=g)
    doc = torch.arange(rows) // doc_rows
    features = torch.cat([planted, torch.zeros(n_features, 1)], dim=1)
    return LabelledRows(x, y, word, doc, f"planted(seed={seed}, spurious={spurious})"), features


def calibrate_probes(
    *, trials: int = 20, rows: int = 20_000, seed: int = 0, resamples: int = 500
) -> ProbesCalibration:
    """Run the planted trials (module docstring); each trial draws its own dictionary."""
    check_int("trials", trials, least=1)
    check_int("rows", rows, least=1000)
    missed_feature = missed_direction = missed_gap = false_feature = false_fresh = 0
    fresh_tests = selectivity_tests = false_selectivity = 0
    for t in range(trials):
        s = seed + 1000 * t
        train, features = planted_rows(rows, seed=s, spurious="label")
        broken, _ = planted_rows(rows // 2, seed=s + 1, spurious="coin", dictionary_seed=s)
        fresh, _ = planted_rows(rows // 2, seed=s + 2, spurious="label", dictionary_seed=s)
        sae = PlantedEncoder(features)
        result = analyze_probes(train, sae=sae, sets={"broken": broken, "fresh": fresh},
                                resamples=resamples, seed=s)  # fmt: skip
        missed_feature += result.probe("feature").units != (0,)
        missed_gap += result.probe("neuron").gap_verdicts["broken"] != "effect"
        false_feature += sum(result.probe(k).gap_verdicts["broken"] == "effect"
                             for k in ("feature", "features"))  # fmt: skip
        false_fresh += sum(p.gap_verdicts["fresh"] == "effect" for p in result.probes)
        fresh_tests += len(result.probes)
        clean, _ = planted_rows(rows, seed=s, spurious="none")
        direction = analyze_probes(clean, kinds=("direction",), resamples=resamples, seed=s)
        probe = direction.probe("direction").probe
        assert probe is not None
        cos = F.cosine_similarity(probe.coef_[:-1].double(), features[0, :-1].double(), dim=0)
        missed_direction += abs(float(cos)) < 0.5
        noise, _ = planted_rows(rows, seed=s + 3, spurious="none", random_labels=True,
                                dictionary_seed=s)  # fmt: skip
        null = analyze_probes(noise, sae=PlantedEncoder(features), resamples=resamples, seed=s)
        false_selectivity += sum(p.selectivity_verdict == "effect" for p in null.probes)
        selectivity_tests += len(null.probes)
    return ProbesCalibration(
        trials=trials,
        rows=rows,
        feature_missed=binomial_ci(missed_feature, trials),
        direction_missed=binomial_ci(missed_direction, trials),
        gap_missed=binomial_ci(missed_gap, trials),
        gap_false_feature=binomial_ci(false_feature, 2 * trials),
        gap_false_fresh=binomial_ci(false_fresh, fresh_tests),
        selectivity_false=binomial_ci(false_selectivity, selectivity_tests),
    )
