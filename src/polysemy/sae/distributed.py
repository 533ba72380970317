"""Data-parallel SAE training on torch.distributed (gloo on CPU, NCCL on GPU).

Under `torchrun --nproc-per-node N -m polysemy sae train ...` every process sees
`WORLD_SIZE`, `RANK`, `LOCAL_RANK`, `MASTER_ADDR` and `MASTER_PORT`; `init_from_env` joins
the process group from them. Each rank reads its own part of the data, computes gradients on
its share of the global batch, and `all_reduce_` averages them (with the per-latent firing
counts) in ONE flat all_reduce per step. Rank 0 writes checkpoints.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a data-parallel job."""

    rank: int
    """Global rank (0 writes checkpoints and prints)."""
    world_size: int
    """Number of processes."""
    local_rank: int
    """Rank on this node (picks the GPU)."""
    backend: str | None
    """`gloo`, `nccl`, or None when not distributed."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo(rank=0, world_size=1, local_rank=0, backend=None)


def env_world_size() -> int:
    """`WORLD_SIZE` from the environment (1 when unset)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an int; got {os.environ['WORLD_SIZE']!r}") from None


def init_from_env(device: str | torch.device = "cpu") -> DistInfo:
    """Join the process group described by torchrun's environment variables.

    Returns `SINGLE` when `WORLD_SIZE` is unset or 1. Uses NCCL for CUDA devices and gloo
    otherwise; an already-initialised group is reused.
    """
    world_size = env_world_size()
    if world_size <= 1 and not dist.is_initialized():
        return SINGLE
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        # Leave the group before the interpreter tears down: gloo's threads destroyed at exit
        # instead sometimes abort a rank ("terminate called without an active exception",
        # exit -6) after its work is done. Local, so it never waits on a peer; one process
        # that runs several commands keeps the group until it exits.
        atexit.register(_leave_group)
    backend = str(dist.get_backend())
    rank, world_size = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    logger.info("rank %d of %d (%s)", rank, world_size, backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend)


def _leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: str | torch.device, info: DistInfo) -> torch.device:
    """The device of this rank: `cuda` becomes `cuda:<local_rank>` under torchrun."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and info.enabled:
        return torch.device("cuda", info.local_rank)
    return dev


def all_reduce_(tensors: list[Tensor], info: DistInfo, *, average: list[bool]) -> None:
    """Sum (or average, where `average[i]`) each tensor over ranks, in one flat all_reduce.

    Tensors are packed into one float buffer, reduced, and copied back in place; integer
    tensors (firing counts) travel as float, exact below 2^24 per entry.
    """
    if not info.enabled or not tensors:
        return
    flat = torch.cat([t.reshape(-1).to(torch.float32) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for t, avg in zip(tensors, average, strict=True):
        n = t.numel()
        part = flat[offset : offset + n].view_as(t)
        if avg:
            part = part / info.world_size
        t.copy_(part.round() if not t.is_floating_point() else part)
        offset += n


def agree_all(flag: bool, info: DistInfo) -> bool:
    """True when `flag` holds on every rank (a collective: every rank must call it)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if info.backend == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


def broadcast_(tensor: Tensor, info: DistInfo, src: int = 0) -> None:
    """Copy rank `src`'s `tensor` into every rank's, in place."""
    if info.enabled:
        dist.broadcast(tensor, src=src)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group (after a barrier, so rank 0 can finish writing)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# ---- failures: no rank waits forever ----------------------------------------------------------
# Streaming passes under torchrun (harvest, evidence passes) sum `[..., failed]` flags over
# ranks at fixed points every rank reaches together (every HEARTBEAT_BATCHES batches and at
# the end). A rank that raises reports its failure once and re-raises; the others stop at the
# next such point. A rank killed outright makes the next collective fail on the others.

HEARTBEAT_BATCHES = 16
"""Batches of each rank between two comparisons of failure flags (one 3-integer all_reduce)."""


class PeerFailed(RuntimeError):
    """Another rank of a job under torchrun failed or died; this rank stopped."""


def sum_over_ranks(
    info: DistInfo, values: list[int], *, job: str = "job", hint: str = ""
) -> list[int]:
    """Sum integers over ranks (int64, exact at any size); unchanged in one process. Raises
    PeerFailed when the collective fails (a rank died)."""
    if not info.enabled:
        return values
    dev = torch.device("cuda", info.local_rank) if info.backend == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.int64, device=dev)
    try:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PeerFailed(
            f"rank {info.rank}: another rank of this {job} died ({first})"
            + (f"; {hint}" if hint else "")
        ) from None
    return [int(v) for v in t.tolist()]


def stop_if_a_rank_failed(
    info: DistInfo, values: list[int] | None = None, *, job: str = "job", hint: str = ""
) -> list[int]:
    """Sum `[a, b, failed]` over ranks (a collective: every rank calls it at the same
    point); raise PeerFailed when any rank reported a failure."""
    total = sum_over_ranks(info, values or [0, 0, 0], job=job, hint=hint)
    if total[-1]:
        n = total[-1]
        raise PeerFailed(
            f"rank {info.rank}: {n} other rank{'s' if n > 1 else ''} of this {job} failed "
            f"(see their errors){'; ' + hint if hint else ''}"
        )
    return total


def report_failure(info: DistInfo) -> None:
    """Tell the other ranks this one failed (the matching call of their next
    `stop_if_a_rank_failed`); when they are gone already, there is no one to tell."""
    with contextlib.suppress(RuntimeError):
        sum_over_ranks(info, [0, 0, 1])


def first_error(fn: Callable[[], Any]) -> Exception | None:
    """Run `fn`; return the exception it raised, or None."""
    try:
        fn()
    except Exception as exc:
        return exc
    return None


def raise_if_any(info: DistInfo, error: BaseException | None, what: str) -> None:
    """Raise `error` here, and an error naming it on every rank when any rank had one (a
    collective: every rank calls it)."""
    (failures,) = sum_over_ranks(info, [0 if error is None else 1])
    if error is not None:
        raise error
    if failures:
        raise RuntimeError(f"rank {info.rank}: another rank {what} (see its error)")


def sum_tensor_over_ranks(tensor: Tensor, info: DistInfo, *, job: str = "job") -> Tensor:
    """`tensor` summed over ranks (a collective); unchanged in one process. It travels through
    the rank's GPU under NCCL and comes back on `tensor`'s device and dtype. Each rank fills
    its own rows of a zero tensor and the sum gathers them: x + 0 = x, so gathered rows are
    bit for bit the rank's. Raises PeerFailed when the collective fails (a rank died)."""
    if not info.enabled:
        return tensor
    dev = torch.device("cuda", info.local_rank) if info.backend == "nccl" else "cpu"
    t = tensor.to(dev, copy=True)
    try:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PeerFailed(f"rank {info.rank}: another rank of this {job} died ({first})") from None
    return t.to(tensor.device)


def own_batches(info: DistInfo, starts: Any, *, job: str = "job") -> Any:
    """This rank's items of `starts` (every world_size-th from its rank: the batches one
    process would run, dealt round-robin), with the failure check every rank makes at the
    same points, `HEARTBEAT_BATCHES` of its batches apart. Follow the loop with
    `stop_if_a_rank_failed`, and run it inside `reporting_failures`."""
    every = HEARTBEAT_BATCHES * info.world_size
    for i, start in enumerate(starts):
        if info.enabled and i and i % every == 0:
            stop_if_a_rank_failed(info, job=job)
        if i % info.world_size == info.rank:
            yield start


@contextlib.contextmanager
def reporting_failures(info: DistInfo) -> Any:
    """A failure inside is told to the other ranks (at their next failure check) and raised."""
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, PeerFailed):
            report_failure(info)
        raise
