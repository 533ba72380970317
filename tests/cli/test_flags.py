"""Flags generated from configs: the generator itself, and every command held to it."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Literal

import pytest

from polysemy.cli import build_parser
from polysemy.cli._flags import (
    CONFIGS_KEY,
    FLAGS_KEY,
    add_config_flags,
    config_from_args,
    field_docs,
    flag_message,
)

# Options a command may declare by hand: where its inputs and outputs are and how it talks.
# Everything else must be generated from a library config, so no default is written twice.
HAND_FLAGS = {
    "help", "json", "out", "force", "resume", "acts", "sae", "truth", "src", "fmt", "model",
    "allow_download", "corpus", "grep", "no_progress", "text_field", "verbose", "target",
}  # fmt: skip


@dataclass(frozen=True)
class Example:
    """A config with one field of each kind the generator knows."""

    width: int
    """Required width."""
    rate: float = 0.5
    """A rate.

    Only this first paragraph becomes help."""
    mode: Literal["fast", "exact"] = "fast"
    """How to run."""
    limit: int | None = None
    """At most this many (None: no limit)."""
    levels: tuple[float, ...] = (0.0, 0.9)
    """Levels, as a comma list."""
    shuffle: bool = True
    """Shuffle rows."""


def parse(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser()
    add_config_flags(parser, Example)
    return parser, parser.parse_args(argv)


def test_round_trip_and_types() -> None:
    _, args = parse(["--width", "3", "--mode", "exact", "--levels", "0,0.5,1", "--no-shuffle"])
    assert config_from_args(Example, args) == Example(
        width=3, mode="exact", levels=(0.0, 0.5, 1.0), shuffle=False
    )
    _, args = parse(["--width", "3", "--limit", "7", "--rate", "1e-3"])
    assert config_from_args(Example, args) == Example(width=3, rate=1e-3, limit=7)


def test_help_comes_from_field_docstrings() -> None:
    parser, _ = parse(["--width", "1"])
    text = parser.format_help()
    assert "Required width." in text
    assert "A rate. (default 0.5)" in text and "first paragraph" not in text
    assert "{fast,exact}" in text
    assert field_docs(Example)["limit"] == "At most this many (None: no limit)."


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --width"),
        (["--width", "x"], "argument --width: expected an int, got 'x'"),
        (["--width", "1", "--rate", "nan"], "argument --rate: expected a finite number"),
        (["--width", "1", "--mode", "slow"], "argument --mode: invalid choice: 'slow'"),
        (["--width", "1", "--levels", "0,,1"], "expected a comma-separated list"),
    ],
)
def test_parse_errors(capsys, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit):
        parse(argv)
    assert message in capsys.readouterr().err


def test_a_field_without_a_docstring_is_refused() -> None:
    @dataclass(frozen=True)
    class Bare:
        n: int = 1

    with pytest.raises(TypeError, match=r"Bare.n has no docstring"):
        add_config_flags(argparse.ArgumentParser(), Bare)


def test_flag_message_words_parameters_as_flags() -> None:
    flags = {"batch_size": "--batch-size", "out": "--out", "resume": "--resume"}
    assert flag_message("batch_size must be an int >= 1; got 0", flags, "batch_size") == (
        "--batch-size must be an int >= 1; got 0"
    )
    assert flag_message("out 'x' holds a store; pass resume=True or force=True", flags) == (
        "--out 'x' holds a store; pass --resume or force=True"
    )
    # Not a flag of this command: left in the library's words.
    assert flag_message("lr must be > 0", flags, "lr") == "lr must be > 0"


def _commands(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}".strip())
    if parser.get_default("handler") is not None:
        yield prefix, parser


COMMANDS = dict(_commands(build_parser()))


# Hand flags one command may add besides HAND_FLAGS, each with why it is no config field.
COMMAND_HAND_FLAGS = {
    # Arguments of one library call: how many documents `show` prints (`Corpus.take(n)`),
    # where `stats` stops (`corpus_stats(limit=)`).
    "corpus show": {"n"},
    "corpus stats": {"limit"},
    # A folder argument of `check_claims(neurons=)`, like --acts and --sae: an input, not a
    # setting of the battery.
    "check": {"neurons"},
    # `sae train`'s width is either --expansion or --d-sae (resolved by
    # sae.config.resolve_d_sae against d_in read from the data), and --l1-coefficient /
    # --l0-coefficient are the architecture-worded names --sparsity-coefficient had before,
    # kept so existing scripts run.
    "sae train": {"expansion", "d_sae", "l1_coefficient", "l0_coefficient"},
    # --list prints the experiments instead of running; --embed is how the report layer
    # writes the page (base64 figures), not what the library computes.
    "toy reproduce": {"list", "embed"},
    # The dtype the model is loaded in: an argument of `load_model`, like --model itself.
    "harvest": {"model_dtype"},
    # --quick picks the preset the budget flags override; --toy runs the toy tour instead.
    "demo": {"quick", "toy"},
    # The toy or organism run folder drift reads (input paths like --sae or --acts), and the
    # organism site it reads (`organism_drift(site=)`, default: the run's MLP site); across
    # data, the two corpora and the organism snapshot `corpus_drift` reads (inputs too).
    "analyze drift": {"toy", "organism", "site", "corpus_a", "corpus_b", "snapshot"},
    # The two SAE checkpoint folders circuits reads: input paths like --sae.
    "analyze circuits": {"sae_up", "sae_down"},
}

# Commands whose generated flags default to None on purpose: a preset (`demo --quick` or the
# full demo, demo.config.preset) supplies each value the user does not give.
PRESET_COMMANDS = {"demo"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_flag_comes_from_a_config_with_its_default(name: str) -> None:
    parser = COMMANDS[name]
    generated = parser.get_default(FLAGS_KEY) or {}
    for config in parser.get_default(CONFIGS_KEY) or ():
        for field in dataclasses.fields(config):
            if field.name not in generated:
                continue
            default = field.default
            if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
            if name in PRESET_COMMANDS and parser.get_default(field.name) is None:
                continue  # the preset's value applies
            if default is dataclasses.MISSING:
                assert parser.get_default(field.name) is None  # required flag
            else:  # a runtime flag (--seed) that feeds a config field must agree with it too
                assert parser.get_default(field.name) == default, (name, field.name)
    hand = {
        a.dest
        for a in parser._actions
        if a.option_strings
        and a.dest not in generated
        and a.dest not in HAND_FLAGS | COMMAND_HAND_FLAGS.get(name, set())
    }
    assert not hand, f"`polysemy {name}` declares {sorted(hand)} by hand; put them in a config"
