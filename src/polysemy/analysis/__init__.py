"""Evidence on a model and an SAE: reconstruction metrics, recovery of planted features,
downstream fidelity, ablation and dictionary geometry.

>>> from polysemy.analysis import analyze_fidelity, ablate, analyze_geometry  # doctest: +SKIP
"""

from polysemy.analysis.ablation import AblateConfig, AblateResult, ablate
from polysemy.analysis.ablation_calibration import AblationCalibration, calibrate_ablation
from polysemy.analysis.fidelity import FidelityConfig, FidelityResult, analyze_fidelity
from polysemy.analysis.geometry import GeometryConfig, GeometryResult, analyze_geometry
from polysemy.analysis.geometry_calibration import calibrate_geometry
from polysemy.analysis.reconstruction import ReconstructionResult, evaluate
from polysemy.analysis.recovery import RecoveryResult, recovery_scores
from polysemy.analysis.replay import SiteReplay

__all__ = [
    "AblateConfig",
    "AblateResult",
    "AblationCalibration",
    "FidelityConfig",
    "FidelityResult",
    "GeometryConfig",
    "GeometryResult",
    "ReconstructionResult",
    "RecoveryResult",
    "SiteReplay",
    "ablate",
    "analyze_fidelity",
    "analyze_geometry",
    "calibrate_ablation",
    "calibrate_geometry",
    "evaluate",
    "recovery_scores",
]
