"""`polysemy explore`: the local explorer over a run folder.

polysemy explore runs/demo            # http://127.0.0.1:8000/ in your browser
polysemy explore runs/demo --port 0 --no-browser
"""

from __future__ import annotations

import argparse
import sys

from polysemy.cli._flags import add_config_flags, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `explore` command."""
    from polysemy.explorer.server import ServeConfig

    p = subparsers.add_parser(
        "explore",
        help="browse a run folder's features, neurons, geometry, toys and claims locally",
        description="Build the run's explorer index when it is missing or stale "
        "(RUN/explorer/, everything the pages show, precomputed) and serve it on 127.0.0.1 "
        "until interrupted. Pages: features (examples, histograms, neighbours, partners, "
        "ablation, claims), neurons (a chorus of features against a rotated basis), geometry, "
        "toy models, claims and search by text. See docs/explorer.md.",
    )
    p.add_argument("run", metavar="RUN", help="run folder (a demo's, or any with analyses)")
    add_config_flags(p, ServeConfig)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from polysemy.explorer import ensure_index
    from polysemy.explorer.server import ServeConfig, serve

    config = config_from_args(ServeConfig, args)
    if not config.loopback:
        print(
            f"warning: --host {config.host} is not a loopback address: anyone who can reach "
            "it can read this run's explorer (there is no login)",
            file=sys.stderr,
        )
    index = ensure_index(args.run)
    print(f"explorer index: {index}", file=sys.stderr)

    def ready(url: str) -> None:
        print(f"explorer at {url} (Ctrl-C stops it)", flush=True)

    serve(args.run, config, ready=ready)
    return 0
