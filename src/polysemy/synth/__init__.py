"""Synthetic activations with planted features (ground truth for scoring SAEs).

>>> from polysemy.synth import SynthConfig, write_synth_store
>>> write_synth_store("acts/synth", SynthConfig(n_features=4096, d_in=256))  # doctest: +SKIP
"""

from polysemy.synth.planted import (
    SynthConfig,
    SynthResult,
    feature_probabilities,
    generate_activations,
    generate_chunks,
    plant_dictionary,
    write_synth_store,
)

__all__ = [
    "SynthConfig",
    "SynthResult",
    "feature_probabilities",
    "generate_activations",
    "generate_chunks",
    "plant_dictionary",
    "write_synth_store",
]
