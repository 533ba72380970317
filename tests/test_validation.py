"""The shared parameter checks: what they accept, and the one line they say when they refuse."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from polysemy.validation import (
    ParameterError,
    check_choice,
    check_float,
    check_int,
    check_optional_int,
    configured,
)


def test_ints_are_checked_against_their_range_and_bools_are_not_counts() -> None:
    assert check_int("n", 3, least=1) == 3
    with pytest.raises(ParameterError, match=r"^n must be an int >= 1; got 0$") as exc:
        check_int("n", 0, least=1)
    assert (exc.value.parameter, exc.value.got) == ("n", 0)
    with pytest.raises(ValueError, match="got True"):  # also a ValueError and a TypeError
        check_int("n", True)
    with pytest.raises(TypeError, match=r"got 2\.0"):
        check_int("n", 2.0)
    assert check_optional_int("limit", None, least=1) is None


def test_floats_are_finite_and_respect_open_and_closed_bounds() -> None:
    assert check_float("lr", 1, above=0) == 1.0
    with pytest.raises(ParameterError, match=r"^lr must be a number > 0; got 0$"):
        check_float("lr", 0, above=0)
    with pytest.raises(ParameterError, match="a number in"):
        check_float("p", 1.5, least=0, most=1)
    for bad in (math.nan, math.inf, "1"):
        with pytest.raises(ParameterError):
            check_float("x", bad)


def test_choices_list_the_options() -> None:
    assert check_choice("split", "train", ("train", "heldout")) == "train"
    with pytest.raises(ParameterError, match=r"split must be one of train, heldout; got 'dev'"):
        check_choice("split", "dev", ("train", "heldout"))


@dataclass(frozen=True)
class Opts:
    a: int = 1
    b: str = "x"


def test_configured_takes_a_config_or_its_fields_and_refuses_unknown_names() -> None:
    assert configured(Opts, None, {}) == Opts()
    assert configured(Opts, None, {"a": 2}) == Opts(a=2)
    assert configured(Opts, Opts(b="y"), {"a": 3}) == Opts(a=3, b="y")
    with pytest.raises(ParameterError, match=r"^c must be a field of Opts \(a, b\); got 4$"):
        configured(Opts, None, {"c": 4})
