"""Evidence on a model and an SAE: reconstruction metrics, recovery of planted features,
downstream fidelity, ablation, dictionary geometry, probes and edits.

>>> from polysemy.analysis import analyze_fidelity, ablate, analyze_geometry  # doctest: +SKIP
>>> from polysemy.analysis import analyze_probes, analyze_edits              # doctest: +SKIP
"""

from polysemy.analysis.ablation import AblateConfig, AblateResult, ablate
from polysemy.analysis.ablation_calibration import AblationCalibration, calibrate_ablation
from polysemy.analysis.edit_calibration import EditsCalibration, calibrate_edits
from polysemy.analysis.edits import EditsConfig, EditsResult, analyze_edits
from polysemy.analysis.fidelity import FidelityConfig, FidelityResult, analyze_fidelity
from polysemy.analysis.geometry import GeometryConfig, GeometryResult, analyze_geometry
from polysemy.analysis.geometry_calibration import calibrate_geometry
from polysemy.analysis.logistic import LogisticProbe
from polysemy.analysis.probe_calibration import ProbesCalibration, calibrate_probes
from polysemy.analysis.probes import ProbesConfig, ProbesResult, analyze_probes
from polysemy.analysis.reconstruction import ReconstructionResult, evaluate
from polysemy.analysis.recovery import RecoveryResult, recovery_scores
from polysemy.analysis.replay import SiteReplay

__all__ = [
    "AblateConfig",
    "AblateResult",
    "AblationCalibration",
    "EditsCalibration",
    "EditsConfig",
    "EditsResult",
    "FidelityConfig",
    "FidelityResult",
    "GeometryConfig",
    "GeometryResult",
    "LogisticProbe",
    "ProbesCalibration",
    "ProbesConfig",
    "ProbesResult",
    "ReconstructionResult",
    "RecoveryResult",
    "SiteReplay",
    "ablate",
    "analyze_edits",
    "analyze_fidelity",
    "analyze_geometry",
    "analyze_probes",
    "calibrate_ablation",
    "calibrate_edits",
    "calibrate_geometry",
    "calibrate_probes",
    "evaluate",
    "recovery_scores",
]
