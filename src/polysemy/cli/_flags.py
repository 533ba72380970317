"""Command-line flags generated from the library's frozen config dataclasses.

The library owns every option: its name (the field), its type and choices (the annotation,
`Literal[...]` for choices), its default (the field's default) and its help (the docstring
written under the field). `add_config_flags` turns those into argparse flags and
`config_from_args` turns the parsed flags back into the config, so a field added to a config
appears on the command line with no second edit, and no default is written twice.

>>> @dataclass(frozen=True)
... class Demo:
...     batch_size: int = 64
...     '''Rows per batch.'''
>>> parser = argparse.ArgumentParser()
>>> add_config_flags(parser, Demo)
>>> config_from_args(Demo, parser.parse_args(["--batch-size", "8"]))
Demo(batch_size=8)

Validation stays in the config's `__post_init__`; its `ParameterError` names the field, and
`flag_message` words it with the flag (`batch_size` -> `--batch-size`) for the one-line error.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import itertools
import math
import re
import textwrap
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

FLAGS_KEY = "_config_flags"
"""Namespace attribute mapping each generated flag's field name to its flag string."""
CONFIGS_KEY = "_configs"
"""Namespace attribute listing the config classes a command's flags were generated from."""


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of dataclass `cls` (and of its bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # defined interactively: no source to read
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, following in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def help_text(doc: str) -> str:
    """A field docstring as one help paragraph: its first paragraph, whitespace collapsed;
    `%` escaped for argparse."""
    first = doc.split("\n\n", 1)[0]
    return " ".join(first.split()).replace("%", "%%")


def flag_name(field: str) -> str:
    """`batch_size` -> `--batch-size`."""
    return "--" + field.replace("_", "-")


# ---- value parsers: argparse shows their ArgumentTypeError as "argument --x: ..." ---------


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None


def _parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _comma_list(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        parts = [p.strip() for p in text.split(",")]
        if any(p == "" for p in parts):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return [item(p) for p in parts]

    parse.__name__ = "comma list"
    return parse


_SCALARS: dict[type, Callable[[str], Any]] = {int: _parse_int, float: _parse_float, str: str}


@dataclass(frozen=True)
class _Shape:
    """What argparse needs to know about one field's annotation."""

    parse: Callable[[str], Any] | None  # None: a boolean switch
    choices: tuple[Any, ...] | None = None
    sequence: bool = False  # a tuple/list field, given as a comma list


def _strip_optional(hint: Any) -> Any:
    if get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in get_args(hint) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


def _shape(hint: Any, where: str) -> _Shape:
    hint = _strip_optional(hint)
    if hint is bool:
        return _Shape(parse=None)
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        return _Shape(parse=_SCALARS[type(choices[0])], choices=choices)
    if hint in _SCALARS:
        return _Shape(parse=_SCALARS[hint])
    if get_origin(hint) in (tuple, list, Sequence):
        args = [a for a in get_args(hint) if a is not Ellipsis]
        if len(set(args)) == 1:
            inner = _shape(args[0], where)
            if inner.parse is not None and not inner.sequence:
                return _Shape(parse=inner.parse, choices=inner.choices, sequence=True)
    raise TypeError(f"{where}: no command-line form for the annotation {hint!r}")


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _show_default(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1e5:
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 100_000:
        return f"{value:_}".replace("_", ",")
    return str(value)


def add_config_flags(
    parser: argparse.ArgumentParser,
    config: type,
    *,
    exclude: Sequence[str] = (),
    only: Sequence[str] | None = None,
    flags: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Add one flag per field of the frozen dataclass `config`.

    `exclude`/`only` choose the fields (fields the command fills in itself, such as a width
    read from the data, are excluded). `flags` overrides argparse arguments of a field where
    the command line reads better another way (e.g. `{"sites": {"flag": "--site",
    "action": "append"}}`); it never changes a default.
    """
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config must be a dataclass; got {config!r}")
    hints = typing.get_type_hints(config)
    docs = field_docs(config)
    overrides = dict(flags or {})
    names = dict(parser.get_default(FLAGS_KEY) or {})
    for field in dataclasses.fields(config):
        if field.name in exclude or (only is not None and field.name not in only):
            continue
        if field.name in names:  # already a flag (a runtime flag such as --seed): read from it
            continue
        where = f"{config.__name__}.{field.name}"
        shape = _shape(hints[field.name], where)
        default = _default_of(field)
        extra = dict(overrides.pop(field.name, {}))
        flag = extra.pop("flag", flag_name(field.name))
        doc = docs.get(field.name)
        if not doc:
            raise TypeError(f"{where} has no docstring to use as its help")
        text = help_text(doc)
        kwargs: dict[str, Any] = {"dest": field.name}
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
            if default is not None and shape.parse is not None:
                text += f" (default {_show_default(default)})"
        if shape.parse is None:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif shape.sequence:
            kwargs["type"] = _comma_list(shape.parse)
            kwargs["metavar"] = "A,B,..."
        else:
            kwargs["type"] = shape.parse
            if shape.choices is not None:
                kwargs["choices"] = shape.choices
        kwargs["help"] = text
        kwargs.update(extra)
        parser.add_argument(flag, **kwargs)
        names[field.name] = flag
    if overrides:
        raise TypeError(f"flags given for fields {sorted(overrides)} that {config!r} lacks")
    configs = (*(parser.get_default(CONFIGS_KEY) or ()), config)
    parser.set_defaults(**{FLAGS_KEY: names, CONFIGS_KEY: configs})


def config_from_args(config: type, args: argparse.Namespace, **given: Any) -> Any:
    """`config(...)` from the parsed flags of its fields, with `given` fields set by the
    command (e.g. `d_in` read from the data). Sequence values become tuples."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        if field.name in given:
            values[field.name] = given[field.name]
        elif hasattr(args, field.name) and field.name in getattr(args, FLAGS_KEY, {}):
            value = getattr(args, field.name)
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return config(**values)


_HINT = re.compile(r"\b([a-z][a-z0-9_]*)=True\b")
_LEADING = re.compile(r"^([a-z][a-z0-9_]*)(?= )")


def flag_message(message: str, flags: Mapping[str, str], parameter: str | None = None) -> str:
    """A library error in command-line words. Library messages start with the parameter they
    are about ("batch_size must be ...", "out 'x' holds ...") and hint at others as
    `name=True` ("pass resume=True"); those that are flags of the command become the flags
    ("--batch-size must be ...", "pass --resume")."""
    if parameter is not None and parameter in flags and message.startswith(parameter):
        message = flags[parameter] + message[len(parameter) :]
    else:
        message = _LEADING.sub(lambda m: flags.get(m.group(1), m.group(1)), message)
    return _HINT.sub(lambda m: flags.get(m.group(1), m.group(0)), message)
