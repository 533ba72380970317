"""Shared pieces of the CLI: one-line errors, typed option parsers, JSON output."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from polysemy.cli._flags import FLAGS_KEY, add_config_flags

if TYPE_CHECKING:
    import torch

# Exceptions that mean "the user asked for something we cannot do": one line, exit 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    UnicodeDecodeError,
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line `error: ...` and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}\n")


@dataclass(frozen=True)
class Runtime:
    """Options every command that computes takes the same way, handled once in `main`."""

    device: str = "cpu"
    """Torch device, e.g. cpu, cuda or cuda:1 (under torchrun each rank takes its own GPU)."""
    threads: int | None = None
    """Torch CPU threads while the command runs (default: torch's own number), restored after."""
    seed: int = 0
    """Seed of every random choice the command makes."""


RuntimeOption = Literal["device", "threads", "seed"]


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str,
    handler: Callable[[argparse.Namespace], int],
    runtime: Sequence[RuntimeOption] = (),
    json: bool = True,
) -> ArgumentParser:
    """A subcommand with the runtime flags it uses (`--device`, `--threads`, `--seed`, in
    that order, from `Runtime`) and `--json`; `main` applies the runtime flags around
    `handler` (device parsed, threads set and restored)."""
    parser: ArgumentParser = subparsers.add_parser(name, help=help, description=description)
    if runtime:
        add_config_flags(parser, Runtime, only=tuple(runtime))
    if json:
        add_json_flag(parser)
    parser.set_defaults(handler=handler)
    return parser


@contextlib.contextmanager
def applied_runtime(args: argparse.Namespace) -> Iterator[None]:
    """Apply the runtime flags a command was given: `--device` becomes a checked
    `torch.device`, `--threads` sets torch's CPU threads until the command returns."""
    flags = getattr(args, FLAGS_KEY, {})
    if "device" in flags:
        args.device = parse_device(args.device)
    threads = getattr(args, "threads", None) if "threads" in flags else None
    if threads is None:
        yield
        return
    import torch

    if threads < 1:
        raise ValueError(f"--threads must be an int >= 1; got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_out_flags(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--out", required=required, help="output folder (written atomically)")
    parser.add_argument(
        "--force", action="store_true", help="replace an --out that holds another kind of run"
    )


def emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    """Print `obj` as one JSON object when `--json` was given, else the human summary."""
    if getattr(args, "json", False):
        print(json.dumps(obj, allow_nan=False, default=_jsonable))
    else:
        print(text)
    sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "_asdict"):
        return value._asdict()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# ---- option types: each raises ArgumentTypeError with "expected ..., got ..." -------------


def _number(text: str, kind: type) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an int' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def unit_float(text: str) -> float:
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def float_list(text: str) -> list[float]:
    """A comma list of numbers, e.g. `0,0.7,0.9`."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(p == "" for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of numbers, got {text!r}"
        )
    return [_number(p, float) for p in parts]


def unit_float_list(text: str) -> list[float]:
    """A comma list of numbers in [0, 1]."""
    values = float_list(text)
    for v in values:
        if not 0.0 <= v <= 1.0:
            raise argparse.ArgumentTypeError(f"expected numbers in [0, 1], got {v!r} in {text!r}")
    return values


def parse_device(text: str) -> torch.device:
    """The torch device `--device` names; ValueError naming the flag when it is not a device,
    or asks for CUDA where there is none."""
    import torch  # lazily: `polysemy --help` should not pay for importing torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"--device must be a torch device like cpu or cuda; got {text!r}"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {text!r} asked for CUDA, but no CUDA device is available")
    return device


def load_sae_arg(path: str, device: Any, store: Any = None) -> Any:
    """The SAE a command's `--sae` names, with its path in its metadata; refused in one line
    when the folder is missing or (given the `store` it will read) its d_in is not the
    store's."""
    from pathlib import Path

    from polysemy.sae import load_sae

    if not Path(path).exists():
        raise FileNotFoundError(f"sae {path!r} does not exist")
    sae = load_sae(path, device=device)
    if sae.metadata is not None:
        sae.metadata.setdefault("path", path)
    if store is not None and sae.d_in != store.d_in:
        raise ValueError(
            f"sae {path!r} has d_in={sae.d_in} but acts {str(store.path)!r} have "
            f"d_in={store.d_in}; train or pick an SAE at this site"
        )
    return sae
