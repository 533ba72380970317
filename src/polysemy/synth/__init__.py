"""Synthetic activations with planted features (ground truth for scoring SAEs).

>>> from polysemy.synth import SynthConfig, write_synth_store
>>> write_synth_store("acts/synth", SynthConfig(n_features=4096, d_in=256))  # doctest: +SKIP

`ps.synth(out, ...)` calls this package: the top-level function and this subpackage share the
name `polysemy.synth`, and Python rebinds that name to the subpackage whenever it is first
imported, so the package itself is the callable (it forwards to `polysemy.api.synth`).
"""

import sys
import types
from typing import Any

from polysemy.synth.planted import (
    SynthConfig,
    SynthResult,
    feature_probabilities,
    generate_activations,
    generate_chunks,
    plant_chorus,
    plant_dictionary,
    write_synth_store,
)

__all__ = [
    "SynthConfig",
    "SynthResult",
    "feature_probabilities",
    "generate_activations",
    "generate_chunks",
    "plant_chorus",
    "plant_dictionary",
    "write_synth_store",
]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from polysemy.api import synth

        return synth(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
