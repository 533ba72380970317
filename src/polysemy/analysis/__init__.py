"""Evidence on a model and an SAE: reconstruction metrics, recovery of planted features.

>>> from polysemy.analysis import evaluate, recovery_scores   # doctest: +SKIP
"""

from polysemy.analysis.chorus_calibration import calibrate_features, calibrate_neurons
from polysemy.analysis.features import FeaturesConfig, FeaturesResult, analyze_features
from polysemy.analysis.neurons import NeuronsConfig, NeuronsResult, analyze_neurons
from polysemy.analysis.reconstruction import ReconstructionResult, evaluate
from polysemy.analysis.recovery import RecoveryResult, recovery_scores

__all__ = [
    "FeaturesConfig",
    "FeaturesResult",
    "NeuronsConfig",
    "NeuronsResult",
    "ReconstructionResult",
    "RecoveryResult",
    "analyze_features",
    "analyze_neurons",
    "calibrate_features",
    "calibrate_neurons",
    "evaluate",
    "recovery_scores",
]
