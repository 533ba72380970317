"""Error rates of each evidence test where the truth is known (docs/evidence.md).

Each test's calibration routine lives in the library (so users can rerun it); this script
calls them and prints their rates with exact binomial intervals.

    python benchmarks/evidence_calibration.py --only geometry
    python benchmarks/evidence_calibration.py --quick
"""

from __future__ import annotations

import argparse
import platform
import time

import torch


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


TESTS = {"geometry": geometry}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(TESTS), help="run one test's calibration")
    parser.add_argument("--quick", action="store_true", help="fewer seeds (a smoke run)")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.machine()}"
    )
    for name, run in TESTS.items():
        if args.only in (None, name):
            run(args.quick)


if __name__ == "__main__":
    main()
