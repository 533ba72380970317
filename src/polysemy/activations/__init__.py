"""Activations on disk: the shard store (`store.py`) and harvesting from models (`harvest.py`).

>>> store = ActivationStore("acts/minilm-l3")  # doctest: +SKIP
>>> x = next(store.batches(4096, seed=0))      # doctest: +SKIP
"""

from polysemy.activations.store import (
    STORE_FORMAT,
    ActivationStore,
    NonfiniteRows,
    StoreWriter,
    TraceRows,
    find_nonfinite_rows,
    require_finite,
)

__all__ = [
    "STORE_FORMAT",
    "ActivationStore",
    "NonfiniteRows",
    "StoreWriter",
    "TraceRows",
    "find_nonfinite_rows",
    "require_finite",
]
