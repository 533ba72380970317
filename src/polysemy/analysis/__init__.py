"""Evidence on a model and an SAE: reconstruction metrics, recovery of planted features,
dictionary geometry.

>>> from polysemy.analysis import evaluate, recovery_scores   # doctest: +SKIP
"""

from polysemy.analysis.geometry import GeometryConfig, GeometryResult, analyze_geometry
from polysemy.analysis.geometry_calibration import calibrate_geometry
from polysemy.analysis.reconstruction import ReconstructionResult, evaluate
from polysemy.analysis.recovery import RecoveryResult, recovery_scores

__all__ = [
    "GeometryConfig",
    "GeometryResult",
    "ReconstructionResult",
    "RecoveryResult",
    "analyze_geometry",
    "calibrate_geometry",
    "evaluate",
    "recovery_scores",
]
