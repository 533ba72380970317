"""The explorer: a local web app over a run folder (`polysemy explore RUN`).

The library precomputes every number a page shows into `RUN/explorer/` (`build_index`,
`ensure_index`, polysemy.explorer.index); the server (polysemy.explorer.server, Starlette:
the `explore` extra) serves those JSON files and static pages on 127.0.0.1 and computes
nothing.

>>> from polysemy.explorer import build_index, create_app
>>> build_index("runs/demo")                      # doctest: +SKIP
>>> app = create_app("runs/demo")                 # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from polysemy.explorer.index import build_index, ensure_index

__all__ = ["ServeConfig", "build_index", "create_app", "ensure_index", "serve"]

if TYPE_CHECKING:
    from polysemy.explorer.server import ServeConfig, create_app, serve


def __getattr__(name: str) -> Any:
    # The web stack is an extra: imported only when the server is asked for.
    if name in ("ServeConfig", "create_app", "serve"):
        from polysemy.explorer import server

        return getattr(server, name)
    raise AttributeError(f"module 'polysemy.explorer' has no attribute {name!r}")
