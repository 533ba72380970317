"""The demo: a real model unpacked end to end into one resumable run folder.

    result = ps.demo.run_demo(ps.demo.preset("quick"), out="runs/demo")
    print(result.report, result.explore_command)

Stages (stages.STAGES): harvest the MLP neurons and the residual stream of one MiniLM layer
and the next layer's attention output, train a TopK SAE on each, run the evidence analyses
(fidelity, neurons, features, geometry, ablation, circuits from the residual features into the
attention-output ones), the claims battery, the report and the explorer index. RUN/demo.json
records each stage's seconds and figures; a killed demo rerun with the same config skips what
is done.
docs/demo.md describes the run folder and the budgets.
"""

from __future__ import annotations

from polysemy.demo.config import PRESETS, DemoConfig, preset
from polysemy.demo.pipeline import DEFAULT_OUT, DemoResult, run_demo
from polysemy.demo.stages import STAGES

__all__ = ["DEFAULT_OUT", "PRESETS", "STAGES", "DemoConfig", "DemoResult", "preset", "run_demo"]
