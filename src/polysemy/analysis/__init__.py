"""Evidence on a model and an SAE: reconstruction metrics, recovery of planted features,
downstream fidelity, ablation, neurons as choruses of features, features over neurons and
dictionary geometry.

>>> from polysemy.analysis import analyze_neurons, analyze_fidelity, ablate  # doctest: +SKIP
"""

from polysemy.analysis.ablation import AblateConfig, AblateResult, ablate
from polysemy.analysis.ablation_calibration import AblationCalibration, calibrate_ablation
from polysemy.analysis.chorus_calibration import (
    calibrate_features,
    calibrate_neurons,
    calibrate_neurons_toy,
)
from polysemy.analysis.features import FeaturesConfig, FeaturesResult, analyze_features
from polysemy.analysis.fidelity import FidelityConfig, FidelityResult, analyze_fidelity
from polysemy.analysis.geometry import GeometryConfig, GeometryResult, analyze_geometry
from polysemy.analysis.geometry_calibration import calibrate_geometry
from polysemy.analysis.neurons import NeuronsConfig, NeuronsResult, analyze_neurons
from polysemy.analysis.reconstruction import ReconstructionResult, evaluate
from polysemy.analysis.recovery import RecoveryResult, recovery_scores
from polysemy.analysis.replay import SiteReplay

__all__ = [
    "AblateConfig",
    "AblateResult",
    "AblationCalibration",
    "FeaturesConfig",
    "FeaturesResult",
    "FidelityConfig",
    "FidelityResult",
    "GeometryConfig",
    "GeometryResult",
    "NeuronsConfig",
    "NeuronsResult",
    "ReconstructionResult",
    "RecoveryResult",
    "SiteReplay",
    "ablate",
    "analyze_features",
    "analyze_fidelity",
    "analyze_geometry",
    "analyze_neurons",
    "calibrate_ablation",
    "calibrate_features",
    "calibrate_geometry",
    "calibrate_neurons",
    "calibrate_neurons_toy",
    "evaluate",
    "recovery_scores",
]
