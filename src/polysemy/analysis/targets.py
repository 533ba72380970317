"""What an analysis points at, written `feature:F` (an SAE latent), `neuron:N` (a unit of the
site) or, where a command takes a vector file, `direction`."""

from __future__ import annotations

from polysemy.validation import ParameterError


def parse_target(
    text: str, *, parameter: str = "targets", direction: bool = False
) -> tuple[str, int]:
    """`feature:12` -> ("feature", 12); with `direction=True`, `direction` -> ("direction", -1).
    Anything else is a ParameterError naming `parameter`."""
    kind, _, index = str(text).partition(":")
    if direction and kind == "direction" and not index:
        return kind, -1
    if kind not in ("feature", "neuron") or not index.isdigit():
        expected = "feature:F, neuron:N or direction" if direction else "feature:F or neuron:N"
        if parameter == "targets":
            expected = f"a list of {expected}"
        raise ParameterError(parameter, expected, text)
    return kind, int(index)
