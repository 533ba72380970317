"""`polysemy sae ...`: train, evaluate, score recovery, import and export SAEs."""

from __future__ import annotations

import argparse

from polysemy.cli import sae_tools, sae_train


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sae", help="sparse autoencoders: train, eval, recover, import, export"
    )
    sae_subparsers = parser.add_subparsers(title="sae commands", metavar="COMMAND", required=True)
    sae_train.register(sae_subparsers)
    sae_tools.register(sae_subparsers)
