"""Evidence on a model and an SAE, one function per analysis: reconstruction, recovery of
planted features, fidelity, ablation, neurons as choruses, features, dictionary geometry,
probes, edits, attributions, pruning and claims checked with verdicts, each with its
calibration on known truth.

>>> from polysemy.analysis import analyze_neurons, analyze_fidelity, ablate  # doctest: +SKIP
>>> from polysemy.analysis import analyze_probes, analyze_edits              # doctest: +SKIP
"""

from polysemy.analysis.ablation import AblateConfig, AblateResult, ablate
from polysemy.analysis.ablation_calibration import AblationCalibration, calibrate_ablation
from polysemy.analysis.attributions import (
    AttributionsConfig,
    AttributionsResult,
    analyze_attributions,
)
from polysemy.analysis.attributions_calibration import calibrate_attributions
from polysemy.analysis.braids import BraidsResult, braid_scores
from polysemy.analysis.chorus_calibration import (
    calibrate_features,
    calibrate_neurons,
    calibrate_neurons_toy,
)
from polysemy.analysis.circuits import CircuitsConfig, CircuitsResult, analyze_circuits
from polysemy.analysis.circuits_calibration import (
    BraidsCalibration,
    CircuitsCalibration,
    calibrate_braids,
    calibrate_circuits,
)
from polysemy.analysis.claims import ClaimsConfig, ClaimsResult, check_claims
from polysemy.analysis.claims_calibration import ClaimsCalibration, calibrate_claims
from polysemy.analysis.corpus_drift import CorpusDriftConfig, CorpusDriftResult, corpus_drift
from polysemy.analysis.corpus_drift_calibration import calibrate_corpus_drift
from polysemy.analysis.drift import ToyDriftConfig, ToyDriftResult, toy_drift
from polysemy.analysis.drift_calibration import (
    DriftCalibration,
    DriftCalibrationConfig,
    calibrate_drift,
)
from polysemy.analysis.edge_ablation import EdgeAblationResult, ablate_edges
from polysemy.analysis.edge_ablation_calibration import (
    EdgeAblationCalibration,
    calibrate_edge_ablation,
)
from polysemy.analysis.edit_calibration import EditsCalibration, calibrate_edits
from polysemy.analysis.edits import EditsConfig, EditsResult, analyze_edits
from polysemy.analysis.features import FeaturesConfig, FeaturesResult, analyze_features
from polysemy.analysis.fidelity import FidelityConfig, FidelityResult, analyze_fidelity
from polysemy.analysis.geometry import GeometryConfig, GeometryResult, analyze_geometry
from polysemy.analysis.geometry_calibration import calibrate_geometry
from polysemy.analysis.logistic import LogisticProbe
from polysemy.analysis.neurons import NeuronsConfig, NeuronsResult, analyze_neurons
from polysemy.analysis.organism_drift import (
    OrganismDriftConfig,
    OrganismDriftResult,
    organism_drift,
)
from polysemy.analysis.probe_calibration import ProbesCalibration, calibrate_probes
from polysemy.analysis.probes import ProbesConfig, ProbesResult, analyze_probes
from polysemy.analysis.pruning import PruningConfig, PruningResult, analyze_pruning
from polysemy.analysis.pruning_calibration import calibrate_pruning
from polysemy.analysis.reconstruction import ReconstructionResult, evaluate
from polysemy.analysis.recovery import RecoveryResult, recovery_scores
from polysemy.analysis.replay import SiteReplay

__all__ = [
    "AblateConfig",
    "AblateResult",
    "AblationCalibration",
    "AttributionsConfig",
    "AttributionsResult",
    "BraidsCalibration",
    "BraidsResult",
    "CircuitsCalibration",
    "CircuitsConfig",
    "CircuitsResult",
    "ClaimsCalibration",
    "ClaimsConfig",
    "ClaimsResult",
    "CorpusDriftConfig",
    "CorpusDriftResult",
    "DriftCalibration",
    "DriftCalibrationConfig",
    "EdgeAblationCalibration",
    "EdgeAblationResult",
    "EditsCalibration",
    "EditsConfig",
    "EditsResult",
    "FeaturesConfig",
    "FeaturesResult",
    "FidelityConfig",
    "FidelityResult",
    "GeometryConfig",
    "GeometryResult",
    "LogisticProbe",
    "NeuronsConfig",
    "NeuronsResult",
    "OrganismDriftConfig",
    "OrganismDriftResult",
    "ProbesCalibration",
    "ProbesConfig",
    "ProbesResult",
    "PruningConfig",
    "PruningResult",
    "ReconstructionResult",
    "RecoveryResult",
    "SiteReplay",
    "ToyDriftConfig",
    "ToyDriftResult",
    "ablate",
    "ablate_edges",
    "analyze_attributions",
    "analyze_circuits",
    "analyze_edits",
    "analyze_features",
    "analyze_fidelity",
    "analyze_geometry",
    "analyze_neurons",
    "analyze_probes",
    "analyze_pruning",
    "braid_scores",
    "calibrate_ablation",
    "calibrate_attributions",
    "calibrate_braids",
    "calibrate_circuits",
    "calibrate_claims",
    "calibrate_corpus_drift",
    "calibrate_drift",
    "calibrate_edge_ablation",
    "calibrate_edits",
    "calibrate_features",
    "calibrate_geometry",
    "calibrate_neurons",
    "calibrate_neurons_toy",
    "calibrate_probes",
    "calibrate_pruning",
    "check_claims",
    "corpus_drift",
    "evaluate",
    "organism_drift",
    "recovery_scores",
    "toy_drift",
]
