"""The row stream SAE training reads: this rank's share of each global batch, epoch after
epoch, in an order fixed by (seed, epoch), so a resumed run replays its position exactly.

The source is an `ActivationStore` (its `train` split only) or a 2-D float tensor.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from polysemy.activations.store import ActivationStore, require_finite
from polysemy.sae import distributed as dist_utils


class TrainData:
    """Deterministic stream of this rank's share of each global batch, epoch after epoch.

    Position = (epoch, batch index in the epoch); `skip_to` replays a resumed run's position.
    """

    def __init__(
        self,
        source: Any,
        *,
        batch_size: int,
        seed: int,
        info: dist_utils.DistInfo,
        device: torch.device,
    ) -> None:
        self.info = info
        self.device = device
        self.seed = seed
        self.global_batch = batch_size
        if batch_size % info.world_size:
            raise ValueError(
                f"batch_size must be divisible by the {info.world_size} data-parallel ranks; "
                f"got {batch_size}"
            )
        self.local_batch = batch_size // info.world_size
        self.store: ActivationStore | None = None
        self.tensor: Tensor | None = None
        if isinstance(source, Tensor):
            if source.ndim != 2:
                raise ValueError(
                    f"activations must be 2-D [rows, d_in]; got shape {list(source.shape)}"
                )
            if not source.is_floating_point():
                raise TypeError(f"activations must be floating point; got {source.dtype}")
            self.tensor = source
            self.rows, self.d_in = source.shape
            self.name = f"tensor[{self.rows}x{self.d_in}]"
            self.batches_per_epoch = self.rows // batch_size
            if self.batches_per_epoch == 0:
                raise ValueError(
                    f"batch_size {batch_size} is larger than the {self.rows} rows given"
                )
        else:
            self.store = source if isinstance(source, ActivationStore) else ActivationStore(source)
            self.rows, self.d_in = self.store.split_rows("train"), self.store.d_in
            self.name = str(self.store.path)
            smallest = self.rows // info.world_size
            self.batches_per_epoch = smallest // self.local_batch
            if self.batches_per_epoch == 0:
                raise ValueError(
                    f"batch_size {batch_size} is larger than the {self.rows} training rows of "
                    f"{self.name!r}" + (f" ({info.world_size} ranks)" if info.enabled else "")
                )
        self.epoch = 0
        self.index = 0
        self._it: Iterator[Tensor] | None = None

    def check_finite(self) -> None:
        require_finite(self.tensor if self.tensor is not None else self.store)  # type: ignore[arg-type]

    def sample(self, rows: int) -> Tensor:
        """The same rows on every rank: a seeded sample for the input scale and b_dec."""
        if self.tensor is not None:
            g = torch.Generator().manual_seed(self.seed + 7919)
            idx = torch.randperm(self.rows, generator=g)[:rows]
            return self.tensor[idx.to(self.tensor.device)].to(self.device, torch.float32)
        assert self.store is not None
        n = min(rows, self.rows)
        parts, got = [], 0
        it = self.store.batches(min(n, 4096), seed=self.seed + 7919, drop_last=False)
        for b in it:
            parts.append(b)
            got += len(b)
            if got >= n:
                break
        return torch.cat(parts)[:n].to(self.device)

    def _epoch_iter(self, epoch: int) -> Iterator[Tensor]:
        info, seed = self.info, self.seed + 1_000_003 * epoch
        if self.tensor is not None:
            g = torch.Generator().manual_seed(seed)
            perm = torch.randperm(self.rows, generator=g)
            lo = info.rank * self.local_batch
            for b in range(self.batches_per_epoch):
                # This rank's slice of global batch b: the same rows a 1-process run uses.
                idx = perm[
                    b * self.global_batch + lo : b * self.global_batch + lo + self.local_batch
                ]
                yield self.tensor[idx.to(self.tensor.device)].to(self.device, torch.float32)
            return
        assert self.store is not None
        yield from self.store.batches(
            self.local_batch,
            seed=seed,
            rank=info.rank,
            world_size=info.world_size,
            device=self.device,
        )

    def skip_to(self, epoch: int, index: int) -> None:
        self.epoch, self.index = epoch, 0
        self._it = self._epoch_iter(epoch)
        for _ in range(index):
            next(self._it)
            self.index += 1

    def next(self) -> Tensor:
        if self._it is None:
            self._it = self._epoch_iter(self.epoch)
        if self.index >= self.batches_per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
            self._it = self._epoch_iter(self.epoch)
        batch = next(self._it)
        self.index += 1
        return batch
