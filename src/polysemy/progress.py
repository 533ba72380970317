"""Progress bars on stderr that appear only for work longer than a second."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


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
