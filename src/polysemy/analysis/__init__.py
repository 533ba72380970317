"""Evidence on a model and an SAE: reconstruction metrics, recovery of planted features.

>>> from polysemy.analysis import evaluate, recovery_scores   # doctest: +SKIP
"""

from polysemy.analysis.reconstruction import ReconstructionResult, evaluate
from polysemy.analysis.recovery import RecoveryResult, recovery_scores

__all__ = ["ReconstructionResult", "RecoveryResult", "evaluate", "recovery_scores"]
