"""Two activation stores read as one: an input site and a target site, row by row.

A transcoder learns to predict one site (an MLP's output) from another (its input). Harvest
writes several sites in one pass, one store per site, with the same rows in the same order
(the same documents, positions and shards), so row i of both stores is the same token.
`PairedStore` checks that alignment (row counts, dtypes and, where the stores are traced,
the `doc` and `pos` columns) and serves rows `[x | y]` of width `d_in + d_out`: every reader
of an `ActivationStore` (batches, held-out split, samples, NaN scans) works on pairs as is.

>>> pair = PairedStore("run/stores/mlp_in", "run/stores/mlp_out")   # doctest: +SKIP
>>> pair.d_in, pair.d_out, pair.width                               # doctest: +SKIP
(384, 384, 768)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from polysemy.activations.store import DEFAULT_HELDOUT_FRACTION, ActivationStore

_CHECK_ROWS = 1 << 20
"""Rows of the trace columns compared per read while checking the alignment."""


class PairedStore(ActivationStore):
    """Rows of `inputs` and `target` side by side (`[x | y]`), checked to be the same tokens.

    `d_in` is the width of the rows served (`width = d_in_input + d_out`), so code written
    for one store reads pairs unchanged; `d_in_input` and `d_out` name the two halves.
    Raises ValueError when the stores differ in rows or dtype, or their traces disagree.
    """

    def __init__(
        self,
        inputs: str | os.PathLike[str] | ActivationStore,
        target: str | os.PathLike[str] | ActivationStore,
        *,
        heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    ) -> None:
        in_path = inputs.path if isinstance(inputs, ActivationStore) else inputs
        super().__init__(in_path, heldout_fraction=heldout_fraction)
        self.target = (
            target
            if isinstance(target, ActivationStore)
            else ActivationStore(target, heldout_fraction=heldout_fraction)
        )
        out = self.target
        where = f"target store {str(out.path)!r} against input store {str(self.path)!r}"
        if out.rows != self.rows:
            raise ValueError(
                f"target must have the input's rows ({self.rows}, one per token); "
                f"got {out.rows} in {where}"
            )
        if out.dtype_name != self.dtype_name:
            raise ValueError(
                f"target must have the input's dtype ({self.dtype_name}); got "
                f"{out.dtype_name} in {where}"
            )
        if self.traced != out.traced:
            raise ValueError(
                f"target and input must both carry doc/pos traces or neither ({where})"
            )
        if self.traced:
            for name in ("doc", "pos"):
                for a in range(0, self.rows, _CHECK_ROWS):
                    b = min(self.rows, a + _CHECK_ROWS)
                    mine = ActivationStore._read_column(self, name, a, b)
                    theirs = out._read_column(name, a, b)
                    if not np.array_equal(mine, theirs):
                        bad = a + int(np.flatnonzero(mine != theirs)[0])
                        raise ValueError(
                            f"target rows must be the input's tokens, in order; {name} "
                            f"differs first at row {bad} ({where}): harvest both sites in "
                            "one pass"
                        )
        self.d_in_input: int = self.d_in
        """Width of the input half of each row."""
        self.d_out: int = out.d_in
        """Width of the target half of each row."""
        self.d_in = self.d_in_input + self.d_out
        self.width: int = self.d_in
        """Width of the rows served: `d_in_input + d_out`."""

    def _read_column(self, name: str, start: int, stop: int) -> np.ndarray:
        mine = super()._read_column(name, start, stop)
        if name != "activations":
            return mine
        return np.concatenate([mine, self.target._read_column(name, start, stop)], axis=1)

    @property
    def source(self) -> dict[str, Any]:
        """The input store's source, plus `site_in`, `site_out` and `acts_out`."""
        src = super().source
        out = self.target.source
        src["site_in"] = src.get("site")
        src["site_out"] = out.get("site")
        src["acts_out"] = str(self.target.path)
        return src

    def truth(self) -> dict[str, torch.Tensor] | None:
        return None  # planted truth describes one store; a pair has none of its own

    def __repr__(self) -> str:
        return (
            f"PairedStore({str(self.path)!r}, {str(self.target.path)!r}, rows={self.rows}, "
            f"d_in={self.d_in_input}, d_out={self.d_out}, dtype={self.dtype_name})"
        )
