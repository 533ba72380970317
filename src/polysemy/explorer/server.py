"""The explorer's web server: static pages and the precomputed JSON of one run folder.

Routes (nothing else answers):

    /                        the single page (static/index.html; pages are `#/...` routes)
    /static/<name>           app.js, drift.js, circuits.js, style.css; plotly.min.js from plotly
    /data/<path>             files under RUN/explorer/ (what `build_index` wrote)

`/data/` serves only regular files inside RUN/explorer: a path with `..`, a percent-encoded
byte (`%2e%2e`, `%2f`: our file names never need one), a backslash, an absolute path or a
hidden segment is refused (400), and a path whose real location (symlinks resolved) is
outside the folder is not found (404), as is an unknown feature id. Requests must name a
loopback host unless the server was bound to another one (DNS-rebinding guard).

>>> app = create_app("runs/demo")        # doctest: +SKIP
>>> serve("runs/demo", ServeConfig(port=8000, browser=False))   # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polysemy.explorer.index import EXPLORER_DIR, INDEX, ensure_index
from polysemy.validation import ParameterError, check_int, configured

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_PAGES = {
    "app.js": "text/javascript",
    "drift.js": "text/javascript",  # drift pages (explorer/drift_index.py)
    "circuits.js": "text/javascript",  # circuits pages (explorer/circuits_index.py)
    "style.css": "text/css",
}
_SAFE = re.compile(r"[A-Za-z0-9_\-./]+")
# Pages load only their own scripts and data; plotly needs inline styles.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class ServeConfig:
    """Where `polysemy explore` listens."""

    host: str = "127.0.0.1"
    """Address to bind (loopback by default; another host exposes the run to the network)."""
    port: int = 8000
    """Port to listen on (0: any free port)."""
    browser: bool = True
    """Open the explorer in a web browser once it listens."""

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ParameterError("host", "an address such as 127.0.0.1", self.host)
        check_int("port", self.port, least=0, most=65535)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plotly_js() -> Path:
    """plotly.min.js of the installed plotly package (never a CDN)."""
    try:
        import plotly
    except ImportError as exc:  # pragma: no cover - the explore extra is missing
        raise ImportError(
            "the explorer draws with plotly's JS; install it: pip install 'polysemy[explore]'"
        ) from exc
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():  # pragma: no cover
        raise FileNotFoundError(f"plotly has no {path}; reinstall plotly")
    return path


def safe_path(root: Path, raw: str) -> Path | None:
    """The file under `root` that the request path `raw` (undecoded, relative) names, or None
    when it is refused: ValueError for a malformed path, None when nothing is there."""
    if (
        not raw
        or not _SAFE.fullmatch(raw)
        or raw.startswith("/")
        or any(seg in ("", ".", "..") or seg.startswith(".") for seg in raw.split("/"))
    ):
        raise ValueError(f"refused path {raw!r}")
    path = (root / raw).resolve()
    real_root = root.resolve()
    if not path.is_relative_to(real_root) or not path.is_file():
        return None
    return path


def create_app(run: str | os.PathLike[str], *, allowed_hosts: tuple[str, ...] | None = None) -> Any:
    """The Starlette app serving `run`'s explorer index (built first when missing or stale).
    `allowed_hosts`: Host headers answered (default: loopback names only)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, PlainTextResponse, Response
    from starlette.routing import Route

    root = ensure_index(run).resolve()
    plotly_path = plotly_js()
    headers = {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=headers)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "plotly.min.js":
            return FileResponse(
                plotly_path,
                media_type="text/javascript",
                headers={**headers, "Cache-Control": "max-age=86400"},
            )
        if name not in _PAGES:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(STATIC / name, media_type=_PAGES[name], headers=headers)

    async def data(request: Request) -> Response:
        # The undecoded path: `%2e%2e` and `%2f` must be refused, not decoded into `..`/`/`.
        raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
        raw = raw_path.decode("latin-1").split("?", 1)[0]
        prefix = "/data/"
        rel = raw[len(prefix) :] if raw.startswith(prefix) else ""
        try:
            path = safe_path(root, rel)
        except ValueError:
            return PlainTextResponse("bad path", status_code=400, headers=headers)
        if path is None:
            return PlainTextResponse("not found", status_code=404, headers=headers)
        return FileResponse(
            path,
            media_type="application/json",
            headers={**headers, "Cache-Control": "no-cache"},
        )

    hosts = list(allowed_hosts) if allowed_hosts is not None else list(LOOPBACK_NAMES)
    return Starlette(
        routes=[
            Route("/", page),
            Route("/static/{name}", static),
            Route("/data/{rest:path}", data),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
    )


def serve(
    run: str | os.PathLike[str],
    config: ServeConfig | None = None,
    *,
    ready: Callable[[str], None] | None = None,
    **options: Any,
) -> None:
    """Serve `run` until interrupted (blocking). Binds `config.host` (127.0.0.1 by default;
    a non-loopback host is logged as a warning), calls `ready(url)` once it listens and opens
    a browser there when `config.browser`."""
    config = configured(ServeConfig, config, options)
    import uvicorn

    if not config.loopback:
        logger.warning(
            "binding %s: anyone who can reach this address can read the run folder's explorer",
            config.host,
        )
    app = create_app(run, allowed_hosts=None if config.loopback else ("*",))
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.host, port=config.port, log_level="warning")
    )

    def when_up() -> None:
        import time

        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            url = url_of(server, config.host)
            if ready is not None:
                ready(url)
            if config.browser:
                webbrowser.open(url)

    threading.Thread(target=when_up, daemon=True).start()
    try:
        server.run()
    finally:
        server.should_exit = True  # ends `when_up` when the server never started


def url_of(server: Any, host: str) -> str:
    """http://host:port/ of a started uvicorn server (the port it really bound)."""
    port = server.servers[0].sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/"


__all__ = ["CSP", "EXPLORER_DIR", "INDEX", "ServeConfig", "create_app", "safe_path", "serve"]
