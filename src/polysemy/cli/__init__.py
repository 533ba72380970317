"""The `polysemy` command line: a thin argparse layer over the library.

Conventions every command follows:
- `--help` everywhere; `--json` prints exactly one JSON object on stdout, logs go to stderr;
- user mistakes print one line `error: ...` naming the option, what was expected and what
  was got, and exit with code 2 (no traceback; set POLYSEMY_DEBUG=1 to see one); the library
  names parameters (`batch_size`, `resume=True`) and `main` words them as flags;
- flags are generated from the library's frozen configs (`_flags.add_config_flags`), and
  `--device`, `--threads`, `--seed` are declared and applied once (`_common.add_command`);
- output folders are written atomically, so a failed command leaves nothing half-written.

Each command group lives in its own module with a `register(subparsers)` function.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from polysemy.cli import (
    analyze,
    check,
    corpus,
    demo,
    explore,
    harvest,
    organism,
    report,
    sae,
    synth,
    toy,
)
from polysemy.cli._common import USER_ERRORS, ArgumentParser, applied_runtime
from polysemy.cli._flags import flag_message

_GROUPS = (toy, harvest, synth, sae, analyze, corpus, demo, check, report, explore, organism)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="polysemy",
        description="Study superposition: toy models, real models held fixed, sparse autoencoders.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output on stderr"
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for group in _GROUPS:
        group.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `polysemy` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        with applied_runtime(args):
            code = args.handler(args)
    except USER_ERRORS as exc:
        if os.environ.get("POLYSEMY_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # The library names parameters; the user typed flags. One mapping, here.
        flags = _flags_of(parser, args.handler)
        message = flag_message(message, flags, getattr(exc, "parameter", None))
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def _flags_of(parser: argparse.ArgumentParser, handler: object) -> dict[str, str]:
    """Parameter name -> flag of the (sub)command whose handler is `handler`: each option's
    destination and its long flag (`batch_size` -> `--batch-size`, `fmt` -> `--from`)."""
    if parser.get_default("handler") is handler:
        return {
            action.dest: max(action.option_strings, key=len)
            for action in parser._actions
            if action.option_strings
        }
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found = _flags_of(sub, handler)
                if found:
                    return found
    return {}
