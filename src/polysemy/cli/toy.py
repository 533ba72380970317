"""`polysemy toy ...`: train toy models of superposition and reproduce the paper's figures."""

from __future__ import annotations

import argparse

from polysemy.cli import toy_experiments, toy_train


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "toy", help="toy models of superposition: train, phase, reproduce"
    )
    toy_subparsers = parser.add_subparsers(title="toy commands", metavar="COMMAND", required=True)
    toy_train.register(toy_subparsers)
    toy_experiments.register(toy_subparsers)
