"""Acceptance checks: a measured value held against a bar, with the measurement in words.

The library's reproductions return them (`polysemy.toy.experiments`) and the report layer
shows them as pass/fail; they live here so that the library never imports the report layer.

>>> Check("fvu < 0.2", True, "fvu = 0.12").passed
True
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Check"]


@dataclass(frozen=True)
class Check:
    """One acceptance check shown as pass/fail next to a figure."""

    name: str
    """What is checked, e.g. `linear model: ||W||_F^2 = 5 +- 0.05`."""
    passed: bool
    """Whether the measured value meets the bar."""
    detail: str = ""
    """The measured value(s), in words."""
