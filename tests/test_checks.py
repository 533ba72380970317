"""Tests for polysemy.checks."""

from __future__ import annotations

import dataclasses

import pytest

from polysemy.checks import Check


def test_check_is_a_frozen_record() -> None:
    check = Check("fvu < 0.2", False, "fvu = 0.31")
    assert (check.name, check.passed, check.detail) == ("fvu < 0.2", False, "fvu = 0.31")
    assert Check("l0 < 5", True).detail == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        check.passed = True  # type: ignore[misc]
