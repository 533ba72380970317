"""Error rates of each evidence test where the truth is known.

Each test is a library calibration routine (so users can rerun it on their own model); this
script runs them and prints every rate with its exact 95% interval and its sample size.

    PYTHONPATH=src python benchmarks/evidence_calibration.py --only ablate
    PYTHONPATH=src python benchmarks/evidence_calibration.py --only geometry
    PYTHONPATH=src python benchmarks/evidence_calibration.py --only neurons
    PYTHONPATH=src python benchmarks/evidence_calibration.py --only attributions
    PYTHONPATH=src python benchmarks/evidence_calibration.py --only pruning
    PYTHONPATH=src python benchmarks/evidence_calibration.py --only probes
    PYTHONPATH=src python benchmarks/evidence_calibration.py --only edits
    PYTHONPATH=src python benchmarks/evidence_calibration.py --quick
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch

from polysemy.analysis.stats import Interval


def _rate(name: str, interval: Interval) -> str:
    k = round(interval.estimate * interval.n)
    return (
        f"  {name:<44} {interval.estimate:6.1%}  [{interval.low:6.1%}, {interval.high:6.1%}]"
        f"  ({k}/{interval.n})"
    )


def ablate(quick: bool) -> None:
    """Planted readout directions (found?) and random directions (flagged?): ablate's verdict
    at 5% against 40 random directions of equal norm (calibrate_ablation)."""
    from polysemy.analysis.ablation_calibration import calibrate_ablation

    trials, examples = (4, 100) if quick else (20, 200)
    cal = calibrate_ablation(trials=trials, examples=examples, random=40)
    print(
        f"ablate: tiny random BERT (2 layers, d_model 32), concepts:heldout, "
        f"{cal.examples} examples, {cal.random} random directions per target, {cal.trials} trials"
    )
    print(_rate("false negative (planted readout missed)", cal.false_negative))
    print(_rate("false positive (readout-blind planted)", cal.false_positive_planted))
    print(_rate("false positive (random, readout, last layer)", cal.false_positive_random))
    print(_rate("false positive (random, embedding, layer 0)", cal.false_positive_random_embedding))


def geometry(quick: bool) -> None:
    """Overlap vs co-occurrence: false-positive rates on planted nulls, detection rates on
    planted and toy geometries of known sign."""
    from polysemy.analysis.geometry_calibration import calibrate_geometry

    t0 = time.perf_counter()
    cal = calibrate_geometry(
        seeds=8 if quick else 40,
        toy_instances=4 if quick else 10,
        sae_seeds=0 if quick else 5,
        resamples=200 if quick else 500,
        permutations=200 if quick else 500,
    )
    print(f"geometry: overlap |cos| vs co-occurrence phi ({time.perf_counter() - t0:.0f} s)")
    print(
        f"{'case':<26}{'truth':<10}{'resample':<10}{'n':>4}  {'rate (95% CI)':<28}"
        f"{'CI holds 0':<26}{'mean rho':>9}"
    )
    for case in cal.cases:
        d = case.to_dict()
        r, z = d["rate"], d["ci_holds_zero"]
        print(
            f"{case.name:<26}{case.truth:<10}{case.resample:<10}{case.trials:>4}  "
            f"{d['rate_name'][:5]} {r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]   "
            f"{z[0]:.3f} [{z[1]:.3f}, {z[2]:.3f}]   {d['rho_mean']:+.3f}"
        )


def _pooled(rates: list[Interval]) -> Interval:
    """One exact interval over several seeds' counts."""
    from polysemy.analysis.stats import binomial_ci

    hits = sum(round(r.estimate * r.n) for r in rates)
    return binomial_ci(hits, sum(r.n for r in rates))


def neurons(quick: bool) -> None:
    """Planted stores (trained TopK SAE) and toy ReLU-hidden models (oracle and trained SAE):
    the reported chorus of each neuron against its known loadings. First the well-posed
    chorus stores (`plant_chorus`: exactly 3 features per neuron, distinct loadings, no
    near-twins) over 5 seeds, then the ill-posed random supports as the contrast."""
    from polysemy.analysis.chorus_calibration import calibrate_neurons, calibrate_neurons_toy

    recipe = {"d_sae": 512, "k": 5, "lr": 4e-3, "batch_size": 512, "train_tokens": 1_000_000}
    seeds = range(2 if quick else 5)
    # (features per neuron c, neurons per feature s, d_in): n_features = d_in * c / s.
    layouts = [(3, 3, 128), (3, 2, 128)]
    if quick:
        recipe = {**recipe, "d_sae": 256, "train_tokens": 300_000}
        layouts = [(3, 3, 64)]
    stores = {
        f"chorus {c} on {s} neurons, {d * c // s} features in {d} dims": {
            "n_features": d * c // s,
            "d_in": d,
            "neuron_support": s,
            "chorus": c,
        }
        for c, s, d in layouts
    }
    for name, store in stores.items():
        t0 = time.perf_counter()
        cs = [calibrate_neurons(**store, active=4.0, seed=seed, **recipe) for seed in seeds]
        print(
            f"neurons, well-posed planted store ({name}, ratio 0.7, 4 active; seeds "
            f"{list(seeds)}; SAE recipe {cs[0].recipe})"
        )
        print(f"  planted features recovered (cos > 0.9) per seed: {[c.recovered for c in cs]}")
        print(_rate("top feature right", _pooled([c.top1 for c in cs])))
        print(_rate("true top feature in reported top 3", _pooled([c.top1_in_top3 for c in cs])))
        print(_rate("top-3 set right (strict, every neuron)", _pooled([c.top3 for c in cs])))
        print(_rate("top-3 set right, SAE has all 3", _pooled([c.top3_recovered for c in cs])))
        print(
            f"  effective features: median per seed {[round(c.effective_median, 2) for c in cs]} "
            f"(truth {[round(c.true_effective_median, 2) for c in cs]}, rotated basis "
            f"{[round(c.baseline_effective_median, 1) for c in cs]}); Spearman vs truth "
            f"{[round(c.effective_spearman, 2) for c in cs]}; verdicts "
            f"{sorted({c.verdict for c in cs})}; {time.perf_counter() - t0:.0f}s"
        )
    recipe = {"d_sae": 512, "k": 4, "lr": 4e-3, "batch_size": 512, "train_tokens": 1_000_000}
    size = {"n_features": 128, "d_in": 64, "tokens": 50_000} if quick else {}
    if quick:
        recipe = {**recipe, "d_sae": 256, "train_tokens": 300_000}
    t0 = time.perf_counter()
    c = calibrate_neurons(**size, **recipe)
    print(
        f"neurons, ill-posed contrast (random supports: 2 neurons per feature, any number of "
        f"features per neuron, near-twins; {size or 'defaults'})"
    )
    print(f"  SAE recipe {c.recipe}; planted features recovered (cos > 0.9): {c.recovered}")
    print(_rate("top feature right", c.top1))
    print(_rate("top feature right, if SAE has it", c.top1_recovered))
    print(_rate("true top feature in reported top 3", c.top1_in_top3))
    print(_rate("top-3 set right (strict, every neuron)", c.top3))
    print(_rate("top-3 set right, neurons with >= 3 features", c.top3_defined))
    print(_rate("top-3 set right, ... and SAE has all 3", c.top3_recovered))
    print(
        f"  shares vs truth over recovered features: median per-neuron Spearman "
        f"{c.share_spearman:.2f} ({c.share_spearman_neurons} neurons)\n"
        f"  effective features: median {c.effective_median:.2f} "
        f"(truth {c.true_effective_median:.2f}, rotated basis {c.baseline_effective_median:.2f}); "
        f"Spearman vs truth {c.effective_spearman:.2f}; verdict vs null: {c.verdict}"
    )
    print(f"  {time.perf_counter() - t0:.0f}s")
    toy = {"steps": 1500, "rows": 10_000, "train_tokens": 100_000} if quick else {}
    for sae in ("oracle", "trained"):
        t0 = time.perf_counter()
        c = calibrate_neurons_toy(sae=sae, **toy)
        print(
            f"neurons on toy ReLU-hidden models (64 features, 32 neurons, S in "
            f"{[p['sparsity'] for p in c.per_instance]}; {sae} SAE; {toy or 'defaults'})"
        )
        print(_rate("top feature right", c.top1))
        print(_rate("true top feature in reported top 3", c.top1_in_top3))
        print(_rate("top-3 set right (strict)", c.top3))
        print(_rate("top-3 set right, neurons with >= 3 features", c.top3_defined))
        for p in c.per_instance:
            print(_rate(f"  S={p['sparsity']}: top feature right", p["top1"]))
        print(
            f"  effective features: median {c.effective_median:.2f} "
            f"(truth {c.true_effective_median:.2f}, rotated basis "
            f"{c.baseline_effective_median:.2f}); Spearman vs truth {c.effective_spearman:.2f}; "
            f"verdicts {', '.join(c.verdicts)}; {time.perf_counter() - t0:.0f}s"
        )


def features(quick: bool) -> None:
    from polysemy.analysis.chorus_calibration import calibrate_features

    size = (
        {"n_features": 128, "d_in": 64, "tokens": 50_000, "train_tokens": 300_000} if quick else {}
    )
    t0 = time.perf_counter()
    c = calibrate_features(**size)
    print(f"features (planted loadings on 3 neurons, trained TopK SAE; {size or 'defaults'})")
    print(f"  planted features recovered (cos > 0.9): {c.recovered}")
    print(_rate("participation ratio within 25%", c.pr_within_25pct))
    print(_rate("same neurons for 90% of mass", c.same_neurons_90))
    print(_rate("sparse feature called concentrated", c.concentrated_sparse))
    print(_rate("dense feature called concentrated", c.concentrated_dense))
    print(f"  random-direction null median PR {c.null_median:.1f}; {time.perf_counter() - t0:.0f}s")


def attributions(quick: bool) -> None:
    """Planted top tokens (found by each method?) on a tiny random BERT, beside a random
    token, and the stability verdict on random vs random and identical rankings."""
    from polysemy.analysis.attributions_calibration import calibrate_attributions

    cal = calibrate_attributions(trials=10 if quick else 100, stability_trials=50 if quick else 200)
    print(
        f"attributions: tiny random BERT (2 layers, d_model 32), concepts:heldout, planted "
        f"direction d = h_t*/||h_t*||, {cal.trials} trials, integrated gradients from zero"
    )
    for setting, rates in cal.recovery.items():
        for method, rate in rates.items():
            print(_rate(f"{setting}: {method} top token = truth", rate))
        print(_rate(f"{setting}: random token = truth (null)", cal.chance[setting]))
    print(_rate("exact truth is the planted token", cal.truth_is_planted))
    print(_rate("stability false positive (random vs random)", cal.stability_false_positive))
    print(_rate("stability false negative (identical)", cal.stability_false_negative))


def pruning(quick: bool) -> None:
    """Planted zero fractions (found within one grid step?), magnitude vs random pruning
    (called?) and one more random mask judged as magnitude is (called?)."""
    from polysemy.analysis.pruning_calibration import calibrate_pruning

    cal = calibrate_pruning(trials=5 if quick else 40)
    print(
        f"pruning: planted toy models W = [Q_a, 0] (n 40, m 32, a in [4, 32]), {cal.samples} "
        f"samples, 19 random masks, tolerance 1e-4, grid step 0.05, {cal.trials} trials"
    )
    print(_rate("prunable within [q, q + 0.05]", cal.recovered))
    print(_rate("false negative (magnitude not > random)", cal.false_negative))
    print(_rate("false positive (random mask > random)", cal.false_positive))
    print("  prunable - q quantiles: " + ", ".join(f"{k} {v:+.4f}" for k, v in cal.error.items()))


def probes(quick: bool) -> None:
    """Planted features and a spurious neuron: is the feature found, the spurious neuron's
    shifted gap flagged, and no gap flagged where the truth has none (calibrate_probes)?"""
    from polysemy.analysis.probe_calibration import calibrate_probes

    trials, rows = (4, 10_000) if quick else (40, 20_000)
    cal = calibrate_probes(trials=trials, rows=rows, resamples=500)
    print(
        f"probes: planted dictionary (64 features in 32 dims + 1 spurious neuron), "
        f"{cal.rows} rows per store, {cal.trials} trials, gap tolerance 0.02"
    )
    print(_rate("false negative (feature probe misses feature 0)", cal.feature_missed))
    print(_rate("false negative (direction |cos| < 0.5)", cal.direction_missed))
    print(_rate("false negative (spurious neuron gap missed)", cal.gap_missed))
    print(_rate("false positive (feature probes' gap, broken)", cal.gap_false_feature))
    print(_rate("false positive (any gap, fresh i.i.d. set)", cal.gap_false_fresh))
    print(_rate("false positive (selectivity, random labels)", cal.selectivity_false))


def edits(quick: bool) -> None:
    """Planted word neurons of a tiny BERT: own concept found, other concepts and the
    exchangeable control split not flagged (calibrate_edits)."""
    from polysemy.analysis.edit_calibration import calibrate_edits

    trials, sentences = (2, 200) if quick else (20, 300)
    cal = calibrate_edits(trials=trials, sentences=sentences)
    print(
        f"edits: tiny BERT with planted word neurons (5 content concepts), concepts:heldout, "
        f"{cal.sentences} sentences and their twins, {cal.trials} trials"
    )
    print(_rate("false negative (own concept's edits missed)", cal.missed))
    print(_rate("false positive (other concept's edits)", cal.false_other))
    print(_rate("false positive (control split, last layer)", cal.false_control_split))


TESTS: dict[str, Callable[[bool], None]] = {
    "neurons": neurons,
    "features": features,
    "geometry": geometry,
    "ablate": ablate,
    "probes": probes,
    "edits": edits,
    "attributions": attributions,
    "pruning": pruning,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(TESTS), help="run one test")
    parser.add_argument("--quick", action="store_true", help="fewer trials (a smoke run)")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.machine()}"
    )
    for name, test in TESTS.items():
        if args.only and name != args.only:
            continue
        start = time.perf_counter()
        test(args.quick)
        print(f"  ({time.perf_counter() - start:.0f} s)\n")


if __name__ == "__main__":
    main()
