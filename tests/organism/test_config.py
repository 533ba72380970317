from __future__ import annotations

import itertools

import pytest

from polysemy.organism import OrganismConfig, snapshot_steps
from polysemy.organism.config import DEFAULT_STEPS, QUICK_STEPS


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("vocab_size", 100, "vocab_size must be an int >= 300"),
        ("n_head", 3, "n_head must be a divisor of d_model=128"),
        ("steps", 0, "steps must be an int >= 1"),
        ("n_ctx", 1, "n_ctx must be an int >= 2"),
        ("lr", 0.0, "lr must be a number > 0"),
        ("snapshots", 1, "snapshots must be an int >= 2"),
        ("corpus", " ", "corpus must be a corpus spec"),
        ("quick", "yes", "quick must be a bool"),
    ],
)
def test_bad_fields_are_named(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OrganismConfig(**{field: value})


def test_quick_resolves_without_rewriting_the_config() -> None:
    quick = OrganismConfig(quick=True)
    assert quick.steps is None and quick.resolved_steps == QUICK_STEPS
    assert OrganismConfig().resolved_steps == DEFAULT_STEPS
    assert OrganismConfig(quick=True, steps=7).resolved_steps == 7
    assert quick.resolved_corpus_chars < OrganismConfig().resolved_corpus_chars


@pytest.mark.parametrize(("steps", "n"), [(1, 8), (30, 4), (1800, 8), (5, 20)])
def test_snapshot_steps_are_log_spaced_from_zero_to_the_end(steps: int, n: int) -> None:
    got = snapshot_steps(steps, n)
    assert got[0] == 0 and got[-1] == steps
    assert got == sorted(set(got)) and len(got) <= n
    if steps >= 1000:
        gaps = [b - a for a, b in itertools.pairwise(got[1:])]
        assert gaps == sorted(gaps)  # log spacing: gaps grow
