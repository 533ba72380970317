"""`polysemy analyze ...`: evidence on a model and an SAE, each written to an analysis folder.

Each command is one module (`analyze_<name>.py`) with a `register(subparsers)`; its flags come
from the library config of the analysis it runs.
"""

from __future__ import annotations

import argparse
from types import ModuleType

from polysemy.cli import (
    analyze_ablate,
    analyze_attributions,
    analyze_circuits,
    analyze_drift,
    analyze_edits,
    analyze_features,
    analyze_fidelity,
    analyze_geometry,
    analyze_neurons,
    analyze_probes,
    analyze_pruning,
)

# One module per analysis command, in the order `polysemy analyze --help` lists them.
COMMANDS: tuple[ModuleType, ...] = (
    analyze_fidelity,
    analyze_neurons,
    analyze_features,
    analyze_geometry,
    analyze_ablate,
    analyze_probes,
    analyze_edits,
    analyze_attributions,
    analyze_pruning,
    analyze_drift,
    analyze_circuits,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `analyze` command group (when it has commands) to `subparsers`."""
    if not COMMANDS:
        return
    group = subparsers.add_parser(
        "analyze",
        help="evidence on a model and an SAE: fidelity, neurons, features, geometry, ablation, "
        "probes, edits, attributions, pruning, drift, circuits",
        description="Each analysis runs where the truth is known first (docs/evidence.md gives "
        "its calibrated error rates), reports every figure with an interval and a null, and "
        "writes an analysis folder (analysis.json + columnar files) that reports read.",
    )
    sub = group.add_subparsers(title="analyze commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
