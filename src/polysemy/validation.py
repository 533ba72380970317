"""Checks of user-supplied parameters, shared by every config and public function.

A failed check raises `ParameterError`, which names the parameter, what was expected and what
was got, and is both a `ValueError` and a `TypeError` (as scikit-learn's
`InvalidParameterError`), so callers catch it either way. The CLI turns the parameter name
into its flag (`batch_size` -> `--batch-size`) in one place, so the library never speaks in
flags:

>>> check_int("k", 0, least=1)
Traceback (most recent call last):
...
polysemy.validation.ParameterError: k must be an int >= 1; got 0
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any, TypeVar

C = TypeVar("C")


class ParameterError(ValueError, TypeError):
    """A parameter outside its domain; `parameter` is its name (a config field or argument)."""

    def __init__(self, parameter: str, expected: str, got: Any) -> None:
        self.parameter = parameter
        self.expected = expected
        self.got = got
        super().__init__(f"{parameter} must be {expected}; got {got!r}")


def _describe_range(kind: str, least: float | None, most: float | None, *, open_low: bool) -> str:
    low = ">" if open_low else ">="
    if least is not None and most is not None:
        left = "(" if open_low else "["
        return f"{kind} in {left}{least:g}, {most:g}]"
    if least is not None:
        return f"{kind} {low} {least:g}"
    if most is not None:
        return f"{kind} <= {most:g}"
    return kind


def check_int(
    name: str, value: object, *, least: int | None = None, most: int | None = None
) -> int:
    """`value` as an int in [least, most]; bools are refused (True is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(name, _describe_range("an int", least, most, open_low=False), value)
    if (least is not None and value < least) or (most is not None and value > most):
        raise ParameterError(name, _describe_range("an int", least, most, open_low=False), value)
    return value


def check_float(
    name: str,
    value: object,
    *,
    least: float | None = None,
    most: float | None = None,
    above: float | None = None,
) -> float:
    """`value` as a finite float with `least <= value <= most` and `value > above`.

    Ints are accepted (`lr=1` is a fine learning rate); NaN, infinities and bools are not
    (the message's "a number" means a finite one).
    """
    open_low = above is not None
    low = above if open_low else least
    expected = _describe_range("a number", low, most, open_low=open_low)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParameterError(name, expected, value)
    if not math.isfinite(value):
        raise ParameterError(name, expected, value)
    if (
        (least is not None and value < least)
        or (above is not None and value <= above)
        or (most is not None and value > most)
    ):
        raise ParameterError(name, expected, value)
    return float(value)


def check_choice(name: str, value: object, choices: Iterable[object]) -> Any:
    """`value` if it is one of `choices`."""
    options = tuple(choices)
    if value not in options:
        raise ParameterError(name, f"one of {', '.join(map(str, options))}", value)
    return value


def check_optional_int(
    name: str, value: object, *, least: int | None = None, most: int | None = None
) -> int | None:
    """None, or `check_int`."""
    return None if value is None else check_int(name, value, least=least, most=most)


def check_optional_float(
    name: str,
    value: object,
    *,
    least: float | None = None,
    most: float | None = None,
    above: float | None = None,
) -> float | None:
    """None, or `check_float`."""
    if value is None:
        return None
    return check_float(name, value, least=least, most=most, above=above)


def configured(config_type: type[C], config: C | None, options: dict[str, Any]) -> C:
    """`config` (default: `config_type()`'s defaults) with the fields named in `options`
    replaced: how library functions take a frozen config or its fields as keywords. A name
    that is not a field is refused, naming it."""
    names = [f.name for f in dataclasses.fields(config_type)]  # type: ignore[arg-type]
    for key, value in options.items():
        if key not in names:
            raise ParameterError(
                key, f"a field of {config_type.__name__} ({', '.join(names)})", value
            )
    if config is None:
        return config_type(**options)
    if not isinstance(config, config_type):
        raise ParameterError("config", f"a {config_type.__name__}", config)
    return dataclasses.replace(config, **options)  # type: ignore[type-var]
