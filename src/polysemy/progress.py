"""Progress bars on stderr that appear only for work longer than a second."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(
    total: int | None = None,
    *,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar on stderr, shown only after one second and only when `enabled`.

    Library code takes `progress: bool` and passes it here; it never prints otherwise.
    """
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        delay=1.0,
        dynamic_ncols=True,
        leave=False,
        disable=not enabled,
        **kwargs,
    )


def track(
    items: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True
) -> Iterator[T]:
    """Iterate over `items` with a progress bar (see `progress_bar`)."""
    with progress_bar(total, desc=desc, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update(1)
